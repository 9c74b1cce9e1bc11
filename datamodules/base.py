"""The LightningDataModule every dataset family shares, with its datasets and its samplers.

Training draws clips (the method's `ClipSampler` picks the frames, a `ClipTransform` resizes and
augments them jointly). Validation, test and prediction yield whole videos, one per item, and under
DDP every video goes to exactly one rank: no sampler padding, so no video is scored twice.
"""

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import CombinedLoader
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from vosbench.datamodules.clip_transform import ClipTransform
from vosbench.datamodules.clips import Clip, LoadedVideo, collate_clips, load_video, read_masks
from vosbench.datamodules.readers import read_videos
from vosbench.datamodules.sampling import ClipSampler, SegmentSampler
from vosbench.datamodules.video import Video
from vosbench.errors import InputError
from vosbench.flow.provider import FlowProvider


class ClipDataset(Dataset):
    """Training clips. `length` clips make an epoch; key k = epoch · length + i is clip i of an
    epoch, drawn from video k mod len(videos) by a generator seeded with (seed, k), so that
    successive epochs of fewer clips than videos go through all the videos.

    A clip is thus a function of the seed, the epoch and its position alone: the same whatever
    the worker count, and the same after resuming from a checkpoint. `ClipOrder` gives the keys.
    """

    def __init__(self, videos: Sequence[Video], sampler: ClipSampler, transform: ClipTransform,
                 flow: FlowProvider | None = None, length: int | None = None, seed: int = 0):
        if not videos:
            raise ValueError("no training videos")
        self.videos, self.sampler, self.transform, self.flow = videos, sampler, transform, flow
        self.length = length or len(videos)
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: int) -> Clip:
        rng = np.random.default_rng([self.seed, key])
        video = self.videos[key % len(self.videos)]
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


class ClipOrder(DistributedSampler):
    """The keys of a ClipDataset for one epoch: its positions shuffled by (seed, epoch), shared
    out between DDP ranks (the last ones padded by wrapping around, as training allows).

    Lightning calls `set_epoch` before every epoch, and leaves a DistributedSampler in place.
    `resume_at` (set by `ClipLoader.load_state_dict`) makes the next iteration start at that
    position of this rank's keys, as a resumed epoch does; later iterations start at 0.
    """

    def __init__(self, dataset: ClipDataset, num_replicas: int = 1, rank: int = 0,
                 seed: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.resume_at = 0

    def __iter__(self) -> Iterator[int]:
        length = len(self.dataset)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(length)
        order = np.resize(order, self.num_samples * self.num_replicas)  # wraps around to pad
        keys = self.epoch * length + order[self.rank::self.num_replicas]
        start, self.resume_at = self.resume_at, 0
        return iter(keys[start:].tolist())

    def __len__(self) -> int:
        return self.num_samples


class ClipLoader(DataLoader):
    """Batches of training clips in ClipOrder, resumable mid-epoch.

    `state_dict()` is {"epoch": e, "batches": b}: b batches of epoch e handed out so far. Lightning
    saves it in every checkpoint (the fit loop asks each training loader that has the two methods)
    and gives it to `load_state_dict` on resume, before the resumed epoch's iterator is made;
    that iterator then starts after those b batches, so the resumed run trains on the clips the
    uninterrupted one would (a clip is a function of the seed, the epoch and its position). A
    finished epoch resumes at the start of the next one.

    The loader draws its workers' base seed from its own generator, not from torch's global one,
    which is the model's (dropout): making an iterator, as a resumed run does at another moment
    than the uninterrupted one, leaves the model's random stream alone. The clips themselves take
    no randomness from the workers (ClipDataset seeds a generator per clip).
    """

    def __init__(self, dataset: ClipDataset, batch_size: int, sampler: ClipOrder,
                 num_workers: int, seed: int):
        super().__init__(dataset, batch_size=batch_size, sampler=sampler,
                         num_workers=num_workers, collate_fn=collate_clips,
                         persistent_workers=num_workers > 0, drop_last=False,
                         generator=torch.Generator().manual_seed(seed))
        self.batches_taken = 0

    def __iter__(self) -> Iterator[Clip]:
        self.batches_taken = self.sampler.resume_at // self.batch_size
        return self.counted(super().__iter__())

    def counted(self, batches: Iterator[Clip]) -> Iterator[Clip]:
        for batch in batches:
            self.batches_taken += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "batches": self.batches_taken}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, batches = state["epoch"], state["batches"]
        if batches >= len(self):
            epoch, batches = epoch + 1, 0
        self.sampler.set_epoch(epoch)
        self.sampler.resume_at = batches * self.batch_size
        self.batches_taken = batches


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
        static_root: a folder of saliency image sets (MSRA10K, DUTS; see `readers`) for methods
            that alternate static-image steps with video steps (AGNN); training batches are then
            {"video": Clip, "static": Clip} with one-frame static clips. None: video clips only.
        static_split: which saliency sets ("msra10k+duts-tr", the two training sets, by default).
        static_batch_size: images per static batch (default: batch_size).
    """

    dataset = ""
    default_splits: dict[str, str | None] = {"train": "train", "val": "val", "test": "val"}

    def __init__(self, root: str | Path, train_split: str | None = None,
                 val_split: str | None = None, test_split: str | None = None,
                 sampler: ClipSampler | None = None, transform: ClipTransform | None = None,
                 flow: FlowProvider | None = None, batch_size: int = 2, num_workers: int = 2,
                 clips_per_epoch: int | None = None, static_root: str | Path | None = None,
                 static_split: str = "msra10k+duts-tr", static_batch_size: int | None = None):
        super().__init__()
        self.root = Path(root)
        given = {"train": train_split, "val": val_split, "test": test_split}
        self.splits = {stage: given[stage] or self.default_splits[stage] for stage in given}
        self.sampler = sampler or SegmentSampler(num_segments=1)
        self.transform = transform or ClipTransform()
        self.flow = flow
        self.batch_size, self.num_workers = batch_size, num_workers
        self.clips_per_epoch = clips_per_epoch
        self.static_root = None if static_root is None else Path(static_root)
        self.static_split = static_split
        self.static_batch_size = static_batch_size or batch_size
        self.videos: dict[str, list[Video]] = {}

    @property
    def label(self) -> str:
        """The dataset as results rows and leaderboard tables name it: `dataset`, or a variant
        of it."""
        return self.dataset

    @property
    def test_label(self) -> str:
        """The test split as results rows and leaderboard tables name it: its split name, or
        what the family's test videos are instead."""
        return self.splits["test"]

    def check_scorable(self) -> None:
        """Raise InputError where the test videos cannot be scored (their ground truth is not
        public); `vosbench bench` asks before it fits. The base class checks nothing."""

    def mark_seen(self, sequences: list) -> None:
        """Mark each scored object of the youtube-vos protocol seen or unseen: only YouTube-VOS's
        held-out train videos have training videos to tell (YouTubeVOSDataModule)."""
        raise InputError(f"the youtube-vos protocol scores YouTube-VOS's held-out train videos "
                         f"(--data youtube-vos with data.init_args.heldout), not {self.label}")

    def read_split(self, part: str, split: str) -> list[Video]:
        """The videos of `part` (train, val or test), read from the dataset's split `split`."""
        return read_videos(self.dataset, self.root, split)

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
                self.videos[part] = self.read_split(part, split)
        if stage in ("fit", None) and self.static_root is not None and "static" not in self.videos:
            self.videos["static"] = read_videos("saliency", self.static_root, self.static_split)

    def train_dataloader(self) -> ClipLoader | CombinedLoader:
        """Clip batches; with a static_root, {"video": …, "static": …} batches (one static batch
        for each video batch, successive epochs going on through the static images)."""
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))  # set by seed_everything
        videos = self.clip_loader(ClipDataset(self.videos["train"], self.sampler, self.transform,
                                              self.flow, self.clips_per_epoch, seed),
                                  self.batch_size, seed)
        if self.static_root is None:
            return videos
        # as many static batches as video batches on every rank: the video clips set the
        # epoch's length
        world_size, _ = self.distribution()
        images = ClipDataset(self.videos["static"], SegmentSampler(num_segments=1),
                             self.transform,
                             length=len(videos) * self.static_batch_size * world_size,
                             seed=seed + 1)
        return CombinedLoader({"video": videos,
                               "static": self.clip_loader(images, self.static_batch_size, seed)},
                              mode="min_size")

    def clip_loader(self, dataset: ClipDataset, batch_size: int, seed: int) -> ClipLoader:
        world_size, rank = self.distribution()
        return ClipLoader(dataset, batch_size, ClipOrder(dataset, world_size, rank, seed),
                          self.num_workers, seed)

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
        # its own generator: making the iterator leaves torch's global one (the model's) alone
        return DataLoader(dataset, batch_size=1, sampler=sampler, num_workers=self.num_workers,
                          collate_fn=first_item, generator=torch.Generator().manual_seed(0))

    def distribution(self) -> tuple[int, int]:
        """(world size, global rank) of the trainer this datamodule serves ((1, 0) without one)."""
        trainer = self.trainer
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank
