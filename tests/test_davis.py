"""DAVIS 2016 / 2017 readers and `vosbench data check` on fixtures in the release layouts."""

import json

import numpy as np
import pytest
from davis_fixtures import write_davis2016_release, write_davis2017
from PIL import Image

from vosbench.cli import main as vosbench_main
from vosbench.datamodules.davis import davis2016_videos, davis2017_videos
from vosbench.errors import InputError
from vosbench.io import write_label_png

SEQUENCES = {"bear": ("train", 5, 20, 1), "bike-packing": ("val", 4, 22, 2),
             "blackswan": ("val", 3, 20, 3)}


@pytest.fixture
def davis2017(tmp_path):
    root = tmp_path / "DAVIS"
    write_davis2017(root, SEQUENCES, test_dev=("aerobatics",), unsupervised=True)
    return root


def data_check(capsys, *args):
    code = vosbench_main(["data", "check", *map(str, args), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_check_reports_davis2017_val(davis2017, capsys):
    summary = data_check(capsys, "--dataset", "davis2017", "--root", davis2017)
    assert summary["dataset"] == "davis2017" and summary["split"] == "val"
    assert summary["sequences"] == {
        "bike-packing": {"frames": 4, "annotated": 4, "objects": [1, 2], "size": [12, 22]},
        "blackswan": {"frames": 3, "annotated": 3, "objects": [1, 2, 3], "size": [12, 20]},
    }


def test_check_reports_test_dev_first_frame_annotations(davis2017, capsys):
    summary = data_check(capsys, "--dataset", "davis2017", "--root", davis2017,
                         "--split", "test-dev")
    assert summary["sequences"]["aerobatics"]["annotated"] == 1
    assert summary["sequences"]["aerobatics"]["frames"] == 4


def test_trainval_and_unsupervised_annotations(davis2017):
    videos = davis2017_videos(davis2017, "trainval")
    assert [v.name for v in videos] == ["bear", "bike-packing", "blackswan"]
    assert [v.split for v in videos] == ["train", "val", "val"]
    unsupervised = davis2017_videos(davis2017, "val", unsupervised=True)
    assert sorted(unsupervised[0].first_appearance) == [1]


def test_video_decodes_frames_and_masks(davis2017):
    video = davis2017_videos(davis2017, "val")[1]
    assert video.frame_names == ("00000", "00001", "00002")
    frame = video.frame(2)
    assert frame.shape == (12, 20, 3) and frame.dtype == np.uint8
    mask = video.mask(0)
    assert set(np.unique(mask)) == {0, 1, 2, 3, 255}  # void stays 255
    assert video.first_appearance == {1: 0, 2: 0, 3: 0}


def test_davis2016_from_davis2017_binarises_void_too(davis2017, capsys):
    (davis2017 / "ImageSets" / "2016").mkdir()
    (davis2017 / "ImageSets" / "2016" / "val.txt").write_text("blackswan\n")
    video = davis2016_videos(davis2017, "val")[0]
    mask = video.mask(0)
    assert set(np.unique(mask)) == {0, 1}
    assert mask.sum() == np.count_nonzero(np.asarray(Image.open(video.mask_files[0])))


def test_davis2016_release_frame_pair_lists(tmp_path, capsys):
    root = tmp_path / "DAVIS"
    write_davis2016_release(root, {"bear": ("train", 4), "blackswan": ("val", 3),
                                   "car-shadow": ("val", 5)})
    summary = data_check(capsys, "--dataset", "davis2016", "--root", root)
    assert summary["sequences"] == {
        "blackswan": {"frames": 3, "annotated": 3, "objects": [1], "size": [12, 20]},
        "car-shadow": {"frames": 5, "annotated": 5, "objects": [1], "size": [12, 20]},
    }
    assert len(davis2016_videos(root, "trainval")) == 3


def expect_check_error(capsys, *args):
    code = vosbench_main(["data", "check", *map(str, args)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("vosbench data check: error: ") and err.count("\n") == 1
    return err


def test_errors_name_what_was_expected_where(davis2017, capsys):
    err = expect_check_error(capsys, "--dataset", "davis2017", "--root", davis2017,
                             "--split", "test-challenge")
    assert "ImageSets/2017/test-challenge.txt" in err
    err = expect_check_error(capsys, "--dataset", "davis2016", "--root", davis2017)
    assert "ImageSets/480p/val.txt" in err and "ImageSets/2016/val.txt" in err
    err = expect_check_error(capsys, "--dataset", "youtube", "--root", davis2017)
    assert "known: davis2016, davis2017" in err


def test_missing_and_orphan_annotations(davis2017, capsys):
    masks = davis2017 / "Annotations" / "480p" / "blackswan"
    (masks / "00001.png").rename(masks / "00009.png")
    with pytest.raises(InputError, match="00009.png: annotation without a frame"):
        davis2017_videos(davis2017, "val")
    (masks / "00009.png").unlink()
    with pytest.raises(InputError, match="00001.png: missing; split 'val' annotates every frame"):
        davis2017_videos(davis2017, "val")


def test_mask_of_another_size_and_corrupt_files(davis2017, capsys):
    mask = davis2017 / "Annotations" / "480p" / "blackswan" / "00002.png"
    write_label_png(mask, np.zeros((12, 21), np.uint8))
    err = expect_check_error(capsys, "--dataset", "davis2017", "--root", davis2017)
    assert str(mask) in err and "21x12 differs from the video's 20x12" in err
    frame = davis2017 / "JPEGImages" / "480p" / "bike-packing" / "00003.jpg"
    frame.write_bytes(b"not a jpeg")
    err = expect_check_error(capsys, "--dataset", "davis2017", "--root", davis2017)
    assert str(frame) in err


def test_release_list_with_a_missing_file(tmp_path):
    root = tmp_path / "DAVIS"
    write_davis2016_release(root, {"blackswan": ("val", 3)})
    (root / "Annotations" / "480p" / "blackswan" / "00001.png").unlink()
    with pytest.raises(InputError, match="00001.png: listed in .*val.txt but not found"):
        davis2016_videos(root, "val")
