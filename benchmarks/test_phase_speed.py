#!/usr/bin/env python
"""Wall time of the test phase of `vosbench bench`: the model beside its output workers (CRF,
labels, scores, PNGs in worker processes; `vosbench.outputs`) against everything in one process,
and optionally against an earlier revision of vosbench. The metrics must be identical.

Run it with the project venv's python, on an idle machine, after `make bench METHOD=agnn`::

    python benchmarks/test_phase_speed.py --checkpoint runs/<run>/checkpoints/best-….ckpt \
        [--method agnn] [--preset tiny] [--data synthetic] [--repeats 2] [--baseline 21ba138]

Each measurement is one `vosbench test` process on the test split with the bench's composed
configs (configs/trainer/cpu.yaml, configs/data/<data>.yaml, configs/methods/<method>/
<preset>.yaml) and the checkpoint, W&B off. Two times: the test phase, from the start of the
test loop (what `bench` shows as "Testing"; `TestPhaseClock`, a callback given on the command
line) to the exit, after the scores are written; and the whole process (start-up and model
loading included). Modes:
- `workers`: this tree, the default output workers (one per CPU);
- `in-process`: this tree, `--model.init_args.output_workers 0` (CRF and scoring after each video,
  in the main process: the evaluation loop before the output workers came);
- `baseline`: with `--baseline REV`, that git revision of vosbench (`git archive`, staged in the
  installed layout, imported through PYTHONPATH), run with the same arguments.
Runs alternate between the modes; the best of `--repeats` counts. Writes
`<work-dir>/test_phase_speed.json`; exits 1 if a mode's per-video scores differ from the
`workers` mode's.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytorch_lightning as pl

ROOT = Path(__file__).resolve().parents[1]
CLOCK_FILE = "TEST_PHASE_CLOCK_FILE"  # environment variable: where TestPhaseClock writes
# repository folder → its place in the installed package (pyproject's package-dir)
PACKAGE_DIRS = {"src/vosbench": "vosbench", "methods": "vosbench/methods",
                "datamodules": "vosbench/datamodules"}


class TestPhaseClock(pl.Callback):
    """Writes the wall-clock time (`time.time()`, s) at which the test loop starts to the file
    named by $TEST_PHASE_CLOCK_FILE."""

    def on_test_start(self, trainer, pl_module):
        Path(os.environ[CLOCK_FILE]).write_text(repr(time.time()))


def stage_revision(revision: str, folder: Path) -> Path:
    """`revision` of this repository as an importable `vosbench` package under `folder`; the
    folder to put on PYTHONPATH."""
    commit = subprocess.run(["git", "rev-parse", "--short", revision], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    target = folder / f"baseline-{commit}"
    if (target / "vosbench").is_dir():
        return target
    tree = folder / f"tree-{commit}"
    tree.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    for source, place in PACKAGE_DIRS.items():
        shutil.copytree(tree / source, target / place, dirs_exist_ok=True)
    shutil.rmtree(tree)
    return target


def scores_of(run_dir: Path) -> dict:
    """The per-sequence and global results a `vosbench test` run wrote."""
    return json.loads((run_dir / "scores" / "results.json").read_text())


def headline(scores: dict) -> dict[str, float]:
    """J-Mean, F-Mean and T-Mean of a results.json document's global numbers."""
    return {key: scores["global"][key] for key in ("J-Mean", "F-Mean", "T-Mean")
            if scores["global"].get(key) is not None}


def run_test(mode: str, args: argparse.Namespace, run_dir: Path,
             baseline: Path | None) -> tuple[float, float]:
    """Seconds of the test phase and of the whole of one `vosbench test` process in `mode`; its
    outputs go to `run_dir`."""
    configs = [ROOT / "configs" / "trainer" / "cpu.yaml",
               ROOT / "configs" / "data" / f"{args.data}.yaml",
               ROOT / "configs" / "methods" / args.method / f"{args.preset}.yaml"]
    command = [sys.executable, "-m", "vosbench.cli", "test",
               *[arg for path in configs for arg in ("--config", str(path))],
               "--ckpt_path", str(args.checkpoint.resolve()), "--wandb_mode", "disabled",
               "--trainer.default_root_dir", str(run_dir), "--trainer.enable_progress_bar",
               "false", "--trainer.callbacks+=test_phase_speed.TestPhaseClock"]
    if mode == "in-process":
        command += ["--model.init_args.output_workers", "0"]
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    clock = run_dir / "test_start.txt"
    paths = [str(baseline) if mode == "baseline" else None, str(ROOT / "benchmarks"),
             os.environ.get("PYTHONPATH")]
    env = {**os.environ, CLOCK_FILE: str(clock),
           "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    start = time.time()
    process = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    end = time.time()
    if process.returncode != 0 or not clock.is_file():
        raise SystemExit(process.stdout[-3000:] + process.stderr[-3000:] +
                         f"\ntest_phase_speed: vosbench test failed in mode {mode}")
    return end - float(clock.read_text()), end - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="a checkpoint of the method (make bench writes runs/<run>/"
                             "checkpoints/)")
    parser.add_argument("--method", default="agnn")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--baseline", metavar="REV", help="also time this git revision")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "benchmarks" / ".work")
    args = parser.parse_args()
    if not args.checkpoint.is_file():
        parser.error(f"{args.checkpoint}: no such checkpoint file")
    folder = args.work_dir / "test_phase"
    baseline = stage_revision(args.baseline, folder) if args.baseline else None
    modes = ["workers", "in-process"] + (["baseline"] if baseline else [])
    runs: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
    for repeat in range(args.repeats):
        for mode in modes:
            runs[mode].append(run_test(mode, args, folder / mode, baseline))
            test_s, process_s = runs[mode][-1]
            print(f"  {mode:<10} run {repeat + 1}: test phase {test_s:.1f} s, process "
                  f"{process_s:.1f} s", flush=True)
    reference = scores_of(folder / "workers")
    best = {mode: [min(times) for times in zip(*runs[mode])] for mode in modes}
    table, identical = [], True
    for mode in modes:
        same = scores_of(folder / mode) == reference
        identical &= same
        (test_s, process_s), (workers_test_s, workers_process_s) = best[mode], best["workers"]
        table.append({"mode": mode, "test_phase_s": round(test_s, 2),
                      "process_s": round(process_s, 2),
                      "runs_s": [[round(t, 2) for t in times] for times in runs[mode]],
                      "workers_faster_test_phase": round(test_s / workers_test_s, 2),
                      "workers_faster_process": round(process_s / workers_process_s, 2),
                      "identical_scores": same, **headline(scores_of(folder / mode))})
    print(f"\n{'mode':<11} {'test phase s':>12} {'process s':>10} {'workers faster by':>18}"
          f" {'J-Mean':>8} {'F-Mean':>8} {'T-Mean':>8}  identical")
    for row in table:
        print(f"{row['mode']:<11} {row['test_phase_s']:12.1f} {row['process_s']:10.1f}"
              f" {row['workers_faster_test_phase']:8.2f}× {row['workers_faster_process']:7.2f}×"
              f" {row.get('J-Mean', float('nan')):8.4f} {row.get('F-Mean', float('nan')):8.4f}"
              f" {row.get('T-Mean', float('nan')):8.4f}  {row['identical_scores']}")
    output = {"checkpoint": str(args.checkpoint), "method": args.method, "preset": args.preset,
              "data": args.data, "baseline": args.baseline, "cpus": os.cpu_count(),
              "machine": platform.processor() or platform.machine(), "modes": table}
    (folder / "test_phase_speed.json").write_text(json.dumps(output, indent=2))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
