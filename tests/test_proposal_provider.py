"""`ProposalProvider` (src/vosbench/proposals/provider.py): the oracle source's cache (written on
the first run, read back on the second without computing, a folder per setting), precomputed
proposal files (read back exactly, boxes without masks, checked), and the errors that name the
file or the setting."""

import re

import numpy as np
import pytest

from vosbench.datamodules.video import Video
from vosbench.errors import InputError
from vosbench.io import write_label_png
from vosbench.proposals import provider as provider_module
from vosbench.proposals.oracle import Proposals
from vosbench.proposals.provider import ProposalProvider, read_proposals, write_proposals


@pytest.fixture
def video(tmp_path) -> Video:
    """Three 20×30 frames, one object per frame (a square moving right); frame files need not be
    images for oracle proposals, which read only the annotations."""
    frames, masks = [], []
    for t in range(3):
        labels = np.zeros((20, 30), np.uint8)
        labels[4:12, 3 + 2 * t:11 + 2 * t] = 1
        frames.append(tmp_path / "JPEGImages" / "clip" / f"{t:05d}.jpg")
        masks.append(tmp_path / "Annotations" / "clip" / f"{t:05d}.png")
        write_label_png(masks[-1], labels)
    return Video("clip", "fake", "val", tuple(frames), tuple(masks), (20, 30))


def test_the_oracle_cache_is_written_once_and_read_back(video, tmp_path, monkeypatch):
    monkeypatch.setenv("VOSBENCH_CACHE", str(tmp_path / "cache"))
    provider = ProposalProvider("oracle")
    assert provider.key == "oracle-s0.09-m0.1-f0.3-k3-seed0"
    assert provider.label == "oracle proposals"
    first = [provider(video, t) for t in range(3)]
    files = sorted((tmp_path / "cache" / "proposals" / "fake").glob("*/*/clip/*.npz"))
    assert [path.stem for path in files] == ["00000", "00001", "00002"]
    assert files[0].parent.parent.name == provider.key
    monkeypatch.setattr(provider_module, "oracle_proposals",
                        lambda *args, **kwargs: pytest.fail("computed again"))
    again = [ProposalProvider("oracle")(video, t) for t in range(3)]
    for old, new in zip(first, again):
        assert np.array_equal(old.boxes, new.boxes) and np.array_equal(old.masks, new.masks)
        assert np.array_equal(old.scores, new.scores)
    other = ProposalProvider("oracle", strength=0.05)
    assert other.key == "oracle-s0.05-m0.1-f0.3-k3-seed0"
    with pytest.raises(pytest.fail.Exception, match="computed again"):
        other(video, 0)  # another setting, another folder: nothing cached there


def test_without_a_cache_the_same_frame_gives_the_same_proposals(video):
    provider = ProposalProvider("oracle", cache=False)
    assert provider.path(video, 0) is None
    first, second = provider(video, 1), provider(video, 1)
    assert np.array_equal(first.masks, second.masks) and len(first) > 0


def test_precomputed_files_are_read_back_and_checked(video, tmp_path):
    root = tmp_path / "proposals"
    boxes = np.array([[1, 2, 5, 6], [0, 0, 30, 20]], np.float32)
    masks = np.zeros((2, 20, 30), bool)
    masks[0, 2:6, 1:5] = True
    write_proposals(root / "clip" / "00000.npz", Proposals(boxes, masks,
                                                           np.array([0.9, 0.2], np.float32)))
    write_proposals(root / "clip" / "00001.npz", Proposals(boxes, None,
                                                           np.array([0.9, 0.2], np.float32)))
    provider = ProposalProvider("files", files_root=root)
    assert provider.label == "precomputed proposals" and provider.key is None
    read = provider(video, 0)
    assert np.array_equal(read.boxes, boxes) and np.array_equal(read.masks, masks)
    assert read.scores.tolist() == pytest.approx([0.9, 0.2])
    assert provider(video, 1).masks is None
    with pytest.raises(InputError, match=re.escape(f"{root / 'clip' / '00002.npz'}: proposals "
                                                   f"file not found")):
        provider(video, 2)
    write_proposals(root / "wrong.npz", Proposals(boxes, masks[:, :10], np.ones(2, np.float32)))
    with pytest.raises(InputError, match=re.escape(
            f"{root / 'wrong.npz'}: masks must be (P, H, W) = (2, 20, 30) for this frame, "
            f"found (2, 10, 30)")):
        read_proposals(root / "wrong.npz", (20, 30))
    write_proposals(root / "short.npz", Proposals(boxes[:1], None, np.ones(2, np.float32)))
    with pytest.raises(InputError, match="boxes must be \\(P, 4\\) and scores \\(P,\\)"):
        read_proposals(root / "short.npz", (20, 30))
    (root / "garbage.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match=re.escape(f"{root / 'garbage.npz'}: not a proposals "
                                                   f".npz file")):
        read_proposals(root / "garbage.npz", (20, 30))
    np.savez(root / "nameless.npz", boxes=boxes)
    with pytest.raises(InputError, match="proposals file without scores"):
        read_proposals(root / "nameless.npz", (20, 30))


def test_the_settings_are_checked():
    with pytest.raises(ValueError, match="unknown proposal method 'sam'; known: oracle, "
                                         "maskrcnn, files"):
        ProposalProvider("sam")
    with pytest.raises(ValueError, match="files_root is given with method 'files', and only"):
        ProposalProvider("files")
    with pytest.raises(ValueError, match="files_root is given"):
        ProposalProvider("oracle", files_root="somewhere")
    with pytest.raises(ValueError, match="weights are used by method 'maskrcnn' only"):
        ProposalProvider("oracle", weights="maskrcnn.pth")
    with pytest.raises(InputError, match="proposal method 'maskrcnn' needs a local Mask R-CNN "
                                         "weights file"):
        ProposalProvider("maskrcnn")
    for bad in (dict(strength=-0.1), dict(miss_rate=1.5), dict(spurious_rate=-1),
                dict(max_per_object=0)):
        with pytest.raises(ValueError, match="oracle jitter: strength ≥ 0"):
            ProposalProvider("oracle", **bad)
    assert ProposalProvider("maskrcnn", weights="maskrcnn.pth").label == "Mask R-CNN proposals"
