"""Optical flow as a colour image, for qualitative figures and W&B overlays."""

import numpy as np
import torch
from torchvision.utils import flow_to_image


def flow_to_colour(flow: np.ndarray) -> np.ndarray:
    """An (H, W, 2) flow in pixels (x, y) as an (H, W, 3) uint8 RGB image on the Middlebury
    colour wheel: hue gives the direction, saturation the magnitude relative to the largest
    magnitude of this image; zero motion is white. An all-zero flow is all white.
    """
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"expected a flow of shape (H, W, 2), got {flow.shape}")
    # One (2, H, W) flow: torchvision normalises by this image's largest magnitude (plus an
    # epsilon, so zero flow does not divide by zero).
    image = flow_to_image(torch.from_numpy(flow).permute(2, 0, 1))
    return image.permute(1, 2, 0).contiguous().numpy()


def colour_code(flow: torch.Tensor) -> torch.Tensor:
    """A batch of (N, 2, H, W) flows in pixels as (N, 3, H, W) float RGB images in [0, 1], on the
    flow's device: `flow_to_colour` of each flow, each normalised by its own largest magnitude
    (torchvision's `flow_to_image` normalises a batch by the largest of all)."""
    flow = flow.float()
    largest = flow.square().sum(1).sqrt().amax((1, 2)).view(-1, 1, 1, 1)
    unit = flow / (largest + torch.finfo(torch.float32).eps)  # each at most 1, so is the batch
    return flow_to_image(unit).float() / 255
