"""Backbones shared by the methods: timm ResNets as dilated feature extractors or as five stages
run one by one, DeepLab-v2's ResNet (AGNN's official variant), weights from a local file only,
ImageNet and Caffe (BGR mean) input normalisation, and DeepLabV3's ASPP head (AGNN's node
embedding).
"""

from collections.abc import Callable
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

from vosbench.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# the per-channel mean (B, G, R, in 0–255 levels) of the Caffe ImageNet models that DeepLab-v2
# starts from
CAFFE_BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB in [0, 1] → ImageNet-normalised float."""
    mean = images.new_tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(3, 1, 1)
    return (images - mean) / std


def subtract_bgr_mean(images: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB in [0, 1] → BGR in 0–255 minus CAFFE_BGR_MEAN, no division: the input of
    Caffe-trained networks such as DeepLab-v2. (v / 255 · 255 is v again in float32 for every
    8-bit v, so 8-bit frames arrive exactly as a Caffe loader gives them.)"""
    mean = images.new_tensor(CAFFE_BGR_MEAN).view(3, 1, 1)
    return images.flip(-3) * 255 - mean


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
        stem_activation: makes the stem's activation from the stem's channels, in place of the
            ResNet's ReLU (AMC-Net's official variant: a PReLU); None keeps the ReLU.
    """

    def __init__(self, name: str = "resnet101", weights: str | None = None,
                 stem_activation: Callable[[int], nn.Module] | None = None):
        super().__init__()
        model = timm.create_model(name, pretrained=False, num_classes=0)
        if weights is not None:
            load_weights(model, weights, f"timm {name}")
        activation = model.act1 if stem_activation is None else \
            stem_activation(model.bn1.num_features)
        self.stages = nn.ModuleList([
            nn.Sequential(model.conv1, model.bn1, activation),
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


# blocks per stage of the bottleneck ResNets, by timm's names
RESNET_DEPTHS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3), "resnet152": (3, 8, 36, 3)}


class DeepLabV2Bottleneck(nn.Module):
    """A ResNet bottleneck as DeepLab-v2 builds it: 1×1 (carrying the stride), 3×3 (dilated, padding
    = dilation), 1×1 to 4 × width, each with BatchNorm, ReLU after the first two and after the
    residual sum. timm's and torchvision's bottleneck strides the 3×3 instead: the parameters have
    the same names and shapes, the outputs differ.
    (B, in_channels, H, W) → (B, 4 · width, ⌊(H − 1) / stride⌋ + 1, same for W).

    Args:
        in_channels: channels of the input.
        width: channels of the 1×1 and 3×3 convolutions.
        stride: of the first 1×1 convolution and of the shortcut.
        dilation: of the 3×3 convolution.
        downsample: a 1×1 convolution (with the stride) and BatchNorm on the shortcut; without it
            the shortcut is the identity, which needs in_channels = 4 · width and stride 1.
    """

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1, dilation: int = 1,
                 downsample: bool = False):
        super().__init__()
        out_channels = width * self.expansion
        if not downsample and (stride != 1 or in_channels != out_channels):
            raise ValueError(f"DeepLabV2Bottleneck: an identity shortcut needs stride 1 and "
                             f"in_channels = 4 · width, got stride {stride}, {in_channels} → "
                             f"{out_channels} channels")
        self.conv1 = nn.Conv2d(in_channels, width, 1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)
        self.downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels)) if downsample else None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        shortcut = features if self.downsample is None else self.downsample(features)
        out = self.act(self.bn1(self.conv1(features)))
        out = self.act(self.bn2(self.conv2(out)))
        return self.act(self.bn3(self.conv3(out)) + shortcut)


class DeepLabV2ResNet(nn.Module):
    """The ResNet trunk of DeepLab-v2 (Chen et al., TPAMI 2017), as the AGNN authors' code builds
    it (deeplab/siamese_model_conf_gnn.py, `ResNet`, lines 58–96 and 173–212): a 7×7 stride-2
    stem with BatchNorm and ReLU, 3×3 stride-2 max pooling with `ceil_mode=True` (an even-sized
    stem output of 2m gives m + 1 rows, timm's m), then four stages of `DeepLabV2Bottleneck`s
    whose first block strides its first 1×1 convolution. Once the output stride is reached, a
    stage keeps the resolution and dilates every block's 3×3, the first included (timm dilates
    from the second block on): at output stride 8, layer3 by 2 and layer4 by 4. The first block
    of every stage has a downsampling shortcut. Parameter names and shapes equal timm's ResNet's
    (`conv1`, `bn1`, `layer1.0.conv1`, …, `layer4.2.downsample.1`), without the classifier.
    (Their training freezes the shortcuts' BatchNorm parameters, line 204; here they train.)
    (B, 3, H, W) → (B, 4 · widths[-1], h, w): at stride 8, 473 → 237 → 119 → 60 and
    97 → 49 → 25 → 13 (stem, pooling, layer2).

    Args:
        depths: blocks per stage ((3, 4, 23, 3): ResNet-101).
        widths: bottleneck widths per stage; a stage outputs 4× its width.
        stem_channels: output channels of the stem.
        output_stride: 8, 16 or 32.
        weights: a local state_dict file, or None for random initialisation.
    """

    def __init__(self, depths: tuple[int, ...] = RESNET_DEPTHS["resnet101"],
                 widths: tuple[int, ...] = (64, 128, 256, 512), stem_channels: int = 64,
                 output_stride: int = 8, weights: str | None = None):
        super().__init__()
        if len(depths) != 4 or len(widths) != 4 or min(depths) < 1:
            raise ValueError(f"DeepLabV2ResNet: four stages of at least one block each, got "
                             f"depths {tuple(depths)} and widths {tuple(widths)}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"DeepLabV2ResNet: output_stride must be 8, 16 or 32, got "
                             f"{output_stride}")
        self.conv1 = nn.Conv2d(3, stem_channels, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        in_channels, reached, dilation = stem_channels, 4, 1
        for index, (depth, width) in enumerate(zip(depths, widths)):
            stride = 1 if index == 0 else 2
            if reached * stride > output_stride:  # keep the resolution, widen the 3×3s instead
                stride, dilation = 1, dilation * stride
            reached *= stride
            blocks = [DeepLabV2Bottleneck(in_channels, width, stride, dilation, downsample=True)]
            blocks += [DeepLabV2Bottleneck(width * DeepLabV2Bottleneck.expansion, width,
                                           dilation=dilation) for _ in range(depth - 1)]
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
            in_channels = width * DeepLabV2Bottleneck.expansion
        self.channels = in_channels
        if weights is not None:
            load_weights(self, weights, "the DeepLab-v2 ResNet")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised images → (B, channels, h, w) layer4 features."""
        features = self.maxpool(self.act1(self.bn1(self.conv1(images))))
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            features = layer(features)
        return features


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabV3): a 1×1 branch, 3×3 branches at `rates`, and image
    pooling, concatenated and fused to `channels`. The defaults are DeepLabV3's layout: no biases
    before the BatchNorms, and no normalisation after the pooling branch, which would fail on a
    batch of one image in training. The other arguments reach the AGNN authors' layout
    (`AUTHORS_AGNN_ASPP` in methods/agnn.py).

    Args:
        in_channels: channels of the features.
        channels: channels of the output.
        rates: dilation rates of the 3×3 branches.
        branch_channels: channels of each branch (the pooling one included); default `channels`.
        bias: biases on the branch and fusion convolutions (the pooling one always has one).
        pooling_norm: BatchNorm after the pooling branch's convolution.
        pooling_first: the pooling branch first in the concatenation, not last.
        fuse_kernel_size: kernel of the fusion convolution (odd; same-size padding).
        fuse_activation: after the fusion's BatchNorm, "relu" or "prelu" (one learnt slope).
    """

    def __init__(self, in_channels: int, channels: int = 256,
                 rates: tuple[int, ...] = (6, 12, 18), branch_channels: int | None = None,
                 bias: bool = False, pooling_norm: bool = False, pooling_first: bool = False,
                 fuse_kernel_size: int = 1, fuse_activation: str = "relu"):
        super().__init__()
        if fuse_activation not in ("relu", "prelu"):
            raise ValueError(f"ASPP: unknown fuse_activation {fuse_activation!r}; known: relu, "
                             f"prelu")
        width = channels if branch_channels is None else branch_channels

        def branch(kernel: int, rate: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(in_channels, width, kernel, padding=rate if kernel > 1 else 0,
                          dilation=rate, bias=bias),
                nn.BatchNorm2d(width), nn.ReLU(inplace=True))

        self.pooling_first = pooling_first
        self.branches = nn.ModuleList([branch(1, 1), *(branch(3, rate) for rate in rates)])
        self.pooling = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, width, 1),
            *([nn.BatchNorm2d(width)] if pooling_norm else []), nn.ReLU(inplace=True))
        self.fuse = nn.Sequential(
            nn.Conv2d(width * (len(rates) + 2), channels, fuse_kernel_size,
                      padding=fuse_kernel_size // 2, bias=bias),
            nn.BatchNorm2d(channels),
            nn.PReLU() if fuse_activation == "prelu" else nn.ReLU(inplace=True))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C_in, h, w) → (B, channels, h, w)."""
        # bilinear upsampling of a 1×1 map (the authors' F.upsample) is this constant
        pooled = self.pooling(features).expand(-1, -1, *features.shape[2:])
        branches = [branch(features) for branch in self.branches]
        return self.fuse(torch.cat([pooled, *branches] if self.pooling_first
                                   else [*branches, pooled], 1))


TRUNKS = ("timm", "deeplabv2")


class DeepLabV3(nn.Module):
    """ResNet encoder + ASPP: per-frame embeddings (B, channels, H/s, W/s).

    Args:
        backbone: the ResNet's timm name ("resnet101").
        output_stride: 8, 16 or 32.
        channels: of the embeddings.
        weights: a local state_dict file of the trunk.
        trunk: "timm" (timm's ResNet, `ResNetEncoder`) or "deeplabv2" (`DeepLabV2ResNet`, for
            the bottleneck ResNets of RESNET_DEPTHS).
        aspp: further arguments of the ASPP (its layout).
    """

    def __init__(self, backbone: str = "resnet101", output_stride: int = 8,
                 channels: int = 256, weights: str | None = None, trunk: str = "timm",
                 aspp: dict | None = None):
        super().__init__()
        if trunk not in TRUNKS:
            raise ValueError(f"unknown trunk {trunk!r}; known: {', '.join(TRUNKS)}")
        if trunk == "timm":
            self.encoder = ResNetEncoder(backbone, output_stride, weights)
        elif backbone in RESNET_DEPTHS:
            self.encoder = DeepLabV2ResNet(RESNET_DEPTHS[backbone], output_stride=output_stride,
                                           weights=weights)
        else:
            raise ValueError(f"the deeplabv2 trunk is a bottleneck ResNet: backbone "
                             f"{', '.join(RESNET_DEPTHS)}; got {backbone!r}")
        self.aspp = ASPP(self.encoder.channels, channels, **(aspp or {}))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.aspp(self.encoder(images))


def resize(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (B, C, H, W) floats to `size` (align_corners=False, as everywhere)."""
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)
