"""Warping with optical flow, shared by the methods that propagate masks along motion."""

import torch
import torch.nn.functional as F


def warp_backward(values: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Bring values of frame t−1 to frame t with the backward flow t→t−1.

    values: (N, C, H, W) at frame t−1. flow: (N, 2, H, W) in pixels (x, y), the displacement from
    each pixel of frame t to its position in frame t−1. Returns (N, C, H, W): each pixel of frame t
    takes the bilinear sample of `values` where its flow points; outside the frame, zero.
    """
    height, width = values.shape[-2:]
    rows, cols = torch.meshgrid(torch.arange(height, device=flow.device, dtype=flow.dtype),
                                torch.arange(width, device=flow.device, dtype=flow.dtype),
                                indexing="ij")
    x = cols + flow[:, 0]
    y = rows + flow[:, 1]
    # grid_sample wants coordinates in [-1, 1], pixel centres at the ends (align_corners=True)
    grid = torch.stack([2 * x / max(width - 1, 1) - 1, 2 * y / max(height - 1, 1) - 1], dim=-1)
    return F.grid_sample(values, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, 2, H, W) flow in pixels (x, y) → (N, 2, h, w) at `size` = (h, w): the field resized
    bilinearly (align_corners=False) and each displacement scaled to the new pixels (x by w / W,
    y by h / H), as `ClipTransform` does to training clips."""
    height, width = flow.shape[-2:]
    scale = flow.new_tensor([size[1] / width, size[0] / height]).view(1, 2, 1, 1)
    return F.interpolate(flow, size=size, mode="bilinear", align_corners=False) * scale
