"""Backbones shared by the methods: timm ResNets as dilated feature extractors or as five stages
run one by one, weights from a local file only, ImageNet input normalisation, and DeepLabV3's ASPP
head (AGNN's node embedding).
"""

from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

from vosbench.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB in [0, 1] → ImageNet-normalised float."""
    mean = images.new_tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(3, 1, 1)
    return (images - mean) / std


def load_weights(model: nn.Module, path: str | Path, what: str) -> None:
    """Load a state dict saved with torch.save from a local file into `model`; keys the model does
    not have (a classifier head) are ignored, keys it lacks are an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: weights file for {what} not found (vosbench never downloads "
                         f"weights: save the state_dict of timm.create_model(..., "
                         f"pretrained=True) with torch.save on a machine with internet and "
                         f"copy it here)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for foreign files
        raise InputError(f"{path}: not a torch state_dict ({error})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    try:
        missing = model.load_state_dict(state, strict=False).missing_keys
    except RuntimeError as error:  # shape mismatches
        raise InputError(f"{path}: does not fit {what}: {str(error)[:300]}") from None
    if missing:
        raise InputError(f"{path}: does not fit {what}: {len(missing)} parameters missing, e.g. "
                         f"{missing[0]}")


class ResNetEncoder(nn.Module):
    """A timm ResNet returning its last stage (stride `output_stride` by dilation).

    Args:
        name: timm model name, e.g. "resnet101" (paper) or "resnet18" (tiny).
        output_stride: 8, 16 or 32.
        weights: a local state_dict file (ImageNet weights), or None for random initialisation.
    """

    def __init__(self, name: str = "resnet101", output_stride: int = 8,
                 weights: str | None = None):
        super().__init__()
        self.body = timm.create_model(name, features_only=True, out_indices=(4,),
                                      output_stride=output_stride, pretrained=False)
        if weights is not None:
            load_weights(self.body, weights, f"timm {name}")
        self.channels = self.body.feature_info.channels()[-1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised images → (B, C, H/s, W/s) features."""
        return self.body(images)[-1]


class StagedResNet(nn.Module):
    """A timm ResNet as five stages run one by one, for encoders that change a stage's output
    before the next stage takes it (AMC-Net's appearance branch): stage 0 the stem (convolution,
    BatchNorm, ReLU; stride 2), stage 1 max pooling and layer1 (stride 4), stages 2–4 layer2–4
    (strides 8, 16, 32). ResNet-101: 64/256/512/1024/2048 channels; ResNet-18: 64/64/128/256/512.

    Args:
        name: timm model name.
        weights: a local state_dict file (ImageNet weights), or None for random initialisation.
    """

    def __init__(self, name: str = "resnet101", weights: str | None = None):
        super().__init__()
        model = timm.create_model(name, pretrained=False, num_classes=0)
        if weights is not None:
            load_weights(model, weights, f"timm {name}")
        self.stages = nn.ModuleList([
            nn.Sequential(model.conv1, model.bn1, model.act1),
            nn.Sequential(model.maxpool, model.layer1),
            model.layer2, model.layer3, model.layer4])
        self.channels = [info["num_chs"] for info in model.feature_info]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) normalised images → the five stages' features, (B, C_i, H/2^(i+1),
        W/2^(i+1)) for i = 0 … 4."""
        features = []
        for stage in self.stages:
            images = stage(images)
            features.append(images)
        return features


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabV3): a 1×1 branch, 3×3 branches at `rates`, and image
    pooling, concatenated and fused to `channels`. The pooling branch has no normalisation, which
    would fail on a batch of one image."""

    def __init__(self, in_channels: int, channels: int = 256,
                 rates: tuple[int, ...] = (6, 12, 18)):
        super().__init__()

        def branch(kernel: int, rate: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(in_channels, channels, kernel, padding=rate if kernel > 1 else 0,
                          dilation=rate, bias=False),
                nn.BatchNorm2d(channels), nn.ReLU(inplace=True))

        self.branches = nn.ModuleList([branch(1, 1), *(branch(3, rate) for rate in rates)])
        self.pooling = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, channels, 1),
                                     nn.ReLU(inplace=True))
        self.fuse = nn.Sequential(
            nn.Conv2d(channels * (len(rates) + 2), channels, 1, bias=False),
            nn.BatchNorm2d(channels), nn.ReLU(inplace=True))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C_in, h, w) → (B, channels, h, w)."""
        pooled = self.pooling(features).expand(-1, -1, *features.shape[2:])
        return self.fuse(torch.cat([branch(features) for branch in self.branches] + [pooled], 1))


class DeepLabV3(nn.Module):
    """ResNet encoder + ASPP: per-frame embeddings (B, channels, H/s, W/s)."""

    def __init__(self, backbone: str = "resnet101", output_stride: int = 8,
                 channels: int = 256, weights: str | None = None):
        super().__init__()
        self.encoder = ResNetEncoder(backbone, output_stride, weights)
        self.aspp = ASPP(self.encoder.channels, channels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.aspp(self.encoder(images))


def resize(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (B, C, H, W) floats to `size` (align_corners=False, as everywhere)."""
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)
