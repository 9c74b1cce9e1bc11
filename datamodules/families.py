"""One datamodule per dataset family, and the synthetic default that writes itself on first use.

Each names its dataset (the reader in `readers.READERS`) and its default splits; everything else
is the shared `VOSDataModule`. Families whose evaluation ground truth is not public (YouTube-VOS
valid/test) or that have no training split (YouTube-Objects, SegTrack-v2) have no default there.
"""

import os
from functools import cached_property
from pathlib import Path

from vosbench.datamodules.base import VOSDataModule
from vosbench.datamodules.synthesis import FORMAT_VERSION, check_variant, write_synthetic_dataset
from vosbench.datamodules.video import Video
from vosbench.errors import InputError
from vosbench.io import read_names
from vosbench.metrics.datasets import mark_seen, seen_categories
from vosbench.metrics.protocols import SequenceScores


class DAVIS2016DataModule(VOSDataModule):
    """DAVIS 2016 (single object): train 30 / val 20 sequences."""

    dataset = "davis2016"


class DAVIS2017DataModule(VOSDataModule):
    """DAVIS 2017 (multi-object, semi-supervised annotations): train 60 / val 30 sequences."""

    dataset = "davis2017"


class YouTubeVOSDataModule(VOSDataModule):
    """YouTube-VOS 2018/2019. The ground truth of valid and test is not public (their PNGs hold
    only each object's first mask), so scores come from train videos held out of training, as
    `vosbench eval --dataset youtube-vos --split train --sequences HELDOUT` scores them.

    Args:
        root: the dataset folder as the release unzips (train/, valid/, …).
        heldout: a text file of train video ids, one per line: the method trains on the other
            train videos and is validated and tested on these with the youtube-vos protocol,
            an object being seen when its category occurs among the training videos' objects.
            None: trains on all of train, without validation, and predicts valid for the
            evaluation server (`vosbench predict`); nothing can be scored (`test`, `bench`).
        kwargs: VOSDataModule's arguments; with `heldout`, no split may be named.
    """

    dataset = "youtube-vos"
    default_splits = {"train": "train", "val": None, "test": "valid"}

    def __init__(self, root: str | Path, heldout: str | Path | None = None, **kwargs):
        super().__init__(root, **kwargs)
        self.heldout = None if heldout is None else Path(heldout)
        if self.heldout is not None:
            named = [f"{part}_split" for part in self.splits if kwargs.get(f"{part}_split")]
            if named:
                raise InputError(f"{', '.join(named)}: not with heldout {self.heldout}, whose "
                                 f"videos are the val and test videos and the other train "
                                 f"videos the training ones")
            self.splits = dict.fromkeys(self.splits, "train")

    @property
    def test_label(self) -> str:
        """"train-heldout" with `heldout` (results rows apart from the server's valid)."""
        return "train-heldout" if self.heldout is not None else super().test_label

    def check_scorable(self) -> None:
        if self.heldout is None:
            raise InputError(f"youtube-vos {self.splits['test']}: the ground truth is not public, "
                             f"so it cannot be scored; give --data.init_args.heldout FILE, a file "
                             f"of train video ids (one per line) to hold out of training and "
                             f"score, or write {self.splits['test']}'s masks for the evaluation "
                             f"server with vosbench predict")

    def setup(self, stage: str | None = None) -> None:
        if stage == "test":
            self.check_scorable()
        super().setup(stage)

    def read_split(self, part: str, split: str) -> list[Video]:
        """With `heldout`: the held-out train videos for val and test, the others for train."""
        if self.heldout is None:
            return super().read_split(part, split)
        held_out = set(self.heldout_names)
        return [video for video in self.train_videos
                if (video.name in held_out) != (part == "train")]

    @cached_property
    def train_videos(self) -> list[Video]:
        """Every video of train, held out or not (read once)."""
        return super().read_split("train", "train")

    @cached_property
    def heldout_names(self) -> list[str]:
        """The video ids of the `heldout` file (read once), each checked to be a train video."""
        names = read_names(self.heldout, "held-out videos")
        known = {video.name for video in self.train_videos}
        unknown = [name for name in names if name not in known]
        if unknown:
            others = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
            raise InputError(f"{self.heldout}: {unknown[0]!r}{others} is not a video of "
                             f"youtube-vos train ({self.root / 'train' / 'meta.json'}); "
                             f"held-out videos are train video ids, one per line")
        return names

    def mark_seen(self, sequences: list[SequenceScores]) -> None:
        """Give each scored object of the held-out videos its category and whether it is seen,
        exactly as `vosbench eval --split train --sequences HELDOUT` does."""
        mark_seen(sequences, {video.name: video for video in self.train_videos},
                  seen_categories(self.train_videos, self.heldout_names),
                  self.root / "train" / "meta.json")


class YouTubeObjectsDataModule(VOSDataModule):
    """YouTube-Objects: evaluation only (126 annotated shots of 10 categories)."""

    dataset = "youtube-objects"
    default_splits = {"train": None, "val": None, "test": "all"}


class FBMSDataModule(VOSDataModule):
    """FBMS-59: Trainingset (29 videos) and Testset (30 videos)."""

    dataset = "fbms"
    default_splits = {"train": "train", "val": None, "test": "test"}


class SegTrackV2DataModule(VOSDataModule):
    """SegTrack-v2: evaluation only (14 videos)."""

    dataset = "segtrackv2"
    default_splits = {"train": None, "val": None, "test": "all"}


class SaliencyDataModule(VOSDataModule):
    """Static saliency images (MSRA10K, DUTS) as one-frame videos, for image pre-training."""

    dataset = "saliency"
    default_splits = {"train": "msra10k+duts-tr", "val": None, "test": "duts-te"}


def cache_root() -> Path:
    """Where generated data is kept: $VOSBENCH_CACHE, else $XDG_CACHE_HOME/vosbench, else
    ~/.cache/vosbench."""
    if os.environ.get("VOSBENCH_CACHE"):
        return Path(os.environ["VOSBENCH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vosbench"


def cache_folder_name(seed: int, variant: str) -> str:
    """The cache folder of a synthetic set, e.g. synthetic-v2-seed0 (the default variant) or
    synthetic-camouflage-v2-seed0."""
    prefix = "synthetic" if variant == "default" else f"synthetic-{variant}"
    return f"{prefix}-v{FORMAT_VERSION}-seed{seed}"


class SyntheticDataModule(VOSDataModule):
    """The built-in synthetic dataset (DAVIS 2017 layout, 72 train / 16 val videos).

    Args:
        root: the dataset folder; None: a folder per variant, seed and generator version in the
            cache (see `cache_root`), written on first use (`prepare_data`, once per machine).
        seed: the generator seed.
        variant: "default", or "camouflage" (objects in the distractors' colours: only motion
            tells them apart; see `synthesis.render_video`).
        kwargs: the VOSDataModule arguments (splits, sampler, transform, flow, …).
    """

    dataset = "synthetic"

    def __init__(self, root: str | Path | None = None, seed: int = 0, variant: str = "default",
                 **kwargs):
        check_variant(variant)
        root = root or cache_root() / cache_folder_name(seed, variant)
        super().__init__(root, **kwargs)
        self.seed = seed
        self.variant = variant

    @property
    def label(self) -> str:
        """"synthetic", or "synthetic-camouflage": the variants are different tasks, each with
        its own leaderboard table."""
        return self.dataset if self.variant == "default" else f"{self.dataset}-{self.variant}"

    def prepare_data(self) -> None:
        """Write the dataset unless it is there (a folder of another process finishing first is
        fine: the generator builds in a temporary folder and renames it at the end)."""
        if self.is_written():
            return
        try:
            write_synthetic_dataset(self.root, self.seed, progress=True, variant=self.variant)
        except OSError:
            if not self.is_written():
                raise

    def is_written(self) -> bool:
        return (self.root / "ImageSets" / "2017" / "val.txt").is_file()
