"""Optical flow: .flo files, Farnebäck and RAFT estimators, the provider and its disk cache,
colour coding and `vosbench data flow`."""

import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from davis_fixtures import write_davis2017
from PIL import Image
from torchvision.models.optical_flow import raft_small

from vosbench.data_commands import main as data_main
from vosbench.datamodules.readers import read_videos
from vosbench.datamodules.video import Video
from vosbench.errors import InputError
from vosbench.flow import FarnebackEstimator, FlowProvider, flow_to_colour, read_flo, write_flo

SHIFT_X, SHIFT_Y = 3, -2


def textured_frames(num_frames: int, height: int = 48, width: int = 64, seed: int = 0
                    ) -> list[np.ndarray]:
    """(H, W, 3) uint8 RGB frames of a smooth random texture moving by (SHIFT_X, SHIFT_Y)
    pixels per frame."""
    margin = 4 * num_frames
    noise = np.random.default_rng(seed).random((height + 2 * margin, width + 2 * margin))
    texture = cv2.GaussianBlur(noise.astype(np.float32), (0, 0), 2.5)
    texture = (texture - texture.min()) / (texture.max() - texture.min()) * 255
    frames = []
    for t in range(num_frames):
        # content at (y, x) in frame 0 is at (y + t * SHIFT_Y, x + t * SHIFT_X) in frame t
        top, left = margin - t * SHIFT_Y, margin - t * SHIFT_X
        grey = texture[top:top + height, left:left + width].astype(np.uint8)
        frames.append(np.repeat(grey[:, :, None], 3, axis=2))
    return frames


def make_video(folder: Path, frames: list[np.ndarray], name: str = "clip",
               dataset: str = "toy") -> Video:
    """A Video over lossless PNG copies of `frames`."""
    files = []
    for index, frame in enumerate(frames):
        files.append(folder / name / f"{index:05d}.png")
        files[-1].parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame).save(files[-1])
    return Video(name, dataset, "val", tuple(files), (None,) * len(files), frames[0].shape[:2])


def interior_median(flow: np.ndarray, border: int = 8) -> np.ndarray:
    return np.median(flow[border:-border, border:-border].reshape(-1, 2), axis=0)


# ---------------------------------------------------------------- .flo files

def test_flo_round_trip_is_bit_exact(tmp_path):
    flow = np.random.default_rng(0).normal(0, 20, (5, 7, 2)).astype(np.float32)
    flow[0, 0] = [np.nan, -0.0]
    flow[0, 1] = [np.inf, -np.inf]
    path = write_flo(tmp_path / "new" / "folder" / "a.flo", flow)
    assert path.stat().st_size == 12 + 5 * 7 * 2 * 4
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    back = read_flo(path)
    assert back.dtype == np.float32 and back.shape == (5, 7, 2)
    assert back.tobytes() == flow.tobytes()
    # the x of pixel (0, 1) follows the header: width, height order and x-before-y layout
    raw = np.frombuffer(path.read_bytes(), "<f4")
    assert raw[0] == np.float32(202021.25) and raw[3 + 2] == np.inf and raw[3 + 3] == -np.inf
    assert np.frombuffer(path.read_bytes()[4:12], "<i4").tolist() == [7, 5]


def flo_bytes(width: int, height: int, values: int | None = None,
              magic: float = 202021.25) -> bytes:
    values = width * height * 2 if values is None else values
    return (np.float32(magic).tobytes() + np.array([width, height], "<i4").tobytes()
            + np.zeros(values, "<f4").tobytes())


@pytest.mark.parametrize("content, fragment", [
    (None, "not found"),
    (b"PIEH", "truncated"),
    (flo_bytes(4, 3, magic=1.0), "not a .flo file"),
    (flo_bytes(4, 3, values=23), "truncated"),
    (flo_bytes(4, 3, values=25), "oversized"),
    (flo_bytes(0, 3, values=0), "corrupt .flo header"),
    (flo_bytes(-4, 3, values=0), "corrupt .flo header"),
    (flo_bytes(1 << 30, 1 << 30, values=0), "corrupt .flo header"),
])
def test_malformed_flo_files_name_the_file(tmp_path, content, fragment):
    path = tmp_path / "bad.flo"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=fragment) as error:
        read_flo(path)
    assert str(path) in str(error.value)


# ---------------------------------------------------------------- Farnebäck

def test_farneback_recovers_a_translation():
    first, second = textured_frames(2)
    estimator = FarnebackEstimator()
    forward = estimator(first, second)
    backward = estimator(second, first)
    assert forward.shape == (48, 64, 2) and forward.dtype == np.float32
    np.testing.assert_allclose(interior_median(forward), [SHIFT_X, SHIFT_Y], atol=0.5)
    np.testing.assert_allclose(interior_median(backward), [-SHIFT_X, -SHIFT_Y], atol=0.5)


# ---------------------------------------------------------------- RAFT

def save_raft_small(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    torch.save(raft_small(weights=None).state_dict(), path)
    return path


def test_raft_from_a_local_state_dict(tmp_path):
    weights = save_raft_small(tmp_path / "raft_small.pth", seed=0)
    video = make_video(tmp_path, textured_frames(3, height=50, width=70))  # not multiples of 8
    provider = FlowProvider("raft", weights=weights, arch="raft_small", num_flow_updates=2)
    assert provider.estimator._model is None  # loaded on first use only
    flow = provider.forward(video, 0)
    assert flow.shape == (50, 70, 2) and flow.dtype == np.float32
    assert np.isfinite(flow).all()
    # a DataLoader worker gets a copy without the model, which loads it again and agrees
    copy = pickle.loads(pickle.dumps(provider))
    assert copy.estimator._model is None
    np.testing.assert_array_equal(copy.forward(video, 0), flow)
    # one batch of several pairs gives each pair's flow
    batch = provider.estimator.estimate_pairs([video.frame(0), video.frame(1)],
                                              [video.frame(1), video.frame(2)])
    np.testing.assert_allclose(batch[0], flow, atol=1e-4)


class FakeRaft(torch.nn.Module):
    """Records what RAFT is given; predicts a flow whose x is the column index of the padded
    input, and a wrong flow before it (only the last prediction is the answer)."""

    def forward(self, first, second, num_flow_updates):
        self.inputs = (first, second, num_flow_updates)
        columns = torch.arange(first.shape[3], dtype=torch.float32).expand(*first.shape[:1],
                                                                          *first.shape[2:])
        flow = torch.stack([columns, torch.ones_like(columns)], dim=1)
        return [flow * 0 - 7, flow]


def test_raft_input_range_padding_and_crop(tmp_path):
    weights = save_raft_small(tmp_path / "raft_small.pth", seed=0)
    provider = FlowProvider("raft", weights=weights, arch="raft_small", num_flow_updates=5)
    provider.estimator._model = fake = FakeRaft()
    first, second = textured_frames(2, height=50, width=70)
    first[:, -1] = 255
    first[0, 0] = 0
    flow = provider.estimator(first, second)
    images, others, updates = fake.inputs
    assert images.shape == others.shape == (1, 3, 128, 128) and updates == 5
    assert images.min() == -1 and images.max() == 1
    # replicate padding on the right and the bottom
    assert (images[0, :, :50, 70:] == 1).all()
    assert (images[0, :, 50:, :70] == images[0, :, 49:50, :70]).all()
    assert flow.shape == (50, 70, 2) and flow.dtype == np.float32
    np.testing.assert_array_equal(flow[:, :, 0], np.tile(np.arange(70, dtype=np.float32), (50, 1)))
    assert (flow[:, :, 1] == 1).all()


def test_raft_without_its_weights_file(tmp_path):
    missing = tmp_path / "nowhere" / "raft_large.pth"
    with pytest.raises(InputError, match="only from a local file") as error:
        FlowProvider("raft", weights=missing)
    assert str(missing) in str(error.value) and "C_T_SKHT_V2" in str(error.value)
    with pytest.raises(InputError, match="weights file"):
        FlowProvider("raft")


def test_raft_weights_of_another_architecture(tmp_path):
    weights = save_raft_small(tmp_path / "small.pth", seed=0)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)
    video = make_video(tmp_path, textured_frames(2))
    for path in (weights, garbage, tensor):
        provider = FlowProvider("raft", weights=path, arch="raft_large")
        with pytest.raises(InputError, match="raft_large") as error:
            provider.forward(video, 0)
        assert str(path) in str(error.value)


# ---------------------------------------------------------------- the provider and its cache

class CountingFarneback(FarnebackEstimator):
    calls = 0

    def estimate_pairs(self, firsts, seconds):
        CountingFarneback.calls += len(firsts)
        return super().estimate_pairs(firsts, seconds)


def counting_provider(cache_dir: Path) -> FlowProvider:
    provider = FlowProvider("farneback", cache_dir=cache_dir)
    provider.estimator = CountingFarneback()
    return provider


def test_cache_layout_and_hits(tmp_path):
    video = make_video(tmp_path / "frames", textured_frames(3))
    cache = tmp_path / "cache"
    CountingFarneback.calls = 0
    first = counting_provider(cache)
    forward, backward = first.forward(video, 1), first.backward(video, 2)
    assert CountingFarneback.calls == 2
    folder = cache / "toy" / "farneback" / "clip"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file()) == ["backward/00002.flo", "forward/00001.flo"]
    np.testing.assert_array_equal(read_flo(folder / "forward" / "00001.flo"), forward)

    second = counting_provider(cache)
    np.testing.assert_array_equal(second.forward(video, 1), forward)
    np.testing.assert_array_equal(second.backward(video, 2), backward)
    assert CountingFarneback.calls == 2  # both read from the cache
    second.forward(video, 0)
    assert CountingFarneback.calls == 3

    uncached = counting_provider(None)
    np.testing.assert_array_equal(uncached.forward(video, 1), forward)
    assert CountingFarneback.calls == 4 and uncached.path(video, "forward", 1) is None


def test_cache_true_caches_in_the_vosbench_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("VOSBENCH_CACHE", str(tmp_path / "vosbench"))
    video = make_video(tmp_path / "frames", textured_frames(2))
    provider = FlowProvider(cache=True)
    provider.forward(video, 0)
    assert len(list((tmp_path / "vosbench" / "flow" / "toy").glob("*/farneback/clip/forward/"
                                                                  "00000.flo"))) == 1
    with pytest.raises(ValueError, match="not with a cache_dir of its own"):
        FlowProvider(cache=True, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="nor with method 'files'"):
        FlowProvider(method="files", files_root=tmp_path, cache=True)


def test_videos_of_one_name_in_different_folders_do_not_share_cached_flow(tmp_path, monkeypatch):
    """The synthetic variants (and seeds) name their videos alike: each folder's frames get their
    own flow, not the flow of the first folder cached."""
    still = make_video(tmp_path / "still", [textured_frames(2)[0]] * 2)
    moving = make_video(tmp_path / "moving", textured_frames(2))
    assert (still.dataset, still.name) == (moving.dataset, moving.name)
    monkeypatch.setenv("VOSBENCH_CACHE", str(tmp_path / "vosbench"))
    provider = FlowProvider(cache=True)
    assert np.abs(provider.forward(still, 0)).max() < 0.5
    assert np.abs(provider.forward(moving, 0)).max() > 1
    provider.forward(make_video(tmp_path / "moving", textured_frames(2), name="other"), 0)
    assert len(list((tmp_path / "vosbench" / "flow" / "toy").iterdir())) == 2  # one a folder


def test_cache_folder_depends_on_the_weights(tmp_path):
    one = save_raft_small(tmp_path / "one.pth", seed=0)
    two = save_raft_small(tmp_path / "two.pth", seed=1)
    copy = tmp_path / "copy" / "one.pth"
    copy.parent.mkdir()
    shutil.copy(one, copy)
    video = make_video(tmp_path / "frames", textured_frames(2))

    def folder(weights):
        provider = FlowProvider("raft", weights=weights, arch="raft_small", cache_dir=tmp_path)
        return provider.folder(video)

    assert folder(one).name == "clip" and folder(one).parent.name.startswith("raft_small-")
    assert len(folder(one).parent.name) == len("raft_small-") + 10
    assert folder(one) != folder(two)
    assert folder(one) == folder(copy)  # named by content, not by file name
    assert FlowProvider(cache_dir=tmp_path).folder(video) == tmp_path / "toy" / "farneback" / "clip"


def test_motion_of_every_frame(tmp_path):
    video = make_video(tmp_path, textured_frames(3))
    provider = FlowProvider()
    np.testing.assert_array_equal(provider.motion(video, 0), provider.forward(video, 0))
    np.testing.assert_array_equal(provider.motion(video, 2), -provider.backward(video, 2))
    np.testing.assert_allclose(interior_median(provider.motion(video, 2)), [SHIFT_X, SHIFT_Y],
                               atol=0.5)
    for call, index in [(provider.forward, 2), (provider.backward, 0), (provider.motion, 3),
                        (provider.forward, -1)]:
        with pytest.raises(IndexError, match="'clip' has 3 frames"):
            call(video, index)

    single = make_video(tmp_path, textured_frames(1), name="still")
    motion = provider.motion(single, 0)
    assert motion.shape == (48, 64, 2) and motion.dtype == np.float32 and not motion.any()
    with pytest.raises(IndexError, match="no frame"):
        provider.forward(single, 0)


# ---------------------------------------------------------------- colour

def test_flow_colours():
    white = flow_to_colour(np.zeros((6, 8, 2), np.float32))
    assert white.dtype == np.uint8 and white.shape == (6, 8, 3) and (white == 255).all()
    right = flow_to_colour(np.tile(np.float32([2.5, 0]), (6, 8, 1)))
    assert right.shape == (6, 8, 3) and right.dtype == np.uint8
    assert (right == right[0, 0]).all() and (right[0, 0] != 255).any()
    left = flow_to_colour(np.tile(np.float32([-2.5, 0]), (6, 8, 1)))
    assert (left[0, 0] != right[0, 0]).any()
    # normalised per image by its largest magnitude
    mixed = np.zeros((6, 8, 2), np.float32)
    mixed[:3] = [1, 0]
    mixed[3:] = [4, 0]
    np.testing.assert_array_equal(flow_to_colour(mixed), flow_to_colour(10 * mixed))
    assert (flow_to_colour(mixed)[:3] != flow_to_colour(mixed)[3:]).any()


# ---------------------------------------------------------------- `vosbench data flow`

@pytest.fixture
def davis_root(tmp_path):
    root = tmp_path / "DAVIS"
    write_davis2017(root, {"bear": ("val", 4, 20, 1), "cows": ("val", 3, 16, 2),
                           "solo": ("val", 1, 20, 1), "dog": ("train", 2, 20, 1)})
    return root


def data_flow(capsys, *args):
    code = data_main(["flow", "--dataset", "davis2017", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def flo_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_data_flow_writes_every_frame_once(davis_root, tmp_path, capsys):
    out = tmp_path / "flow"
    code, _, _ = data_flow(capsys, "--root", davis_root, "--out", out, "--method", "farneback",
                           "--quiet")
    assert code == 0
    folder = out / "davis2017" / "farneback"
    expected = {f"bear/forward/{i:05d}.flo" for i in range(3)}
    expected |= {f"bear/backward/{i:05d}.flo" for i in range(1, 4)}
    expected |= {"cows/forward/00000.flo", "cows/forward/00001.flo",
                 "cows/backward/00001.flo", "cows/backward/00002.flo"}
    assert flo_files(out) == {f"davis2017/farneback/{name}" for name in expected}

    def stamps():
        return {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in out.rglob("*.flo")}

    before = stamps()
    code, stdout, _ = data_flow(capsys, "--root", davis_root, "--out", out)
    assert code == 0 and stdout.count("\n") == 1
    assert "3 videos" in stdout and "0 .flo files written, 10 already present" in stdout
    assert stamps() == before

    removed = folder / "bear" / "backward" / "00002.flo"
    removed.unlink()
    code, stdout, _ = data_flow(capsys, "--root", davis_root, "--out", out)
    assert code == 0 and "1 .flo files written, 9 already present" in stdout
    assert removed.is_file() and stamps().keys() == before.keys()
    assert all(stamps()[path] == before[path] for path in before if path != removed)

    # a provider on the same cache reads them; so does method "files" on the method folder
    video = read_videos("davis2017", davis_root)[0]
    assert video.name == "bear"
    cached = counting_provider(out)
    CountingFarneback.calls = 0
    flow = cached.forward(video, 1)
    assert CountingFarneback.calls == 0 and flow.shape == (12, 20, 2)
    files = FlowProvider("files", files_root=folder)
    np.testing.assert_array_equal(files.forward(video, 1), flow)
    np.testing.assert_array_equal(files.motion(video, 3), -files.backward(video, 3))
    np.testing.assert_array_equal(files.backward(video, 2),
                                  read_flo(folder / "bear" / "backward" / "00002.flo"))


def test_files_method_errors(davis_root, tmp_path, capsys):
    out = tmp_path / "flow"
    assert data_flow(capsys, "--root", davis_root, "--out", out, "--quiet")[0] == 0
    folder = out / "davis2017" / "farneback"
    video = read_videos("davis2017", davis_root)[0]
    files = FlowProvider("files", files_root=folder)
    missing = folder / "bear" / "forward" / "00001.flo"
    missing.unlink()
    with pytest.raises(InputError, match="not found") as error:
        files.forward(video, 1)
    assert str(missing) in str(error.value)
    wrong_size = folder / "bear" / "backward" / "00001.flo"
    write_flo(wrong_size, np.zeros((12, 21, 2), np.float32))
    with pytest.raises(InputError, match="21x12 differs from the video's 20x12") as error:
        files.backward(video, 1)
    assert str(wrong_size) in str(error.value)


def test_data_flow_errors_are_one_line(davis_root, tmp_path, capsys):
    nowhere = tmp_path / "nowhere"
    code, _, err = data_flow(capsys, "--root", nowhere, "--out", tmp_path / "flow", "--quiet")
    assert code == 2 and err.startswith("vosbench data flow: error: ") and err.count("\n") == 1
    assert str(nowhere) in err
    weights = tmp_path / "raft.pth"
    code, _, err = data_flow(capsys, "--root", davis_root, "--out", tmp_path / "flow",
                             "--method", "raft", "--weights", weights, "--quiet")
    assert code == 2 and err.count("\n") == 1 and str(weights) in err
    assert not (tmp_path / "flow").exists()
