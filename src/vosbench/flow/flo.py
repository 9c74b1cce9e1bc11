"""Middlebury `.flo` files: the common on-disk format of optical flow.

Layout (little-endian): float32 magic 202021.25, int32 width, int32 height, then height × width
× 2 float32 values, row-major, x (columns) before y (rows) for each pixel. In memory a flow is a
float32 array of shape (H, W, 2) in pixels: channel 0 = x displacement, channel 1 = y.
"""

from pathlib import Path

import numpy as np

from vosbench.errors import InputError
from vosbench.io import write_atomic

FLO_MAGIC = np.float32(202021.25)
HEADER_BYTES = 12
# The Middlebury reference reader rejects sides above 99999; anything larger is a corrupt header.
MAX_SIDE = 99_999


def read_flo(path: str | Path) -> np.ndarray:
    """Read a `.flo` file as an (H, W, 2) float32 array of displacements in pixels.

    Raises InputError naming the file when it is missing, its magic number is wrong, its header
    gives absurd dimensions, or it holds fewer or more bytes than the header announces.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: flow file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: expected a .flo file, found a folder") from None
    if len(data) < HEADER_BYTES:
        raise InputError(f"{path}: truncated .flo file ({len(data)} bytes, shorter than the "
                         f"{HEADER_BYTES}-byte header)")
    magic = np.frombuffer(data, "<f4", count=1)[0]
    if magic != FLO_MAGIC:
        raise InputError(f"{path}: not a .flo file (magic number {magic!r}, expected "
                         f"{float(FLO_MAGIC)})")
    width, height = (int(side) for side in np.frombuffer(data, "<i4", count=2, offset=4))
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise InputError(f"{path}: corrupt .flo header (size {width}x{height})")
    expected = HEADER_BYTES + height * width * 2 * 4
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "oversized"
        raise InputError(f"{path}: {problem} .flo file ({len(data)} bytes, expected {expected} "
                         f"for {width}x{height})")
    values = np.frombuffer(data, "<f4", offset=HEADER_BYTES)
    return values.reshape(height, width, 2).astype(np.float32)  # native order, writable copy


def write_flo(path: str | Path, flow: np.ndarray) -> Path:
    """Write an (H, W, 2) flow (pixels, x then y) as a `.flo` file; parent folders are created.

    Written to a temporary file in the same folder, then renamed over `path`: a reader (or a
    DataLoader worker computing the same flow) never sees a half-written file.
    """
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2 or flow.shape[0] < 1 or flow.shape[1] < 1:
        raise ValueError(f"expected a flow of shape (H, W, 2), got {flow.shape}")
    height, width = flow.shape[:2]
    payload = (FLO_MAGIC.astype("<f4").tobytes()
               + np.array([width, height], "<i4").tobytes()
               + np.ascontiguousarray(flow, "<f4").tobytes())
    # No fsync: flow files are a reproducible cache, and a file damaged by a power cut is
    # reported by read_flo, not silently used.
    write_atomic(path, payload, sync=False)
    return Path(path)
