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
- the encoders keep the ResNet's ReLU in the stem (the code swaps in a PReLU), and every
  upsampling is bilinear with align_corners=False (the code: True), as everywhere in vosbench.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from vosbench.datamodules.clips import Clip, LoadedVideo
from vosbench.errors import InputError
from vosbench.flow.colour import colour_code
from vosbench.methods.backbones import StagedResNet, normalize_images, resize
from vosbench.methods.base import VOSMethod
from vosbench.methods.losses import masked_bce
from vosbench.methods.optimizers import check_optimizer, make_optimizer, weights_and_biases
from vosbench.methods.warping import resize_flow

NUM_STAGES = 5
FLOW_MISSING = ("amcnet needs optical flow: give the datamodule a flow provider "
                "(data.init_args.flow: class_path vosbench.flow.FlowProvider; the amcnet presets "
                "do)")


def conv_bn_prelu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3×3 convolution, BatchNorm, PReLU: (B, in, h, w) → (B, out, h, w)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.PReLU(out_channels))


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
    """

    def __init__(self, channels: int, hidden: tuple[int, ...], gate: bool):
        super().__init__()
        widths = (2 * channels, *hidden)
        self.gate = nn.Sequential(
            *(conv_bn_prelu(a, b) for a, b in zip(widths[:-1], widths[1:])),
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
    `D = Conv(Cat(U, E)) + U`.

    Args:
        channels: r, the stage's reduced width (of U, E and G^m).
        attention: whether the block is an MCM.
    """

    def __init__(self, channels: int, attention: bool = True):
        super().__init__()
        self.conv = nn.Sequential(conv_bn_prelu(2 * channels, channels),
                                  conv_bn_prelu(channels, channels))
        self.channel = ChannelAttention(2 * channels) if attention else None
        self.spatial = SpatialAttention() if attention else None

    def forward(self, decoder: torch.Tensor, appearance: torch.Tensor,
                motion: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, r, h, w) U, E, G^m (unread, may be None, without attention) → (D, attention
        logits (B, 1, h, w) or None)."""
        corrected = self.conv(torch.cat([decoder, appearance], 1))
        if self.channel is None:
            return corrected + decoder, None
        fused = torch.cat([decoder, motion], 1)
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
    """

    def __init__(self, backbone: str, weights: str | None, reduced_channels: tuple[int, ...],
                 num_mcm: int, gate: bool, mcg_stages: tuple[int, ...]):
        super().__init__()
        self.appearance_encoder = StagedResNet(backbone, weights)
        self.motion_encoder = StagedResNet(backbone, weights)
        channels = self.appearance_encoder.channels
        self.gates = nn.ModuleList([
            CoAttentionGate(channels[i], (width,) + ((width // 4,) if i >= 3 else ()), gate)
            if i in mcg_stages else None
            for i, width in enumerate(reduced_channels)])
        self.reduce_appearance = nn.ModuleList(map(conv_bn_prelu, channels, reduced_channels))
        self.reduce_motion = nn.ModuleList([  # G^m is read by the MCMs and by Eq. 6 at the top
            conv_bn_prelu(channels[i], width) if i < num_mcm or i == NUM_STAGES - 1 else None
            for i, width in enumerate(reduced_channels)])
        self.blocks = nn.ModuleList([MotionCorrection(width, attention=i < num_mcm)
                                     for i, width in enumerate(reduced_channels)])
        self.project = nn.ModuleList([conv_bn_prelu(reduced_channels[i], reduced_channels[i - 1])
                                      for i in range(1, NUM_STAGES)])  # D_i to stage i − 1
        self.head = nn.Sequential(conv_bn_prelu(reduced_channels[0], reduced_channels[0]),
                                  nn.Conv2d(reduced_channels[0], 1, 3, padding=1))

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
            decoder = resize(decoder, appearance[i].shape[-2:])  # Up(D_{i−1}); the identity at 4
            decoder, logits = self.blocks[i](decoder, appearance[i], motion[i])
            attention.append(logits)
            if i > 0:
                decoder = self.project[i - 1](decoder)
        return self.head(decoder), attention


class AMCNet(VOSMethod):
    """Zero-shot segmentation of each frame from its appearance and its optical flow.

    Needs flow: give the datamodule a `FlowProvider` (`data.init_args.flow`; the presets do).

    Args:
        backbone, weights: the encoders' timm ResNet (ResNet-101 in the paper) and a local
            ImageNet state_dict file for both.
        reduced_channels, num_mcm, gate, mcg_stages: the network (see `AMCNetwork`).
        num_supervised: attention maps supervised besides the output, from the first (coarsest)
            decoder block on (Table 3: 0–5); all of them when the `num_mcm` MCMs have fewer.
        input_size: (H, W) frames and flows are resized to at inference; training clips come at
            the size the datamodule's transform gives them.
        lr, momentum, weight_decay, poly_power: learning rate, SGD momentum, weight decay and the
            power of the per-step poly decay.
        bias_lr_multiplier: the biases' learning rate relative to `lr` (no weight decay on them).
        optimizer: "sgd" (the paper), "adam" or "adamw" (momentum unused), all with the poly
            decay.
        frames_per_batch: frames per forward pass at inference.
        kwargs: VOSMethod's arguments (crf, threshold, protocol, …).
    """

    name = "amcnet"
    inference_only = ("input_size", "frames_per_batch")

    def __init__(self, backbone: str = "resnet101", weights: str | None = None,
                 reduced_channels: tuple[int, ...] = (32, 64, 128, 256, 512), num_mcm: int = 5,
                 gate: bool = True, mcg_stages: tuple[int, ...] = (0, 1, 2, 3, 4),
                 num_supervised: int = 5, input_size: tuple[int, int] = (384, 384),
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
        check_optimizer(optimizer)
        self.save_hyperparameters()
        self.network = AMCNetwork(backbone, weights, tuple(reduced_channels), num_mcm, gate,
                                  tuple(mcg_stages))

    def forward(self, images: torch.Tensor,
                flow: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """(N, 3, H, W) frames in [0, 1] and their (N, 2, H, W) flows in pixels → (N, H, W)
        foreground logits at the input size and the decoder blocks' attention logits (see
        `AMCNetwork.forward`)."""
        logits, attention = self.network(normalize_images(images),
                                          normalize_images(colour_code(flow)))
        return resize(logits, images.shape[-2:])[:, 0], attention

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

    @torch.inference_mode()
    def predict_video(self, video: LoadedVideo) -> torch.Tensor:
        """(N, 1, H, W) foreground probabilities: each frame and its flow at `input_size`, the
        probability map resized back to the video's size."""
        if video.flow is None:
            raise InputError(f"video {video.name!r}: {FLOW_MISSING}")
        size, input_size = tuple(video.video.size), tuple(self.hparams.input_size)
        probabilities = []
        for frames, flow in zip(video.frames.split(self.hparams.frames_per_batch),
                                video.flow.split(self.hparams.frames_per_batch)):
            logits, _ = self(resize(frames.float().div(255), input_size),
                             resize_flow(flow.float(), input_size))
            probabilities.append(resize(torch.sigmoid(logits)[:, None], size))
        return torch.cat(probabilities)

    def configure_optimizers(self):
        hp = self.hparams
        groups = weights_and_biases(self, hp.lr, hp.bias_lr_multiplier)
        optimizer = make_optimizer(hp.optimizer, groups, hp.momentum, hp.weight_decay)
        return self.poly_schedule(optimizer, hp.poly_power)
