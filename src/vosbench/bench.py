"""`vosbench bench`: fit a method, test its best checkpoint, write the results row, print the table.

    vosbench bench --method fcn [--data synthetic] [--preset tiny] [--trainer cpu] [overrides…]

composes configs/trainer/<trainer>.yaml, configs/data/<data>.yaml and
configs/methods/<method>/<preset>.yaml (later files win), then any LightningCLI override given
after them (e.g. `--trainer.max_steps 50 --seed_everything 3`).
"""

import argparse
import sys
import time
from pathlib import Path

from vosbench.errors import InputError

CONFIG_ROOT = Path(__file__).resolve().parents[2] / "configs"
# the papers' short names of the DAVIS releases, accepted for the config names
DATA_ALIASES = {"davis16": "davis2016", "davis17": "davis2017"}


def config_files(method: str, data: str, preset: str, trainer: str,
                 root: Path = CONFIG_ROOT) -> list[Path]:
    """The YAML files of a bench run, checked to exist; a missing one lists the available.
    `data` may be an alias of DATA_ALIASES (davis16 → davis2016)."""
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
    parser.add_argument("--results", type=Path, default=Path("results"),
                        help="folder for the results row (default results/)")
    return parser


def run(args: argparse.Namespace, overrides: list[str]) -> Path:
    from pytorch_lightning.loggers import WandbLogger

    from vosbench.lightning_cli import VOSCLI
    from vosbench.results import results_row, write_row

    files = config_files(args.method, args.data, args.preset, args.trainer)
    argv = [arg for path in files for arg in ("--config", str(path))] + overrides
    cli = VOSCLI(argv, run=False)
    start = time.perf_counter()
    checkpoint = None
    if cli.model.trainable:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        checkpoint = cli.trainer.checkpoint_callback.best_model_path or "last"
    training_seconds = time.perf_counter() - start
    cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=checkpoint)
    results = cli.model.test_results
    if not cli.trainer.is_global_zero:
        return Path()
    for logger in cli.trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()  # fit and test were one W&B run; flush and close it
    if results is None:
        raise InputError("the test split held no video to score")
    run_dir = Path(cli.trainer.default_root_dir)
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
