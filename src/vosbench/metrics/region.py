"""J, the region similarity (Jaccard index), as the official DAVIS toolkits compute it.

J = |gt ∧ pr ∧ ¬void| / |(gt ∨ pr) ∧ ¬void|, and J = 1 when the union is empty.
One label-pair histogram per frame gives the intersection and union of every object pair at once.
"""

import cv2
import numpy as np


def label_overlap(gt: np.ndarray, pred: np.ndarray, num_gt: int, num_pred: int,
                  void: np.ndarray | None = None) -> np.ndarray:
    """Pixel counts of every (gt label, predicted label) pair of one frame.

    Args:
        gt: (H, W) uint8 labels; values outside 1..num_gt count as background.
        pred: (H, W) uint8 labels in 0..num_pred.
        num_gt, num_pred: the largest object id of each side.
        void: optional (H, W) bool; these pixels are left out of every count.

    Returns:
        (num_gt + 1, num_pred + 1) int64 matrix, row = gt label, column = predicted label.
    """
    num_pairs = (num_gt + 1) * (num_pred + 1)
    # one code per pixel, gt * (num_pred + 1) + pred, through a lookup table on the gt labels;
    # OpenCV's table lookup and histogram are far faster than NumPy's fancy indexing and bincount
    code_type = np.uint8 if num_pairs <= 256 else np.uint16
    row_code = np.arange(256, dtype=np.int64) * (num_pred + 1)
    row_code[num_gt + 1:] = 0
    codes = cv2.add(cv2.LUT(gt, row_code.astype(code_type)), pred.astype(code_type),
                    dtype=cv2.CV_8U if code_type is np.uint8 else cv2.CV_16U)
    if codes.size < 2**24:  # OpenCV's float32 histogram counts exactly up to 2**24 pixels
        keep = None if void is None else (~void).view(np.uint8)
        counts = cv2.calcHist([codes], [0], keep, [num_pairs], [0, num_pairs]).ravel()
    else:
        counts = np.bincount((codes if void is None else codes[~void]).ravel(), minlength=num_pairs)
    return counts.astype(np.int64).reshape(num_gt + 1, num_pred + 1)


def jaccard_from_overlap(overlap: np.ndarray) -> np.ndarray:
    """J of every (gt object, predicted object) pair from a `label_overlap` matrix.

    Returns:
        (num_gt, num_pred) float64 J values (background row and column dropped); 1 where both
        masks are empty.
    """
    intersection = overlap[1:, 1:]
    gt_area = overlap[1:, :].sum(axis=1, keepdims=True)
    pred_area = overlap[:, 1:].sum(axis=0, keepdims=True)
    union = gt_area + pred_area - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        jaccard = intersection / union
    jaccard[union == 0] = 1.0
    return jaccard


def jaccard(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None) -> float:
    """J of one object in one frame: `gt`, `pred` and optional `void` are (H, W) bool masks."""
    keep = np.ones(gt.shape, bool) if void is None else ~void
    union = np.count_nonzero((gt | pred) & keep)
    if union == 0:
        return 1.0
    return np.count_nonzero(gt & pred & keep) / union
