"""Which reader reads which dataset: `read_videos(dataset, root, split)`."""

from collections.abc import Callable
from pathlib import Path

from vosbench.datamodules.davis import davis2016_videos, davis2017_videos
from vosbench.datamodules.fbms import fbms_videos
from vosbench.datamodules.video import Video
from vosbench.datamodules.youtube_vos import youtube_vos_videos
from vosbench.errors import InputError

# dataset name -> (reader(root, split) -> videos, default split)
READERS: dict[str, tuple[Callable[[Path, str], list[Video]], str]] = {
    "davis2016": (davis2016_videos, "val"),
    "davis2017": (davis2017_videos, "val"),
    "fbms": (fbms_videos, "test"),
    "synthetic": (lambda root, split: davis2017_videos(root, split, dataset="synthetic"), "val"),
    "youtube-vos": (youtube_vos_videos, "valid"),
}


def read_videos(dataset: str, root: str | Path, split: str | None = None) -> list[Video]:
    """The videos of one split of a dataset folder; an unknown name lists the known ones."""
    if dataset not in READERS:
        raise InputError(f"unknown dataset {dataset!r}; known: {', '.join(READERS)}")
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder not found")
    reader, default_split = READERS[dataset]
    return reader(root, split or default_split)
