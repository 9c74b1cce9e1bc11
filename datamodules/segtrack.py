"""Reader for SegTrack-v2 (Li et al., ICCV 2013) in its release layout:

  JPEGImages/<seq>/<frame>.(png|bmp|jpg)   frames; the extension differs per sequence
  GroundTruth/<seq>/<frame>.<ext>          single-object sequences
  GroundTruth/<seq>/<k>/<frame>.<ext>      multi-object ones: one binary mask folder per object
  ImageSets/all.txt                        sequence names; multi-object ones prefixed with '*'

Every frame is annotated. A ground-truth file belongs to the frame of the same stem, whatever the
extensions (they differ between frames and masks, and between objects of one sequence). Masks are
3-channel images of 0/255 with intermediate values at borders; channel 0 is thresholded at 127 and
the objects merged into one label map: ids 1..K in the numeric order of the object folders
(1, 2, …, 10), 255 (void) where two objects overlap. The release has no split: split "all" reads the
sequences of ImageSets/all.txt, in its order. Frames are taken in stem order from the frame folder
(the release numbers them with zero padding), not from ImageSets/<seq>.txt.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vosbench.datamodules.binary_masks import images_by_stem, read_binary_mask
from vosbench.datamodules.davis import read_name_list
from vosbench.datamodules.video import VOID_LABEL, Video, image_size, pair_by_stem
from vosbench.errors import InputError

SPLITS = ("all",)


@dataclass(frozen=True)
class SegTrackVideo(Video):
    """A sequence whose annotation of a frame is one binary mask file per object.

    object_files: per frame, the mask files of objects 1..K; mask_files holds the first of them,
    which `read_labels` uses to find the frame.
    """

    object_files: tuple[tuple[Path, ...], ...] = ()

    def read_labels(self, path: Path) -> np.ndarray:
        """(H, W) uint8 map of the frame annotated by `path`: 0 background, 1..K, 255 overlap."""
        labels = np.zeros(self.size, np.uint8)
        for object_id, file in enumerate(self.object_files[self.mask_files.index(path)], start=1):
            mask = read_binary_mask(file)
            self._check_size(file, mask.shape)
            labels[(mask == 1) & (labels != 0)] = VOID_LABEL  # before writing this object's id
            labels[(mask == 1) & (labels == 0)] = object_id
        return labels


def segtrackv2_videos(root: str | Path, split: str = "all") -> list[Video]:
    """The sequences of SegTrack-v2 (split "all": the 14 of ImageSets/all.txt)."""
    root = Path(root)
    if split not in SPLITS:
        raise InputError(f"unknown SegTrack-v2 split {split!r}; known: {', '.join(SPLITS)}")
    names = [name.lstrip("*") for name in read_name_list(root / "ImageSets" / "all.txt")]
    return [sequence_video(root, name, split) for name in names]


def object_folders(gt_dir: Path) -> list[Path]:
    """The per-object subfolders of a ground-truth folder, numeric names in numeric order."""
    folders = [path for path in gt_dir.iterdir() if path.is_dir()]
    return sorted(folders, key=lambda path: (not path.name.isdigit(),
                                             int(path.name) if path.name.isdigit() else 0,
                                             path.name))


def object_masks(folder: Path, frames: dict[str, Path]) -> dict[str, Path]:
    """The mask files of one object folder by frame stem; every frame needs one."""
    masks = images_by_stem(folder)
    pair_by_stem(frames, masks, frame_dir=next(iter(frames.values())).parent,
                 frame_suffix=".png, .bmp or .jpg", mask_dir=folder,
                 every_frame="SegTrack-v2 annotates every frame")
    return masks


def sequence_video(root: Path, name: str, split: str) -> SegTrackVideo:
    """One sequence: its frames and, per frame, the masks of its objects."""
    frame_dir, gt_dir = root / "JPEGImages" / name, root / "GroundTruth" / name
    frames = images_by_stem(frame_dir)
    if not frames:
        raise InputError(f"{frame_dir}: no frames (expected JPEGImages/{name}/<frame>.png, .bmp "
                         f"or .jpg)")
    if not gt_dir.is_dir():
        raise InputError(f"{gt_dir}: ground-truth folder not found (expected GroundTruth/{name}/"
                         f"<frame>.png, or GroundTruth/{name}/<k>/<frame>.png per object k)")
    per_object = [object_masks(folder, frames) for folder in object_folders(gt_dir) or [gt_dir]]
    object_files = tuple(tuple(masks[stem] for masks in per_object) for stem in frames)
    return SegTrackVideo(name, "segtrackv2", split, tuple(frames.values()),
                         tuple(files[0] for files in object_files),
                         image_size(next(iter(frames.values()))), object_files=object_files)
