"""`amcnet`: motion-appearance co-attention for zero-shot VOS (Yang et al., ICCV 2021; paper §3).

Two ResNet encoders read the frame and its optical flow, colour coded (Middlebury wheel, each
flow normalised by its own largest magnitude). At every stage i = 0 … 4 a Multi-Modality
Co-Attention Gate (MCG, Eqs. 1–5) weighs the appearance features F^a_i and the motion features
F^m_i by a pair of scores, emphasises the gated motion by channel then spatial attention and adds
the two: E_i feeds the appearance encoder's next stage and the decoder, the gated motion G^m_i
the decoder's motion path (the motion encoder runs on its own features). After a channel
reduction, the global co-attention of Eq. 6 relates the top stage's motion and appearance, and
five Motion Correction Modules (MCM, Eqs. 7–10) decode coarse to fine, each with a visual-motion
attention map that is supervised like the output (logits at stride 2, upsampled to the input).

The paper's flow comes from the datamodule's `FlowProvider` (`data.init_args.flow`): every frame
has one, the last frame the negated backward flow, and its time counts as the flow's, not the
model's.

Choices the paper leaves open, taken from the authors' public code unless said otherwise:
- the gate's convolution stack (Eq. 1): 3×3 convolutions, BatchNorm and PReLU from 2C to the
  stage's reduced width r_i (and on to r_i / 4 at stages 3 and 4), then a 3×3 convolution to 2;
- channel and spatial attention (Eqs. 3–4, 8–9) are CBAM's: the channel weights σ(MLP(avg) +
  MLP(max)) with a shared 1×1-convolution MLP reducing 16×, the spatial map σ(conv7×7([mean;
  max] over channels));
- channel reduction (3×3 convolution, BatchNorm, PReLU) to r_i = 32/64/128/256/512;
- the "Conv" of Eq. 10 is two such layers; after each MCM a projection layer of the same kind
  takes D_i to the next stage's width, and the head is one such layer and a 3×3 convolution to
  one logit map at stride 2;
- without MCG at a stage (Table 2) the features are added (E_i = F^a_i + F^m_i, G^m_i = F^m_i);
  without the gate (Table 1, "w/o gate") g^a = g^m = 1; a decoder block without MCM (Table 1,
  fewer MCMs, which sit at the finest blocks) is D_i = Conv(Cat(Up(D_{i−1}), E_i)) + Up(D_{i−1});
- the encoders keep the ResNet's ReLU in the stem, and every upsampling is bilinear with
  align_corners=False, as everywhere in vosbench (the authors' code: see below).

Inference, checked against the authors' test.py: the paper says only that the dense CRF gives
"the final binary segmentation results" (§3.4), not where the 384×384 map is binarised. The paper
variant resizes the probability map back to the frame's size and leaves the threshold (and the
CRF, which then reads soft evidence at full resolution, as for every method of vosbench) to the
harness; the authors' test.py binarises at 384×384 and resizes the 0/255 mask (lines 68–72, 82),
which the official recipe reproduces (`threshold_before_resize`).

The official variant (configs/methods/amcnet/official.yaml) is the authors' released network,
isyangshu/AMC-Net `model/AMCNet.py` (commit 6349bc4): their state dict, the bare dict their
test.py loads (line 26), maps onto it by `OFFICIAL_KEY_TABLE` (`vosbench weights import amcnet`),
and `AMCNet.official_forward` computes what their `forward` returns. Their layers are vosbench's
(torchvision's ResNet-101 has timm's layout, names and outputs; their `attention_feature{i}` are
the gates' convolutions, `atten_flow_channel_{i}` / `atten_flow_spatial_{i}` the MCGs' CBAM,
`gate_RGB{i}` / `gate_Flow{i}` the channel reduction, `p_4` Eq. 6, `fuse{i}_RGB` the Conv of
Eq. 10, `channel{i}` / `spatial{i}` Eqs. 8–9, `output1` … `output4` the projections, `output5`
the head); the network departs from the paper variant in six independent switches (paper value
→ theirs), which a sweep on the official preset can turn back one by one:
- `conv_bias` False → True: every 3×3 convolution outside the encoders has a bias (nn.Conv2d's
  default), although a BatchNorm follows it (the gates' and the head's last ones have one in both);
- `prelu_per_channel` True → False: each PReLU has one slope (nn.PReLU()), not one per channel;
- `stem_activation` "relu" → "prelu": both encoders' stems end in a PReLU (conv0_* = conv1, bn1,
  nn.PReLU()) instead of the ResNet's ReLU;
- `motion_fusion` "concat" → "conv": the MCM's attention reads two conv-BN-PReLU layers from 2r
  to r over the concatenation (fuse{i}_Flow) instead of Eq. 7's F itself, so Eq. 8's channel
  attention has r channels, not 2r;
- `concat_order` "decoder-first" → "encoder-first": the decoder concatenates Cat(E_i, U) and
  Cat(G^m_i, U), not Eqs. 7 and 10's Cat(Up(D_{i−1}), ·) — the same functions, but the order
  fixes which input channels each of their convolution weights reads;
- `align_corners` False → True: the upsampling between decoder stages and of the logits to the
  input.
Their model returns σ of the output and of the five attention maps (coarse first), as
`official_forward` does; vosbench's `forward` keeps logits for the loss. Their test-time recipe
(test.py) is three inference-only switches of the official preset:
- `pil_filter` None → "bicubic": frames, flow images and masks are resized by PIL's
  `Image.resize` without a filter (lines 56–57, 82), BICUBIC since Pillow 7 (NEAREST before;
  their Pillow is not stated), on 8-bit images, not bilinearly on float tensors;
- `flow_colour_size` "input" → "original": the flow is colour coded at the frame's size and the
  image resized (their PWC-Net PNGs, lines 53, 57), not resized as a field and coded at 384×384;
- `threshold_before_resize` None → 0.5: the map is binarised (p ≥ 0.5) at the input size and the
  0/255 mask resized back (lines 68–72, 82): its values / 255 are the probabilities the harness
  gets, as their CRF reads that PNG (utils/apply_densecrf_davis.py, line 46).
Their test.py never predicts a video's last frame (it zips the frames with the N − 1 flow files,
line 51); vosbench predicts it, with the negated backward flow.
"""

import math
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from vosbench.datamodules.clips import Clip, LoadedVideo
from vosbench.errors import InputError
from vosbench.flow.colour import colour_code, flow_to_colour
from vosbench.methods.backbones import StagedResNet, normalize_images, resize
from vosbench.methods.base import VOSMethod
from vosbench.methods.losses import masked_bce
from vosbench.methods.official import CheckpointEntry, CheckpointFormat
from vosbench.methods.optimizers import check_optimizer, make_optimizer, weights_and_biases
from vosbench.methods.warping import resize_flow

NUM_STAGES = 5
FLOW_MISSING = ("amcnet needs optical flow: give the datamodule a flow provider "
                "(data.init_args.flow: class_path vosbench.flow.FlowProvider; the amcnet presets "
                "do)")
STEM_ACTIVATIONS = ("relu", "prelu")
MOTION_FUSIONS = ("concat", "conv")
CONCAT_ORDERS = ("decoder-first", "encoder-first")
FLOW_COLOUR_SIZES = ("input", "original")
PIL_FILTERS = {"bicubic": Image.Resampling.BICUBIC, "nearest": Image.Resampling.NEAREST}


def prelu(channels: int, per_channel: bool = True) -> nn.PReLU:
    """A PReLU with a slope per channel, or one for all (`per_channel` False)."""
    return nn.PReLU(channels if per_channel else 1)


def conv_bn_prelu(in_channels: int, out_channels: int, bias: bool = False,
                  per_channel_prelu: bool = True) -> nn.Sequential:
    """3×3 convolution (with a bias if `bias`), BatchNorm, PReLU (`prelu`):
    (B, in, h, w) → (B, out, h, w)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
                         nn.BatchNorm2d(out_channels), prelu(out_channels, per_channel_prelu))


class ChannelAttention(nn.Module):
    """CBAM channel attention, the σ(MLP(pool(X))) of Eqs. 3 and 8: σ(MLP(avg(X)) + MLP(max(X))),
    the MLP two 1×1 convolutions without bias (C → C / reduction → C) with a ReLU between."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.ReLU(),
                                 nn.Conv2d(hidden, channels, 1, bias=False))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) → (B, C, 1, 1) weights in (0, 1)."""
        return torch.sigmoid(self.mlp(features.mean((2, 3), keepdim=True)) +
                             self.mlp(features.amax((2, 3), keepdim=True)))


class SpatialAttention(nn.Module):
    """CBAM spatial attention, the σ(MLP_conv(pool(X))) of Eqs. 4 and 9: a 7×7 convolution
    without bias over the channel-wise mean and max."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) → (B, 1, h, w) logits of the map."""
        pooled = torch.cat([features.mean(1, keepdim=True), features.amax(1, keepdim=True)], 1)
        return self.conv(pooled)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) → (B, 1, h, w) weights in (0, 1)."""
        return torch.sigmoid(self.logits(features))


class CoAttentionGate(nn.Module):
    """The Multi-Modality Co-Attention Gate of one stage (Eqs. 1–5).

    `g = GAP(σ(Conv(Cat(F^a, F^m))))`, a pair (g^a, g^m) per sample; `G^a = g^a F^a`,
    `G^m = g^m F^m`; `M' = CA(G^m) G^m`, `M'' = SA(M') M'`; `E = G^a + M''`.

    Args:
        channels: C of both modalities' features.
        hidden: widths of the gate's 3×3 convolution layers before the last one (to 2).
        gate: False: g^a = g^m = 1 ("w/o gate").
        layer: makes each of those layers from its input and output widths (`conv_bn_prelu`,
            or the official variant's with biases and one PReLU slope).
    """

    def __init__(self, channels: int, hidden: tuple[int, ...], gate: bool, layer=conv_bn_prelu):
        super().__init__()
        widths = (2 * channels, *hidden)
        self.gate = nn.Sequential(
            *(layer(a, b) for a, b in zip(widths[:-1], widths[1:])),
            nn.Conv2d(widths[-1], 2, 3, padding=1)) if gate else None
        self.channel = ChannelAttention(channels)
        self.spatial = SpatialAttention()

    def scores(self, appearance: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) features of each modality → (B, 2) co-attention scores (g^a, g^m), Eq. 1."""
        return torch.sigmoid(self.gate(torch.cat([appearance, motion], 1))).mean((2, 3))

    def forward(self, appearance: torch.Tensor,
                motion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, h, w) F^a, F^m → (E, G^m), both (B, C, h, w)."""
        if self.gate is not None:
            scores = self.scores(appearance, motion)[:, :, None, None]
            appearance, motion = appearance * scores[:, :1], motion * scores[:, 1:]
        corrected = self.channel(motion) * motion
        corrected = self.spatial(corrected) * corrected
        return appearance + corrected, motion


def global_co_attention(motion: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
    """Eq. 6: `Ê = softmax(G^m Eᵀ / √c) E` over the positions. motion G^m, appearance E:
    (B, c, h, w) → (B, c, h, w); position p of Ê is the mean of E's positions q weighted by
    softmax_q(G^m_p · E_q / √c)."""
    batch, channels, height, width = appearance.shape
    queries = motion.flatten(2).transpose(1, 2)  # (B, hw, c)
    values = appearance.flatten(2)  # (B, c, hw)
    similarity = (queries @ values / math.sqrt(channels)).softmax(-1)  # (B, hw, hw)
    return (values @ similarity.transpose(1, 2)).view(batch, channels, height, width)


class MotionCorrection(nn.Module):
    """One decoder block (Eqs. 7–10), an MCM when `attention`:
    `F = Cat(U, G^m)`, `F' = CA(F) F`, `A = SA(F')`, `D = Conv(Cat(U, E)) A + U`, U the previous
    decoder features brought to this stage's size (Ê_4 at the top). Without attention
    `D = Conv(Cat(U, E)) + U`. The authors' code reads `F = Conv_m(Cat(G^m, U))` and
    `Conv(Cat(E, U))` (`fuse_motion`, `encoder_first`).

    Args:
        channels: r, the stage's reduced width (of U, E and G^m).
        attention: whether the block is an MCM.
        fuse_motion: F passes through two layers of its own (2r → r → r) before the attention,
            whose channel attention then has r channels instead of 2r.
        encoder_first: the concatenations put the encoder's features before U.
        layer: makes the 3×3 layers from their input and output widths (`conv_bn_prelu`).
    """

    def __init__(self, channels: int, attention: bool = True, fuse_motion: bool = False,
                 encoder_first: bool = False, layer=conv_bn_prelu):
        super().__init__()
        self.encoder_first = encoder_first
        self.conv = nn.Sequential(layer(2 * channels, channels), layer(channels, channels))
        self.motion_conv = nn.Sequential(layer(2 * channels, channels),
                                         layer(channels, channels)) \
            if attention and fuse_motion else None
        attended = channels if fuse_motion else 2 * channels
        self.channel = ChannelAttention(attended) if attention else None
        self.spatial = SpatialAttention() if attention else None

    def concat(self, decoder: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Cat(U, X) along the channels, or Cat(X, U) when `encoder_first`."""
        return torch.cat([features, decoder] if self.encoder_first else [decoder, features], 1)

    def forward(self, decoder: torch.Tensor, appearance: torch.Tensor,
                motion: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, r, h, w) U, E, G^m (unread, may be None, without attention) → (D, attention
        logits (B, 1, h, w) or None)."""
        corrected = self.conv(self.concat(decoder, appearance))
        if self.channel is None:
            return corrected + decoder, None
        fused = self.concat(decoder, motion)
        if self.motion_conv is not None:
            fused = self.motion_conv(fused)
        logits = self.spatial.logits(self.channel(fused) * fused)
        return corrected * torch.sigmoid(logits) + decoder, logits


class AMCNetwork(nn.Module):
    """The network: encoders, MCGs, channel reduction, Eq. 6, decoder blocks and head.

    Args:
        backbone, weights: the timm ResNet of both encoders and a local ImageNet state_dict file
            loaded into each (None: random initialisation).
        reduced_channels: r_0 … r_4, the decoder widths of the stages.
        num_mcm: decoder blocks that are MCMs, the finest ones (Table 1: 1, 3, 5).
        gate: the MCGs' co-attention gate (Table 1, "w/o gate": False).
        mcg_stages: the stages with an MCG (Table 2), the others add the modalities.
        conv_bias, prelu_per_channel, stem_activation, motion_fusion, concat_order,
            align_corners: the official variant's switches (see the module docstring).
    """

    def __init__(self, backbone: str, weights: str | None, reduced_channels: tuple[int, ...],
                 num_mcm: int, gate: bool, mcg_stages: tuple[int, ...], conv_bias: bool = False,
                 prelu_per_channel: bool = True, stem_activation: str = "relu",
                 motion_fusion: str = "concat", concat_order: str = "decoder-first",
                 align_corners: bool = False):
        super().__init__()
        self.align_corners = align_corners
        layer = partial(conv_bn_prelu, bias=conv_bias, per_channel_prelu=prelu_per_channel)
        stem = None if stem_activation == "relu" else partial(prelu,
                                                              per_channel=prelu_per_channel)
        self.appearance_encoder = StagedResNet(backbone, weights, stem)
        self.motion_encoder = StagedResNet(backbone, weights, stem)
        channels = self.appearance_encoder.channels
        self.gates = nn.ModuleList([
            CoAttentionGate(channels[i], (width,) + ((width // 4,) if i >= 3 else ()), gate,
                            layer)
            if i in mcg_stages else None
            for i, width in enumerate(reduced_channels)])
        self.reduce_appearance = nn.ModuleList(map(layer, channels, reduced_channels))
        self.reduce_motion = nn.ModuleList([  # G^m is read by the MCMs and by Eq. 6 at the top
            layer(channels[i], width) if i < num_mcm or i == NUM_STAGES - 1 else None
            for i, width in enumerate(reduced_channels)])
        self.blocks = nn.ModuleList([
            MotionCorrection(width, attention=i < num_mcm, fuse_motion=motion_fusion == "conv",
                             encoder_first=concat_order == "encoder-first", layer=layer)
            for i, width in enumerate(reduced_channels)])
        self.project = nn.ModuleList([layer(reduced_channels[i], reduced_channels[i - 1])
                                      for i in range(1, NUM_STAGES)])  # D_i to stage i − 1
        self.head = nn.Sequential(layer(reduced_channels[0], reduced_channels[0]),
                                  nn.Conv2d(reduced_channels[0], 1, 3, padding=1))

    def upsample(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Bilinear resize of (B, C, h, w) features to `size`, with the network's
        align_corners."""
        return F.interpolate(features, size=size, mode="bilinear",
                             align_corners=self.align_corners)

    def encode(self, images: torch.Tensor,
               motion: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Normalised (B, 3, H, W) frames and colour-coded flows → (E_i, G^m_i), i = 0 … 4."""
        motion_features = self.motion_encoder(motion)
        fused, gated_motion = [], []
        features = images
        for stage, gate, motion_i in zip(self.appearance_encoder.stages, self.gates,
                                         motion_features):
            features = stage(features)
            features, gated = (features + motion_i, motion_i) if gate is None else \
                gate(features, motion_i)
            fused.append(features)
            gated_motion.append(gated)
        return fused, gated_motion

    def forward(self, images: torch.Tensor,
                motion: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """Normalised (B, 3, H, W) frames and colour-coded flows → (B, 1, H/2, W/2) logits and the
        attention logits of the decoder blocks coarse to fine (stage 4 first; (B, 1, H/2^(i+1),
        W/2^(i+1)) for an MCM, None for a block without)."""
        fused, gated_motion = self.encode(images, motion)
        appearance = [reduce(e) for reduce, e in zip(self.reduce_appearance, fused)]
        motion = [None if reduce is None else reduce(g)
                  for reduce, g in zip(self.reduce_motion, gated_motion)]
        decoder = global_co_attention(motion[-1], appearance[-1])  # Ê_4, the top's D_{i−1}
        attention = []
        for i in reversed(range(NUM_STAGES)):
            # Up(D_{i−1}); the identity at the top
            decoder = self.upsample(decoder, appearance[i].shape[-2:])
            decoder, logits = self.blocks[i](decoder, appearance[i], motion[i])
            attention.append(logits)
            if i > 0:
                decoder = self.project[i - 1](decoder)
        return self.head(decoder), attention


def layer_rows(theirs: str, ours: str, count: int) -> tuple[tuple[str, str], ...]:
    """Key-table rows for `count` conv-BN-PReLU layers that the authors keep flat in one
    nn.Sequential (`theirs`.3k, .3k+1, .3k+2) and vosbench as blocks (`ours`.k.0, .k.1, .k.2)."""
    return tuple((f"{theirs}.{3 * k + part}.", f"{ours}.{k}.{part}.")
                 for k in range(count) for part in range(3))


def attention_rows(channel: str, spatial: str, ours: str) -> tuple[tuple[str, str], ...]:
    """Key-table rows for their CBAM pair (ChannelAttention fc1, fc2; SpatialAttention conv1)."""
    return ((f"{channel}.fc1.", f"{ours}.channel.mlp.0."),
            (f"{channel}.fc2.", f"{ours}.channel.mlp.2."),
            (f"{spatial}.conv1.", f"{ours}.spatial.conv."))


def official_key_table() -> tuple[tuple[str, str], ...]:
    """(their prefix, vosbench prefix) for every layer of the authors' `AMCNet`."""
    rows = []
    for modality, encoder in (("RGB", "appearance_encoder"), ("Flow", "motion_encoder")):
        stages = f"network.{encoder}.stages"
        # conv0_* = (conv1, bn1, PReLU); conv1_* = (maxpool, *layer1): its blocks from index 1
        rows.append((f"conv0_{modality}.", f"{stages}.0."))
        rows += [(f"conv1_{modality}.{block + 1}.", f"{stages}.1.1.{block}.")
                 for block in range(3)]
        rows += [(f"conv{stage}_{modality}.", f"{stages}.{stage}.") for stage in (2, 3, 4)]
    for stage in range(NUM_STAGES):
        gate, block = f"network.gates.{stage}", f"network.blocks.{stage}"
        hidden = 2 if stage >= 3 else 1  # the gate's layers before its last convolution
        rows += layer_rows(f"attention_feature{stage}", f"{gate}.gate", hidden)
        rows.append((f"attention_feature{stage}.{3 * hidden}.", f"{gate}.gate.{hidden}."))
        rows += attention_rows(f"atten_flow_channel_{stage}", f"atten_flow_spatial_{stage}", gate)
        rows += [(f"gate_RGB{stage}.", f"network.reduce_appearance.{stage}."),
                 (f"gate_Flow{stage}.", f"network.reduce_motion.{stage}.")]
        rows += layer_rows(f"fuse{stage}_RGB", f"{block}.conv", 2)
        rows += layer_rows(f"fuse{stage}_Flow", f"{block}.motion_conv", 2)
        rows += attention_rows(f"channel{stage}", f"spatial{stage}", block)
    # output1 … output4 take D_4 … D_1 to the next stage's width; output5 is the head
    rows += [(f"output{k}.", f"network.project.{NUM_STAGES - 1 - k}.")
             for k in range(1, NUM_STAGES)]
    rows += (*layer_rows("output5", "network.head", 1), ("output5.3.", "network.head.1."))
    return tuple(rows)


OFFICIAL_KEY_TABLE = official_key_table()


def pil_resize(images: torch.Tensor, size: tuple[int, int], resample: int) -> torch.Tensor:
    """(N, C, H, W) images, uint8 with C = 3 or 1 (PIL's RGB, L) or float32 with C = 1 (F), each
    resized by PIL's `Image.resize((w, h), resample)` → (N, C, h, w) of the same dtype, on the
    images' device."""
    arrays = images.permute(0, 2, 3, 1).cpu().numpy()
    if arrays.shape[-1] == 1:
        arrays = arrays[..., 0]
    resized = np.stack([np.asarray(Image.fromarray(array).resize((size[1], size[0]), resample))
                        for array in arrays])
    resized = resized[..., None] if resized.ndim == 3 else resized
    return torch.from_numpy(resized).permute(0, 3, 1, 2).to(images.device)


class AMCNet(VOSMethod):
    """Zero-shot segmentation of each frame from its appearance and its optical flow.

    Needs flow: give the datamodule a `FlowProvider` (`data.init_args.flow`; the presets do).

    Args:
        backbone, weights: the encoders' timm ResNet (ResNet-101 in the paper) and a local
            ImageNet state_dict file for both.
        reduced_channels, num_mcm, gate, mcg_stages: the network (see `AMCNetwork`).
        conv_bias, prelu_per_channel, stem_activation ("relu" or "prelu"), motion_fusion
            ("concat" or "conv"), concat_order ("decoder-first" or "encoder-first"),
            align_corners: the official variant's network (module docstring; the defaults are
            the paper variant's).
        num_supervised: attention maps supervised besides the output, from the first (coarsest)
            decoder block on (Table 3: 0–5); all of them when the `num_mcm` MCMs have fewer.
        input_size: (H, W) frames and flows are resized to at inference; training clips come at
            the size the datamodule's transform gives them.
        pil_filter: None, frames (and flow images) are resized to `input_size` and the
            probabilities back bilinearly as float tensors; "bicubic" or "nearest", by PIL's
            `Image.resize` with that filter on 8-bit images (the official recipe).
        flow_colour_size: "input", the flow is resized to `input_size` as a field (displacements
            scaled) and colour coded there; "original", colour coded at the frame's size and the
            image resized (the official recipe).
        threshold_before_resize: None, the probability map is resized back to the frame's size;
            a threshold t, the map is binarised (p ≥ t) at `input_size` and the 0/1 mask resized
            back (the official recipe: 0.5).
        lr, momentum, weight_decay, poly_power: learning rate, SGD momentum, weight decay and the
            power of the per-step poly decay.
        bias_lr_multiplier: the biases' learning rate relative to `lr` (no weight decay on them).
        optimizer: "sgd" (the paper), "adam" or "adamw" (momentum unused), all with the poly
            decay.
        frames_per_batch: frames per forward pass at inference.
        kwargs: VOSMethod's arguments (crf, threshold, protocol, …).
    """

    name = "amcnet"
    inference_only = ("input_size", "frames_per_batch", "pil_filter", "flow_colour_size",
                      "threshold_before_resize")
    # the authors' test.py: `model.load_state_dict(torch.load(snapshot))` (line 26) of what
    # train.py saved, `Model.state_dict()` of the bare model (lines 138-150: no "module."); torch
    # before 0.4.1 saved no BatchNorm `num_batches_tracked`
    official_checkpoint = CheckpointFormat((CheckpointEntry(None, "", OFFICIAL_KEY_TABLE),),
                                           optional_buffers=("num_batches_tracked",))
    official_settings = {"conv_bias": True, "prelu_per_channel": False,
                         "stem_activation": "prelu", "motion_fusion": "conv",
                         "concat_order": "encoder-first", "align_corners": True,
                         "pil_filter": "bicubic", "flow_colour_size": "original",
                         "threshold_before_resize": 0.5}

    def __init__(self, backbone: str = "resnet101", weights: str | None = None,
                 reduced_channels: tuple[int, ...] = (32, 64, 128, 256, 512), num_mcm: int = 5,
                 gate: bool = True, mcg_stages: tuple[int, ...] = (0, 1, 2, 3, 4),
                 conv_bias: bool = False, prelu_per_channel: bool = True,
                 stem_activation: str = "relu", motion_fusion: str = "concat",
                 concat_order: str = "decoder-first", align_corners: bool = False,
                 num_supervised: int = 5, input_size: tuple[int, int] = (384, 384),
                 pil_filter: str | None = None, flow_colour_size: str = "input",
                 threshold_before_resize: float | None = None,
                 lr: float = 1e-3, momentum: float = 0.9, weight_decay: float = 5e-4,
                 poly_power: float = 0.9, bias_lr_multiplier: float = 2.0,
                 optimizer: str = "sgd", frames_per_batch: int = 4, **kwargs):
        super().__init__(**kwargs)
        if len(reduced_channels) != NUM_STAGES:
            raise ValueError(f"AMCNet: reduced_channels gives the {NUM_STAGES} stages' widths, "
                             f"got {list(reduced_channels)}")
        if not 0 <= num_mcm <= NUM_STAGES or not set(mcg_stages) <= set(range(NUM_STAGES)):
            raise ValueError(f"AMCNet: num_mcm ({num_mcm}) lies in 0–{NUM_STAGES} and mcg_stages "
                             f"({list(mcg_stages)}) among the stages 0–{NUM_STAGES - 1}")
        if not 0 <= num_supervised <= NUM_STAGES:
            raise ValueError(f"AMCNet: num_supervised ({num_supervised}) counts attention maps, "
                             f"0–{NUM_STAGES}")
        for key, value, known in (("stem_activation", stem_activation, STEM_ACTIVATIONS),
                                  ("motion_fusion", motion_fusion, MOTION_FUSIONS),
                                  ("concat_order", concat_order, CONCAT_ORDERS),
                                  ("flow_colour_size", flow_colour_size, FLOW_COLOUR_SIZES),
                                  ("pil_filter", pil_filter, (None, *PIL_FILTERS))):
            if value not in known:
                raise ValueError(f"AMCNet: {key} is one of {', '.join(map(str, known))}, got "
                                 f"{value!r}")
        if threshold_before_resize is not None and not 0 <= threshold_before_resize <= 1:
            raise ValueError(f"AMCNet: threshold_before_resize is a probability or None, got "
                             f"{threshold_before_resize}")
        check_optimizer(optimizer)
        self.save_hyperparameters()
        self.network = AMCNetwork(backbone, weights, tuple(reduced_channels), num_mcm, gate,
                                  tuple(mcg_stages), conv_bias, prelu_per_channel,
                                  stem_activation, motion_fusion, concat_order, align_corners)

    def forward(self, images: torch.Tensor,
                flow: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """(N, 3, H, W) frames in [0, 1] and their (N, 2, H, W) flows in pixels → (N, H, W)
        foreground logits at the input size and the decoder blocks' attention logits (see
        `AMCNetwork.forward`)."""
        logits, attention = self.network(normalize_images(images),
                                          normalize_images(colour_code(flow)))
        return self.network.upsample(logits, images.shape[-2:])[:, 0], attention

    def official_forward(self, input: torch.Tensor,
                         flow: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The authors' `AMCNet.forward`: an ImageNet-normalised (B, 3, H, W) frame and its
        ImageNet-normalised (B, 3, H, W) colour-coded flow image (their `image_transforms`; any
        H, W, their test.py gives 384×384) → (output, c4_attention, c3_attention, c2_attention,
        c1_attention, c0_attention): the foreground probability (B, 1, H, W) and the five
        attention maps at the encoder's strides 32 … 2 (B, 1, ⌈H/32⌉, ⌈W/32⌉) … (B, 1, ⌈H/2⌉,
        ⌈W/2⌉), all sigmoids. The official variant only: a
        ValueError names the network's settings that differ."""
        departures = [f"{key}: {self.hparams[key]!r} (theirs: {value!r})"
                      for key, value in self.official_settings.items()
                      if key not in self.inference_only and self.hparams[key] != value]
        if departures:
            raise ValueError(f"official_forward computes the authors' network; this one "
                             f"differs in {'; '.join(departures)}")
        logits, attention = self.network(input, flow)
        output = self.network.upsample(logits, input.shape[-2:])
        return tuple(torch.sigmoid(scores) for scores in (output, *attention))

    def training_step(self, clip: Clip, batch_index: int) -> torch.Tensor:
        """BCE on the output plus BCE on each supervised attention map against the mask
        resized (nearest) to its size; void left out everywhere."""
        if clip.flow is None:
            raise InputError(FLOW_MISSING)
        target, valid = (tensor.flatten(0, 1).float() for tensor in clip.foreground())
        logits, attention = self(clip.frames.flatten(0, 1), clip.flow.flatten(0, 1))
        losses = {"output": masked_bce(logits, target, valid)}
        supervised = [map_ for map_ in attention if map_ is not None]
        for number, map_ in enumerate(supervised[:self.hparams.num_supervised], 1):
            size = map_.shape[-2:]
            losses[f"attention{number}"] = masked_bce(
                map_[:, 0], F.interpolate(target[:, None], size=size, mode="nearest")[:, 0],
                F.interpolate(valid[:, None], size=size, mode="nearest")[:, 0])
        loss = sum(losses.values())
        self.log("train/loss", loss, prog_bar=True)
        self.log_dict({f"train/loss_{name}": value for name, value in losses.items()})
        return loss

    def resize_images(self, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(N, C, H, W) uint8 images → (N, C, h, w) floats in [0, 1] at `size`: bilinear on
        floats, or PIL's `pil_filter` on the 8-bit images."""
        if self.hparams.pil_filter is None:
            return resize(images.float().div(255), size)
        return pil_resize(images, size, PIL_FILTERS[self.hparams.pil_filter]).float().div(255)

    def network_inputs(self, frames: torch.Tensor,
                       flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, H, W) uint8 frames and (N, 2, H, W) flows in pixels → the network's inputs at
        `input_size`: ImageNet-normalised (N, 3, h, w) frames and colour-coded flows."""
        size = tuple(self.hparams.input_size)
        if self.hparams.flow_colour_size == "original":
            colours = np.stack([flow_to_colour(field) for field in
                                flow.float().permute(0, 2, 3, 1).cpu().numpy()])
            motion = self.resize_images(
                torch.from_numpy(colours).permute(0, 3, 1, 2).to(frames.device), size)
        else:
            motion = colour_code(resize_flow(flow.float(), size))
        return normalize_images(self.resize_images(frames, size)), normalize_images(motion)

    def restore_size(self, probabilities: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(N, 1, h, w) probabilities at `input_size` → (N, 1, H, W) at the frame's `size`: the
        map resized (PIL's filter clipped to [0, 1]), or, with `threshold_before_resize`, its
        0/1 mask, as a 0/255 image with PIL."""
        threshold = self.hparams.threshold_before_resize
        if threshold is not None:
            return self.resize_images((probabilities >= threshold).to(torch.uint8) * 255, size)
        if self.hparams.pil_filter is None:
            return resize(probabilities, size)
        return pil_resize(probabilities.float(), size,
                          PIL_FILTERS[self.hparams.pil_filter]).clamp(0, 1)

    @torch.inference_mode()
    def predict_video(self, video: LoadedVideo) -> torch.Tensor:
        """(N, 1, H, W) foreground probabilities: each frame and its flow brought to
        `input_size` (`network_inputs`), the probability map brought back to the video's size
        (`restore_size`)."""
        if video.flow is None:
            raise InputError(f"video {video.name!r}: {FLOW_MISSING}")
        size, input_size = tuple(video.video.size), tuple(self.hparams.input_size)
        probabilities = []
        for frames, flow in zip(video.frames.split(self.hparams.frames_per_batch),
                                video.flow.split(self.hparams.frames_per_batch)):
            logits, _ = self.network(*self.network_inputs(frames, flow))
            scores = torch.sigmoid(self.network.upsample(logits, input_size))
            probabilities.append(self.restore_size(scores, size))
        return torch.cat(probabilities)

    def configure_optimizers(self):
        hp = self.hparams
        groups = weights_and_biases(self, hp.lr, hp.bias_lr_multiplier)
        optimizer = make_optimizer(hp.optimizer, groups, hp.momentum, hp.weight_decay)
        return self.poly_schedule(optimizer, hp.poly_power)
