"""The LightningDataModule every dataset family shares, with its datasets and its sampler.

Training draws clips (the method's `ClipSampler` picks the frames, a `ClipTransform` resizes and
augments them jointly). Validation, test and prediction yield whole videos, one per item, and under
DDP every video goes to exactly one rank: no sampler padding, so no video is scored twice.
"""

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from vosbench.datamodules.clip_transform import ClipTransform
from vosbench.datamodules.clips import Clip, LoadedVideo, collate_clips, load_video, read_masks
from vosbench.datamodules.readers import read_videos
from vosbench.datamodules.sampling import ClipSampler, SegmentSampler
from vosbench.datamodules.video import Video
from vosbench.flow.provider import FlowProvider


class ClipDataset(Dataset):
    """Training clips: item i is a clip of video i mod len(videos), drawn afresh at every access.

    The randomness comes from torch's generator (seeded per worker and per epoch by the DataLoader,
    and by `seed_everything`), so that a seed fixes the clips and every epoch draws new ones.
    """

    def __init__(self, videos: Sequence[Video], sampler: ClipSampler, transform: ClipTransform,
                 flow: FlowProvider | None = None, length: int | None = None):
        if not videos:
            raise ValueError("no training videos")
        self.videos, self.sampler, self.transform, self.flow = videos, sampler, transform, flow
        self.length = length or len(videos)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, item: int) -> Clip:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        video = self.videos[item % len(self.videos)]
        picked = self.sampler.sample(video, rng)
        reference = [] if picked.reference is None else [picked.reference]
        indices = reference + list(picked.frames)
        frames = np.stack([video.frame(i) for i in indices])
        flow = None
        if self.flow is not None:
            flow = np.stack([self.flow.motion(video, i) for i in indices])
        images, masks, motion = self.transform(frames, read_masks(video, indices), flow, rng)
        first = len(reference)  # the reference, when there is one, is item 0 of the stack
        return Clip(video=video.name, indices=torch.tensor(picked.frames), frames=images[first:],
                    masks=masks[first:], flow=None if motion is None else motion[first:],
                    reference_frame=images[0] if reference else None,
                    reference_mask=masks[0] if reference else None)


class VideoDataset(Dataset):
    """Whole videos, decoded: item i is `load_video(videos[i], flow)`."""

    def __init__(self, videos: Sequence[Video], flow: FlowProvider | None = None):
        self.videos, self.flow = videos, flow

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, item: int) -> LoadedVideo:
        return load_video(self.videos[item], self.flow)


class UnpaddedDistributedSampler(DistributedSampler):
    """Rank r of W takes items r, r + W, r + 2W, …: every item exactly once over all ranks.

    PyTorch's DistributedSampler pads the ranks to equal length by repeating items, which would
    score those videos twice. Being a DistributedSampler, Lightning leaves this one in place.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))


def first_item(batch: list):
    """Collate a batch of one whole video: the video itself."""
    return batch[0]


class VOSDataModule(pl.LightningDataModule):
    """Training clips and whole evaluation videos of one dataset family read from `root`.

    Subclasses name the family (`dataset`, a `readers.READERS` key) and its default splits.

    Args:
        root: the dataset folder as the release unzips.
        train_split, val_split, test_split: split names (None: the family's defaults; a family
            without a training split has none).
        sampler: picks the frames of a training clip (default: one random annotated frame).
        transform: resizes and augments training clips (default: none; clips of videos of
            different sizes then cannot be batched).
        flow: optical flow for every clip frame and every evaluation video (default: none).
        batch_size: clips per training batch. Evaluation batches hold one whole video.
        num_workers: DataLoader worker processes.
        clips_per_epoch: training clips per epoch (default: one per training video).
    """

    dataset = ""
    default_splits: dict[str, str | None] = {"train": "train", "val": "val", "test": "val"}

    def __init__(self, root: str | Path, train_split: str | None = None,
                 val_split: str | None = None, test_split: str | None = None,
                 sampler: ClipSampler | None = None, transform: ClipTransform | None = None,
                 flow: FlowProvider | None = None, batch_size: int = 2, num_workers: int = 2,
                 clips_per_epoch: int | None = None):
        super().__init__()
        self.root = Path(root)
        given = {"train": train_split, "val": val_split, "test": test_split}
        self.splits = {stage: given[stage] or self.default_splits[stage] for stage in given}
        self.sampler = sampler or SegmentSampler(num_segments=1)
        self.transform = transform or ClipTransform()
        self.flow = flow
        self.batch_size, self.num_workers = batch_size, num_workers
        self.clips_per_epoch = clips_per_epoch
        self.videos: dict[str, list[Video]] = {}

    def setup(self, stage: str | None = None) -> None:
        """Read the video lists of the splits `stage` needs (fit: train and val)."""
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",),
                  "predict": ("test",)}.get(stage, ("train", "val", "test"))
        for part in needed:
            split = self.splits[part]
            if split is None and part == "val":
                self.videos["val"] = []  # no validation (e.g. a family without public val GT)
            elif split is None:
                raise ValueError(f"{type(self).__name__}: {self.dataset} has no {part} split; "
                                 f"name one with {part}_split")
            elif part not in self.videos:
                self.videos[part] = read_videos(self.dataset, self.root, split)

    def train_dataloader(self) -> DataLoader:
        dataset = ClipDataset(self.videos["train"], self.sampler, self.transform, self.flow,
                              self.clips_per_epoch)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=True,
                          num_workers=self.num_workers, collate_fn=collate_clips,
                          persistent_workers=self.num_workers > 0, drop_last=False)

    def val_dataloader(self) -> DataLoader | list:
        # an empty list tells Lightning to skip validation
        return self.video_loader("val") if self.videos["val"] else []

    def test_dataloader(self) -> DataLoader:
        return self.video_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self.video_loader("test")

    def video_loader(self, part: str) -> DataLoader:
        """Whole videos of one part, one per batch, each on exactly one DDP rank."""
        dataset = VideoDataset(self.videos[part], self.flow)
        world_size, rank = self.distribution()
        sampler = UnpaddedDistributedSampler(dataset, world_size, rank) if world_size > 1 else None
        return DataLoader(dataset, batch_size=1, sampler=sampler, num_workers=self.num_workers,
                          collate_fn=first_item)

    def distribution(self) -> tuple[int, int]:
        """(world size, global rank) of the trainer this datamodule serves ((1, 0) without one)."""
        trainer = self.trainer
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank
