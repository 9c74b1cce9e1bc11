"""`vosbench bench`: fit a method, test its best checkpoint, write the results row, print the table.

    vosbench bench --method fcn [--data synthetic] [--preset tiny] [--trainer cpu] [overrides…]

composes configs/trainer/<trainer>.yaml, configs/data/<data>.yaml and
configs/methods/<method>/<preset>.yaml (later files win; the configs installed with vosbench, or
`--config-root DIR` / $VOSBENCH_CONFIGS), then any LightningCLI override given after them (e.g.
`--trainer.max_steps 50 --seed_everything 3`).

A run whose folder already holds a checkpoint (`--resume RUN_DIR`, or the same `--run_name`)
resumes from it, fit then test, provided the command composes the config the folder's run had.
`--ckpt_path CKPT` scores a checkpoint of the same training settings instead of fitting (a sweep's
trials that differ only in inference options share one fit that way).
"""

import argparse
import os
import sys
from importlib import resources
from pathlib import Path

from vosbench.errors import InputError

# a folder of configs in the layout of configs/ to use instead of the installed ones
CONFIG_ROOT_VARIABLE = "VOSBENCH_CONFIGS"
# the papers' short names of the DAVIS releases, accepted for the config names
DATA_ALIASES = {"davis16": "davis2016", "davis17": "davis2017"}


def config_root(given: Path | None = None) -> Path:
    """The folder of trainer/, data/ and methods/ configs: `given` (--config-root), else
    $VOSBENCH_CONFIGS, else the configs installed with vosbench (package data `vosbench.configs`,
    the repository's configs/ in an editable install)."""
    if given is None and os.environ.get(CONFIG_ROOT_VARIABLE):
        given = Path(os.environ[CONFIG_ROOT_VARIABLE])
    if given is None:
        return Path(str(resources.files("vosbench.configs")))
    if not given.is_dir():
        raise InputError(f"{given}: no such config folder (--config-root or "
                         f"${CONFIG_ROOT_VARIABLE}; it holds trainer/, data/ and methods/)")
    return given


def config_files(method: str, data: str, preset: str, trainer: str,
                 root: Path | None = None) -> list[Path]:
    """The YAML files of a bench run under `root` (default: `config_root()`), checked to exist;
    a missing one lists the available. `data` may be an alias of DATA_ALIASES (davis16 →
    davis2016)."""
    root = root or config_root()
    data = DATA_ALIASES.get(data, data)
    wanted = [("trainer", root / "trainer" / f"{trainer}.yaml", root / "trainer"),
              ("data", root / "data" / f"{data}.yaml", root / "data"),
              ("method", root / "methods" / method / f"{preset}.yaml", root / "methods")]
    for what, path, folder in wanted:
        if not path.is_file():
            if what == "method" and (root / "methods" / method).is_dir():
                folder = root / "methods" / method
                what = f"preset of {method}"
            known = sorted(p.stem for p in folder.iterdir()) if folder.is_dir() else []
            raise InputError(f"{path}: no such {what} config; known: {', '.join(known)}")
    return [path for _, path, _ in wanted]


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Fit a method, test its best checkpoint (the last one when there "
                               "is no validation split), write the results row and print the "
                               "table. Arguments after the known ones go to LightningCLI.")
    parser.add_argument("--method", required=True, help="method short name (vosbench list)")
    parser.add_argument("--data", default="synthetic",
                        help="dataset config (configs/data; davis16 and davis17 name DAVIS)")
    parser.add_argument("--preset", default="tiny", help="tiny or paper")
    parser.add_argument("--trainer", default="cpu", help="trainer config (configs/trainer)")
    parser.add_argument("--config-root", type=Path, metavar="DIR",
                        help="a folder of configs in the layout of configs/ (trainer/, data/, "
                             "methods/) to use instead of the installed ones; also "
                             f"${CONFIG_ROOT_VARIABLE}")
    parser.add_argument("--results", type=Path, default=Path("results"),
                        help="folder for the results row (default results/)")
    parser.add_argument("--run_name", help="the run folder runs/<run_name> (default: "
                                           "<method>-<dataset>-<date>-<time>); a folder with a "
                                           "checkpoint resumes")
    parser.add_argument("--ckpt_path", type=Path, metavar="CKPT",
                        help="score this checkpoint instead of fitting (its training settings "
                             "must be the command's; the method's inference options may differ)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="resume the interrupted bench run in RUN_DIR (give the arguments "
                             "it was started with)")
    return parser


def check_same_config(cli, saved: Path) -> None:
    """Refuse to resume a run under another config than the one it started with (`saved`, the
    config.yaml of its folder): a resumed run must continue the same training."""
    import yaml

    from vosbench.results import flatten

    before = flatten(yaml.safe_load(saved.read_text()))
    now = flatten(yaml.safe_load(cli.parser.dump(cli.config)))
    differ = [f"{key}: {before.get(key)!r} then, {now.get(key)!r} now"
              for key in sorted(set(before) | set(now))
              if key != "run_name" and before.get(key) != now.get(key)]
    if differ:
        raise InputError(f"{saved.parent}: this command's config differs from the run's "
                         f"({saved}), so it cannot resume it; give the arguments the run was "
                         f"started with, or another --run_name:\n  " + "\n  ".join(differ))


def check_checkpoint_setting(model, path: Path) -> None:
    """Refuse to score a checkpoint trained under other settings than the command's: every saved
    hyperparameter must equal the model's (a checkpoint holds no inference option, see
    `VOSMethod.inference_options`), or the row would describe another model."""
    import torch

    if not path.is_file():
        raise InputError(f"--ckpt_path {path}: no such file")
    saved = torch.load(path, map_location="cpu", weights_only=True).get("hyper_parameters", {})
    now = dict(model.hparams)
    differ = [f"{key}: {value!r} in the checkpoint, {now.get(key)!r} here"
              for key, value in sorted(saved.items())
              if key != "_instantiator" and value != now.get(key)]
    if differ:
        raise InputError(f"--ckpt_path {path}: trained under other settings than this command's; "
                         f"give its training settings (only inference options may differ):\n  "
                         + "\n  ".join(differ))


def run(args: argparse.Namespace, overrides: list[str]) -> Path:
    from pytorch_lightning.callbacks import Timer
    from pytorch_lightning.loggers import WandbLogger

    from vosbench.lightning_cli import VOSCLI
    from vosbench.results import results_row, write_row
    from vosbench.resume import resume_checkpoint

    files = config_files(args.method, args.data, args.preset, args.trainer,
                         config_root(args.config_root))
    argv = [arg for path in files for arg in ("--config", str(path))] + overrides
    if args.run_name:
        argv += ["--run_name", args.run_name]
    if args.resume:
        if not (args.resume / "config.yaml").is_file():
            raise InputError(f"--resume {args.resume}: not a run folder (no config.yaml)")
        argv += ["--trainer.default_root_dir", str(args.resume)]
    cli = VOSCLI(argv, run=False, resume=True)
    run_dir = Path(cli.trainer.default_root_dir)
    cli.datamodule.check_scorable()  # before a fit whose test could not be scored
    checkpoint = None
    if args.ckpt_path is not None:
        check_checkpoint_setting(cli.model, args.ckpt_path)
        checkpoint = str(args.ckpt_path)
    elif cli.model.trainable:
        resumed = resume_checkpoint(run_dir)
        if args.resume and resumed is None:
            raise InputError(f"--resume {args.resume}: no checkpoint to resume from "
                             f"(checkpoints/last.ckpt)")
        if resumed is not None:
            check_same_config(cli, run_dir / "config.yaml")
            print(f"Resuming {run_dir} from {resumed}")
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=resumed)
        checkpoint = cli.trainer.checkpoint_callback.best_model_path or "last"
    (timer,) = [callback for callback in cli.trainer.callbacks if isinstance(callback, Timer)]
    training_seconds = timer.time_elapsed()  # training, summed over the resumed parts
    cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=checkpoint)
    if args.ckpt_path is not None:
        training_seconds = timer.time_elapsed()  # the checkpoint's, restored by the test
    results = cli.model.test_results
    if not cli.trainer.is_global_zero:
        return Path()
    for logger in cli.trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()  # fit and test were one W&B run; flush and close it
    if results is None:
        raise InputError("the test split held no video to score")
    row = results_row(cli, args.preset, results, training_seconds, checkpoint)
    path = write_row(args.results, row)
    from vosbench.metrics.protocols import get_protocol
    from vosbench.metrics.summary import report_text

    print(report_text(results["document"], get_protocol(results["protocol"]),
                      results["sequence_scores"]))
    print(f"\n{args.method} ({args.preset}) on {row['dataset']} {row['split']}: "
          f"{results['fps']:.1f} frames/s, {row['parameters'] / 1e6:.2f} M parameters, "
          f"trained {training_seconds:.0f} s")
    print(f"Results row written to {path}; run folder {run_dir}")
    return path


def main(argv: list[str] | None = None, prog: str = "vosbench bench") -> int:
    args, overrides = build_parser(prog).parse_known_args(argv)
    try:
        run(args, overrides)
    except InputError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    return 0
