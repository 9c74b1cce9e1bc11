"""Resuming a fit exactly, from any checkpoint, and having one to resume from when a run dies.

- `AtomicCheckpointIO` writes checkpoints through a temporary file and a rename: a kill during a
  save leaves the previous `last.ckpt` whole.
- `LastCheckpoint` writes `last.ckpt` every N optimizer steps or M minutes of training, between
  the validations (where the `checkpoint` callback writes it too).
- `ResumeState` puts in each checkpoint what Lightning leaves out and a resumed fit needs, the
  global random generators' states, and has `metrics.csv` continued (`RunCSVLogger`).
- `RequeueBetweenBatches` has Lightning's SLURM requeue save its checkpoint between batches.
- `wandb_run_id` gives a resumed run the W&B id of the run it continues.

The training clips resume by themselves (`ClipLoader`'s state is in Lightning's loop state).
"""

import os
import random
import secrets
import signal
import string
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
from lightning_fabric.plugins.environments import SLURMEnvironment
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_only

from vosbench.csv_log import RunCSVLogger
from vosbench.io import PARTIAL_PREFIX, atomic_file, write_atomic

WANDB_ID_FILE = "wandb_run_id"


class AtomicCheckpointIO(TorchCheckpointIO):
    """`torch.save` into a temporary file beside the checkpoint, then a rename (`atomic_file`);
    remote paths (`s3://…`) as Lightning does.

    Lightning's own writer serialises into memory and moves a file from the system's temporary
    folder, which is only atomic when that folder is on the run folder's file system (on a
    cluster it rarely is: the move then copies into the checkpoint's path). The partial file a
    killed save leaves is removed at the next save in that folder (one writer per run folder).
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None or "://" in str(path):  # a remote file system's
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        for stale in path.parent.glob(f"{PARTIAL_PREFIX}*.tmp"):
            stale.unlink(missing_ok=True)
        with atomic_file(path) as stream:
            torch.save(checkpoint, stream)


class LastCheckpoint(ModelCheckpoint):
    """`last.ckpt` every `every_n_train_steps` optimizer steps, or every `every_n_minutes` of
    training (one of the two; neither: never), in the `checkpoint` callback's folder.

    The `checkpoint` callback writes `last.ckpt` only when it validates; this one bounds the
    training a kill can lose. It skips a step after which a validation runs: Lightning resumes
    a checkpoint of such a step past the validation, so the validation's scores, and the best
    checkpoint it may give, would be missing; the `checkpoint` callback writes `last.ckpt` after
    the validation instead. Both write the same file (no version counter: a `last-v1.ckpt`
    would hide the newer one from `--ckpt_path last`).
    """

    def __init__(self, every_n_train_steps: int | None = None,
                 every_n_minutes: float | None = 10.0):
        if every_n_train_steps and every_n_minutes:
            raise ValueError(f"LastCheckpoint: every_n_train_steps ({every_n_train_steps}) or "
                             f"every_n_minutes ({every_n_minutes}), not both; set the other one "
                             f"to null")
        interval = timedelta(minutes=every_n_minutes) if every_n_minutes else None
        super().__init__(save_top_k=0, save_last=True, enable_version_counter=False,
                         every_n_train_steps=every_n_train_steps or 0, every_n_epochs=0,
                         train_time_interval=interval)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Lightning's own test of whether this batch is followed by a validation (no public one)
        epoch_loop = trainer.fit_loop.epoch_loop
        if not epoch_loop._should_check_val_fx(trainer.fit_loop._data_fetcher):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


def random_states() -> dict:
    """The global generators random layers and augmentations may draw from: torch's (CPU, and
    the current GPU's once CUDA is in use), NumPy's and Python's, as tensors and plain numbers
    (a checkpoint loaded with `weights_only=True` can hold them)."""
    numpy = np.random.get_state(legacy=False)
    states = {"torch": torch.get_rng_state(),
              "numpy": {"key": torch.from_numpy(numpy["state"]["key"].astype(np.int64)),
                        "pos": numpy["state"]["pos"], "has_gauss": numpy["has_gauss"],
                        "gauss": numpy["gauss"]},
              "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def set_random_states(states: dict) -> None:
    """Restore what `random_states` returned (on every DDP rank: rank 0's, which the others
    equal when, seeded alike, they have drawn alike)."""
    torch.set_rng_state(states["torch"])
    numpy = states["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": numpy["key"].numpy().astype(np.uint32),
                                   "pos": numpy["pos"]},
                         "has_gauss": numpy["has_gauss"], "gauss": numpy["gauss"]})
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


class ResumeState(Callback):
    """Saves the random generators' states in each checkpoint and restores them when a fit
    resumes; tells `metrics.csv` whether the fit resumes (and continues it) or starts from
    scratch (and starts a new one) as training starts.
    """

    def __init__(self):
        self.restored: dict | None = None

    def state_dict(self) -> dict:
        return {"random": random_states()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.restored = state_dict

    def on_train_start(self, trainer, pl_module) -> None:
        restored, self.restored = self.restored, None
        if restored is not None:
            set_random_states(restored["random"])
        for log in trainer.loggers:
            if isinstance(log, RunCSVLogger) and trainer.ckpt_path is not None:
                log.resume()
            elif isinstance(log, RunCSVLogger):
                log.restart()


class RequeueBetweenBatches(Callback):
    """Lightning's SLURM requeue, moved to the end of a batch.

    Under SLURM, Lightning's SLURMEnvironment(auto_requeue=True) (its default there) answers
    the requeue signal (SIGUSR1 unless told; `#SBATCH --signal=SIGUSR1@90` has SLURM send it 90
    s before the time limit) by saving `hpc_ckpt_<n>.ckpt` in the run folder and requeueing the
    job, from the signal handler: wherever in a batch the signal lands, so the checkpoint may
    hold a half-done batch, which no resume continues exactly. During training, this callback
    holds the signal and runs Lightning's handler at the end of the batch, or of the validation,
    under way (under DDP, as soon as any rank got it, on every rank together). A validation
    due after that batch is then skipped by the resumed run (as Lightning resumes any checkpoint
    of a batch end); `last.ckpt` avoids that, the requeue cannot wait for it.
    """

    def __init__(self):
        self.signal: int | None = None
        self.handler = None
        self.pending = False

    def on_train_start(self, trainer, pl_module) -> None:
        environment = trainer._accelerator_connector.cluster_environment  # as Lightning's handler
        if isinstance(environment, SLURMEnvironment) and environment.auto_requeue:
            self.signal, self.pending = environment.requeue_signal, False
            self.handler = signal.getsignal(self.signal)
            signal.signal(self.signal, self.hold)

    def hold(self, signum: int, frame) -> None:
        self.pending = True

    def release(self, trainer) -> None:
        """Run the held handler if any rank got the signal."""
        if self.signal is not None and trainer.strategy.reduce_boolean_decision(self.pending,
                                                                                all=False):
            self.pending = False
            self.handler(self.signal, None)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.release(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.release(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self.release(trainer)
        if self.signal is not None:
            signal.signal(self.signal, self.handler)
            self.signal = None


def resume_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint a fit in `run_dir` resumes from: `checkpoints/last*.ckpt` or a
    SLURM requeue's `hpc_ckpt_*.ckpt`; None when there is none."""
    found = [*run_dir.glob("checkpoints/last*.ckpt"), *run_dir.glob("hpc_ckpt_*.ckpt")]
    return max(found, key=lambda path: path.stat().st_mtime) if found else None


def wandb_run_id(run_dir: Path, resuming: bool) -> str:
    """The W&B run id of a run in `run_dir`: the one recorded there when the run resumes a
    checkpoint (its W&B history continues), else a new one (the id a W&B sweep agent gives its
    trial in WANDB_RUN_ID, which ties the run to the sweep), recorded (by rank 0) for a later
    resume."""
    recorded = run_dir / WANDB_ID_FILE
    if resuming and recorded.is_file():
        return recorded.read_text().strip()
    run_id = os.environ.get("WANDB_RUN_ID") or "".join(
        secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    if rank_zero_only.rank == 0:
        write_atomic(recorded, run_id + "\n")
    return run_id
