"""Callbacks that stop a fit as a crash or a kill would, to test resuming (tests/test_harness.py,
tests/test_resume.py). The kills are SIGKILL, which no handler sees; they act only in a fit
started from scratch, so that the same command, run again, resumes and goes on."""

import io
import os
import signal

import torch
from pytorch_lightning.callbacks import Callback


class CrashAtEpoch(Callback):
    """Raise RuntimeError when epoch `epoch` starts, as a killed job would stop."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError(f"simulated crash at the start of epoch {self.epoch}")


def kill_this_process() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAtStep(Callback):
    """SIGKILL at the end of the batch that makes optimizer step `step`."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.ckpt_path is None and trainer.global_step == self.step:
            kill_this_process()


class KillDuringValidation(Callback):
    """SIGKILL in the middle of the validation after optimizer step `step`."""

    def __init__(self, step: int):
        self.step = step

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx=0) -> None:
        if trainer.ckpt_path is None and not trainer.sanity_checking and \
                trainer.global_step == self.step:
            kill_this_process()


class KillDuringSave(Callback):
    """SIGKILL while checkpoint number `save` is being written: half its bytes are out."""

    def __init__(self, save: int):
        self.save = save

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.ckpt_path is not None:
            return
        real_save, saves, save = torch.save, [], self.save

        def half_save(checkpoint, stream, *args, **kwargs):
            saves.append(checkpoint.get("global_step"))
            if len(saves) < save:
                return real_save(checkpoint, stream, *args, **kwargs)
            buffer = io.BytesIO()
            real_save(checkpoint, buffer, *args, **kwargs)
            stream.write(buffer.getvalue()[:len(buffer.getvalue()) // 2])
            stream.flush()
            kill_this_process()

        torch.save = half_save



class SignalMidBatch(Callback):
    """Send this process SLURM's requeue signal (SIGUSR1) between the backward pass and the
    optimizer step that makes step `step` + 1, as SLURM may at any moment."""

    def __init__(self, step: int):
        self.step = step

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.ckpt_path is None and trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGUSR1)
