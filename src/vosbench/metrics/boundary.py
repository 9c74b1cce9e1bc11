"""F, the boundary F-measure, exactly as davis2017-evaluation and the DAVIS 2016 toolkit compute it.

A mask's boundary map is one pixel wide and offset half a pixel toward the origin (`boundary_map`).
Predicted and ground-truth boundaries match within a disk of radius `boundary_radius(H, W)` pixels.
For speed, every map is computed on the object's bounding box only (grown by one pixel and, for the
dilated map, by the radius): all boundary pixels and their dilation lie inside it, so the counts are
the same as on the full frame.
"""

from dataclasses import dataclass, field
from functools import cache

import cv2
import numpy as np

BOUNDARY_TOLERANCE = 0.008  # fraction of the image diagonal


def boundary_radius(height: int, width: int) -> int:
    """Matching tolerance in pixels: ceil(0.008 · image diagonal); 480×854 → 8, 1080×1920 → 18."""
    return int(np.ceil(BOUNDARY_TOLERANCE * np.linalg.norm((height, width))))


@cache
def disk(radius: int) -> np.ndarray:
    """(2r+1, 2r+1) uint8 structuring element: every offset with dx² + dy² ≤ r²."""
    offsets = np.arange(-radius, radius + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).astype(np.uint8)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """The DAVIS boundary map of a (H, W) bool mask, as a (H, W) bool array.

    b[y, x] is set where the pixel differs from its right, lower or lower-right neighbour; on the
    last row only the right neighbour counts, on the last column only the lower one, and
    b[H-1, W-1] is never set. No padding: an all-foreground mask has no boundary.
    """
    right = np.zeros_like(mask)
    below = np.zeros_like(mask)
    below_right = np.zeros_like(mask)
    right[:, :-1] = mask[:, 1:]
    below[:-1, :] = mask[1:, :]
    below_right[:-1, :-1] = mask[1:, 1:]
    bmap = (mask ^ right) | (mask ^ below) | (mask ^ below_right)
    bmap[-1, :] = mask[-1, :] ^ right[-1, :]
    bmap[:, -1] = mask[:, -1] ^ below[:, -1]
    bmap[-1, -1] = False
    return bmap


@dataclass(frozen=True)
class Boundary:
    """The boundary of one mask, kept on bounding boxes of the frame.

    `pixels` is the boundary map on rows/cols starting at `origin` (y, x); `dilated` is its dilation
    by the matching disk, on the box starting at `dilated_origin`. `count` is the number of
    boundary pixels (0 for an empty mask, in which case both arrays are empty).
    """

    count: int
    origin: tuple[int, int] = (0, 0)
    pixels: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))
    dilated_origin: tuple[int, int] = (0, 0)
    dilated: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))


def _bounding_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1), inclusive, of the nonzero pixels of a 2-D mask; None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(axis=0))
    return rows[0], rows[-1], cols[0], cols[-1]


def _grow(box: tuple[int, int, int, int], before: int, after: int, shape: tuple[int, int]):
    """Slices of `box` grown by `before` pixels up/left and `after` down/right, clipped to
    `shape`."""
    y0, y1, x0, x1 = box
    return (slice(max(y0 - before, 0), min(y1 + after + 1, shape[0])),
            slice(max(x0 - before, 0), min(x1 + after + 1, shape[1])))


def mask_boundary(mask: np.ndarray, radius: int) -> Boundary:
    """Boundary map and its dilation by `disk(radius)` for one (H, W) bool mask."""
    box = _bounding_box(mask)
    if box is None:
        return Boundary(count=0)
    # Boundary pixels lie in the box grown by one pixel up/left; one more row/column down/right
    # gives the neighbours they are computed from (or is the image edge, with the same rule).
    rows, cols = _grow(box, 1, 1, mask.shape)
    pixels = boundary_map(mask[rows, cols])
    count = int(np.count_nonzero(pixels))
    if count == 0:  # a mask covering the whole frame
        return Boundary(count=0)
    # The dilation reaches `radius` pixels beyond the boundary; outside the frame it is cut off,
    # as OpenCV's dilate does with its default border.
    pixel_box = (rows.start, rows.stop - 1, cols.start, cols.stop - 1)
    dil_rows, dil_cols = _grow(pixel_box, radius, radius, mask.shape)
    padded = np.zeros((dil_rows.stop - dil_rows.start, dil_cols.stop - dil_cols.start), np.uint8)
    padded[rows.start - dil_rows.start:rows.stop - dil_rows.start,
           cols.start - dil_cols.start:cols.stop - dil_cols.start] = pixels
    dilated = cv2.dilate(padded, disk(radius)).view(bool)  # 0/1 bytes are valid bools
    return Boundary(count, (rows.start, cols.start), pixels,
                    (dil_rows.start, dil_cols.start), dilated)


def _matched(points: Boundary, region: Boundary) -> int:
    """Number of boundary pixels of `points` that lie in the dilated boundary of `region`."""
    (py, px), (ry, rx) = points.origin, region.dilated_origin
    y0, x0 = max(py, ry), max(px, rx)
    y1 = min(py + points.pixels.shape[0], ry + region.dilated.shape[0])
    x1 = min(px + points.pixels.shape[1], rx + region.dilated.shape[1])
    if y0 >= y1 or x0 >= x1:
        return 0
    return int(np.count_nonzero(points.pixels[y0 - py:y1 - py, x0 - px:x1 - px]
                                & region.dilated[y0 - ry:y1 - ry, x0 - rx:x1 - rx]))


def f_measure(gt: Boundary, pred: Boundary) -> float:
    """Boundary F-measure of a prediction against the ground truth.

    Precision = matched predicted boundary pixels / predicted boundary pixels, recall likewise for
    the ground truth; an empty boundary on one side gives (P, R) = (1, 0) or (0, 1), both empty give
    F = 1. The arithmetic follows the official code operation by operation, so the values are
    bit-identical.
    """
    if pred.count == 0 and gt.count > 0:
        precision, recall = 1, 0
    elif pred.count > 0 and gt.count == 0:
        precision, recall = 0, 1
    elif pred.count == 0 and gt.count == 0:
        precision, recall = 1, 1
    else:
        precision = _matched(pred, gt) / float(pred.count)
        recall = _matched(gt, pred) / float(gt.count)
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def boundary_f(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None) -> float:
    """F of one object in one frame; `gt`, `pred`, `void` are (H, W) bool masks.

    Void pixels (DAVIS 2017 unsupervised protocol only) are removed from both masks first.
    """
    if void is not None:
        gt, pred = gt & ~void, pred & ~void
    radius = boundary_radius(*gt.shape)
    return f_measure(mask_boundary(gt, radius), mask_boundary(pred, radius))
