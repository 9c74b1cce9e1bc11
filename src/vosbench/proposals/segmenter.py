"""STG-Net's proposal masks (paper, "Proposal Generation" and "Implementation Details"): per
proposal box, a segmentation network run on a crop of the frame with a fourth channel, Q, the
object's mask of the previous frame warped to this one by optical flow; its output pasted back
into the frame.

The crop region is the box enlarged by `margin` (the paper's 0.15) times its width on the left
and on the right and times its height on top and at the bottom, cut to the frame; it is resized
to `crop_size` × `crop_size` (the paper's 512, the aspect ratio not kept).

Choices the paper leaves open:
- the network: torchvision's DeepLabV3 (the paper's is DeepLabv3+ on a ResNet-101, whose decoder
  torchvision does not have) with one output channel, the object's logit, and no auxiliary head;
- how Q enters: as a fourth input channel in [0, 1] beside the ImageNet-normalised RGB, taken by
  the first convolution, widened to 4 input channels (MaskTrack's way, Khoreva et al. 2017);
- the fourth channel's initial weights are zero, so that a network whose RGB weights are
  pretrained computes what it did before, Q ignored until training moves them (their gradient,
  Q times the backpropagated error, is not zero); the other weights are random;
- the crop: torchvision's roi_align with aligned=True (the regions continuous pixel boxes, as in
  `vosbench.proposals.boxes`) and its adaptive sampling (a bin averages ⌈region / crop⌉² bilinear
  samples when the region is larger than the crop);
- the paste: each frame pixel whose centre lies in the region takes the probability map's
  bilinear value at the matching crop position (the crop's geometry inverted; the map's edge
  values extended over the half crop pixel at its border), every other pixel 0; probabilities
  are resized, after the sigmoid.
"""

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation import (
    deeplabv3_mobilenet_v3_large,
    deeplabv3_resnet50,
    deeplabv3_resnet101,
)
from torchvision.ops import roi_align

from vosbench.errors import InputError
from vosbench.methods.backbones import load_weights, normalize_images

ARCHITECTURES = {"deeplabv3_resnet101": deeplabv3_resnet101,
                 "deeplabv3_resnet50": deeplabv3_resnet50,
                 "deeplabv3_mobilenet_v3_large": deeplabv3_mobilenet_v3_large}


def crop_regions(boxes: torch.Tensor, height: int, width: int, margin: float) -> torch.Tensor:
    """(P, 4) float boxes (x_min, y_min, x_max, y_max) in pixels → (P, 4) their crop regions:
    each box enlarged by margin × its width on the left and on the right, margin × its height on
    top and at the bottom, cut to the (height, width) frame."""
    sizes = boxes[:, 2:] - boxes[:, :2]
    grown = torch.cat([boxes[:, :2] - margin * sizes, boxes[:, 2:] + margin * sizes], 1)
    return grown.clamp(min=0).minimum(grown.new_tensor([width, height, width, height]))


def crop_inputs(frame: torch.Tensor, previous: torch.Tensor, regions: torch.Tensor,
                size: int) -> torch.Tensor:
    """The network's inputs: (3, H, W) RGB frame in [0, 1], (P, H, W) Q per region in [0, 1],
    (P, 4) float regions in pixels → (P, 4, size, size) float, the ImageNet-normalised RGB and
    each region's Q cropped to the region (bilinear, roi_align with aligned=True)."""
    regions = regions.to(frame.dtype)
    rgb = roi_align(normalize_images(frame)[None], [regions], size, aligned=True)
    indices = torch.arange(len(regions), dtype=frame.dtype, device=frame.device)[:, None]
    masks = roi_align(previous[:, None].to(frame.dtype), torch.cat([indices, regions], 1), size,
                      aligned=True)
    return torch.cat([rgb, masks], 1)


def pixels_within(start: float, end: float) -> slice:
    """The pixels i of a frame axis whose centres i + 0.5 lie in [start, end)."""
    return slice(math.ceil(start - 0.5), math.ceil(end - 0.5))


def paste(maps: torch.Tensor, regions: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(P, s, s) maps, each of a (P, 4) float region (x_min, y_min, x_max, y_max) in pixels →
    (P, height, width): each pixel whose centre lies in the map's region takes the map's bilinear
    value at the matching position (the map spans the region), every other pixel 0."""
    pasted = maps.new_zeros(len(maps), height, width)
    for index, (x0, y0, x1, y1) in enumerate(regions.tolist()):
        rows, columns = pixels_within(y0, y1), pixels_within(x0, x1)
        if rows.start >= rows.stop or columns.start >= columns.stop:
            continue  # no pixel centre in the region
        ys = torch.arange(rows.start, rows.stop, dtype=maps.dtype, device=maps.device) + 0.5
        xs = torch.arange(columns.start, columns.stop, dtype=maps.dtype, device=maps.device) + 0.5
        # grid_sample's units: −1 and 1 are the map's outer edges (align_corners=False)
        grid = torch.stack(torch.meshgrid(2 * (xs - x0) / (x1 - x0) - 1,
                                          2 * (ys - y0) / (y1 - y0) - 1, indexing="xy"), -1)
        pasted[index, rows, columns] = F.grid_sample(
            maps[index][None, None], grid[None], mode="bilinear", padding_mode="border",
            align_corners=False)[0, 0]
    return pasted


def widen_first_convolution(network: nn.Module) -> None:
    """Give the first convolution of `network` (in module order) a fourth input channel whose
    weights are zero, keeping the weights of the first three."""
    name, convolution = next((name, module) for name, module in network.named_modules()
                             if isinstance(module, nn.Conv2d))
    widened = nn.Conv2d(4, convolution.out_channels, convolution.kernel_size,
                        convolution.stride, convolution.padding, convolution.dilation,
                        convolution.groups, convolution.bias is not None)
    with torch.no_grad():
        widened.weight.zero_()
        widened.weight[:, :3] = convolution.weight
        if convolution.bias is not None:
            widened.bias.copy_(convolution.bias)
    parent, _, attribute = name.rpartition(".")
    setattr(network.get_submodule(parent), attribute, widened)


class CropSegmenter(nn.Module):
    """The mask of each proposal box from a crop of the frame and the object's warped previous
    mask Q (see the module docstring).

    Args:
        arch: "deeplabv3_resnet101" (paper's depth), "deeplabv3_resnet50" or
            "deeplabv3_mobilenet_v3_large".
        weights: a local state_dict file of this module (4 input channels, as saved from
            `CropSegmenter.state_dict()`), or None for random initialisation (the fourth input
            channel's weights zero).
        crop_size: the side of the square crops, pixels (paper: 512).
        margin: the crop region's margin, a fraction of the box's width and height on each side
            (paper: 0.15).
    """

    def __init__(self, arch: str = "deeplabv3_resnet101", weights: str | None = None,
                 crop_size: int = 512, margin: float = 0.15):
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown segmentation architecture {arch!r}; known: "
                             f"{', '.join(ARCHITECTURES)}")
        self.crop_size = crop_size
        self.margin = margin
        self.network = ARCHITECTURES[arch](weights=None, weights_backbone=None, num_classes=1,
                                           aux_loss=False)
        widen_first_convolution(self.network.backbone)
        if weights is not None:
            if not Path(weights).is_file():
                raise InputError(f"{weights}: weights file of the crop segmenter not found (a "
                                 f"CropSegmenter state_dict saved with torch.save)")
            load_weights(self, weights, f"CropSegmenter {arch} (4 input channels)")

    def forward(self, frame: torch.Tensor, boxes: torch.Tensor,
                previous: torch.Tensor) -> torch.Tensor:
        """(3, H, W) RGB frame in [0, 1], (P, 4) float boxes (x_min, y_min, x_max, y_max) in
        pixels, (P, H, W) float Q of each box's object in [0, 1] → (P, H, W) float probabilities
        in [0, 1] that each pixel is the box's object, 0 outside the box's crop region."""
        height, width = frame.shape[1:]
        if previous.shape != (len(boxes), height, width):
            raise ValueError(f"previous masks {tuple(previous.shape)} do not match "
                             f"{len(boxes)} boxes on a {height}×{width} frame")
        if len(boxes) == 0:
            return frame.new_zeros(0, height, width)
        regions = crop_regions(boxes.to(frame.dtype), height, width, self.margin)
        inputs = crop_inputs(frame, previous, regions, self.crop_size)
        probabilities = self.network(inputs)["out"][:, 0].sigmoid()
        return paste(probabilities, regions, height, width)
