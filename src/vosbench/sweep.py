"""`vosbench sweep`: the trials of a W&B sweep file, each a `vosbench bench` run.

    vosbench sweep configs/sweeps/agnn_K_N.yaml [--count N] [--sweeps-dir sweeps] [--results D]
    vosbench sweep FILE --online [--project P] [--entity E] [--count N]
    vosbench sweep --agent SWEEP_ID [--project P] [--entity E] [--count N]

Offline (the default, no W&B server): W&B's own sweep engine, the `sweeps` package that W&B's
local controller runs, picks each trial (`sweeps.next_run`: grid, random or bayes, as the server
would); each trial runs the file's `command` (its `${args}` are the trial's `--key=value`) in a
process of its own, W&B offline, its results row marked with the sweep id, the trial number and
its parameters. A parameter may take mappings as values, each a set of keys for one trial (the
lines of an ablation table, one part removed at a time; offline only). Trials that differ only in
the method's inference options (`VOSMethod.inference_options`) share one fit: the first trains,
the others score its checkpoint (`bench --ckpt_path`). The state is in `<sweeps-dir>/<sweep
id>/`: the sweep file and one record per trial (parameters, status, exit code, results row,
checkpoint, log), written atomically. The sweep id is a hash of the file's content, so the same
command again (or `--resume ID`) goes on: finished trials are kept, failed or interrupted ones
run again; a failed trial is recorded with its log and the sweep goes on; the exit status is 1
if a trial failed.

A sweep killed mid-trial (Ctrl-C, SIGTERM, SIGKILL, a lost node) goes on with the same command: its
trial reruns under the same run folder, so `bench` resumes the fit from the last checkpoint there,
and a trial whose results row was written before the kill is taken as finished. Results rows are
written atomically: a row is complete or absent. Two processes cannot run one sweep at once.

Online (`--online`, or when WANDB_MODE=online and a W&B login exist): `wandb.sweep` creates the
sweep on the W&B server and `wandb.agent` runs its trials with the same command, W&B online;
`--agent SWEEP_ID` joins a sweep from another machine (W&B's agents are how a sweep spreads over
machines). Online trials do not share fits.
"""

import argparse
import contextlib
import fcntl
import hashlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import yaml

from vosbench.errors import InputError
from vosbench.io import to_json, write_atomic

# what a trial's `vosbench bench` learns from its environment, for its results row and W&B group
SWEEP_ID_VARIABLE = "VOSBENCH_SWEEP_ID"
TRIAL_VARIABLE = "VOSBENCH_TRIAL"
PARAMETERS_VARIABLE = "VOSBENCH_TRIAL_PARAMETERS"
# W&B's command macros other than ${args}
MACROS = {"${env}": "/usr/bin/env", "${interpreter}": sys.executable}


def sweeps_engine():
    """The `sweeps` package (W&B's sweep engine), or InputError saying how to install it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydantic 2 renames one of its config keys
            import sweeps
    except ImportError:
        raise InputError("vosbench sweep needs W&B's sweep engine: pip install --no-deps "
                         "sweeps==0.3.0 jsonref (make install does it; the package pins "
                         "numpy<2, which it runs without)") from None
    return sweeps


def load_sweep(path: Path) -> dict:
    """The sweep file, checked against W&B's schema; InputError naming the file otherwise."""
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise InputError(f"{path}: cannot read the sweep file ({error})") from None
    if not isinstance(config, dict):
        raise InputError(f"{path}: a sweep file is a mapping (program, method, metric, "
                         f"parameters)")
    violations = sweeps_engine().schema_violations_from_proposed_config(config)
    if violations:
        raise InputError(f"{path}: not a valid W&B sweep: " + "; ".join(violations))
    if "${args}" not in config.get("command", []):
        raise InputError(f"{path}: its command must pass the trial's parameters (${{args}})")
    return config


def sweep_id(config: dict) -> str:
    """The offline sweep's id: a hash of the sweep file's content."""
    return hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]


def flat_parameters(parameters: dict) -> dict:
    """The trial's settings: a parameter whose value is a mapping {key: value, …} (one line of
    an ablation table: several keys at once, or none) stands for those keys."""
    flat = {}
    for key, value in parameters.items():
        flat.update(value if isinstance(value, dict) else {key: value})
    return flat


def trial_arguments(parameters: dict) -> list[str]:
    """`--key=value` per setting (`flat_parameters`), as W&B's ${args} gives them (str of the
    value)."""
    return [f"--{key}={value}" for key, value in flat_parameters(parameters).items()]


def command_line(config: dict, parameters: dict) -> list[str]:
    """The sweep's command for one trial, its macros replaced as W&B's agent does."""
    command = []
    for part in config["command"]:
        if part == "${args}":
            command += trial_arguments(parameters)
        elif part == "${program}":
            command.append(config["program"])
        else:
            command.append(MACROS.get(part, part))
    return command


def training_setting(parameters: dict) -> str:
    """The trial's parameters less the method's inference options: trials of one training
    setting share a fit."""
    from vosbench.lightning_cli import methods

    method = methods().get(parameters.get("method"))
    inference = {f"model.init_args.{option}" for option in
                 (method.inference_options() if method else ())}
    return json.dumps({key: value for key, value in flat_parameters(parameters).items()
                       if key not in inference}, sort_keys=True)


def grid_size(config: dict) -> int | None:
    """The number of trials of a grid sweep (None for random and bayes)."""
    if config["method"] != "grid":
        return None
    return math.prod(len(spec["values"]) if "values" in spec else 1
                     for spec in config["parameters"].values())


class SweepFolder:
    """`<sweeps-dir>/<id>/`: sweep.yaml, and trials/<n>.json, one record per trial. Opening it
    takes its lock (held until the process ends, however it ends), or InputError when another
    process runs the sweep."""

    def __init__(self, root: Path, config: dict):
        self.path = root / sweep_id(config)
        self.id = sweep_id(config)
        (self.path / "trials").mkdir(parents=True, exist_ok=True)
        (self.path / "logs").mkdir(exist_ok=True)
        self.lock = open(self.path / "lock", "a+")
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.lock.seek(0)
            raise InputError(f"sweep {self.id} is being run by another process "
                             f"({self.lock.read().strip()}; {self.path / 'lock'})") from None
        self.lock.truncate(0)
        self.lock.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        self.lock.flush()
        if not (self.path / "sweep.yaml").is_file():
            write_atomic(self.path / "sweep.yaml", yaml.safe_dump(config, sort_keys=False))

    def close(self) -> None:
        """Free the lock (a process that ends frees it too, however it ends)."""
        self.lock.close()

    def records(self) -> list[dict]:
        files = sorted(self.path.glob("trials/*.json"), key=lambda path: int(path.stem))
        return [json.loads(path.read_text()) for path in files]

    def write(self, record: dict) -> None:
        write_atomic(self.path / "trials" / f"{record['trial']}.json", to_json(record))


def metric_value(config: dict, row: dict) -> float | None:
    """The sweep metric's value in a results row (`test/J-Mean` → the row's J-Mean)."""
    name = config.get("metric", {}).get("name", "")
    return row["metrics"].get(name.removeprefix("test/"))


def engine_runs(config: dict, records: list[dict]) -> list:
    """The trials so far as the engine's SweepRuns (a failed one keeps its place in a grid)."""
    sweeps = sweeps_engine()
    name = config.get("metric", {}).get("name")
    return [sweeps.SweepRun(name=str(record["trial"]),
                            config={key: {"value": value}
                                    for key, value in record["parameters"].items()},
                            state=(sweeps.RunState.finished if record["status"] == "finished"
                                   else sweeps.RunState.failed),
                            summary_metrics={name: record["metric"]}
                            if record.get("metric") is not None else {})
            for record in records]


def next_parameters(config: dict, records: list[dict]) -> dict | None:
    """The engine's next trial, as {key: value}; None when a grid is done."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proposal = sweeps_engine().next_run(config, engine_runs(config, records))
    if proposal is None:
        return None
    return {key: spec["value"] for key, spec in proposal.config.items()}


def plain(value):
    """A value of the engine's as JSON can hold it (bayes proposes NumPy floats)."""
    return value.item() if hasattr(value, "item") else value


def find_row(results: Path, sweep: str, trial: int) -> Path | None:
    """The results row a trial wrote (the newest, if it ran more than once)."""
    found = []
    for path in results.glob("*.json"):
        try:
            row = json.loads(path.read_text())
        except ValueError:
            continue
        if row.get("sweep_id") == sweep and row.get("trial") == trial:
            found.append(path)
    return max(found, key=lambda path: path.stat().st_mtime) if found else None


def shared_checkpoint(records: list[dict], parameters: dict) -> str | None:
    """The checkpoint of a finished trial of the same training setting, if any."""
    setting = training_setting(parameters)
    for record in records:
        if record.get("status") == "finished" and record.get("checkpoint") and \
                training_setting(record["parameters"]) == setting:
            return record["checkpoint"]
    return None


def run_trial(config: dict, folder: SweepFolder, record: dict, records: list[dict],
              results: Path) -> dict:
    """Run one trial (scoring a shared checkpoint when there is one); its finished record."""
    checkpoint = shared_checkpoint(records, record["parameters"])
    command = command_line(config, record["parameters"]) + [
        "--results", str(results), "--run_name", f"sweep-{folder.id}-{record['trial']:03d}"]
    if checkpoint:
        command += ["--ckpt_path", checkpoint]
    log = folder.path / "logs" / f"{record['trial']}.log"
    record.update(status="running", log=str(log), shared_checkpoint=checkpoint,
                  started=time.time())
    folder.write(record)
    env = {**os.environ, SWEEP_ID_VARIABLE: folder.id, TRIAL_VARIABLE: str(record["trial"]),
           PARAMETERS_VARIABLE: json.dumps(flat_parameters(record["parameters"])),
           "WANDB_MODE": "disabled" if os.environ.get("WANDB_MODE") == "disabled" else "offline"}
    with open(log, "a") as stream:  # a rerun's output follows the interrupted attempt's
        try:  # an interrupt kills the trial (subprocess.run does) and stops the sweep
            code = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT,
                                  env=env).returncode
        except Interrupted:
            record.update(status="interrupted", seconds=time.time() - record["started"])
            folder.write(record)
            raise
    row = find_row(results, folder.id, record["trial"]) if code == 0 else None
    return finish(config, folder, record, row, checkpoint, code, time.time())


def finish(config: dict, folder: SweepFolder, record: dict, row_path: Path | None,
           checkpoint: str | None, code: int, ended: float) -> dict:
    """Record the trial as finished with its results row (failed without one)."""
    row = json.loads(row_path.read_text()) if row_path else None
    record.update(status="finished" if row else "failed", exit_code=code,
                  seconds=ended - record["started"],
                  row=None if row_path is None else str(row_path),
                  metric=None if row is None else metric_value(config, row),
                  checkpoint=checkpoint or (row and resolved_checkpoint(row)))
    folder.write(record)
    return record


def written_before_interrupt(results: Path, folder: SweepFolder, record: dict) -> Path | None:
    """The results row an interrupted trial wrote in its last attempt before the kill, if any."""
    if record["status"] not in ("running", "interrupted"):
        return None
    row = find_row(results, folder.id, record["trial"])
    return row if row and row.stat().st_mtime >= record["started"] else None


class Interrupted(Exception):
    """SIGTERM or SIGINT reached the sweep; the signal's name."""


@contextlib.contextmanager
def interrupts_raised():
    """SIGTERM and SIGINT raise Interrupted in the block (then the handlers are restored)."""
    def interrupt(number, frame):
        raise Interrupted(signal.Signals(number).name)

    before = {number: signal.signal(number, interrupt)
              for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)


def resolved_checkpoint(row: dict) -> str | None:
    """The checkpoint a row was scored on, as a path ("last": the run's last.ckpt)."""
    if row.get("checkpoint") == "last":
        return str(Path(row["run_dir"]) / "checkpoints" / "last.ckpt")
    return row.get("checkpoint")


def progress(config: dict, record: dict, done: list[dict], total: int | None) -> str:
    """One line per trial: n of N, parameters, status, time, ETA, the metric."""
    varying = {key: value for key, value in record["parameters"].items()
               if "values" in config["parameters"].get(key, {}) or
               "value" not in config["parameters"].get(key, {})}
    shown = ", ".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in varying.items())
    mean = sum(r["seconds"] for r in done) / len(done)
    left = "" if total is None else f", ETA {mean * (total - len(done)) / 60:.0f} min"
    metric = config.get("metric", {}).get("name", "metric")
    value = "" if record.get("metric") is None else f", {metric} {record['metric']:.4f}"
    shared = " (shared fit)" if record.get("shared_checkpoint") else ""
    return (f"trial {record['trial']}/{total or '?'} [{shown}]{shared}: {record['status']} in "
            f"{record['seconds'] / 60:.1f} min{value}{left}")


def run_offline(path: Path, sweeps_dir: Path, results: Path, count: int | None) -> int:
    config = load_sweep(path)
    with contextlib.closing(SweepFolder(sweeps_dir, config)) as folder:  # frees the lock
        records = folder.records()
        total = grid_size(config) or count or config.get("run_cap")
        print(f"sweep {folder.id} ({path}): {total or 'unbounded'} trials; state in {folder.path}")
        retry = [record for record in records if record["status"] != "finished"]
        for record in list(retry):
            if row := written_before_interrupt(results, folder, record):
                finish(config, folder, record, row, record.get("shared_checkpoint"), 0,
                       row.stat().st_mtime)
                retry.remove(record)
                print(f"trial {record['trial']}: finished, its results row written before the "
                      f"interruption")
        done = []
        while count is None or len(done) < count:
            if retry:
                record = retry.pop(0)
            else:
                parameters = next_parameters(config, records)
                if parameters is None or (total is not None and len(records) >= total):
                    break
                record = {"trial": len(records) + 1,
                          "parameters": {key: plain(value) for key, value in parameters.items()}}
                records.append(record)
            done.append(run_trial(config, folder, record, records, results))
            print(progress(config, record, done, total), flush=True)
        failed = [record["trial"] for record in folder.records() if record["status"] != "finished"]
        if failed:
            print(f"failed trials: {', '.join(map(str, failed))} (logs in {folder.path / 'logs'}); "
                  f"the same command runs them again")
        return 1 if failed else 0


def run_online(path: Path | None, agent: str | None, project: str, entity: str | None,
               count: int | None) -> int:
    """Create the sweep on the W&B server (or join `agent`'s) and run trials with W&B's agent."""
    import wandb

    config = None if path is None else load_sweep(path)
    if config is not None and any(isinstance(value, dict) for spec in
                                  config["parameters"].values()
                                  for value in spec.get("values", [spec.get("value")])):
        raise InputError(f"{path}: a parameter whose values are mappings (several keys per "
                         f"trial) runs offline only: W&B's agent would pass each mapping as "
                         f"one argument")
    sweep = agent or wandb.sweep(config, project=project, entity=entity)
    print(f"W&B sweep {sweep}; more machines join with: vosbench sweep --agent {sweep}")
    os.environ["WANDB_MODE"] = "online"  # the trials' bench runs log to the sweep's server
    wandb.agent(sweep, project=project, entity=entity, count=count)
    return 0


def online_by_default() -> bool:
    """WANDB_MODE=online and a W&B login (an API key; nothing is asked of the server)."""
    if os.environ.get("WANDB_MODE") != "online":
        return False
    import wandb

    return wandb.login(prompt=False, verify=False)


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[1])
    parser.add_argument("file", type=Path, nargs="?", help="a W&B sweep file (configs/sweeps/)")
    parser.add_argument("--count", type=int, help="run at most this many trials")
    parser.add_argument("--sweeps-dir", type=Path, default=Path("sweeps"),
                        help="where offline sweeps keep their state (default sweeps/)")
    parser.add_argument("--results", type=Path, default=Path("results"),
                        help="folder for the trials' results rows (default results/)")
    parser.add_argument("--resume", metavar="ID",
                        help="go on with the offline sweep <sweeps-dir>/ID (its saved file)")
    parser.add_argument("--online", action="store_true",
                        help="create the sweep on the W&B server and run W&B's agent")
    parser.add_argument("--agent", metavar="SWEEP_ID", help="join an online sweep")
    parser.add_argument("--project", default="vosbench", help="W&B project (online)")
    parser.add_argument("--entity", help="W&B entity (online)")
    return parser


def main(argv: list[str] | None = None, prog: str = "vosbench sweep") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        if args.resume:
            args.file = args.sweeps_dir / args.resume / "sweep.yaml"
            if not args.file.is_file():
                raise InputError(f"--resume {args.resume}: no sweep {args.file}")
        if args.online or args.agent or (args.resume is None and online_by_default()):
            return run_online(args.file, args.agent, args.project, args.entity, args.count)
        if args.file is None:
            raise InputError("give a sweep file (configs/sweeps/…), --resume ID or --agent ID")
        with interrupts_raised():
            return run_offline(args.file, args.sweeps_dir, args.results, args.count)
    except InputError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except Interrupted as signal_name:
        print(f"{prog}: {signal_name}: the trial running was stopped; the same command goes on "
              f"from it", file=sys.stderr)
        return 128 + signal.Signals[str(signal_name)].value
