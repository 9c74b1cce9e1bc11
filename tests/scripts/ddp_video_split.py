"""Run by tests/test_datamodules.py: fit one step and test under real DDP with two CPU processes
(gloo). Each rank writes the videos it validated, tested and trained on to OUT/rank<r>.json.

usage: python ddp_video_split.py DAVIS_ROOT OUT
"""

import json
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

from vosbench.datamodules.clip_transform import ClipTransform
from vosbench.datamodules.families import DAVIS2017DataModule
from vosbench.datamodules.sampling import SegmentSampler


class RecordVideos(pl.LightningModule):
    """Learns nothing; notes which videos reach this rank."""

    def __init__(self, out: Path):
        super().__init__()
        self.out = out
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen = {"train": [], "val": [], "test": []}

    def training_step(self, clip, batch_index):
        self.seen["train"] += clip.video
        return (clip.frames.mean() - self.weight) ** 2

    def validation_step(self, video, batch_index):
        assert video.frames.shape[0] == len(video.video)
        self.seen["val"].append(video.name)

    def test_step(self, video, batch_index):
        self.seen["test"].append(video.name)

    def on_test_end(self):
        record = {"rank": self.global_rank, "world_size": self.trainer.world_size, **self.seen}
        (self.out / f"rank{self.global_rank}.json").write_text(json.dumps(record))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def main(root: str, out: str) -> None:
    pl.seed_everything(0, workers=True)
    data = DAVIS2017DataModule(root, sampler=SegmentSampler(2), transform=ClipTransform((8, 8)),
                               batch_size=1, num_workers=0)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=1,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    model = RecordVideos(Path(out))
    trainer.fit(model, datamodule=data)
    trainer.test(model, datamodule=data)


if __name__ == "__main__":
    main(*sys.argv[1:])
