"""Resuming a fit: killed with SIGKILL at any point, resumed through the CLI, it ends with the
uninterrupted run's weights and log; a kill during a checkpoint write leaves last.ckpt whole;
`vosbench bench` resumes its run. And the parts: the generators' states, metrics.csv."""

import contextlib
import csv
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from vosbench.csv_log import RunCSVLogger
from vosbench.resume import LastCheckpoint, random_states, set_random_states

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).parent / "scripts"
# fcn tiny made small: 4 batches of 2 clips an epoch, 10 steps, a validation every 4 steps and
# last.ckpt every 2, so that step 6's checkpoint is mid-epoch (epoch 1, batch 2 of 4)
FIT = ["--config", REPO / "configs/trainer/cpu.yaml",
       "--config", REPO / "configs/data/synthetic.yaml",
       "--config", REPO / "configs/methods/fcn/tiny.yaml", "--model.init_args.input_size",
       "[48, 80]", "--data.init_args.transform.init_args.size", "[48, 80]",
       "--data.init_args.clips_per_epoch", "8", "--data.init_args.num_workers", "2",
       "--trainer.max_steps", "10", "--trainer.val_check_interval", "4",
       "--trainer.log_every_n_steps", "1", "--last_checkpoint.every_n_train_steps", "2",
       "--seed_everything", "5"]


def vosbench(*args, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """The CLI in a subprocess, with the kill callbacks of tests/scripts importable. It runs in
    a process group of its own, killed when it ends: a process killed with SIGKILL leaves its
    loader workers and W&B's service process behind."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(SCRIPTS)}
    command = [sys.executable, "-m", "vosbench.cli", *map(str, args)]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err,
                                   start_new_session=True)
        try:
            process.wait(timeout=600)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        out.seek(0), err.seek(0)
        done = subprocess.CompletedProcess(command, process.returncode, out.read(), err.read())
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def fit(run: str, root: Path, cwd: Path, *extra) -> subprocess.CompletedProcess:
    return vosbench("fit", *FIT, "--data.init_args.root", root, "--run_name", run, *extra,
                    cwd=cwd, check=False)


def killed_fit(root: Path, cwd: Path, kill: str, *extra) -> Path:
    """A fit that the callback `kill` (tests/scripts/crash.py; "Name:argument=value") kills with
    SIGKILL; its run folder."""
    name, argument = kill.split(":")
    done = fit("part", root, cwd, f"--trainer.callbacks+=crash.{name}",
               f"--trainer.callbacks.{argument}", *extra)
    assert done.returncode == -9, done.stderr[-3000:]
    return cwd / "runs/part"


def assert_same_as(uninterrupted: Path, run_dir: Path) -> None:
    """The two runs end with equal weights and equal metrics.csv files."""
    whole, part = final_weights(uninterrupted), final_weights(run_dir)
    assert [name for name in whole if not torch.equal(whole[name], part[name])] == []
    assert rows(run_dir / "metrics.csv") == rows(uninterrupted / "metrics.csv")


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(run_dir / "checkpoints/last.ckpt", map_location="cpu",
                            weights_only=False)
    assert checkpoint["global_step"] == 10
    return checkpoint["state_dict"]


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def wandb_ids(run_dir: Path) -> list[str]:
    return [folder.name.rsplit("-", 1)[-1] for folder in sorted(run_dir.glob("wandb/*run-*"))]


@pytest.fixture(scope="module")
def uninterrupted(synthetic_root, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("whole")
    done = fit("whole", synthetic_root, cwd, "--wandb_mode", "disabled")
    assert done.returncode == 0, done.stderr[-3000:]
    return cwd / "runs/whole"


@pytest.mark.parametrize("kill, step", [
    ("KillAtStep", 7),  # mid-epoch, after last.ckpt of step 6
    ("KillDuringValidation", 8),  # LastCheckpoint skips step 8, which a validation follows
])
def test_a_killed_fit_resumes_to_the_uninterrupted_weights_and_log(
        kill, step, uninterrupted, synthetic_root, tmp_path):
    run_dir = killed_fit(synthetic_root, tmp_path, f"{kill}:step={step}")
    resumed_from = 6
    before_kill = rows(run_dir / "metrics.csv")
    last = torch.load(run_dir / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == resumed_from
    loader_state = last["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader_state == [{"epoch": 1, "batches": 2}]

    vosbench("fit", "--config", run_dir / "config.yaml", "--ckpt_path", "last", cwd=tmp_path)
    assert_same_as(uninterrupted, run_dir)
    resumed = rows(run_dir / "metrics.csv")
    logged_before = [row for row in before_kill if int(row["step"]) < resumed_from]
    assert logged_before and all(row in resumed for row in logged_before)
    validated = sorted({row["step"] for row in resumed if row.get("val/score")}, key=int)
    assert validated == ["3", "7"]  # after steps 4 and 8 (logged with the batch's index)


def test_a_slurm_requeue_checkpoints_between_batches_and_resumes_exactly(
        uninterrupted, synthetic_root, tmp_path, monkeypatch):
    # SLURM as Lightning detects it, and an `scontrol` that notes the requeue
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/requeued\n")
    (bin_dir / "scontrol").chmod(0o755)
    for name, value in {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "fit", "SLURM_JOB_ID": "4242",
                        "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
                        "PATH": f"{bin_dir}:{os.environ['PATH']}"}.items():
        monkeypatch.setenv(name, value)
    command = ["--last_checkpoint.every_n_train_steps", "5", "--wandb_mode", "disabled",
               "--trainer.callbacks+=crash.SignalMidBatch", "--trainer.callbacks.step=5",
               "--trainer.callbacks+=crash.KillAtStep", "--trainer.callbacks.step=7"]
    assert fit("part", synthetic_root, tmp_path, *command).returncode == -9
    run_dir = tmp_path / "runs/part"
    assert (tmp_path / "requeued").read_text() == "requeue 4242\n"
    hpc = torch.load(run_dir / "hpc_ckpt_1.ckpt", map_location="cpu", weights_only=False)
    assert hpc["global_step"] == 6  # saved at the end of the batch the signal came in
    # the requeued job runs the same command; Lightning resumes the hpc checkpoint
    assert fit("part", synthetic_root, tmp_path, *command).returncode == 0
    assert_same_as(uninterrupted, run_dir)


def test_a_resumed_fit_continues_the_same_wandb_run(synthetic_root, tmp_path):
    run_dir = killed_fit(synthetic_root, tmp_path, "KillAtStep:step=3", "--trainer.max_steps",
                         "4", "--wandb_mode", "offline")
    vosbench("fit", "--config", run_dir / "config.yaml", "--ckpt_path", "last", cwd=tmp_path)
    ids = wandb_ids(run_dir)
    assert len(ids) == 2 and ids[0] == ids[1] == (run_dir / "wandb_run_id").read_text().strip()
    # a fit from scratch in the folder is a new W&B run, with a new metrics.csv (the saved
    # config is the resumed fit's, which names the checkpoint)
    vosbench("fit", "--config", run_dir / "config.yaml", "--ckpt_path", "null",
             "--trainer.max_steps", "1", cwd=tmp_path)
    assert len(set(wandb_ids(run_dir))) == 2
    assert {row["step"] for row in rows(run_dir / "metrics.csv")} == {"0"}


def test_a_kill_while_writing_a_checkpoint_leaves_the_previous_one(synthetic_root, tmp_path):
    run_dir = killed_fit(synthetic_root, tmp_path, "KillDuringSave:save=2",
                         "--trainer.val_check_interval", "100", "--wandb_mode", "disabled")
    folder = run_dir / "checkpoints"
    (partial,) = folder.glob(".partial-*.tmp")  # the half-written step-4 checkpoint
    assert partial.stat().st_size > 0
    assert torch.load(folder / "last.ckpt", map_location="cpu",
                      weights_only=False)["global_step"] == 2
    vosbench("fit", "--config", run_dir / "config.yaml", "--ckpt_path", "last", cwd=tmp_path)
    assert not list(folder.glob(".partial-*"))  # the next save removed it
    assert torch.load(folder / "last.ckpt", map_location="cpu",
                      weights_only=False)["global_step"] == 10


def test_bench_resumes_its_run_when_given_the_same_command(synthetic_root, tmp_path):
    command = ["bench", "--method", "fcn", "--run_name", "b", "--data.init_args.root",
               synthetic_root, *FIT[6:], "--trainer.max_steps", "4", "--wandb_mode", "offline",
               "--model.init_args.crf", "null", "--trainer.callbacks+=crash.KillAtStep",
               "--trainer.callbacks.step=3"]
    assert vosbench(*command, cwd=tmp_path, check=False).returncode == -9
    done = vosbench(*command, cwd=tmp_path)
    assert "Resuming runs/b from runs/b/checkpoints/last.ckpt" in done.stdout
    (row_file,) = (tmp_path / "results").glob("fcn-synthetic-val-*.json")
    row = json.loads(row_file.read_text())
    assert row["run_dir"] == "runs/b" and row["wandb_run_id"] == wandb_ids(tmp_path / "runs/b")[0]
    assert len(set(wandb_ids(tmp_path / "runs/b"))) == 1 and row["training_seconds"] > 0
    changed = vosbench(*command, "--trainer.max_steps", "6", cwd=tmp_path, check=False)
    assert changed.returncode == 2
    assert "trainer.max_steps: 4 then, 6 now" in changed.stderr
    missing = vosbench("bench", "--method", "fcn", "--resume", tmp_path / "nowhere",
                       cwd=tmp_path, check=False)
    assert missing.returncode == 2 and "not a run folder (no config.yaml)" in missing.stderr


def test_random_states_come_back_through_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    torch.save({"random": random_states()}, tmp_path / "state.pt")
    first = (torch.rand(3), np.random.rand(3), random.random(), np.random.normal())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    set_random_states(torch.load(tmp_path / "state.pt", weights_only=True)["random"])
    again = (torch.rand(3), np.random.rand(3), random.random(), np.random.normal())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert first[2:] == again[2:]


def test_the_csv_log_keeps_earlier_rows_and_replaces_the_lost_ones(tmp_path):
    log = RunCSVLogger(tmp_path)
    for step in range(4):
        log.log_metrics({"train/loss": torch.tensor(step / 8)}, step)
    log.log_metrics({"val/score": 0.5}, 3)  # a new name: the header grows
    assert [(r["step"], r["train/loss"], r["val/score"]) for r in rows(log.path)] == [
        ("0", "0.0", ""), ("1", "0.125", ""), ("2", "0.25", ""), ("3", "0.375", ""),
        ("3", "", "0.5")]
    resumed = RunCSVLogger(tmp_path)  # a fit resumed from the checkpoint of step 2
    resumed.resume()
    resumed.log_metrics({"train/loss": 0.75}, 2)
    assert (log.path.read_text().splitlines()) == [
        "step,train/loss", "0,0.0", "1,0.125", "2,0.75"]  # val/score went with its rows
    tested = RunCSVLogger(tmp_path)  # a test in the fit's folder adds its rows
    tested.log_metrics({"test/J-Mean": 0.25}, 3)
    assert [r["test/J-Mean"] for r in rows(log.path)] == ["", "", "", "0.25"]
    tested.restart()  # a fit from scratch in the folder
    assert not log.path.exists()


def test_last_checkpoint_takes_steps_or_minutes():
    assert LastCheckpoint(every_n_train_steps=5, every_n_minutes=None)._every_n_train_steps == 5
    with pytest.raises(ValueError, match="not both"):
        LastCheckpoint(every_n_train_steps=5, every_n_minutes=10)
