"""`vosbench eval --dataset`: ground truth read by the dataset readers in each family's native
format, predictions as label PNGs, numbers checked against values computed here."""

import csv
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from davis_fixtures import object_labels, write_davis2016_release, write_davis2017
from other_fixtures import (
    segtrack_object_mask,
    write_segtrackv2,
    write_youtube_objects,
    youtube_objects_mask,
)
from test_fbms import BLUE, RED, WHITE
from test_fbms import write_sequence as write_fbms_sequence
from youtube_vos_fixtures import object_box, write_split

from vosbench.cli import main as vosbench_main
from vosbench.errors import InputError
from vosbench.io import write_label_png
from vosbench.metrics.protocols import frames_after_first_appearance, get_protocol, score_sequence


def evaluate(tmp_path, *args, output="out"):
    """Run `vosbench eval` and return its results.json."""
    code = vosbench_main(["eval", "--quiet", "--output", str(tmp_path / output),
                          *map(str, args)])
    assert code == 0
    return json.loads((tmp_path / output / "results.json").read_text())


def expect_error(capsys, *args):
    """Run `vosbench eval`, expecting one error line; return it."""
    code = vosbench_main(["eval", "--quiet", *map(str, args)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("vosbench eval: error: ") and err.count("\n") == 1, err
    return err


def jaccard(gt, pred):
    union = np.count_nonzero(gt | pred)
    return np.count_nonzero(gt & pred) / union if union else 1.0


# ------------------------------------------------------------------------------------ DAVIS

DAVIS17 = {"bear": ("train", 5, 20, 1), "bike-packing": ("val", 5, 22, 2),
           "blackswan": ("val", 4, 20, 3)}


@pytest.fixture
def davis2017(tmp_path):
    """DAVIS 2017 with predictions = GT (void cleared), object 2 of bike-packing left out."""
    root, pred_root = tmp_path / "DAVIS", tmp_path / "pred"
    write_davis2017(root, DAVIS17, unsupervised=True)
    for name, (split, frames, width, objects) in DAVIS17.items():
        if split == "val":
            for t, labels in enumerate(object_labels(frames, 12, width, objects)):
                pred = np.where(labels == 255, 0, labels)
                if name == "bike-packing":
                    pred[pred == 2] = 0
                write_label_png(pred_root / name / f"{t:05d}.png", pred)
    return root, pred_root


def test_davis2017_by_id_and_its_binarised_and_unsupervised_readings(davis2017, tmp_path):
    root, pred_root = davis2017
    base = ["--dataset", "davis2017", "--data-root", root, "--pred-root", pred_root]
    document = evaluate(tmp_path, *base, "--workers", 2)
    assert document["protocol"] == "davis2017"
    assert list(document["sequences"]) == ["bike-packing", "blackswan"]
    assert document["global"]["J-Mean"] == document["global"]["F-Mean"] == 4 / 5  # 1 of 5 missed

    document = evaluate(tmp_path, *base, "--protocol", "davis2016", "--no-t", output="d16")
    expected = []
    for name in ("bike-packing", "blackswan"):
        _, frames, width, objects = DAVIS17[name]
        labels = object_labels(frames, 12, width, objects)
        pred = np.where(labels == 255, 0, labels)
        if name == "bike-packing":
            pred[pred == 2] = 0
        # one object: every nonzero GT pixel (void too); frames 1 .. N-2
        expected.append(np.mean([jaccard(labels[t] != 0, pred[t] != 0)
                                 for t in range(1, frames - 1)]))
    assert document["global"]["J-Mean"] == pytest.approx(np.mean(expected), abs=1e-12)

    # Annotations_unsupervised holds object 1 only: one matched object per sequence, all frames
    document = evaluate(tmp_path, *base, "--protocol", "davis2017-unsupervised", output="unsup")
    assert [list(s["objects"]) for s in document["sequences"].values()] == [["1"], ["1"]]
    assert len(document["sequences"]["blackswan"]["frames"]) == 4
    assert document["global"]["J-Mean"] == document["global"]["F-Mean"] == 1


@pytest.mark.parametrize("protocol", ["davis2017", "davis2016"])
def test_dataset_mode_equals_folder_mode(davis2017, tmp_path, protocol):
    root, pred_root = davis2017
    (root / "Annotations" / "db_info.yml").write_text(
        "sequences:\n- {name: bike-packing, eval_t: False}\n- {name: blackswan, eval_t: True}\n")
    folder = evaluate(tmp_path, "--gt-root", root / "Annotations" / "480p", "--pred-root",
                      pred_root, "--protocol", protocol, "--sequences",
                      root / "ImageSets" / "2017" / "val.txt", output="folder")
    dataset = evaluate(tmp_path, "--dataset", "davis2017", "--data-root", root, "--pred-root",
                       pred_root, "--protocol", protocol, "--workers", 2, output="dataset")
    assert dataset == folder
    if protocol == "davis2016":  # T from db_info.yml, for its eval_t sequences only
        assert dataset["sequences"]["bike-packing"]["T"] is None
        assert len(dataset["sequences"]["blackswan"]["T"]) == 1
    for name in ("global_results.csv", "per-sequence_results.csv"):
        assert (tmp_path / "folder" / name).read_text() == (tmp_path / "dataset" / name).read_text()


def test_davis2016_release_layout(tmp_path):
    root, pred_root = tmp_path / "DAVIS", tmp_path / "pred"
    write_davis2016_release(root, {"bear": ("train", 5), "blackswan": ("val", 4),
                                   "cows": ("val", 6)})
    for name, frames in (("blackswan", 4), ("cows", 6)):
        for t, labels in enumerate(object_labels(frames, 12, 20, 1)):
            empty = name == "cows" and t == 2
            write_label_png(pred_root / name / f"{t:05d}.png", (labels == 1) & (not empty))
    document = evaluate(tmp_path, "--dataset", "davis2016", "--data-root", root, "--pred-root",
                        pred_root)
    # blackswan: frames 1, 2 perfect; cows: frames 1..4, frame 2 empty (J = F = 0 there)
    assert document["global"]["J-Mean"] == document["global"]["F-Mean"] == (1 + 3 / 4) / 2
    assert document["global"]["T-Mean"] is not None  # T by default, every sequence (no db_info)


# --------------------------------------------------------------------------- YouTube-Objects

SHOTS = {("car", "0001", "001"): (21, [1, 11, 21]), ("car", "0003", "002"): (9, [3, 8]),
         ("motorbike", "0007", "001"): (6, [4])}


@pytest.fixture
def youtube_objects(tmp_path):
    """Perfect predictions on the annotated frames, except car_0003_002 frame 3 (empty)."""
    write_youtube_objects(tmp_path / "YTO", SHOTS)
    for (category, vid, shot), (_, labelled) in SHOTS.items():
        name = f"{category}_{vid}" if shot == "001" else f"{category}_{vid}_{shot}"
        for number in labelled:
            mask = youtube_objects_mask(category, vid, number, 24, 32)
            if (name, number) == ("car_0003_002", 3):
                mask = np.zeros_like(mask)
            write_label_png(tmp_path / "pred" / name / f"frame{number:04d}.png", mask)
    return tmp_path / "YTO", tmp_path / "pred"


def test_youtube_objects_mean_over_categories(youtube_objects, tmp_path):
    root, pred_root = youtube_objects
    document = evaluate(tmp_path, "--dataset", "youtube-objects", "--data-root", root,
                        "--pred-root", pred_root, "--workers", 2)
    assert document["sequences"]["car_0001"]["frames"] == ["frame0001", "frame0011", "frame0021"]
    # car: (1 + 0.5) / 2, motorbike: 1; the mean over the three sequences is 2.5 / 3
    assert document["global"]["J-Mean"] == 0.875
    assert document["global"]["J-Mean-Sequences"] == pytest.approx(2.5 / 3)
    assert document["categories"]["car"]["sequences"] == ["car_0001", "car_0003_002"]
    assert document["global"]["F-Mean"] is None


def test_missing_extra_and_wrong_size_predictions(youtube_objects, tmp_path, capsys):
    root, pred_root = youtube_objects
    base = ["--dataset", "youtube-objects", "--data-root", root, "--pred-root", pred_root,
            "--output", tmp_path / "out"]
    missing = pred_root / "car_0001" / "frame0011.png"
    missing.rename(tmp_path / "aside.png")
    err = expect_error(capsys, *base)
    assert "'car_0001'" in err and f"frame0011.png missing (expected {missing})" in err
    (tmp_path / "aside.png").rename(missing)
    write_label_png(missing, np.zeros((24, 31), np.uint8))
    assert "frame0011 is 31x24 but the ground truth is 32x24" in expect_error(capsys, *base)
    (pred_root / "car_0099").mkdir()
    assert "car_0099 have no ground truth" in expect_error(capsys, *base)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------- FBMS, SegTrack-v2

def test_fbms_union_of_regions_mean_over_sequences(tmp_path):
    root, pred_root = tmp_path / "FBMS", tmp_path / "pred"
    grey = np.zeros((10, 16), np.uint8)
    grey[2:5, 2:6], grey[6:9, 8:12] = 255, 128  # two regions of 12 pixels
    write_fbms_sequence(root, "cars1", [f"cars1_{i:02d}" for i in range(1, 6)],
                        {0: ("cars1_01_gt.pgm", grey), 4: ("cars1_05_gt.pgm", 0 * grey)},
                        (0, 255, 128))
    colour = np.full((10, 16, 3), 255, np.uint8)
    colour[1:4, 1:4], colour[5:8, 9:14] = (0, 0, 255), (255, 0, 0)  # BGR red, blue
    write_fbms_sequence(root, "cats04", [f"cats04_{i:04d}" for i in range(20, 24)],
                        {1: ("cats04_0021_gt.ppm", colour)}, (WHITE, RED, BLUE))
    write_label_png(pred_root / "cars1" / "cars1_01.png", grey == 255)  # one region of two
    write_label_png(pred_root / "cars1" / "cars1_05.png", 0 * grey)
    write_label_png(pred_root / "cats04" / "cats04_0021.png", (colour != 255).any(axis=2))
    document = evaluate(tmp_path, "--dataset", "fbms", "--data-root", root, "--pred-root",
                        pred_root)
    assert document["sequences"]["cars1"]["objects"]["1"]["J"] == [0.5, 1.0]
    assert document["global"]["J-Mean"] == (0.75 + 1) / 2
    assert document["global"]["J-Mean-Frames"] == pytest.approx(2.5 / 3)


def test_segtrackv2_union_of_objects(tmp_path):
    root, pred_root = tmp_path / "SegTrackv2", tmp_path / "pred"
    write_segtrackv2(root, {"bmx": (3, 6668, "png", ("png", "png")),
                            "frog": (4, 0, "jpg", ("bmp",))})
    expected = []
    for index in range(3):  # bmx: only object 1 predicted, scored against the union
        first, second = (segtrack_object_mask(index, k, 16, 24) for k in (1, 2))
        write_label_png(pred_root / "bmx" / f"bmx_{6668 + index:05d}.png", first)
        expected.append(jaccard(first == 1, (first | second) == 1))
    for index in range(4):
        write_label_png(pred_root / "frog" / f"frog_{index:05d}.png",
                        segtrack_object_mask(index, 1, 16, 24))
    document = evaluate(tmp_path, "--dataset", "segtrackv2", "--data-root", root,
                        "--pred-root", pred_root)
    assert document["global"]["J-Mean"] == pytest.approx((np.mean(expected) + 1) / 2, abs=1e-12)
    assert expected[0] == 36 / 69  # two 6x6 squares overlapping on 3 pixels


# ------------------------------------------------------------------------------ YouTube-VOS

# video -> (height, width, sparse frames, {object: (category, first frame)}); the 0… videos are
# the training part, the 1… videos are held out: giraffe occurs only there (unseen)
YOUTUBE_TRAIN = {"0a00000000": (12, 20, 3, {1: ("penguin", 0)}),
                 "0b00000000": (12, 20, 3, {2: ("person", 1)}),
                 "1a00000000": (12, 20, 5, {1: ("penguin", 0), 2: ("giraffe", 2)}),
                 "1b00000000": (12, 20, 4, {3: ("person", 1), 4: ("kangaroo", 3)})}
# (video, object) -> frame where the prediction leaves the object out, after its first appearance
MISSED = {("1a00000000", 1): 3, ("1b00000000", 3): 3}


@pytest.fixture
def youtube_vos(tmp_path):
    """Train split and predictions for the held-out videos: each object is predicted perfectly
    after its first appearance except in MISSED, left out at its first appearance, and drawn
    (wrongly) before it; 1b00000000 has no prediction for 00000, where nothing is scored."""
    root, pred_root = tmp_path / "YouTube", tmp_path / "pred"
    write_split(root, "train", YOUTUBE_TRAIN)
    for name in ("1a00000000", "1b00000000"):
        height, width, count, objects = YOUTUBE_TRAIN[name]
        for t in range(1 if name == "1b00000000" else 0, count):
            pred = np.zeros((height, width), np.uint8)
            for obj, (_, first) in objects.items():
                if t != first and MISSED.get((name, obj)) != t:
                    object_box(pred, obj, t)
            write_label_png(pred_root / name / f"{5 * t:05d}.png", pred)
    (tmp_path / "heldout.txt").write_text("1a00000000\n1b00000000\n")
    return root, pred_root, tmp_path / "heldout.txt"


def test_youtube_vos_seen_unseen_after_first_appearance(youtube_vos, tmp_path):
    root, pred_root, held_out = youtube_vos
    document = evaluate(tmp_path, "--dataset", "youtube-vos", "--data-root", root, "--split",
                        "train", "--sequences", held_out, "--pred-root", pred_root,
                        "--workers", 2)
    assert document["protocol"] == "youtube-vos"
    penguins = document["sequences"]["1a00000000"]
    assert penguins["frames"] == ["00005", "00010", "00015", "00020"]
    assert penguins["objects"]["1"]["frames"] == ["00005", "00010", "00015", "00020"]
    assert penguins["objects"]["1"]["J"] == [1, 1, 0, 1]  # missed at 00015
    assert penguins["objects"]["2"]["frames"] == ["00015", "00020"]
    assert penguins["objects"]["2"]["J"] == [1, 1]
    # kangaroo first appears in the last frame: nothing to score
    assert list(document["sequences"]["1b00000000"]["objects"]) == ["3"]
    assert document["sequences"]["1b00000000"]["objects"]["3"]["J"] == [1, 0]
    seen = {(s, o): (obj["category"], obj["seen"])
            for s, v in document["sequences"].items() for o, obj in v["objects"].items()}
    assert seen == {("1a00000000", "1"): ("penguin", True), ("1a00000000", "2"): ("giraffe", False),
                    ("1b00000000", "3"): ("person", True)}
    # seen: penguin 3/4 and person 1/2; unseen: giraffe 1. F = J (each frame perfect or empty)
    assert document["global"] == {"Overall": (0.625 + 0.625 + 1 + 1) / 4, "J-Seen": 0.625,
                                  "F-Seen": 0.625, "J-Unseen": 1.0, "F-Unseen": 1.0,
                                  "T-Mean": None}
    with open(tmp_path / "out" / "global_results.csv") as stream:
        assert next(csv.reader(stream)) == ["Overall", "J-Seen", "F-Seen", "J-Unseen", "F-Unseen"]
    with open(tmp_path / "out" / "per-sequence_results.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert rows[1] == {"Video": "1a00000000", "Object": "2", "Category": "giraffe",
                       "Seen": "False", "J-Mean": "1.000", "F-Mean": "1.000"}


def test_youtube_vos_without_unseen_objects(youtube_vos, tmp_path, capsys):
    root, pred_root, _ = youtube_vos
    code = vosbench_main(["eval", "--dataset", "youtube-vos", "--data-root", str(root),
                          "--split", "train", "--sequences", "1b00000000", "--pred-root",
                          str(pred_root), "--output", str(tmp_path / "out")])
    assert code == 0
    out = capsys.readouterr().out
    assert "No unseen object: J-Unseen and F-Unseen are undefined (null)" in out
    assert "Per object results" in out
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    assert document["global"]["J-Unseen"] is None
    assert document["global"]["Overall"] == 0.5  # mean of J-Seen and F-Seen


def test_youtube_vos_errors(youtube_vos, tmp_path, capsys):
    root, pred_root, held_out = youtube_vos
    base = ["--dataset", "youtube-vos", "--data-root", root, "--pred-root", pred_root,
            "--output", tmp_path / "out"]
    err = expect_error(capsys, *base)  # default split: valid
    assert "youtube-vos valid: the ground truth is not public" in err
    assert "--split train --sequences" in err
    assert "--sequences must name the held-out videos" in expect_error(capsys, *base, "--split",
                                                                       "train")
    wrong = pred_root / "1b00000000" / "00010.png"
    labels = np.zeros((12, 20), np.uint8)
    labels[0, 0] = 2  # an object of other videos, not of this one
    write_label_png(wrong, labels)
    err = expect_error(capsys, *base, "--split", "train", "--sequences", held_out)
    assert f"{wrong}: object id 2 is not an object of video '1b00000000'" in err
    assert "meta.json lists 3, 4" in err


def test_score_sequence_takes_per_object_frames():
    gt = np.zeros((4, 8, 8), np.uint8)
    gt[1:, :2, :2] = 1  # object 1 appears in frame 1, object 2 in frame 2, 3 in the last frame
    gt[2:, 4:, :2] = 2
    gt[3, 4:, 4:] = 3
    first_scored = frames_after_first_appearance(gt)
    assert first_scored == {1: 2, 2: 3}
    # the label values count, not the array's type (as in score_sequence)
    assert frames_after_first_appearance(gt.astype(np.float32)) == first_scored
    protocol = get_protocol("youtube-vos")
    scores = score_sequence(protocol, gt, gt, 3, first_scored=first_scored, with_t=True)
    assert [(obj.object_id, obj.first_frame, list(obj.J), len(obj.T))
            for obj in scores.objects] == [(1, 2, [1, 1], 1), (2, 3, [1], 0)]
    scores = score_sequence(protocol, gt, gt, 3, first_scored={3: 3})  # id 3 of 3, last frame
    assert [(obj.object_id, list(obj.J)) for obj in scores.objects] == [(3, [1])]
    pred = gt.copy()
    pred[1, 0, 0] = 4  # the video's objects (its meta.json) are 1..3; not read from frame 0
    message = "prediction 00001 has object id 4, but the ground truth has objects 1..3"
    with pytest.raises(InputError, match=re.escape(message) + "$"):
        score_sequence(protocol, gt, pred, 3, first_scored=first_scored)
    for wrong in ({4: 0}, {0: 1}, {1: 4}, {1: -1}):
        message = f"first_scored {wrong}: ids must lie in 1..3 and frames in 0..3"
        with pytest.raises(ValueError, match=re.escape(message)):
            score_sequence(protocol, gt, gt, 3, first_scored=wrong)
    with pytest.raises(ValueError, match="first_scored is required"):
        score_sequence(protocol, gt, gt, 3)
    with pytest.raises(ValueError, match="first_scored is not used"):
        score_sequence(get_protocol("davis2017"), gt, gt, 3, first_scored=first_scored)


# ------------------------------------------------------------------ command line and imports

def test_ground_truth_named_exactly_one_way(davis2017, tmp_path, capsys):
    root, pred_root = davis2017
    usage_errors = [
        ["--gt-root", root, "--dataset", "davis2017", "--protocol", "davis2017"],
        ["--protocol", "davis2017"],
        ["--dataset", "davis2017"],
        ["--gt-root", root, "--protocol", "davis2017", "--split", "val"],
        ["--dataset", "davis2017", "--data-root", root, "--categories", tmp_path / "c.txt"]]
    for args in usage_errors:
        with pytest.raises(SystemExit) as exit_info:
            vosbench_main(["eval", "--pred-root", str(pred_root), "--output",
                           str(tmp_path / "out"), *map(str, args)])
        assert exit_info.value.code == 2
        assert "usage:" in capsys.readouterr().err
    err = expect_error(capsys, "--dataset", "fbms", "--data-root", root, "--protocol",
                       "davis2017", "--pred-root", pred_root, "--output", tmp_path / "out")
    assert "protocol davis2017 does not apply to dataset fbms; its ground truth is scored " \
           "with fbms" in err
    err = expect_error(capsys, "--gt-root", root, "--protocol", "youtube-vos", "--pred-root",
                       pred_root, "--output", tmp_path / "out")
    assert "use --dataset youtube-vos" in err


def test_dataset_mode_imports_neither_torch_nor_lightning(davis2017, tmp_path):
    root, pred_root = davis2017
    code = ("import sys; from vosbench.cli import main; "
            f"code = main(['eval', '--dataset', 'davis2017', '--data-root', {str(root)!r},"
            f" '--pred-root', {str(pred_root)!r}, '--output', {str(tmp_path / 'out')!r},"
            " '--quiet']); "
            "heavy = [m for m in ('torch', 'pytorch_lightning', 'lightning', 'pandas', 'skimage')"
            " if m in sys.modules]; print(heavy); sys.exit(code or bool(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
