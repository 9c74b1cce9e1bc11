"""Which reader reads which dataset: `read_videos(dataset, root, split)`."""

from collections.abc import Callable
from pathlib import Path

from vosbench.datamodules.davis import davis2016_videos, davis2017_videos
from vosbench.datamodules.fbms import fbms_videos
from vosbench.datamodules.saliency import saliency_images
from vosbench.datamodules.segtrack import segtrackv2_videos
from vosbench.datamodules.video import Video
from vosbench.datamodules.youtube_objects import youtube_objects_videos
from vosbench.datamodules.youtube_vos import youtube_vos_videos
from vosbench.errors import InputError

# dataset name -> (reader(root, split) -> videos, default split)
READERS: dict[str, tuple[Callable[[Path, str], list[Video]], str]] = {
    "davis2016": (davis2016_videos, "val"),
    "davis2017": (davis2017_videos, "val"),
    "fbms": (fbms_videos, "test"),
    "synthetic": (lambda root, split: davis2017_videos(root, split, dataset="synthetic"), "val"),
    "youtube-vos": (youtube_vos_videos, "valid"),
    "youtube-objects": (youtube_objects_videos, "all"),
    "segtrackv2": (segtrackv2_videos, "all"),
    "saliency": (saliency_images, "msra10k+duts-tr"),
}


def default_split(dataset: str) -> str:
    """The split read when none is named (the evaluation split, or all of a set without splits)."""
    return _reader(dataset)[1]


def _reader(dataset: str):
    if dataset not in READERS:
        raise InputError(f"unknown dataset {dataset!r}; known: {', '.join(READERS)}")
    return READERS[dataset]


def read_videos(dataset: str, root: str | Path, split: str | None = None) -> list[Video]:
    """The videos of one split of a dataset folder; an unknown name lists the known ones."""
    reader, default = _reader(dataset)
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder not found")
    return reader(root, split or default)
