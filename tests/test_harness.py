"""The harness end to end: `vosbench bench` with the fcn baseline on a small synthetic set, the
results row, DDP test with two CPU processes, resume from `last`, and the command-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from youtube_vos_fixtures import (
    HELD_OUT,
    bench_held_out,
    late_dog_is_predicted_from_its_frame,
    write_youtube_vos,
)

from vosbench import outputs
from vosbench.bench import config_files
from vosbench.cli import main as vosbench_main
from vosbench.datamodules.families import YouTubeVOSDataModule
from vosbench.lightning_cli import VOSCLI
from vosbench.methods.flow_propagation import FlowPropagation
from vosbench.methods.warping import warp_backward

SMALL = ["--model.init_args.input_size", "[48, 80]",
         "--data.init_args.transform.init_args.size", "[48, 80]",
         "--data.init_args.num_workers", "0", "--wandb_mode", "disabled"]
ROW_KEYS = {"schema_version", "method", "preset", "notes", "dataset", "split", "protocol",
            "metrics", "sequences", "fps", "fps_with_flow", "fps_with_crf", "peak_memory_mb",
            "parameters", "training_seconds", "seed", "checkpoint", "config", "git_commit",
            "wandb_run_id", "created", "run_dir", "probability_dir", "sweep_id", "trial",
            "trial_parameters"}


def vosbench(*args, cwd: Path) -> subprocess.CompletedProcess:
    """The CLI in a subprocess (DDP launches its second process by re-running the command)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "vosbench.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600, env=env)


def test_bench_fcn_end_to_end(synthetic_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    refined = []  # the videos the CRF refines: the test's, not the validations'

    def refine_video(frames, probabilities, recipe):
        refined.append(len(frames))
        return probabilities

    monkeypatch.setattr(outputs, "refine_video", refine_video)  # seen in this process: 0 workers
    code = vosbench_main(["bench", "--method", "fcn", "--results", "results",
                          "--model.init_args.output_workers", "0",
                          "--data.init_args.root", str(synthetic_root),
                          "--trainer.max_steps", "2", "--trainer.val_check_interval", "1",
                          "--trainer.log_every_n_steps", "1", "--model.init_args.crf", "agnn",
                          *SMALL[:-2], "--wandb_mode", "offline"])
    out = capsys.readouterr().out
    assert code == 0
    rows = list((tmp_path / "results").glob("fcn-synthetic-val-*.json"))
    assert len(rows) == 1 and "Results row written" in out
    row = json.loads(rows[0].read_text())
    assert set(row) == ROW_KEYS and row["schema_version"] == 3
    assert row["probability_dir"] is None and not (Path(row["run_dir"]) / "probabilities").exists()
    assert (row["sweep_id"], row["trial"], row["trial_parameters"]) == (None, None, None)
    assert row["notes"] == []
    assert (row["method"], row["preset"], row["dataset"], row["split"], row["protocol"]) == \
        ("fcn", "tiny", "synthetic", "val", "davis2016")
    assert all(0 <= row["metrics"][key] <= 1 for key in ("J-Mean", "F-Mean", "J&F-Mean"))
    assert row["metrics"]["T-Mean"] is not None and row["fps"] > 0 and row["parameters"] > 1e6
    assert len(row["sequences"]) == 3 and row["config"]["trainer.max_steps"] == 2
    assert len(refined) == 3 and row["fps_with_crf"] is not None
    assert row["config"]["model.class_path"] == "vosbench.methods.fcn.FCN"
    assert row["wandb_run_id"] and row["seed"] == 0 and "best" in row["checkpoint"]
    run = Path(row["run_dir"])
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    predictions = sorted((run / "predictions").glob("*/*.png"))
    val = (synthetic_root / "ImageSets" / "2017" / "val.txt").read_text().split()
    assert {p.parent.name for p in predictions} == set(val)
    assert len(predictions) == sum(len(list((synthetic_root / "JPEGImages" / "480p" / v)
                                            .glob("*.jpg"))) for v in val)
    scores = json.loads((run / "scores" / "results.json").read_text())
    assert scores["global"]["J-Mean"] == row["metrics"]["J-Mean"]
    # the written PNGs scored from the dataset folder give the harness's numbers exactly
    assert vosbench_main(["eval", "--dataset", "synthetic", "--data-root", str(synthetic_root),
                          "--protocol", "davis2016", "--pred-root", str(run / "predictions"),
                          "--output", "rescored", "--workers", "1", "--quiet"]) == 0
    rescored = json.loads(Path("rescored/results.json").read_text())
    assert rescored["global"] == scores["global"]
    logged = (run / "metrics.csv").read_text().splitlines()[0]
    assert "train/loss" in logged and "val/J-Mean" in logged and "lr-AdamW" in logged
    overlays = list((run / "wandb").glob("offline-run-*/files/media/images/val/overlays*.png"))
    assert overlays, "the W&B offline run holds the overlay image"
    (records,) = (run / "wandb").glob("offline-run-*/run-*.wandb")
    logged = records.read_bytes()  # protobuf records: the metric names are stored as text
    assert all(key in logged for key in (b"train/loss", b"val/J-Mean", b"test/J-Mean", b"lr-AdamW"))


def test_ddp_test_gives_the_metrics_of_one_process(synthetic_root, tmp_path):
    fit = vosbench("fit", "--config", Path(__file__).parents[1] / "configs/methods/fcn/tiny.yaml",
                   "--data", "synthetic", "--data.init_args.root", synthetic_root,
                   "--trainer.max_steps", "1", "--checkpoint.monitor", "null",
                   "--trainer.default_root_dir", tmp_path / "runs/fit", *SMALL, cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    config = tmp_path / "runs/fit/config.yaml"
    checkpoint = tmp_path / "runs/fit/checkpoints/last.ckpt"
    scores = {}
    for devices in (1, 2):
        root = tmp_path / f"runs/test{devices}"
        run = vosbench("test", "--config", config, "--ckpt_path", checkpoint,
                       "--trainer.devices", devices, "--trainer.strategy",
                       "ddp" if devices > 1 else "auto", "--trainer.default_root_dir", root,
                       "--wandb_mode", "offline", cwd=tmp_path)
        assert run.returncode == 0, run.stderr[-3000:]
        scores[devices] = json.loads((root / "scores" / "results.json").read_text())
        assert len(list((root / "wandb").glob("offline-run-*"))) == 1  # one run, not per rank
    assert scores[1] == scores[2]
    assert len(scores[1]["sequences"]) == 3
    predict = vosbench("predict", "--config", config, "--ckpt_path", checkpoint,
                       "--model.init_args.prediction_dir", tmp_path / "predicted",
                       "--trainer.default_root_dir", tmp_path / "runs/predict", cwd=tmp_path)
    assert predict.returncode == 0, predict.stderr[-3000:]
    assert {path.parent.name for path in (tmp_path / "predicted").glob("*/*.png")} == \
        set(scores[1]["sequences"])


def test_resume_from_last_gives_the_uninterrupted_result(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "scripts"))
    preset = str(Path(__file__).parents[1] / "configs/methods/fcn/tiny.yaml")
    common = ["--config", preset, "--data", "synthetic", "--data.init_args.root",
              str(synthetic_root), "--data.init_args.batch_size", "1", "--checkpoint.monitor",
              "null", "--trainer.max_steps", "4", *SMALL]  # 2 clips per epoch: 2 epochs

    def test_scores(name):
        assert vosbench_main(["test", "--config", f"runs/{name}/config.yaml", "--ckpt_path",
                              f"runs/{name}/checkpoints/last.ckpt", "--trainer.default_root_dir",
                              f"runs/{name}-test"]) == 0
        return json.loads(Path(f"runs/{name}-test/scores/results.json").read_text())

    assert vosbench_main(["fit", *common, "--run_name", "whole"]) == 0
    with pytest.raises(RuntimeError, match="simulated crash"):
        vosbench_main(["fit", *common, "--run_name", "part",
                       "--trainer.callbacks+=crash.CrashAtEpoch", "--trainer.callbacks.epoch=1"])
    assert vosbench_main(["fit", "--config", "runs/part/config.yaml", "--ckpt_path", "last",
                          "--trainer.callbacks=[]"]) == 0
    assert test_scores("part") == test_scores("whole")


def test_unknown_names_list_the_known_ones(capsys):
    assert vosbench_main(["bench", "--method", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no such method config" in err and "fcn, flow-propagation" in err
    assert vosbench_main(["bench", "--method", "fcn", "--preset", "huge"]) == 2
    err = capsys.readouterr().err
    assert "preset of fcn" in err and "paper, tiny" in err
    assert vosbench_main(["bench", "--method", "fcn", "--data", "kitti"]) == 2
    err = capsys.readouterr().err
    assert "no such data config" in err and "davis2017" in err
    assert vosbench_main(["fit", "--model", "nope", "--data", "synthetic"]) == 2
    err = capsys.readouterr().err
    assert "--model 'nope': unknown" in err and "fcn (FCN)" in err


def test_bench_takes_the_papers_names_of_davis():
    # `make bench METHOD=agnn PRESET=paper DATA=davis16` is the paper's model and protocol
    files = config_files("agnn", "davis16", "paper", "gpu")
    assert [str(path.relative_to(path.parents[1])) for path in files] == [
        "trainer/gpu.yaml", "data/davis2016.yaml", "agnn/paper.yaml"]


def test_list_shows_methods_and_datamodules(capsys):
    assert vosbench_main(["list"]) == 0
    out = capsys.readouterr().out
    assert "vosbench.methods.fcn.FCN" in out and "zero-shot" in out
    for name in ("davis2016", "davis2017", "youtube-vos", "youtube-objects", "fbms",
                 "segtrackv2", "synthetic"):
        assert f"  {name} " in out


def test_flow_propagation_bench_tests_without_training(synthetic_root, tmp_path, monkeypatch,
                                                       capsys):
    monkeypatch.chdir(tmp_path)
    assert vosbench_main(["bench", "--method", "flow-propagation", "--results", "results",
                          "--data.init_args.root", str(synthetic_root), "--wandb_mode",
                          "disabled", "--model.init_args.crf", "amcnet"]) == 0
    row = json.loads(next((tmp_path / "results").glob("*.json")).read_text())
    assert row["protocol"] == "davis2017" and row["checkpoint"] is None
    assert row["config"]["model.init_args.crf"] == "amcnet"
    assert 0 < row["fps_with_crf"] < row["fps"] and row["fps_with_flow"] is None
    assert row["parameters"] == 0 and row["training_seconds"] < 5
    assert row["metrics"]["J-Mean"] > 0.1  # the carried masks overlap the objects
    assert "flow-propagation (tiny) on synthetic val" in capsys.readouterr().out


def test_warp_backward_follows_the_flow():
    values = torch.zeros(1, 1, 6, 8)
    values[0, 0, 2, 3] = 1.0
    flow = torch.zeros(1, 2, 6, 8)
    flow[:, 0], flow[:, 1] = -2.0, 1.0  # pixel (x, y) of frame t was at (x − 2, y + 1) at t − 1
    warped = warp_backward(values, flow)
    assert warped[0, 0, 1, 5] == 1.0 and warped.sum() == 1.0
    assert warped[0, 0, :, :2].abs().sum() == 0  # sampled outside the frame: zero


class ParseOnly(VOSCLI):
    """The CLI up to the instantiated model: what a command would run with."""

    def _run_subcommand(self, subcommand: str) -> None:
        pass


def test_inference_options_given_with_a_checkpoint_reach_the_model(synthetic_root, tmp_path,
                                                                   monkeypatch):
    # LightningCLI puts a checkpoint's hyperparameters over the command line; those that only
    # matter at inference are left out of checkpoints, so `--model.init_args.num_nodes_test 7`
    # on a checkpoint trained with 5 runs with 7, while what was learned (K) comes back
    monkeypatch.chdir(tmp_path)
    preset = str(Path(__file__).parents[1] / "configs/methods/agnn/tiny.yaml")
    assert vosbench_main(["fit", "--config", preset, "--data", "synthetic",
                          "--data.init_args.root", str(synthetic_root), "--run_name", "agnn",
                          "--model.init_args.num_iterations", "2", "--trainer.max_steps", "1",
                          "--checkpoint.monitor", "null", *SMALL]) == 0
    checkpoint = tmp_path / "runs/agnn/checkpoints/last.ckpt"
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert saved["num_iterations"] == 2 and "num_nodes_test" not in saved
    cli = ParseOnly(["test", "--config", "runs/agnn/config.yaml", "--ckpt_path", str(checkpoint),
                     "--model.init_args.num_nodes_test", "7", "--model.init_args.num_iterations",
                     "3", "--trainer.default_root_dir", "runs/test"])
    assert cli.model.hparams.num_nodes_test == 7  # the command line's
    assert cli.model.hparams.num_iterations == 2  # the checkpoint's (what was learned)


def test_bench_scores_a_given_checkpoint_without_fitting(synthetic_root, tmp_path, monkeypatch,
                                                         capsys):
    monkeypatch.chdir(tmp_path)
    common = ["bench", "--method", "fcn", "--data.init_args.root", str(synthetic_root),
              "--model.init_args.crf", "null", "--model.init_args.output_workers", "0", *SMALL]
    assert vosbench_main([*common, "--run_name", "trained", "--trainer.max_steps", "2"]) == 0
    (first,) = Path("results").glob("*.json")
    trained = json.loads(first.read_text())
    checkpoint = "runs/trained/checkpoints/last.ckpt"
    assert vosbench_main([*common, "--run_name", "scored", "--ckpt_path", checkpoint,
                          "--model.init_args.frames_per_batch", "3"]) == 0
    (second,) = set(Path("results").glob("*.json")) - {first}
    scored = json.loads(second.read_text())
    assert not Path("runs/scored/checkpoints").exists()  # nothing was fitted
    assert scored["checkpoint"] == checkpoint
    # the training time the checkpoint holds (saved a moment before the fit ended)
    assert scored["training_seconds"] == pytest.approx(trained["training_seconds"], abs=0.5)
    assert 0 < scored["training_seconds"] <= trained["training_seconds"]
    assert scored["config"]["model.init_args.frames_per_batch"] == 3
    # a checkpoint of another training setting is refused
    code = vosbench_main([*common, "--run_name", "other", "--ckpt_path", checkpoint,
                          "--model.init_args.lr", "0.5"])
    assert code == 2 and "lr: 0.001 in the checkpoint, 0.5 here" in capsys.readouterr().err


def test_bench_youtube_vos_scores_held_out_train_videos_as_eval(tmp_path, monkeypatch, capsys):
    """flow-propagation on a held-out train video whose object 2 (a dog, unseen) appears at the
    middle frame 00010: a row with J/F seen and unseen, the dog predicted from 00010 on, and the
    numbers of `vosbench eval --split train --sequences` on the written PNGs."""
    monkeypatch.chdir(tmp_path)
    row = bench_held_out(tmp_path, "flow-propagation", "--data.init_args.num_workers", "0",
                         "--wandb_mode", "disabled")
    assert "flow-propagation (tiny) on youtube-vos train-heldout" in capsys.readouterr().out
    assert (row["dataset"], row["split"], row["protocol"]) == ("youtube-vos", "train-heldout",
                                                               "youtube-vos")
    assert list(row["metrics"]) == ["Overall", "J-Seen", "F-Seen", "J-Unseen", "F-Unseen",
                                    "T-Mean"]
    assert all(0 <= row["metrics"][key] <= 1 for key in ("J-Seen", "F-Seen", "J-Unseen",
                                                         "F-Unseen"))
    assert [(r["object"], r["category"], r["seen"]) for r in row["sequences"]] == [
        (1, "person", True), (2, "dog", False)]  # person: in 0043f083b5; dog: only here
    # the semi-supervised contract: the dog is background before 00010 and its given mask there
    assert late_dog_is_predicted_from_its_frame(row, tmp_path)
    predictions = Path(row["run_dir"]) / "predictions" / HELD_OUT
    scores = json.loads((Path(row["run_dir"]) / "scores" / "results.json").read_text())
    objects = scores["sequences"][HELD_OUT]["objects"]
    # each object is scored after its first frame (whose mask the method is given)
    assert objects["1"]["frames"] == ["00005", "00010", "00015", "00020"]
    assert objects["2"]["frames"] == ["00015", "00020"]
    assert vosbench_main(["eval", "--dataset", "youtube-vos", "--data-root", "YouTube",
                          "--split", "train", "--sequences", "heldout.txt", "--pred-root",
                          str(predictions.parent), "--output", "rescored", "--workers", "1",
                          "--quiet"]) == 0
    assert json.loads(Path("rescored/results.json").read_text()) == scores
    assert vosbench_main(["leaderboard", "--results", "results"]) == 0
    table = capsys.readouterr().out
    assert "## youtube-vos train-heldout (protocol youtube-vos)" in table
    assert "| Method | Source | Overall | J seen | J unseen | F seen | F unseen |" in table


def test_bench_youtube_vos_without_heldout_says_what_to_give(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_youtube_vos(tmp_path / "YouTube")
    assert vosbench_main(["bench", "--method", "fcn", "--data", "youtube-vos", "--results",
                          "results", "--data.init_args.root", "YouTube", "--wandb_mode",
                          "disabled"]) == 2
    err = capsys.readouterr().err
    assert "youtube-vos valid: the ground truth is not public" in err
    assert "give --data.init_args.heldout FILE" in err
    assert not Path("results").exists() and not list(Path("runs").glob("*/checkpoints"))


def test_youtube_vos_validation_scores_the_held_out_videos_as_the_test(tmp_path):
    # model selection during fit reads val/score: the held-out videos' Overall, seen and unseen
    write_youtube_vos(tmp_path / "YouTube")
    (tmp_path / "heldout.txt").write_text(f"{HELD_OUT}\n")
    data = YouTubeVOSDataModule(tmp_path / "YouTube", heldout=tmp_path / "heldout.txt",
                                num_workers=0)
    model = FlowPropagation(output_workers=0)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path)
    (validated,) = trainer.validate(model, datamodule=data, verbose=False)
    trainer.test(model, datamodule=data, verbose=False)
    tested = model.test_results["metrics"]
    assert validated["val/score"] == validated["val/Overall"]
    for key in ("Overall", "J-Seen", "F-Seen", "J-Unseen", "F-Unseen"):
        assert validated[f"val/{key}"] == pytest.approx(tested[key], abs=1e-7)  # logged float32
