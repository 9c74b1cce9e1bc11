"""Reader for YouTube-Objects with the Jain & Grauman (ECCV 2014) segmentation ground truth.

Two archives unpacked side by side under one root:
  v1/<class>/data/<vid>/shots/<shot>/frame0001.jpg …               the YouTube-Objects v1 frames
  youtube_masks/<class>/data/<vid>/shots/<shot>/labels/00001.jpg …  the ground truth
Label NNNNN.jpg belongs to frame frameNNNN.jpg of the same integer index. Only a sparse subset of
frames (about every 10th, not strictly periodic) carries a label, the first label need not be on
the first frame, and every annotated shot becomes one video. Labels are grayscale JPEGs of one
foreground (every instance of the class), thresholded at 127 to 0/1.

The release has no train/test split (the ground truth is a test benchmark): split "all" reads every
annotated shot of every class present, split "<class>" (e.g. "car") the shots of one class. Videos
are named "<class>_<vid>" (OnAVOS's names, e.g. "motorbike_0007"), "<class>_<vid>_<shot>" for a
shot other than 001, and carry their class as `category` for the per-category mean.
"""

from pathlib import Path

from vosbench.datamodules.binary_masks import BinaryMaskVideo
from vosbench.datamodules.video import Video, image_size
from vosbench.errors import InputError

CLASSES = ("aeroplane", "bird", "boat", "car", "cat", "cow", "dog", "horse", "motorbike", "train")
SPLITS = ("all", *CLASSES)


def youtube_objects_videos(root: str | Path, split: str = "all") -> list[Video]:
    """The annotated shots of YouTube-Objects: split "all" or one class name."""
    root = Path(root)
    if split not in SPLITS:
        raise InputError(f"unknown YouTube-Objects split {split!r}; known: {', '.join(SPLITS)}")
    masks_root = root / "youtube_masks"
    if not masks_root.is_dir():
        raise InputError(f"{masks_root}: ground-truth folder not found (expected the Jain & "
                         f"Grauman youtube_masks/<class>/data/<vid>/shots/<shot>/labels/"
                         f"00001.jpg … next to the YouTube-Objects frames v1/)")
    classes = present_classes(masks_root) if split == "all" else [split]
    videos = []
    for category in classes:
        class_dir = masks_root / category
        label_dirs = sorted(class_dir.glob("data/*/shots/*/labels"))
        if not label_dirs:
            raise InputError(f"{class_dir}: no annotated shots (expected "
                             f"data/<vid>/shots/<shot>/labels/00001.jpg …)")
        videos += [shot_video(root, labels, category, split) for labels in label_dirs]
    return videos


def present_classes(masks_root: Path) -> list[str]:
    """The class folders of youtube_masks/, in CLASSES order; any other folder is an error."""
    folders = {path.name for path in masks_root.iterdir() if path.is_dir()}
    unknown = sorted(folders - set(CLASSES))
    if unknown:
        raise InputError(f"{masks_root / unknown[0]}: not a YouTube-Objects class (expected one "
                         f"of {', '.join(CLASSES)})")
    if not folders:
        raise InputError(f"{masks_root}: no class folders (expected e.g. {masks_root / 'car'})")
    return [name for name in CLASSES if name in folders]


def numbered_files(folder: Path, prefix: str, digits: int) -> dict[int, Path]:
    """The JPEGs of `folder` named <prefix><digits-digit number>.jpg, by number, in order."""
    files = {}
    for path in sorted(folder.glob(f"{prefix}*.jpg")):
        number = path.stem[len(prefix):]
        if len(number) != digits or not number.isdigit():
            raise InputError(f"{path}: expected a file name like {prefix}{1:0{digits}d}.jpg")
        files[int(number)] = path
    return files


def shot_video(root: Path, labels_dir: Path, category: str, split: str) -> BinaryMaskVideo:
    """One annotated shot: every v1 frame of the shot, with its label where there is one."""
    shot_dir = labels_dir.parent
    relative = shot_dir.relative_to(root / "youtube_masks")
    frame_dir = root / "v1" / relative
    frames = numbered_files(frame_dir, "frame", 4)
    if not frames:
        raise InputError(f"{frame_dir}: no frames (expected v1/{relative}/frame0001.jpg … for "
                         f"the labels in {labels_dir})")
    labels = numbered_files(labels_dir, "", 5)
    if not labels:
        raise InputError(f"{labels_dir}: no labels (expected 00001.jpg …)")
    orphans = sorted(set(labels) - set(frames))
    if orphans:
        raise InputError(f"{labels[orphans[0]]}: annotation without a frame "
                         f"(no {frame_dir / f'frame{orphans[0]:04d}.jpg'})")
    vid, shot = shot_dir.parent.parent.name, shot_dir.name
    name = f"{category}_{vid}" if shot == "001" else f"{category}_{vid}_{shot}"
    numbers = sorted(frames)
    return BinaryMaskVideo(name, "youtube-objects", split,
                               tuple(frames[number] for number in numbers),
                               tuple(labels.get(number) for number in numbers),
                               image_size(frames[numbers[0]]), single_object=True,
                               category=category)
