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
