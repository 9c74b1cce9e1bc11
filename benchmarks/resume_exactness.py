"""Does a fit killed mid-epoch and resumed end where the uninterrupted one does?

    .venv/bin/python benchmarks/resume_exactness.py [--method fcn] [--steps 40] [--every 20]

Three runs of `vosbench fit` on the synthetic set with the method's tiny preset (seed 5,
last.ckpt every `--every` steps, validation every `--validate`, `--steps` in all): one
uninterrupted; one killed with SIGKILL `--kill-after` seconds after its first last.ckpt
appeared; that one resumed with `--ckpt_path last`. Prints how many weight tensors of the final
checkpoints differ, whether the two metrics.csv files are identical (and their steps), and
whether the W&B offline runs of the killed and resumed parts share one id. Exits 1 unless the
weights and logs are identical.

A synthetic epoch is 36 clips, so with batch size 2 every checkpoint before step 18 and most
after are mid-epoch.
"""

import argparse
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def fit_command(method: str, run: str, steps: int, every: int, validate: int,
                extra: list[str]) -> list[str]:
    configs = ["configs/trainer/cpu.yaml", "configs/data/synthetic.yaml",
               f"configs/methods/{method}/tiny.yaml"]
    return [sys.executable, "-m", "vosbench.cli", "fit",
            *[arg for path in configs for arg in ("--config", str(ROOT / path))],
            "--trainer.max_steps", str(steps), "--trainer.val_check_interval", str(validate),
            "--last_checkpoint.every_n_train_steps", str(every), "--seed_everything", "5",
            "--run_name", run, *extra]


def run(command: list[str], workdir: Path, env: dict) -> None:
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)}\nfailed:\n{done.stderr[-3000:]}")


def killed_fit(command: list[str], run_dir: Path, wait: float, env: dict) -> float:
    """Start the fit, SIGKILL it `wait` s after its first last.ckpt appeared; the step it had."""
    last = run_dir / "checkpoints" / "last.ckpt"
    process = subprocess.Popen(command, cwd=run_dir.parents[1], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    while not last.exists():
        if process.poll() is not None:
            raise SystemExit(f"the fit to kill ended first (exit {process.returncode})")
        time.sleep(0.05)
    time.sleep(wait)
    os.killpg(process.pid, signal.SIGKILL)  # the fit, its loader workers, W&B's service
    process.wait()
    return torch.load(last, map_location="cpu", weights_only=False)["global_step"]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=False)["state_dict"]


def logged_steps(path: Path) -> list[str]:
    with open(path, newline="") as stream:
        return [row["step"] + ("(val)" if any(k.startswith("val/") and v for k, v in row.items())
                               else "") for row in csv.DictReader(stream)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="fcn")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--every", type=int, default=20, help="last.ckpt every … steps")
    parser.add_argument("--validate", type=int, help="validation every … steps (default: --every)")
    parser.add_argument("--kill-after", type=float, default=3.0,
                        help="seconds between the first last.ckpt and the kill")
    parser.add_argument("--workdir", type=Path, help="where runs/ goes (default: a temp dir)")
    args, extra = parser.parse_known_args()
    validate = args.validate or args.every
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="resume-"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS":
           os.environ.get("OMP_NUM_THREADS", "2")}
    runs = workdir / "runs"
    start = time.perf_counter()
    run(fit_command(args.method, "whole", args.steps, args.every, validate, extra), workdir, env)
    step = killed_fit(fit_command(args.method, "part", args.steps, args.every, validate, extra),
                      runs / "part", args.kill_after, env)
    run([sys.executable, "-m", "vosbench.cli", "fit", "--config",
         str(runs / "part" / "config.yaml"), "--ckpt_path", "last"], workdir, env)
    whole, part = weights(runs / "whole"), weights(runs / "part")
    different = sum(not torch.equal(whole[name], part[name]) for name in whole)
    same_log = (runs / "whole/metrics.csv").read_bytes() == (runs / "part/metrics.csv").read_bytes()
    wandb_ids = {folder.name.rsplit("-", 1)[-1] for folder in (runs / "part/wandb").glob("*run-*")}
    print(f"{args.method}: killed {args.kill_after} s after the first last.ckpt, which had step "
          f"{step}; resumed to step {args.steps}")
    print(f"weight tensors different from the uninterrupted run: {different} of {len(whole)}")
    print(f"metrics.csv identical: {same_log}; steps logged: "
          f"{' '.join(logged_steps(runs / 'part/metrics.csv'))}")
    print(f"W&B offline runs of the killed and resumed parts: "
          f"{len(list((runs / 'part/wandb').glob('*run-*')))}, ids {sorted(wandb_ids)}")
    print(f"{time.perf_counter() - start:.0f} s in all; runs in {workdir}")
    return 0 if different == 0 and same_log and len(wandb_ids) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
