"""Binary mask images read as 0/1 label maps, shared by the readers of YouTube-Objects,
SegTrack-v2 and the saliency image sets (0 background, 255 foreground, with JPEG ringing or
antialiased borders in between)."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vosbench.datamodules.video import Video
from vosbench.errors import InputError

# Foreground is a grey value above the midpoint (AMC-Net's YouTube-Objects evaluation; clockwork's
# `> 15` would turn the JPEG ringing around objects into foreground).
THRESHOLD = 127
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def read_grey(path: Path) -> np.ndarray:
    """(H, W) uint8 grey values of an image; channel 0 of a colour one (SegTrack-v2 stores its
    masks as 3-channel images with equal channels)."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))[..., 0]
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except Exception as error:  # PIL raises many types for corrupt or truncated files
        raise InputError(f"{path}: not a readable mask image ({error})") from None


def read_binary_mask(path: Path) -> np.ndarray:
    """(H, W) uint8 map: 1 where the grey value exceeds THRESHOLD, else 0."""
    return (read_grey(path) > THRESHOLD).view(np.uint8)


@dataclass(frozen=True)
class BinaryMaskVideo(Video):
    """A video (or a single image) whose annotations are grey images thresholded to one object."""

    def read_labels(self, path: Path) -> np.ndarray:
        """(H, W) uint8 0/1 map of the mask image at `path`."""
        return read_binary_mask(path)


def images_by_stem(folder: Path) -> dict[str, Path]:
    """Image files of a folder (png, bmp, jpg; any case) by file stem, in stem order."""
    if not folder.is_dir():
        return {}
    files = [path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES]
    return {path.stem: path for path in sorted(files)}
