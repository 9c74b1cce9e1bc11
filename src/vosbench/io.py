"""Reading label PNGs and writing result files atomically."""

import json
import math
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from vosbench.errors import InputError

# PIL modes that hold one integer label per pixel: palette, 8-bit grey, 1-bit, 16/32-bit grey.
LABEL_MODES = ("P", "L", "1", "I;16", "I")
# how the temporary files of atomic writes begin
PARTIAL_PREFIX = ".partial-"


def read_label_png(path: str | Path) -> np.ndarray:
    """Decode a label PNG (palette indices or grey values) to an (H, W) uint8 array.

    Raises InputError naming the file if it is missing, not a readable PNG, has several channels,
    or holds values above 255.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            if image.format != "PNG":
                raise InputError(f"{path}: not a PNG file (found {image.format})")
            if image.mode not in LABEL_MODES:
                raise InputError(f"{path}: expected a single-channel label PNG (palette or "
                                 f"grayscale), found PIL mode {image.mode}")
            labels = np.asarray(image)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except InputError:
        raise
    except Exception as error:  # PIL raises many types for corrupt or truncated files
        raise InputError(f"{path}: cannot decode PNG ({error})") from None
    if labels.dtype != np.uint8:
        if labels.size and (labels.min() < 0 or labels.max() > 255):
            raise InputError(f"{path}: label values must lie in 0..255, found "
                             f"{labels.min()}..{labels.max()}")
        labels = labels.astype(np.uint8)
    return labels


def davis_palette() -> list[int]:
    """The colour map of DAVIS (and PASCAL VOC) label PNGs: 256 RGB triples, flattened.

    Label i gets its colour from the bits of i, three at a time (red, green, blue), from the
    highest bit of each channel down: 1 → (128, 0, 0), 2 → (0, 128, 0), 255 → (224, 224, 192).
    """
    palette = []
    for label in range(256):
        rgb = [0, 0, 0]
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((label >> (3 * bit + channel)) & 1) << (7 - bit)
        palette.extend(rgb)
    return palette


DAVIS_PALETTE = davis_palette()


def write_label_png(path: str | Path, labels: np.ndarray, grayscale: bool = False) -> Path:
    """Write an (H, W) uint8 label map as an indexed PNG with the DAVIS palette (or as an 8-bit
    grayscale PNG, the format of DAVIS 2016 ground truth); parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.asarray(labels, dtype=np.uint8), mode="L")
    if not grayscale:
        image = image.convert("P")
        image.putpalette(DAVIS_PALETTE)
    image.save(path)
    return path


@contextmanager
def atomic_file(path: str | Path, *, sync: bool = True) -> Iterator[BinaryIO]:
    """A binary stream whose content replaces `path` when the block ends without an error.

    It writes a temporary file in the same folder (".partial-<pid>-<ns>.tmp": a name that holds
    no letters of the target's, so that no search for "last" checkpoints can take it for one)
    and renames it over `path`, an atomic step: a reader, or a process killed mid-write, sees the
    old file or the new one, never half of one. A block that raises removes the temporary file;
    a killed process leaves it. `sync` flushes it to the disk before the rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f"{PARTIAL_PREFIX}{os.getpid()}-{time.time_ns()}.tmp"
    try:
        with open(temporary, "xb") as stream:
            yield stream
            if sync:
                stream.flush()
                os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, content: str | bytes, *, sync: bool = True) -> None:
    """Write text (UTF-8) or bytes to `path` atomically (`atomic_file`): never a half-written
    file. `sync` flushes it to the disk first (results files); caches that can be recomputed
    skip that."""
    with atomic_file(path, sync=sync) as stream:
        stream.write(content.encode("utf-8") if isinstance(content, str) else content)


def read_names(path: str | Path, what: str) -> list[str]:
    """The names of a text file, one per line, in file order (blank lines and the spaces around a
    name ignored). `what` says in messages what the file lists ("held-out videos"). Raises
    InputError for a missing, unreadable or empty file and for a name listed twice."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file of {what} not found (one name per line)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the file of {what} ({error})") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise InputError(f"{path}: names no {what} (expected one name per line)")
    repeated = [name for name, count in Counter(names).items() if count > 1]
    if repeated:
        raise InputError(f"{path}: {repeated[0]!r} is listed {names.count(repeated[0])} times")
    return names


def to_json(value) -> str:
    """Strict JSON (NaN and infinity become null) with full float precision."""
    def clean(item):
        if isinstance(item, dict):
            return {str(key): clean(val) for key, val in item.items()}
        if isinstance(item, (list, tuple, np.ndarray)):
            return [clean(val) for val in item]
        if isinstance(item, (float, np.floating)):
            return None if not math.isfinite(item) else float(item)
        if isinstance(item, np.integer):
            return int(item)
        return item

    return json.dumps(clean(value), indent=1, allow_nan=False) + "\n"
