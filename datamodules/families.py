"""One datamodule per dataset family, and the synthetic default that writes itself on first use.

Each names its dataset (the reader in `readers.READERS`) and its default splits; everything else
is the shared `VOSDataModule`. Families whose evaluation ground truth is not public (YouTube-VOS
valid/test) or that have no training split (YouTube-Objects, SegTrack-v2) have no default there.
"""

import os
from pathlib import Path

from vosbench.datamodules.base import VOSDataModule
from vosbench.datamodules.synthesis import FORMAT_VERSION, check_variant, write_synthetic_dataset


class DAVIS2016DataModule(VOSDataModule):
    """DAVIS 2016 (single object): train 30 / val 20 sequences."""

    dataset = "davis2016"


class DAVIS2017DataModule(VOSDataModule):
    """DAVIS 2017 (multi-object, semi-supervised annotations): train 60 / val 30 sequences."""

    dataset = "davis2017"


class YouTubeVOSDataModule(VOSDataModule):
    """YouTube-VOS 2018/2019: trains on train; tests (predicts for the server) on valid, whose
    ground truth is not public, so there is no default validation split."""

    dataset = "youtube-vos"
    default_splits = {"train": "train", "val": None, "test": "valid"}


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
