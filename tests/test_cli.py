"""`vosbench eval` end to end on folders of PNGs, and its errors."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vosbench.cli import main as vosbench_main
from vosbench.io import write_label_png

from conftest import moving_objects, write_sequence

COLUMNS = ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]


def run_eval(gt_root, pred_root, output, *options):
    return vosbench_main(["eval", "--gt-root", str(gt_root), "--pred-root", str(pred_root),
                          "--output", str(output), "--quiet", *options])


def test_writes_the_three_result_files(davis_folders, tmp_path, capsys):
    gt_root, pred_root = davis_folders
    assert run_eval(gt_root, pred_root, tmp_path / "out", "--protocol", "davis2017",
                    "--workers", "2") == 0
    with open(tmp_path / "out" / "global_results.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == COLUMNS and len(rows) == 1
    with open(tmp_path / "out" / "per-sequence_results.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert [r["Sequence"] for r in rows] == ["bear_1", "bear_2", "camel_1", "camel_2",
                                             "dog_1", "dog_2"]
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    assert document["protocol"] == "davis2017"
    assert set(document["global"]) == set(COLUMNS) | {"T-Mean"}
    assert document["global"]["T-Mean"] is None
    bear = document["sequences"]["bear"]
    assert bear["frames"] == [f"{i:05d}" for i in range(1, 7)]
    assert set(bear["objects"]) == {"1", "2"}
    assert len(bear["objects"]["1"]["J"]) == 6
    objects = [o for s in document["sequences"].values() for o in s["objects"].values()]
    assert document["global"]["J-Mean"] == pytest.approx(np.mean([o["J-Mean"] for o in objects]),
                                                         abs=1e-15)
    assert not list((tmp_path / "out").glob("*.tmp"))  # atomic writes leave no temporary file


def test_parallel_and_serial_give_identical_files(davis_folders, tmp_path):
    gt_root, pred_root = davis_folders
    run_eval(gt_root, pred_root, tmp_path / "one", "--protocol", "davis2017-unsupervised",
             "--workers", "1")
    run_eval(gt_root, pred_root, tmp_path / "two", "--protocol", "davis2017-unsupervised",
             "--workers", "2")
    for name in ("results.json", "global_results.csv", "per-sequence_results.csv"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_prints_the_official_style_tables(davis_folders, tmp_path, capsys):
    gt_root, pred_root = davis_folders
    vosbench_main(["eval", "--gt-root", str(gt_root), "--pred-root", str(pred_root),
                   "--output", str(tmp_path / "out"), "--protocol", "davis2017", "--workers", "1"])
    out = capsys.readouterr().out
    assert "Global results for davis2017" in out and "Per sequence results" in out
    assert "bear_1" in out


def test_sequence_subset_from_a_list_or_a_file(davis_folders, tmp_path):
    gt_root, pred_root = davis_folders
    run_eval(gt_root, pred_root, tmp_path / "a", "--protocol", "davis2017",
             "--sequences", "dog,bear")
    names = tmp_path / "val.txt"
    names.write_text("dog\nbear\n")
    run_eval(gt_root, pred_root, tmp_path / "b", "--protocol", "davis2017",
             "--sequences", str(names))
    for out in ("a", "b"):
        document = json.loads((tmp_path / out / "results.json").read_text())
        assert list(document["sequences"]) == ["dog", "bear"]


def test_davis2016_computes_t_only_for_the_eval_t_sequences(davis_folders, tmp_path):
    gt_root, pred_root = davis_folders
    (gt_root.parent / "db_info.yml").write_text(
        "sequences:\n- {name: bear, eval_t: True}\n- {name: camel, eval_t: False}\n"
        "- {name: dog, eval_t: True}\n")
    run_eval(gt_root, pred_root, tmp_path / "out", "--protocol", "davis2016")
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    sequences = document["sequences"]
    assert len(sequences["bear"]["T"]) == 5  # pairs of the 6 scored frames
    assert sequences["camel"]["T"] is None and sequences["camel"]["T-Mean"] is None
    scored = [sequences[s]["T-Mean"] for s in ("bear", "dog")]
    assert document["global"]["T-Mean"] == pytest.approx(np.mean(scored))
    header = (tmp_path / "out" / "global_results.csv").read_text().splitlines()[0]
    assert header.endswith(",T-Mean")

    run_eval(gt_root, pred_root, tmp_path / "no-t", "--protocol", "davis2016", "--no-t")
    document = json.loads((tmp_path / "no-t" / "results.json").read_text())
    assert document["global"]["T-Mean"] is None


def test_youtube_objects_category_average(davis_folders, tmp_path):
    gt_root, pred_root = davis_folders
    categories = tmp_path / "categories.txt"
    categories.write_text("bear animal\ncamel animal\ndog pet\n")
    run_eval(gt_root, pred_root, tmp_path / "out", "--protocol", "youtube-objects",
             "--categories", str(categories))
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    j = {s: v["objects"]["1"]["J-Mean"] for s, v in document["sequences"].items()}
    by_category = ((j["bear"] + j["camel"]) / 2 + j["dog"]) / 2
    assert document["global"]["J-Mean"] == pytest.approx(by_category)
    assert document["categories"]["animal"]["sequences"] == ["bear", "camel"]
    assert document["global"]["F-Mean"] is None


def test_grayscale_pngs_are_read_like_palette_pngs(tmp_path):
    gt = moving_objects(5, 30, 40, 1, seed=3) * 255  # DAVIS 2016 ground truth: 0/255 grey
    pred = moving_objects(5, 30, 40, 1, seed=3, shift=1)
    write_sequence(tmp_path / "gt-grey", "s", gt, mode="L")
    write_sequence(tmp_path / "gt-palette", "s", gt // 255, mode="P")
    write_sequence(tmp_path / "pred", "s", pred)
    for gt_root in ("gt-grey", "gt-palette"):
        run_eval(tmp_path / gt_root, tmp_path / "pred", tmp_path / f"out-{gt_root}",
                 "--protocol", "davis2016", "--no-t")
    assert (tmp_path / "out-gt-grey" / "results.json").read_text() == \
        (tmp_path / "out-gt-palette" / "results.json").read_text()


# ---------------------------------------------------------------- errors: one line, exit != 0

def expect_error(capsys, args, *fragments):
    code = vosbench_main(["eval", "--quiet", *[str(a) for a in args]])
    err = capsys.readouterr().err
    assert code != 0
    assert err.startswith("vosbench eval: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def base_args(gt_root, pred_root, out, protocol="davis2017"):
    return ["--gt-root", gt_root, "--pred-root", pred_root, "--output", out, "--protocol", protocol,
            "--workers", "2"]


def test_missing_prediction_frame(davis_folders, tmp_path, capsys):
    gt_root, pred_root = davis_folders
    (pred_root / "camel" / "00003.png").unlink()
    expect_error(capsys, base_args(gt_root, pred_root, tmp_path / "out"),
                 "'camel'", "00003.png", str(pred_root / "camel" / "00003.png"))
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_missing_and_extra_prediction_sequences(davis_folders, tmp_path, capsys):
    gt_root, pred_root = davis_folders
    (pred_root / "dog").rename(pred_root / "dogg")
    expect_error(capsys, base_args(gt_root, pred_root, tmp_path / "out"), "dogg", "no ground truth")
    expect_error(capsys, [*base_args(gt_root, pred_root, tmp_path / "out"), "--sequences", "dog"],
                 "missing: dog")


def test_size_mismatch(davis_folders, tmp_path, capsys):
    gt_root, pred_root = davis_folders
    write_label_png(pred_root / "bear" / "00002.png", np.zeros((60, 99), np.uint8))
    expect_error(capsys, base_args(gt_root, pred_root, tmp_path / "out"),
                 "'bear'", "00002", "99x60", "100x60")


def test_corrupt_and_rgb_pngs(davis_folders, tmp_path, capsys):
    gt_root, pred_root = davis_folders
    broken = pred_root / "bear" / "00004.png"
    broken.write_bytes(broken.read_bytes()[:40])
    expect_error(capsys, base_args(gt_root, pred_root, tmp_path / "out"), str(broken), "PNG")
    from PIL import Image
    Image.new("RGB", (100, 60)).save(broken)
    expect_error(capsys, base_args(gt_root, pred_root, tmp_path / "out"), str(broken), "mode RGB")


def test_predicted_id_not_in_ground_truth(davis_folders, tmp_path, capsys):
    gt_root, pred_root = davis_folders
    write_label_png(pred_root / "dog" / "00005.png", np.full((60, 100), 3, np.uint8))
    expect_error(capsys, base_args(gt_root, pred_root, tmp_path / "out"),
                 "'dog'", "00005", "object id 3", str(pred_root / "dog"))


def test_more_than_20_proposals(davis_folders, tmp_path, capsys):
    gt_root, pred_root = davis_folders
    write_label_png(pred_root / "dog" / "00000.png", np.full((60, 100), 21, np.uint8))
    expect_error(capsys, base_args(gt_root, pred_root, tmp_path / "out", "davis2017-unsupervised"),
                 "'dog'", "00000", "at most 20")


def test_empty_or_missing_folders(tmp_path, capsys):
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    expect_error(capsys, base_args(tmp_path / "gt", tmp_path / "pred", tmp_path / "out"),
                 "no sequence folders")
    expect_error(capsys, base_args(tmp_path / "nowhere", tmp_path / "pred", tmp_path / "out"),
                 "nowhere", "not found")
    (tmp_path / "gt" / "s").mkdir()
    (tmp_path / "pred" / "s").mkdir()
    expect_error(capsys, base_args(tmp_path / "gt", tmp_path / "pred", tmp_path / "out"),
                 "'s'", "no PNG frames")


def test_too_short_sequence(tmp_path, capsys):
    write_sequence(tmp_path / "gt", "s", np.ones((2, 8, 8), np.uint8))
    write_sequence(tmp_path / "pred", "s", np.ones((2, 8, 8), np.uint8))
    expect_error(capsys, base_args(tmp_path / "gt", tmp_path / "pred", tmp_path / "out"),
                 "'s'", "at least 3")


def test_db_info_without_the_sequence(davis_folders, tmp_path, capsys):
    gt_root, pred_root = davis_folders
    (gt_root.parent / "db_info.yml").write_text("sequences:\n- {name: bear, eval_t: True}\n")
    expect_error(capsys, base_args(gt_root, pred_root, tmp_path / "out", "davis2016"),
                 "db_info.yml", "camel")


def test_unknown_command_lists_the_known_ones(capsys):
    assert vosbench_main(["evaluate"]) == 2
    assert "known: eval" in capsys.readouterr().err


def test_eval_imports_neither_torch_nor_lightning(davis_folders, tmp_path):
    gt_root, pred_root = davis_folders
    code = ("import sys; from vosbench.cli import main; "
            f"code = main(['eval', '--gt-root', {str(gt_root)!r},"
            f" '--pred-root', {str(pred_root)!r},"
            f" '--output', {str(tmp_path / 'out')!r}, '--protocol', 'davis2016', '--quiet']); "
            "heavy = [m for m in ('torch', 'pytorch_lightning', 'lightning', 'pandas', 'skimage')"
            " if m in sys.modules]; print(heavy); sys.exit(code or bool(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_console_script_is_installed(davis_folders, tmp_path):
    script = Path(sys.executable).parent / "vosbench"
    assert script.is_file() and os.access(script, os.X_OK)
    gt_root, pred_root = davis_folders
    result = subprocess.run([script, "eval", "--gt-root", gt_root, "--pred-root", pred_root,
                             "--output", tmp_path / "out", "--protocol", "davis2017"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Global results for davis2017" in result.stdout


def test_t_per_object_on_request_for_multi_object_protocols(davis_folders, tmp_path):
    gt_root, pred_root = davis_folders
    run_eval(gt_root, pred_root, tmp_path / "out", "--protocol", "davis2017", "--t")
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    bear = document["sequences"]["bear"]
    assert bear["T"] is None  # T pairs are per object here
    assert all(len(obj["T"]) == 5 for obj in bear["objects"].values())
    object_means = [obj["T-Mean"] for obj in bear["objects"].values()]
    assert bear["T-Mean"] == pytest.approx(np.mean(object_means))
    with open(tmp_path / "out" / "per-sequence_results.csv") as stream:
        assert all(row["T-Mean"] for row in csv.DictReader(stream))


def test_ground_truth_frames_of_different_sizes(davis_folders, tmp_path, capsys):
    gt_root, pred_root = davis_folders
    write_label_png(gt_root / "camel" / "00004.png", np.zeros((61, 100), np.uint8))
    expect_error(capsys, base_args(gt_root, pred_root, tmp_path / "out"),
                 "'camel'", str(gt_root / "camel" / "00004.png"), "100x61", "100x60")
