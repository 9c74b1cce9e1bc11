"""A callback that stops training with an error, to test resuming (tests/test_harness.py)."""

from pytorch_lightning.callbacks import Callback


class CrashAtEpoch(Callback):
    """Raise RuntimeError when epoch `epoch` starts, as a killed job would stop."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError(f"simulated crash at the start of epoch {self.epoch}")
