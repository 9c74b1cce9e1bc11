"""`vosbench fit|validate|test|predict` (LightningCLI) and `vosbench list`.

Methods and datamodules are found by subclass discovery: every module of `vosbench.methods` and
`vosbench.datamodules` is imported, so a YAML or the command line names a class by its class name
(`FCN`, `SyntheticDataModule`), its full path, or its short name (`fcn`, `synthetic`).
"""

import importlib
import os
import pkgutil
import sys
import time
import warnings
from pathlib import Path

from lightning_fabric.plugins import CheckpointIO
from lightning_fabric.plugins.environments import SLURMEnvironment
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, Timer
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.loggers import WandbLogger

import vosbench.datamodules
import vosbench.methods
from vosbench.csv_log import RunCSVLogger
from vosbench.datamodules.base import VOSDataModule
from vosbench.errors import InputError
from vosbench.methods.base import VOSMethod
from vosbench.resume import (
    AtomicCheckpointIO,
    LastCheckpoint,
    RequeueBetweenBatches,
    ResumeState,
    resume_checkpoint,
    wandb_run_id,
)
from vosbench.sweep import SWEEP_ID_VARIABLE

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")
WANDB_MODES = ("offline", "online", "disabled")


def import_plugins() -> None:
    """Import every module of the plug-in packages, so that their classes can be named."""
    for package in (vosbench.methods, vosbench.datamodules):
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{module.name}")


def subclasses(base: type) -> list[type]:
    """Every concrete subclass of `base` (the ones that name themselves), sorted by name."""
    found, stack = set(), [base]
    while stack:
        for cls in stack.pop().__subclasses__():
            stack.append(cls)
            found.add(cls)
    return sorted(found, key=lambda cls: cls.__name__)


def methods() -> dict[str, type]:
    """Method short name → class."""
    import_plugins()
    return {cls.name: cls for cls in subclasses(VOSMethod) if cls.name}


def datamodules() -> dict[str, type]:
    """Dataset name → datamodule class."""
    import_plugins()
    return {cls.dataset: cls for cls in subclasses(VOSDataModule) if cls.dataset}


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def resolve_names(argv: list[str]) -> list[str]:
    """Replace a short name after --model / --data by the class path; an unknown name lists the
    known ones."""
    known = {"--model": methods(), "--data": datamodules()}
    result = list(argv)
    for index, arg in enumerate(argv[:-1]):
        if arg not in known:
            continue
        value = argv[index + 1]
        classes = known[arg]
        if value in classes:
            result[index + 1] = class_path(classes[value])
        elif not value.endswith((".yaml", ".yml", "}")) and "." not in value and \
                value not in {cls.__name__ for cls in classes.values()}:
            names = ", ".join(f"{name} ({cls.__name__})" for name, cls in classes.items())
            raise InputError(f"{arg} {value!r}: unknown; known: {names}")
    return result


class VOSCLI(LightningCLI):
    """LightningCLI with vosbench's defaults: a seed, a run folder under runs/, checkpoints of the
    best validation score and of the last step (at each validation and every 10 minutes of
    training, written atomically), a CSV log and W&B (offline unless told) that a resumed fit
    continues, and the state an exact resume needs (`vosbench.resume`).

    `resume=True` (`vosbench bench`) marks a run that continues the one in its folder when that
    folder has a checkpoint; `fit` continues one when given `--ckpt_path`.
    """

    def __init__(self, args: list[str] | None = None, run: bool = True, resume: bool = False):
        import_plugins()
        self.resume = resume
        # `vosbench` passes its own argv on (the DDP launcher re-runs sys.argv, so it stays)
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        super().__init__(VOSMethod, VOSDataModule, subclass_mode_model=True,
                         subclass_mode_data=True, seed_everything_default=0,
                         save_config_kwargs={"overwrite": True}, args=args, run=run,
                         trainer_defaults={"callbacks": [
                             LearningRateMonitor(logging_interval="step"), ResumeState(),
                             RequeueBetweenBatches(), Timer(verbose=False)]})

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        # no last-v1.ckpt beside last.ckpt: LastCheckpoint writes the same file
        parser.set_defaults({"checkpoint.monitor": "val/score", "checkpoint.mode": "max",
                             "checkpoint.save_last": True,
                             "checkpoint.enable_version_counter": False,
                             "checkpoint.filename": "best-{epoch}-{step}"})
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")
        parser.add_argument("--run_name", type=str | None, default=None,
                            help="the run folder runs/<run_name> (default: "
                                 "<method>-<dataset>-<date>-<time>)")
        mode = os.environ.get("WANDB_MODE")
        parser.add_argument("--wandb_mode", type=str,
                            default=mode if mode in WANDB_MODES else "offline",
                            choices=list(WANDB_MODES),
                            help="W&B: offline (default, or $WANDB_MODE; `wandb sync` uploads "
                                 "later), online (needs `wandb login`), disabled")
        parser.add_argument("--wandb_project", type=str, default="vosbench")

    @property
    def active_config(self):
        return self.config[self.subcommand] if self.subcommand else self.config

    def before_instantiate_classes(self) -> None:
        """Give the run its folder before anything is written, so that the saved config names it
        and `--ckpt_path last` finds the checkpoints again on resume."""
        config = self.active_config
        if config.trainer.default_root_dir is None:
            model = config.model.class_path.rsplit(".", 1)[-1].lower()
            data = config.data.class_path.rsplit(".", 1)[-1].lower().removesuffix("datamodule")
            name = config.run_name or f"{model}-{data}-{time.strftime('%Y%m%d-%H%M%S')}"
            config.trainer.default_root_dir = str(Path("runs") / name)

    def resuming(self, root: Path) -> bool:
        """Whether this run continues the one in `root`: `fit --ckpt_path …`, a SLURM requeue's
        checkpoint there (which Lightning resumes), or `bench` on a folder with a checkpoint."""
        if self.subcommand == "fit":
            requeued = SLURMEnvironment.detect() and any(root.glob("hpc_ckpt_*.ckpt"))
            return self.active_config.ckpt_path is not None or requeued
        return self.resume and resume_checkpoint(root) is not None

    def instantiate_trainer(self, **kwargs):
        config = self.active_config
        root = Path(config.trainer.default_root_dir)
        loggers = [RunCSVLogger(root)]
        if config.wandb_mode != "disabled":
            trains = self.subcommand in (None, "fit")  # None: bench, which fits and tests
            run_id = wandb_run_id(root, self.resuming(root)) if trains else None
            loggers.append(WandbLogger(project=config.wandb_project, name=root.name,
                                       save_dir=str(root), offline=config.wandb_mode == "offline",
                                       id=run_id, resume="allow",
                                       group=os.environ.get(SWEEP_ID_VARIABLE)))
        plugins = self._get(self.config_init, "trainer", default={}).get("plugins") or []
        plugins = plugins if isinstance(plugins, list) else [plugins]
        if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
            plugins = [*plugins, AtomicCheckpointIO()]
        return super().instantiate_trainer(logger=loggers, plugins=plugins, **kwargs)


def list_available() -> str:
    """The text of `vosbench list`."""
    lines = ["methods (--model NAME, configs/methods/NAME/<preset>.yaml):"]
    for name, cls in methods().items():
        kind = "semi-supervised" if cls.semi_supervised else "zero-shot"
        lines.append(f"  {name:<18} {class_path(cls):<40} {kind}")
    lines += ["", "datamodules (--data NAME):"]
    for name, cls in datamodules().items():
        lines.append(f"  {name:<18} {class_path(cls)}")
    return "\n".join(lines)


def main(argv: list[str], prog: str) -> int:
    """`vosbench fit|validate|test|predict …` and `vosbench list`."""
    command = prog.split()[-1]
    try:
        if command == "list":
            print(list_available())
            return 0
        VOSCLI([command, *resolve_names(argv)])
    except InputError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    return 0
