"""Qualitative overlays: a frame beside its ground truth and its prediction, in DAVIS colours."""

import numpy as np
import torch

from vosbench.io import davis_palette

OPACITY = 0.5  # weight of the label colour over the frame


def colour_labels(frame: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 frame with the (H, W) labels painted over it in the DAVIS palette
    (background left as is; void 255 in the palette's void colour)."""
    palette = np.asarray(davis_palette(), np.float32).reshape(-1, 3)
    painted = frame.astype(np.float32)
    mask = labels != 0
    painted[mask] = (1 - OPACITY) * painted[mask] + OPACITY * palette[labels[mask]]
    return painted.round().astype(np.uint8)


def overlay_row(frame: torch.Tensor, truth: torch.Tensor, prediction: np.ndarray) -> np.ndarray:
    """(H, 3W, 3) uint8 image: frame | ground truth | prediction. frame: (3, H, W) uint8;
    truth: (H, W) uint8 labels; prediction: (H, W) uint8 labels."""
    image = frame.permute(1, 2, 0).cpu().numpy()
    return np.concatenate([image, colour_labels(image, truth.cpu().numpy()),
                           colour_labels(image, prediction)], axis=1)
