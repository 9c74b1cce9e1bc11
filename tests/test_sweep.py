"""`vosbench sweep`: offline trials chosen by W&B's engine, shared fits, state on disk, failures;
the shipped sweep files; the online path against a stand-in for the W&B API."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import yaml

from vosbench import sweep
from vosbench.cli import main as vosbench_main
from vosbench.errors import InputError

REPO = Path(__file__).resolve().parents[1]
COMMAND = ["${interpreter}", "-m", "vosbench.cli", "bench", "${args}"]


def small_fcn(root: Path, **varying) -> dict:
    """A grid sweep of fcn tiny made small (2 steps at 48×80, no CRF, no W&B) over `varying`."""
    fixed = {"method": "fcn", "preset": "tiny", "data": "synthetic",
             "data.init_args.root": str(root), "data.init_args.num_workers": 0,
             "model.init_args.input_size": "[48, 80]",
             "data.init_args.transform.init_args.size": "[48, 80]",
             "trainer.max_steps": 2, "model.init_args.crf": "null",
             "model.init_args.output_workers": 0, "wandb_mode": "disabled"}
    return {"program": "vosbench", "command": COMMAND, "method": "grid",
            "metric": {"name": "test/J-Mean", "goal": "maximize"},
            "parameters": {**{key: {"value": value} for key, value in fixed.items()},
                           **{key: {"values": values} for key, values in varying.items()}}}


def write_sweep(folder: Path, config: dict) -> Path:
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def engine_order(config: dict) -> list[dict]:
    """The grid as W&B's engine proposes it, trial by trial."""
    import sweeps

    runs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        while (proposal := sweeps.next_run(config, runs)) is not None:
            runs.append(sweeps.SweepRun(name=str(len(runs)), config=proposal.config,
                                        state=sweeps.RunState.finished))
    return [{key: spec["value"] for key, spec in run.config.items()} for run in runs]


def test_a_grid_of_a_training_and_an_inference_key_runs_four_trials_on_two_fits(
        synthetic_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = small_fcn(synthetic_root, **{"model.init_args.lr": [0.001, 0.002],
                                          "model.init_args.threshold": [0.3, 0.7]})
    path = write_sweep(tmp_path, config)
    assert vosbench_main(["sweep", str(path)]) == 0
    out = capsys.readouterr().out
    assert "trial 4/4" in out and "(shared fit)" in out
    (folder,) = Path("sweeps").iterdir()
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("trials/*.json"))]
    assert [r["parameters"] for r in records] == engine_order(config)  # the engine's order
    assert all(r["status"] == "finished" and r["exit_code"] == 0 for r in records)
    fitted = sorted(p.parent.parent.name for p in Path("runs").glob("*/checkpoints/last.ckpt"))
    assert len(fitted) == 2  # one fit per learning rate
    rows = [json.loads(Path(r["row"]).read_text()) for r in records]
    assert [(row["sweep_id"], row["trial"]) for row in rows] == [(folder.name, n)
                                                                for n in (1, 2, 3, 4)]
    assert [row["trial_parameters"] for row in rows] == [r["parameters"] for r in records]
    for row, record in zip(rows, records):
        assert row["config"]["model.init_args.threshold"] == record["parameters"][
            "model.init_args.threshold"]  # the inference key reached the shared checkpoint
        assert row["metrics"]["J-Mean"] == record["metric"]
    shared = [r for r in records if r["shared_checkpoint"]]
    assert len(shared) == 2 and all(rows[r["trial"] - 1]["checkpoint"] == r["shared_checkpoint"]
                                    for r in shared)
    # the same command again runs nothing, nor does --resume ID
    assert vosbench_main(["sweep", str(path)]) == 0
    assert vosbench_main(["sweep", "--resume", folder.name]) == 0
    assert len(list(Path("results").glob("*.json"))) == 4
    assert [json.loads(p.read_text()) for p in sorted(folder.glob("trials/*.json"))] == records


def test_a_failed_trial_is_recorded_the_others_finish_and_a_rerun_retries_it(
        synthetic_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = write_sweep(tmp_path, small_fcn(synthetic_root,
                                           **{"model.init_args.loss": ["nonsense", "balanced"]}))
    assert vosbench_main(["sweep", str(path)]) == 1
    (folder,) = Path("sweeps").iterdir()
    failed, finished = (json.loads(p.read_text()) for p in sorted(folder.glob("trials/*.json")))
    assert (failed["status"], finished["status"]) == ("failed", "finished")
    assert failed["exit_code"] != 0 and "unknown loss 'nonsense'" in Path(failed["log"]).read_text()
    assert "failed trials: 1" in capsys.readouterr().out
    # the same command runs the failed trial again (and a trial left "running" by a kill: any
    # record not finished), not the finished one
    finished_row = Path(finished["row"]).stat().st_mtime
    assert vosbench_main(["sweep", str(path)]) == 1
    again = json.loads((folder / "trials/1.json").read_text())
    assert again["status"] == "failed" and again["started"] > failed["started"]
    assert Path(finished["row"]).stat().st_mtime == finished_row


def records_of(folder: Path) -> list[dict]:
    return [json.loads(path.read_text())
            for path in sorted(folder.glob("trials/*.json"), key=lambda path: int(path.stem))]


def start_sweep(path: Path, cwd: Path) -> subprocess.Popen:
    """`vosbench sweep FILE` in a process group of its own (its trials join it)."""
    return subprocess.Popen([sys.executable, "-m", "vosbench.cli", "sweep", str(path)], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_for_running(cwd: Path, trial: int, process: subprocess.Popen) -> Path:
    """The sweep's folder once `trial` runs (its bench started a second ago)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        for record in cwd.glob(f"sweeps/*/trials/{trial}.json"):
            if json.loads(record.read_text())["status"] == "running":
                time.sleep(1)
                return record.parent.parent
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    raise AssertionError(f"trial {trial} never ran: {process.communicate()[1]}")


def test_an_interrupted_sweep_goes_on_with_no_finished_trial_run_twice(
        synthetic_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_sweep(tmp_path, small_fcn(synthetic_root, seed_everything=[0, 1, 2, 3]))
    # a lost node: the sweep and its trial die at once, mid-trial 2
    process = start_sweep(path, tmp_path)
    folder = wait_for_running(tmp_path, 2, process)
    first = records_of(folder)[0]
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert [r["status"] for r in records_of(folder)] == ["finished", "running"]
    assert len(list(Path("results").glob("*.json"))) == 1
    # Ctrl-C or SIGTERM to the sweep alone, mid-trial 3 of the rerun: the trial is stopped too
    # (nothing runs on unattended) and recorded as interrupted
    process = start_sweep(path, tmp_path)
    wait_for_running(tmp_path, 3, process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    assert "the same command goes on" in process.stderr.read()
    assert [r["status"] for r in records_of(folder)] == ["finished", "finished", "interrupted"]
    # the same command finishes the sweep: trials 3 and 4 run, 1 and 2 do not
    assert vosbench_main(["sweep", str(path)]) == 0
    records = records_of(folder)
    assert records[0] == first and all(r["status"] == "finished" for r in records)
    rows = [json.loads(p.read_text()) for p in Path("results").glob("*.json")]  # all complete
    assert sorted(row["trial"] for row in rows) == [1, 2, 3, 4]
    assert sorted(row["config"]["seed_everything"] for row in rows) == [0, 1, 2, 3]
    # killed after its trial wrote the results row: the row is taken, the trial not rerun
    last = records[-1]
    (folder / "trials/4.json").write_text(json.dumps({**last, "status": "running"}))
    assert vosbench_main(["sweep", str(path)]) == 0
    assert len(list(Path("results").glob("*.json"))) == 4
    assert records_of(folder)[-1]["status"] == "finished"
    assert records_of(folder)[-1]["row"] == last["row"]


def test_a_row_counts_for_an_interrupted_trial_only_if_its_last_attempt_wrote_it(tmp_path):
    from types import SimpleNamespace

    row = tmp_path / "fcn-synthetic-val-1.json"
    row.write_text(json.dumps({"sweep_id": "s", "trial": 2}))
    written = row.stat().st_mtime
    folder = SimpleNamespace(id="s")

    def found(status, started):
        return sweep.written_before_interrupt(tmp_path, folder, {"trial": 2, "status": status,
                                                                 "started": started})

    assert found("running", written - 5) == row and found("interrupted", written - 5) == row
    assert found("running", written + 5) is None  # an earlier attempt's row
    assert found("failed", written - 5) is None  # a failed trial runs again
    assert sweep.written_before_interrupt(tmp_path, SimpleNamespace(id="t"), {
        "trial": 2, "status": "running", "started": written - 5}) is None


def test_one_sweep_runs_in_one_process_at_a_time(synthetic_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = small_fcn(synthetic_root, seed_everything=[0])
    held = sweep.SweepFolder(Path("sweeps"), config)  # another process's sweep, as far as the
    assert vosbench_main(["sweep", str(write_sweep(tmp_path, config))]) == 2  # lock goes
    assert f"sweep {held.id} is being run by another process (pid {os.getpid()}" in \
        capsys.readouterr().err
    assert not list(Path("results").glob("*.json"))


@pytest.mark.parametrize("name", sorted(path.stem for path in
                                         (REPO / "configs" / "sweeps").glob("*.yaml")))
def test_the_shipped_sweep_files_are_valid_wandb_sweeps_of_bench(name, tmp_path, monkeypatch):
    from vosbench import bench
    from vosbench.lightning_cli import VOSCLI

    config = sweep.load_sweep(REPO / "configs/sweeps" / f"{name}.yaml")  # W&B's schema
    parameters = engine_order(config)
    assert parameters and all(parameters[0]["preset"] == p["preset"] == "tiny"
                              for p in parameters)
    command = sweep.command_line(config, parameters[-1])
    assert command[1:4] == ["-m", "vosbench.cli", "bench"]
    # bench takes every key: the last trial's config builds (its model and datamodule)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    args, overrides = bench.build_parser("bench").parse_known_args(command[4:])
    files = bench.config_files(args.method, args.data, args.preset, args.trainer,
                               bench.config_root())
    cli = VOSCLI([arg for path in files for arg in ("--config", str(path))] + overrides +
                 ["--data.init_args.root", str(tmp_path / "data"),
                  "--trainer.default_root_dir", str(tmp_path / "run")], run=False)
    assert cli.model.name == parameters[-1]["method"]


def test_a_trials_command_passes_every_parameter_as_wandbs_args_do():
    config = {"program": "vosbench", "command": ["${env}", *COMMAND]}
    parameters = {"method": "fcn", "model.init_args.lr": 0.5, "model.init_args.crf": "null",
                  "model.init_args.graph": False}
    assert sweep.command_line(config, parameters) == [
        "/usr/bin/env", sys.executable, "-m", "vosbench.cli", "bench", "--method=fcn",
        "--model.init_args.lr=0.5", "--model.init_args.crf=null", "--model.init_args.graph=False"]


def test_an_ablation_line_sets_its_keys_and_is_refused_online(monkeypatch):
    """configs/sweeps/agssvos_ablation.yaml: each value of `ablation` is a mapping of the keys
    one line of Table 4 changes (none for the full model); a trial's command and its recorded
    settings hold those keys, not `ablation`."""
    config = sweep.load_sweep(REPO / "configs/sweeps/agssvos_ablation.yaml")
    trials = engine_order(config)
    assert len(trials) == 10 and len({sweep.training_setting(trial) for trial in trials}) == 10
    lines = [trial for trial in trials if trial["seed_everything"] == 0]
    assert [sweep.flat_parameters(trial).get("model.init_args.warp") for trial in lines] == [
        None, None, None, None, False]
    command = sweep.command_line(config, lines[2])
    assert "--model.init_args.instance_agnostic=False" in command
    assert not any(part.startswith("--ablation") for part in command)
    assert sweep.flat_parameters({"a": 1, "ablation": {}}) == {"a": 1}
    with pytest.raises(InputError, match="runs offline only"):
        sweep.run_online(REPO / "configs/sweeps/agssvos_ablation.yaml", None, "p", None, 1)


def test_agnn_k_n_trains_once_per_k():
    config = sweep.load_sweep(REPO / "configs/sweeps/agnn_K_N.yaml")
    trials = engine_order(config)
    assert len(trials) == 16
    assert len({sweep.training_setting(trial) for trial in trials}) == 4


def test_online_creates_the_sweep_on_the_server_and_runs_wandbs_agent(monkeypatch):
    # the W&B server is out of reach here: a stand-in records what vosbench asks of wandb
    import wandb

    calls = []
    monkeypatch.setattr(wandb, "sweep", lambda config, project, entity: calls.append(
        ("sweep", config["method"], project, entity)) or "abc123")
    monkeypatch.setattr(wandb, "agent", lambda sweep_id, project, entity, count: calls.append(
        ("agent", sweep_id, project, entity, count)))
    path = str(REPO / "configs/sweeps/agnn_K_N.yaml")
    assert vosbench_main(["sweep", path, "--online", "--project", "p", "--entity", "e",
                          "--count", "3"]) == 0
    assert vosbench_main(["sweep", "--agent", "xyz789", "--project", "p"]) == 0
    assert calls == [("sweep", "grid", "p", "e"), ("agent", "abc123", "p", "e", 3),
                     ("agent", "xyz789", "p", None, None)]


def test_wandb_mode_online_with_a_login_runs_the_sweep_online(monkeypatch):
    import wandb

    calls = []
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setattr(wandb, "login", lambda prompt, verify: not prompt and not verify)
    monkeypatch.setattr(wandb, "sweep", lambda config, project, entity: "abc123")
    monkeypatch.setattr(wandb, "agent", lambda sweep_id, project, entity, count: calls.append(
        (sweep_id, os.environ["WANDB_MODE"])))
    assert vosbench_main(["sweep", str(REPO / "configs/sweeps/agnn_K_N.yaml")]) == 0
    assert calls == [("abc123", "online")]


def test_a_wandb_agents_trial_is_a_sweep_trial_of_bench(tmp_path, monkeypatch):
    # what W&B's agent gives the process of an online trial (wandb/wandb_agent.py)
    from vosbench.lightning_cli import VOSCLI
    from vosbench.results import sweep_fields
    from vosbench.resume import wandb_run_id

    parameters = tmp_path / "config-r1.yaml"
    parameters.write_text("wandb_version: 1\n\nmethod:\n  value: agnn\n"
                          "model.init_args.num_iterations:\n  value: 2\n")
    monkeypatch.setenv("WANDB_SWEEP_ID", "abc123")
    monkeypatch.setenv("WANDB_SWEEP_PARAM_PATH", str(parameters))
    monkeypatch.setenv("WANDB_RUN_ID", "r1")
    monkeypatch.setenv("WANDB_MODE", "online")
    assert sweep_fields() == {"sweep_id": "abc123", "trial": None, "trial_parameters": {
        "method": "agnn", "model.init_args.num_iterations": 2}}
    assert wandb_run_id(tmp_path, resuming=False) == "r1"
    assert (tmp_path / "wandb_run_id").read_text() == "r1\n"
    # and bench's W&B mode follows WANDB_MODE, which the agent sets to online for its trials
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cli = VOSCLI(["--config", str(REPO / "configs/trainer/cpu.yaml"),
                  "--config", str(REPO / "configs/data/synthetic.yaml"),
                  "--config", str(REPO / "configs/methods/fcn/tiny.yaml"),
                  "--data.init_args.root", str(tmp_path / "data"),
                  "--trainer.default_root_dir", str(tmp_path / "run")], run=False)
    assert cli.config.wandb_mode == "disabled" and len(cli.trainer.loggers) == 1


def test_a_bad_sweep_file_is_named(tmp_path, capsys):
    path = write_sweep(tmp_path, {"method": "grid", "parameters": {"x": {"values": "no"}},
                                  "command": COMMAND})
    assert vosbench_main(["sweep", str(path)]) == 2
    assert f"{path}: not a valid W&B sweep" in capsys.readouterr().err
