"""Boxes of masks, in one convention: (x_min, y_min, x_max, y_max) in pixels, continuous, so that a
mask's box covers its pixels whole (a one-pixel mask at (x, y) has the box (x, y, x + 1, y + 1) and
area 1, the areas torchvision's `box_iou` computes)."""

import torch


def mask_boxes(masks: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """(N, H, W) masks → (N, 4) float boxes of their pixels above `threshold`, (x_min, y_min,
    x_max + 1, y_max + 1); (0, 0, 0, 0) for a mask with no such pixel."""
    inside = masks > threshold
    columns, rows = inside.any(1).int(), inside.any(2).int()  # (N, W), (N, H) 0/1
    # argmax gives the first maximum: the first column or row with a pixel, from either end
    boxes = torch.stack([columns.argmax(1), rows.argmax(1),
                         columns.shape[1] - columns.flip(1).argmax(1),
                         rows.shape[1] - rows.flip(1).argmax(1)], 1).float()
    return boxes * columns.amax(1, keepdim=True)
