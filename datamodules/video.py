"""The sample model every dataset reader produces: a `Video`, read lazily from disk."""

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from vosbench.errors import InputError
from vosbench.io import read_label_png

VOID_LABEL = 255


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file, from its header."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except Exception as error:
        raise InputError(f"{path}: not a readable image ({error})") from None
    return height, width


def pair_by_stem(frames: dict[str, Path], masks: dict[str, Path], *, frame_dir: Path,
                 frame_suffix: str, mask_dir: Path, every_frame: str | None = None
                 ) -> list[Path | None]:
    """The annotation of each frame (None where there is none), matching file stems.

    frames, masks: stem → file. An annotation without a frame is an error (naming `frame_dir`
    and `frame_suffix`, e.g. ".jpg", as what was expected); so is a frame without annotation when
    `every_frame` gives the reason every frame must have one.
    """
    orphans = sorted(set(masks) - set(frames))
    if orphans:
        raise InputError(f"{masks[orphans[0]]}: annotation without a frame "
                         f"(no {frame_dir / orphans[0]}{frame_suffix})")
    missing = [stem for stem in frames if stem not in masks]
    if every_frame is not None and missing:
        raise InputError(f"{mask_dir / missing[0]}.png: missing; {every_frame}")
    return [masks.get(stem) for stem in frames]


@dataclass(frozen=True)
class Video:
    """One video of a dataset. Nothing is decoded until asked for.

    frame_files: the RGB frames in order. mask_files: per frame, its annotation file or None where
    the frame is not annotated. size: (H, W) of the original frames, in pixels. single_object:
    masks are read as one foreground (every nonzero label → 1), as the DAVIS 2016 reading does.
    Masks are integer maps: 0 background, 1..K objects, 255 void.
    """

    name: str
    dataset: str
    split: str
    frame_files: tuple[Path, ...]
    mask_files: tuple[Path | None, ...]
    size: tuple[int, int]
    single_object: bool = False
    category: str | None = None

    @property
    def frame_names(self) -> tuple[str, ...]:
        return tuple(path.stem for path in self.frame_files)

    @property
    def annotated(self) -> tuple[int, ...]:
        """Indices of the annotated frames."""
        return tuple(i for i, path in enumerate(self.mask_files) if path is not None)

    def __len__(self) -> int:
        return len(self.frame_files)

    def frame(self, index: int) -> np.ndarray:
        """Frame `index` as an (H, W, 3) uint8 RGB array."""
        path = self.frame_files[index]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise InputError(f"{path}: missing or not a readable image")
        self._check_size(path, image.shape[:2])
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def mask(self, index: int) -> np.ndarray:
        """Annotation of frame `index` as an (H, W) uint8 label map."""
        path = self.mask_files[index]
        if path is None:
            raise InputError(f"video {self.name!r}: frame {self.frame_names[index]} is not "
                             f"annotated")
        labels = self.read_labels(path)
        self._check_size(path, labels.shape)
        return (labels != 0).view(np.uint8) if self.single_object else labels

    def read_labels(self, path: Path) -> np.ndarray:
        """Decode one annotation file to an (H, W) uint8 label map. Datasets whose annotations
        are not label PNGs (thresholded JPEGs, PGM/PPM, one folder per object) override this."""
        return read_label_png(path)

    @cached_property
    def first_appearance(self) -> dict[int, int]:
        """Object id → index of the first annotated frame where it appears (decodes every mask)."""
        first: dict[int, int] = {}
        for index in self.annotated:
            for label in np.unique(self.mask(index)).tolist():
                if label not in (0, VOID_LABEL):
                    first.setdefault(label, index)
        return dict(sorted(first.items()))

    def reference_masks(self) -> dict[int, np.ndarray]:
        """Frame index → (H, W) uint8 labels of the objects that first appear at that frame, all
        other pixels 0: the masks a semi-supervised method is given. Keys are the first-appearance
        frames only."""
        references = {}
        for index in sorted(set(self.first_appearance.values())):
            new = [obj for obj, first in self.first_appearance.items() if first == index]
            labels = self.mask(index)
            references[index] = np.where(np.isin(labels, new), labels, 0).astype(np.uint8)
        return references

    def check_frames(self) -> None:
        """Raise InputError unless every frame file is a readable image of the video's size
        (reads the image headers only)."""
        for path in self.frame_files:
            self._check_size(path, image_size(path))

    def _check_size(self, path: Path, shape: tuple[int, ...]) -> None:
        if tuple(shape) != self.size:
            raise InputError(f"{path}: size {shape[1]}x{shape[0]} differs from the video's "
                             f"{self.size[1]}x{self.size[0]} (video {self.name!r})")
