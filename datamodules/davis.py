"""Readers for DAVIS 2016 and DAVIS 2017, in their release layouts as they unzip.

DAVIS 2017: JPEGImages/<res>/<seq>/00000.jpg, Annotations/<res>/<seq>/00000.png (indexed PNGs;
test-dev and test-challenge annotate only the first frame), Annotations_unsupervised/ for the
unsupervised track, and sequence lists ImageSets/2017/<split>.txt (ImageSets/2019 for the
unsupervised test sets). DAVIS 2016 is read either from its own release (frame-pair lines in
ImageSets/480p/<split>.txt, 0/255 grayscale annotations) or from a DAVIS 2017 folder through
ImageSets/2016/<split>.txt; either way its masks are binarised (every nonzero label, void too, is
foreground), as the DAVIS 2016 toolkit reads them.
"""

from pathlib import Path

from vosbench.datamodules.video import Video, image_size, pair_by_stem
from vosbench.errors import InputError

DENSE_SPLITS = ("train", "val", "trainval")  # every frame annotated


def read_name_list(path: Path) -> list[str]:
    """Sequence names of an ImageSets file, one per line."""
    if not path.is_file():
        raise InputError(f"{path}: sequence list not found")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise InputError(f"{path}: the sequence list is empty")
    return names


def _video(name: str, dataset: str, split: str, frames: list[Path], masks: list[Path | None],
           single_object: bool) -> Video:
    if masks[0] is None:
        raise InputError(f"{frames[0]}: the first frame of {name!r} has no annotation")
    return Video(name, dataset, split, tuple(frames), tuple(masks), image_size(frames[0]),
                 single_object=single_object)


def folder_video(root: Path, name: str, dataset: str, split: str, resolution: str,
                 annotations: str, single_object: bool = False) -> Video:
    """A video from JPEGImages/<res>/<name> and <annotations>/<res>/<name> under `root`."""
    frame_dir = root / "JPEGImages" / resolution / name
    mask_dir = root / annotations / resolution / name
    frames = sorted(frame_dir.glob("*.jpg"))
    if not frames:
        raise InputError(f"{frame_dir}: no frames (expected JPEGImages/{resolution}/{name}/"
                         f"00000.jpg …)")
    if not mask_dir.is_dir():
        raise InputError(f"{mask_dir}: annotation folder not found")
    masks = pair_by_stem({path.stem: path for path in frames},
                         {path.stem: path for path in mask_dir.glob("*.png")},
                         frame_dir=frame_dir, frame_suffix=".jpg", mask_dir=mask_dir,
                         every_frame=(f"split {split!r} annotates every frame"
                                      if split in DENSE_SPLITS else None))
    return _video(name, dataset, split, frames, masks, single_object)


def davis2017_videos(root: str | Path, split: str = "val", resolution: str = "480p",
                     unsupervised: bool = False, dataset: str = "davis2017") -> list[Video]:
    """The videos of a DAVIS 2017 split: train, val, trainval, test-dev or test-challenge."""
    root = Path(root)
    if split == "trainval":
        return (davis2017_videos(root, "train", resolution, unsupervised, dataset)
                + davis2017_videos(root, "val", resolution, unsupervised, dataset))
    year = "2019" if unsupervised and split.startswith("test") else "2017"
    names = read_name_list(root / "ImageSets" / year / f"{split}.txt")
    annotations = "Annotations_unsupervised" if unsupervised else "Annotations"
    return [folder_video(root, name, dataset, split, resolution, annotations) for name in names]


def davis2016_videos(root: str | Path, split: str = "val", resolution: str = "480p") -> list[Video]:
    """The videos of a DAVIS 2016 split (train, val or trainval), single-object."""
    root = Path(root)
    pairs = root / "ImageSets" / resolution / f"{split}.txt"
    if pairs.is_file():
        return _videos_from_frame_pairs(root, pairs, split)
    names_file = root / "ImageSets" / "2016" / f"{split}.txt"
    if not names_file.is_file():
        raise InputError(f"{root}: no DAVIS 2016 split {split!r} (expected {pairs} from the DAVIS "
                         f"2016 release or {names_file} from DAVIS 2017)")
    return [folder_video(root, name, "davis2016", split, resolution, "Annotations",
                         single_object=True) for name in read_name_list(names_file)]


def _videos_from_frame_pairs(root: Path, pairs: Path, split: str) -> list[Video]:
    """DAVIS 2016 release lists: one '/JPEGImages/480p/<seq>/<f>.jpg /Annotations/…png ' per frame
    (with a trailing space in the official files)."""
    sequences: dict[str, tuple[list[Path], list[Path]]] = {}
    for number, line in enumerate(pairs.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        parts = fields[0].split("/")
        if len(fields) != 2 or len(parts) != 5 or not fields[0].startswith("/"):
            raise InputError(f"{pairs}:{number}: expected '/JPEGImages/<res>/<seq>/<frame>.jpg "
                             f"/Annotations/<res>/<seq>/<frame>.png', found {line!r}")
        frames, masks = sequences.setdefault(parts[3], ([], []))
        frames.append(root / fields[0].lstrip("/"))
        masks.append(root / fields[1].lstrip("/"))
    if not sequences:
        raise InputError(f"{pairs}: no frames listed")
    for frames, masks in sequences.values():
        for path in frames + masks:
            if not path.is_file():
                raise InputError(f"{path}: listed in {pairs} but not found")
    return [_video(name, "davis2016", split, frames, masks, single_object=True)
            for name, (frames, masks) in sequences.items()]
