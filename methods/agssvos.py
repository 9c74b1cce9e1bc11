"""`agssvos`: attention-guided single-shot VOS (Lin et al., ICCV 2019; paper §3): the network, its
equations, and the method `AGSSVOS` (recurrent training, inference with objects appearing
mid-video).

All K objects of a target frame t are segmented in one forward pass. The instance-agnostic module
(IAM) is RGMP's Siamese encoder with the mask at the stem: a reference stream (I_0 with the
agnostic mask S_0^ag, Eq. 1) and a target stream (I_t with the agnostic warped mask P^ag_{t−1,t},
Eq. 2) share one ResNet; their top features, concatenated, go through a global convolution block
and two refinement modules to F^ia (256 channels at H/8), once per frame for all objects. The
instance-specific module (ISM) is light: the stem and the first residual stage of a second ResNet
give each object's visual feature F^vs_k (at H/4) from the frame and that object's warped mask, and
three convolutions its attention feature F^atn_k (at H/8). The attention-guided decoder takes
F^ia_k = F^atn_k ⊙ F^ia (Eq. 3), refines it with F^vs_k to each object's probability P_k at full
resolution; the probabilistic normalisation (Eqs. 4–5) turns the K independent probabilities and
the derived background into one distribution per pixel, labels are its argmax (Eq. 6), and the
instance IoU loss (Eq. 7) trains it.

The network takes the K warped soft masks P_{t−1,t}; `AGSSVOS` warps the previous prediction with
the backward flow t→t−1 (or, Table 4's "w/o OF", does not).

Choices the paper leaves open (the network's here; the method's in `AGSSVOS`):
- the IAM is RGMP's decoder up to the second refinement module (§4.1), as in RGMP's paper and
  public code: the concatenated top features (target stream first) → a global convolution block
  (kernel 7, see `GlobalConvolution`) → a residual block → refinement with the target stream's
  1/16 then 1/8 features; every decoder width 256 (`channels`); no normalisation layers there,
  ReLU before each convolution of a residual branch (RGMP's);
- the mask enters the stem by its own 7×7 stride-2 convolution with conv1's geometry and no bias
  (conv1 has none; the BatchNorm after the sum carries the shift), randomly initialised;
- the ISM has its own ResNet (the same timm model as the IAM's, the same weights file): the paper
  counts it separately (Fig. 7) and Table 4 runs it without the IAM. Its "two residual blocks"
  (§4.1) are read as METHODS.md §3 does: the stem and the first residual stage (layer1, three
  bottleneck blocks in ResNet-50), which gives F^vs its 256 channels at H/4 (Fig. 2). The frame
  goes through its stem convolution once; each object adds its own mask convolution there and
  runs the rest of the stem and layer1, batched over the objects as (B·K, …);
- masks are brought to H/4 and H/8 by area averaging (the mean of each 4×4 or 8×8 block), which
  keeps a soft mask's mass where bilinear sampling at these factors would skip pixels;
- the attention generator's widths are `channels` (F^atn must match F^ia's for Eq. 3), with a
  ReLU after its first two convolutions and none after the last (§3.1);
- the decoder's refinement module is RGMP's last one, F^vs_k taking the place of the encoder's
  1/4 features, followed as in RGMP by ReLU, the 3×3 convolution to 2 channels, bilinear
  upsampling to the input size (align_corners=False, as everywhere in vosbench) and softmax;
- Eqs. 4–5 are computed in float32 with every probability clamped to [ε, 1 − ε], ε = 1e-7
  (`NORMALISATION_EPSILON`), as a softmax over the log-odds, which is the ratio of odds of Eq. 4
  without overflow;
- Eq. 7's N counts the objects present in the frame (with at least one non-void pixel), see
  `instance_iou_loss`;
- Table 4's ablations: "w/o ISM" multiplies F^ia by each warped mask (downsampled to H/8) in
  place of F^atn_k (§4.4) and, lacking F^vs_k, refines with the target stream's 1/4 features,
  the skip input of RGMP's last refinement module that §4.1 moves into the decoder; "w/o IAM"
  decodes F^atn_k itself with F^vs_k; "w/o NM" returns the decoder's P_k with Eq. 5's
  background, unnormalised (§4.4: "directly utilizing the output for training"). Odds increase
  with the probability and Eq. 4 divides all channels by one sum, so Eq. 6's labels are the same
  either way: normalisation changes what the loss sees, and the probabilities, not the argmax;
- at inference (where the authors' code does otherwise without the paper saying so, the paper's
  reading is kept): all objects seen so far are normalised together, one pixel belonging to one
  of "all N object instances" (§3.1, Eqs. 4–6), whatever frame they were first given at; and at
  the frame where an object is first given, its mask replaces the earlier objects' P̂ and output
  under it, since the given mask says those pixels are the new object's (a semi-supervised
  annotation labels each pixel once).

The official variant (`configs/methods/agssvos/official.yaml`) is the network and test recipe of
the authors' released code (dvlab-research/AGSS-VOS at e9272365; `OFFICIAL_KEY_TABLE` maps their
checkpoint, `AGSSVOS.official_forward` is their `AGSSVOS.forward` at test time). It departs from
the above in these switches (`AGSSVOS.official_settings`; the paper's value first), each
independent, so that a sweep on the official preset can turn each back:
- `shared_encoder` False → True: one ResNet-50 for the reference, target and instance streams;
  the ISM's F^vs is layer1 of the IAM's encoder on the frame with each object's mask
  (networks/agssvos.py lines 190–194), 228,480 parameters fewer;
- `mask_conv_bias` False → True: their `conv1_p` has a bias (line 17), 64 parameters more;
- `mask_downsampling` "area" → "bilinear": the attention generator's mask is sampled bilinearly
  with align_corners=True at layer1's size (line 80);
- `warp_normalisation` "corners" → "half_size": their `flow_warp_tensor` normalises x + u as
  (x + u − W/2)/(W/2) under torch 0.4.0's grid_sample (align_corners=True behaviour), so a pixel
  samples (x + u)(W − 1)/W, not x + u (tools/utils.py lines 85–120), in training and at test;
- `flow_source` "provider" → "flownet2c": their FlowNet2-C (`vosbench.flow.flownet2c`, held as
  `AGSSVOS.flow_network`, fixed, its weights the checkpoint's "flow") on the frames at the
  network size in BGR order, where the paper preset uses Farnebäck or RAFT;
- `input_size` (448, 832) → None: each video's sides floored to multiples of 64 (their
  `get_dsize`, `authors_input_size`), and `halve_large_frames` False → None: halved first when
  the longer side exceeds 700 for YouTube-VOS videos (infer_ytv.py's `half_size=True`);
- `resampling` "bilinear" → "opencv": cv2 INTER_LINEAR on the uint8 frames, INTER_NEAREST for
  the given masks and for the labels, which are composed at the network size;
- `normalisation_scope` "all" → "group": their `Decoder._p_norm` normalises the objects of one
  forward pass, and they run each first-frame group of objects on its own (lines 148–157;
  infer_davis.py lines 176–215): a group's background ignores the other groups' objects;
- `label_background` "normalised" → "constant": their labels are the argmax over a constant 0.5
  background and each object's normalised output (infer_davis.py line 173), not Eq. 6's over
  P̂ with its own P̂_0;
- `overwrite_earlier_objects` True → False: a new group writes its own objects' channels only;
  the earlier groups keep their outputs and warp their own P̂ under the new masks (line 194);
- `drop_lost_objects` False → None: for YouTube-VOS videos an object whose warped mask has no
  pixel above 0.5 is zeroed from then on (infer_ytv.py lines 215–217).
Not a switch: at the official variant's sizes the layers compute the same functions either way
(their `F.upsample(scale_factor=2 or 4)` equals the resizing to the skip's size at multiples of
64), and their odds are the log-odds softmax here (equal within 2e-7).
"""

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vosbench.datamodules.clips import Clip, LoadedVideo
from vosbench.datamodules.sampling import ConsecutiveSampler
from vosbench.datamodules.video import Video
from vosbench.errors import InputError
from vosbench.flow.flownet2c import FlowNet2C, infer_flow, infer_flows, load_flownet2c
from vosbench.flow.provider import FlowProvider
from vosbench.methods.backbones import StagedResNet, normalize_images, resize
from vosbench.methods.base import VOSMethod
from vosbench.methods.official import CheckpointEntry, CheckpointFormat
from vosbench.methods.optimizers import check_optimizer, make_optimizer, modules_faster
from vosbench.methods.warping import resize_flow, warp_backward

NORMALISATION_EPSILON = 1e-7  # odds stay within [1e-7, 1e7]: finite in float32
VOID_LABEL = 255


# --- the equations -------------------------------------------------------------------------------

def agnostic_mask(masks: torch.Tensor) -> torch.Tensor:
    """Eqs. 1–2: (B, K, H, W) masks in [0, 1] → (B, 1, H, W), the pixel-wise maximum over the K
    objects."""
    if masks.shape[1] == 0:
        raise ValueError("an agnostic mask needs at least one object mask, got K = 0")
    return masks.amax(1, keepdim=True)


def attend(agnostic: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """Eq. 3: F^ia_k = F^atn_k ⊙ F^ia for every object of every frame.

    agnostic: (B, C, h, w) F^ia. attention: (B·K, C, h, w) F^atn, object k of frame b at b·K + k;
    or (B·K, 1, h, w), one map per object applied to every channel. Returns (B·K, C, h, w).
    """
    batch = agnostic.shape[0]
    return (attention.unflatten(0, (batch, -1)) * agnostic[:, None]).flatten(0, 1)


MASK_DOWNSAMPLING = ("area", "bilinear")


def downsample_masks(masks: torch.Tensor, size: tuple[int, int],
                     mode: str = "area") -> torch.Tensor:
    """(N, 1, H, W) soft masks → (N, 1, h, w) at `size`. "area": each pixel the mean of its
    block; "bilinear": bilinear samples with the corner pixels at the corners
    (align_corners=True), as the authors' `Encoder.forward` brings the mask to layer1's size."""
    if mode == "bilinear":
        return F.interpolate(masks, size=size, mode="bilinear", align_corners=True)
    return F.adaptive_avg_pool2d(masks, size)


def with_background(objects: torch.Tensor) -> torch.Tensor:
    """Eq. 5: (B, K, H, W) object probabilities P_k → (B, K + 1, H, W) with the background
    P_0 = 1 − max_k P_k as channel 0."""
    return torch.cat([1 - agnostic_mask(objects), objects], 1)


def normalise_probabilities(objects: torch.Tensor, valid: torch.Tensor | None = None,
                            epsilon: float = NORMALISATION_EPSILON) -> torch.Tensor:
    """Eqs. 4–5, the probabilistic normalisation: (B, K, H, W) object probabilities P_k →
    (B, K + 1, H, W) float32 P̂, channel 0 the background, summing to 1 over the channels:
    `P̂_k = odds(P_k) / Σ_{i=0..K} odds(P_i)`, odds(p) = p / (1 − p), P_0 = 1 − max_k P_k, every
    P_i first clamped to [epsilon, 1 − epsilon].

    valid: (B, K) bool, the object slots that hold an object (a batch pads its frames to one K);
    the others take no part in P_0's maximum nor in the sum, and their P̂ is exactly 0.
    """
    if valid is not None:
        objects = objects * valid[:, :, None, None]
    probabilities = with_background(objects.float()).clamp(epsilon, 1 - epsilon)
    log_odds = probabilities.log() - torch.log1p(-probabilities)
    if valid is not None:
        kept = torch.cat([valid.new_ones(valid.shape[0], 1), valid], 1)[:, :, None, None]
        log_odds = log_odds.masked_fill(~kept, -torch.inf)
    return log_odds.softmax(1)


def segmentation_labels(probabilities: torch.Tensor) -> torch.Tensor:
    """Eq. 6: (B, K + 1, H, W) background and object probabilities → (B, H, W) int64 labels, 0
    background, k object k: the argmax over the channels."""
    return probabilities.argmax(1)


def instance_iou_loss(probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 7, the instance IoU loss, the mean over the frames of the batch.

    Per frame, `1 − (1/N) Σ_k Σ min(P̂_k, S_k) / Σ max(P̂_k, S_k)`, the sums over the pixels that
    are not void, S_k = [label = k]. N is the number of objects present: those with at least one
    non-void pixel in the frame's labels. An absent object is left out of the sum and of N: its
    ratio would be 0 / Σ P̂_k, a constant 0 whatever it predicts, which only adds 1/N to the loss
    and gives no gradient. A frame without any object is left out of the mean; a batch without
    any gives 0 (connected to the graph).

    probabilities: (B, K, H, W) P̂_1 … P̂_K in [0, 1] (the normalised object channels, or P_k
    without normalisation). labels: (B, H, W) integers, 0 background, k ∈ 1 … K object k,
    VOID_LABEL void; other ids count as background for these K objects.
    """
    num_objects = probabilities.shape[1]
    ids = torch.arange(1, num_objects + 1, device=labels.device).view(1, -1, 1, 1)
    targets = (labels[:, None] == ids).to(probabilities.dtype)  # (B, K, H, W)
    valid = (labels != VOID_LABEL)[:, None].to(probabilities.dtype)
    intersection = (torch.minimum(probabilities, targets) * valid).sum((2, 3))
    union = (torch.maximum(probabilities, targets) * valid).sum((2, 3))
    present = (targets * valid).sum((2, 3)) > 0  # (B, K); then union ≥ 1 there
    ratios = torch.where(present, intersection / union.clamp(min=1), 0)
    counts = present.sum(1)
    frames = counts > 0
    if not frames.any():
        return probabilities.sum() * 0
    per_frame = 1 - ratios.sum(1)[frames] / counts[frames]
    return per_frame.mean()


# --- blocks ------------------------------------------------------------------------------------

class ResidualBlock(nn.Module):
    """`x + conv(ReLU(conv(ReLU(x))))`, two 3×3 convolutions: (N, C, h, w) → (N, C, h, w)."""

    def __init__(self, channels: int):
        super().__init__()
        self.branch = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1),
                                    nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features + self.branch(features)


class GlobalConvolution(nn.Module):
    """A global convolution block (Peng et al. 2017, as RGMP fuses its two streams): a large
    k×k receptive field at the cost of two thin branches, (k×1 then 1×k) + (1×k then k×1).

    k = 7 is RGMP's, whose weights the paper's IAM starts from (§4.1): at 832×448 the 1/32 map is
    26×14, so each position sees half the map's height and a quarter of its width, enough to
    match the target's object with the reference's across large motion.

    Args:
        in_channels: of the input (the two streams' top features, 4096 for ResNet-50).
        channels: of each branch's middle and of the output.
        kernel_size: k, odd.
    """

    def __init__(self, in_channels: int, channels: int, kernel_size: int):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"GlobalConvolution: kernel_size must be odd, got {kernel_size}")
        tall, wide = (kernel_size, 1), (1, kernel_size)
        pad_tall, pad_wide = (kernel_size // 2, 0), (0, kernel_size // 2)
        self.tall_then_wide = nn.Sequential(
            nn.Conv2d(in_channels, channels, tall, padding=pad_tall),
            nn.Conv2d(channels, channels, wide, padding=pad_wide))
        self.wide_then_tall = nn.Sequential(
            nn.Conv2d(in_channels, channels, wide, padding=pad_wide),
            nn.Conv2d(channels, channels, tall, padding=pad_tall))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, h, w) → (N, channels, h, w)."""
        return self.tall_then_wide(features) + self.wide_then_tall(features)


class Refinement(nn.Module):
    """RGMP's refinement module: the skip features projected (3×3 convolution) and passed through
    a residual block, the coarser decoder features upsampled bilinearly to their size and added,
    and a second residual block.

    Args:
        skip_channels: of the skip features.
        channels: of the decoder features and the output.
    """

    def __init__(self, skip_channels: int, channels: int):
        super().__init__()
        self.project = nn.Conv2d(skip_channels, channels, 3, padding=1)
        self.skip_block = ResidualBlock(channels)
        self.merge_block = ResidualBlock(channels)

    def forward(self, skip: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """skip (N, skip_channels, h, w), coarse (N, channels, h′, w′) (h′ ≈ h / 2) → (N,
        channels, h, w)."""
        skip = self.skip_block(self.project(skip))
        return self.merge_block(skip + resize(coarse, skip.shape[-2:]))


class MaskGuidedResNet(nn.Module):
    """A timm ResNet whose stem also reads a mask (RGMP): `conv1(frame) + mask_conv(mask)`, then
    the stem's BatchNorm and ReLU and the next stages. The frame's convolution runs once per
    frame, the rest once per mask.

    Args:
        backbone: timm model name ("resnet50" in the paper).
        weights: a local ImageNet state_dict file, or None for random initialisation.
        num_stages: the stages of `StagedResNet` kept: 2 (the stem and layer1, at strides 2 and 4)
            to 5 (all, down to stride 32).
        mask_bias: the mask's convolution has a bias (the authors' `conv1_p`); without, the
            BatchNorm after the sum carries the shift.
    """

    def __init__(self, backbone: str, weights: str | None, num_stages: int,
                 mask_bias: bool = False):
        super().__init__()
        resnet = StagedResNet(backbone, weights)
        self.frame_conv = resnet.stages[0][0]
        self.mask_conv = nn.Conv2d(1, self.frame_conv.out_channels, self.frame_conv.kernel_size,
                                   self.frame_conv.stride, self.frame_conv.padding,
                                   bias=mask_bias)
        self.stem = resnet.stages[0][1:]  # BatchNorm, ReLU
        self.stages = resnet.stages[1:num_stages]
        self.channels = resnet.channels[:num_stages]

    def forward(self, frames: torch.Tensor, masks: torch.Tensor,
                num_stages: int | None = None) -> list[torch.Tensor]:
        """(B, 3, H, W) normalised frames, (B, K, H, W) masks in [0, 1] → the first
        `num_stages` stages' features (all kept stages when None) for each mask, (B·K, C_i,
        H/2^(i+1), W/2^(i+1)), mask k of frame b at b·K + k."""
        stem = self.mask_conv(masks.flatten(0, 1)[:, None]).unflatten(0, masks.shape[:2])
        features = [self.stem((stem + self.frame_conv(frames)[:, None]).flatten(0, 1))]
        for stage in self.stages[:None if num_stages is None else num_stages - 1]:
            features.append(stage(features[-1]))
        return features


class InstanceAgnosticModule(nn.Module):
    """The IAM: F^ia from the target frame with its agnostic warped mask and the reference
    stream's top features (Siamese: one encoder for both streams).

    Args:
        backbone, weights: the encoder's timm ResNet and a local ImageNet state_dict file.
        channels: of F^ia (256).
        kernel_size: of the global convolution block (7).
        mask_bias: of the encoder's mask convolution (`MaskGuidedResNet`).
    """

    def __init__(self, backbone: str, weights: str | None, channels: int, kernel_size: int,
                 mask_bias: bool = False):
        super().__init__()
        self.encoder = MaskGuidedResNet(backbone, weights, num_stages=5, mask_bias=mask_bias)
        widths = self.encoder.channels
        self.fuse = nn.Sequential(GlobalConvolution(2 * widths[4], channels, kernel_size),
                                  ResidualBlock(channels))
        self.refine_16 = Refinement(widths[3], channels)
        self.refine_8 = Refinement(widths[2], channels)

    def encode_reference(self, frame: torch.Tensor, agnostic: torch.Tensor) -> torch.Tensor:
        """The reference stream: (B, 3, H, W) normalised I_0, (B, 1, H, W) S_0^ag → (B, C_5,
        H/32, W/32) top features (2048 channels for ResNet-50)."""
        return self.encoder(frame, agnostic)[-1]

    def forward(self, frame: torch.Tensor, agnostic: torch.Tensor,
                reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) normalised I_t, (B, 1, H, W) P^ag_{t−1,t}, (B, C_5, H/32, W/32) reference
        features → (F^ia (B, channels, H/8, W/8), the target stream's layer1 features (B, C_1,
        H/4, W/4), the skip of "w/o ISM")."""
        _, quarter, eighth, sixteenth, top = self.encoder(frame, agnostic)
        fused = self.fuse(torch.cat([top, reference], 1))
        return self.refine_8(eighth, self.refine_16(sixteenth, fused)), quarter


class AttentionGenerator(nn.Sequential):
    """Fig. 2(d): 1×1 convolution, ReLU, 3×3 convolution, ReLU, 3×3 convolution with stride 2 and
    no activation (§3.1): (N, in_channels, H/4, W/4) → (N, channels, H/8, W/8) F^atn."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__(nn.Conv2d(in_channels, channels, 1), nn.ReLU(),
                         nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(channels, channels, 3, stride=2, padding=1))


class InstanceSpecificModule(nn.Module):
    """The ISM: each object's visual feature F^vs_k and attention feature F^atn_k from the frame
    and its warped mask. Only the mask branch and what follows run once per object.

    Args:
        backbone, weights: the timm ResNet whose stem and layer1 make the feature extractor, and
            a local ImageNet state_dict file.
        channels: of F^atn (256, F^ia's).
        shared_encoder: the IAM's encoder, whose stem and layer1 then give F^vs (the authors'
            network): the module has no ResNet of its own and `forward` takes that encoder.
            None: its own ResNet (the paper's reading).
        mask_downsampling: how the mask is brought to F^vs's size ("area" or "bilinear", see
            `downsample_masks`).
        mask_bias: of its own encoder's mask convolution (`MaskGuidedResNet`).
    """

    def __init__(self, backbone: str, weights: str | None, channels: int,
                 shared_encoder: MaskGuidedResNet | None = None,
                 mask_downsampling: str = "area", mask_bias: bool = False):
        super().__init__()
        self.encoder = MaskGuidedResNet(backbone, weights, num_stages=2, mask_bias=mask_bias) \
            if shared_encoder is None else None
        visual_channels = (shared_encoder or self.encoder).channels[1]
        self.attention = AttentionGenerator(visual_channels + 1, channels)
        self.mask_downsampling = mask_downsampling

    def forward(self, frame: torch.Tensor, masks: torch.Tensor,
                shared_encoder: MaskGuidedResNet | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) normalised I_t, (B, K, H, W) warped masks P_{t−1,t} (and the IAM's
        encoder when the module shares it) → (F^vs (B·K, C_1, H/4, W/4), F^atn (B·K, channels,
        H/8, W/8)), object k of frame b at b·K + k."""
        encoder = self.encoder or shared_encoder
        if encoder is None:
            raise ValueError("this instance-specific module shares the IAM's encoder: pass it "
                             "(shared_encoder)")
        visual = encoder(frame, masks, num_stages=2)[-1]
        small = downsample_masks(masks.flatten(0, 1)[:, None], visual.shape[-2:],
                                 self.mask_downsampling)
        return visual, self.attention(torch.cat([visual, small], 1))


class AttentionGuidedDecoder(nn.Module):
    """From the attended features F^ia_k (Eq. 3) and the H/4 skip features to P_k: refinement,
    ReLU, 3×3 convolution to 2 channels, bilinear upsampling to the input size, softmax.

    Args:
        skip_channels: of the H/4 features (F^vs, or the target stream's without the ISM).
        channels: of F^ia_k.
    """

    def __init__(self, skip_channels: int, channels: int):
        super().__init__()
        self.refine = Refinement(skip_channels, channels)
        self.predict = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, 2, 3, padding=1))

    def forward(self, attended: torch.Tensor, skip: torch.Tensor,
                size: tuple[int, int]) -> torch.Tensor:
        """(N, channels, H/8, W/8) F^ia_k, (N, skip_channels, H/4, W/4) → (N, H, W) foreground
        probabilities at `size` = (H, W)."""
        logits = resize(self.predict(self.refine(skip, attended)), size)
        return logits.softmax(1)[:, 1]


class AGSSNetwork(nn.Module):
    """The AGSS-VOS network: all objects of a target frame in one pass.

    Use: `reference = network.encode_reference(I_0, S_0)` once per reference frame (and group
    of objects), then `network(I_t, P_{t−1,t}, reference)` for every target frame.

    Args:
        backbone, weights: the timm ResNet of the IAM's encoder and of the ISM's feature extractor
            (ResNet-50 in the paper), and a local ImageNet state_dict file loaded into both (None:
            random initialisation).
        channels: of F^ia, F^atn and the decoders (256).
        kernel_size: of the IAM's global convolution block (7).
        instance_agnostic: the IAM (Table 4, "w/o IAM": False).
        instance_specific: the ISM (Table 4, "w/o ISM": False).
        normalise: the probabilistic normalisation, Eqs. 4–5 (Table 4, "w/o NM": False).
        shared_encoder: the ISM's F^vs from the stem and layer1 of the IAM's encoder instead of
            a ResNet of its own (the authors' network: one encoder for the reference, target
            and instance streams).
        mask_conv_bias: the encoders' mask convolutions have a bias (the authors' `conv1_p`).
        mask_downsampling: how the attention generator's masks are brought to H/4 (and "w/o
            ISM"'s to H/8): "area" or "bilinear" (align_corners=True, the authors'), see
            `downsample_masks`.
    """

    def __init__(self, backbone: str = "resnet50", weights: str | None = None,
                 channels: int = 256, kernel_size: int = 7, instance_agnostic: bool = True,
                 instance_specific: bool = True, normalise: bool = True,
                 shared_encoder: bool = False, mask_conv_bias: bool = False,
                 mask_downsampling: str = "area"):
        super().__init__()
        if not (instance_agnostic or instance_specific):
            raise ValueError("AGSSNetwork needs the instance-agnostic or the instance-specific "
                             "module (or both)")
        if shared_encoder and not (instance_agnostic and instance_specific):
            raise ValueError("AGSSNetwork: shared_encoder shares the IAM's encoder with the ISM, "
                             "which needs both modules")
        if mask_downsampling not in MASK_DOWNSAMPLING:
            raise ValueError(f"AGSSNetwork: mask_downsampling is one of "
                             f"{', '.join(MASK_DOWNSAMPLING)}, got {mask_downsampling!r}")
        self.agnostic = InstanceAgnosticModule(backbone, weights, channels, kernel_size,
                                               mask_conv_bias) if instance_agnostic else None
        self.specific = InstanceSpecificModule(
            backbone, weights, channels, self.agnostic.encoder if shared_encoder else None,
            mask_downsampling, mask_conv_bias) if instance_specific else None
        skip_channels = (self.agnostic or self.specific).encoder.channels[1]
        self.decoder = AttentionGuidedDecoder(skip_channels, channels)
        self.normalise = normalise
        self.mask_downsampling = mask_downsampling

    def encode_reference(self, frame: torch.Tensor, masks: torch.Tensor) -> torch.Tensor | None:
        """(B, 3, H, W) normalised reference frame I_0, (B, K, H, W) its object masks S_0 → the
        reference stream's top features (B, C_5, H/32, W/32), to reuse for every target frame;
        None without the IAM."""
        if self.agnostic is None:
            return None
        return self.agnostic.encode_reference(frame, agnostic_mask(masks))

    def object_probabilities(self, frame: torch.Tensor, masks: torch.Tensor,
                             reference: torch.Tensor | None,
                             agnostic: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's P_k before normalisation: (B, 3, H, W) normalised I_t, (B, K, H, W)
        warped masks P_{t−1,t} in [0, 1], the reference features of `encode_reference` → (B, K,
        H, W) probabilities. agnostic: the IAM's (B, 1, H, W) mask, by default Eq. 2's
        `agnostic_mask(masks)` (the authors' forward takes it as an input of its own)."""
        batch, num_objects = masks.shape[:2]
        if self.agnostic is None:
            skip, attended = self.specific(frame, masks)
        else:
            if reference is None:
                raise ValueError("the instance-agnostic module needs the reference features "
                                 "(encode_reference)")
            features, quarter = self.agnostic(
                frame, agnostic_mask(masks) if agnostic is None else agnostic, reference)
            if self.specific is None:
                attention = downsample_masks(masks.flatten(0, 1)[:, None], features.shape[-2:],
                                             self.mask_downsampling)
                skip = quarter.repeat_interleave(num_objects, 0)
            else:
                skip, attention = self.specific(frame, masks, self.agnostic.encoder)
            attended = attend(features, attention)
        return self.decoder(attended, skip, frame.shape[-2:]).unflatten(0, (batch, num_objects))

    def distribution(self, objects: torch.Tensor,
                     valid: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K, H, W) P_k of `object_probabilities` → (B, K + 1, H, W): channel 0 the
        background, channel k object k; P̂ of Eqs. 4–5 (summing to 1), or without normalisation
        P_k and P_0 = 1 − max_k P_k (Eq. 5). valid: (B, K) bool, the slots that hold an object;
        the others are 0 and left out (see `normalise_probabilities`)."""
        if self.normalise:
            return normalise_probabilities(objects, valid)
        return with_background(objects if valid is None else objects * valid[:, :, None, None])

    def forward(self, frame: torch.Tensor, masks: torch.Tensor, reference: torch.Tensor | None,
                valid: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) normalised I_t, (B, K, H, W) warped masks P_{t−1,t}, the reference
        features of `encode_reference` (None without the IAM), optionally the (B, K) bool slots
        that hold an object → (B, K + 1, H, W), see `distribution`. Labels:
        `segmentation_labels`; the loss: `instance_iou_loss` on channels 1 … K."""
        return self.distribution(self.object_probabilities(frame, masks, reference), valid)


# --- the method ----------------------------------------------------------------------------------

def object_slots(references: torch.Tensor) -> torch.Tensor:
    """(B, H, W) reference labels → (B, K) bool, slot k − 1 true where object k is in that
    sample's reference; K the largest object id of the batch (void excluded)."""
    objects = references.long().masked_fill(references == VOID_LABEL, 0)
    num_objects = int(objects.max())
    ids = torch.arange(1, num_objects + 1, device=references.device)
    return (objects.flatten(1)[:, :, None] == ids).any(1)


def one_hot_objects(labels: torch.Tensor, num_objects: int) -> torch.Tensor:
    """(B, H, W) labels → (B, K, H, W) float32 masks [label = k], k = 1 … K (void and other
    ids 0 everywhere)."""
    ids = torch.arange(1, num_objects + 1, device=labels.device).view(1, -1, 1, 1)
    return (labels.long()[:, None] == ids).float()


def mean_object_iou(predicted: torch.Tensor, labels: torch.Tensor,
                    num_objects: int) -> torch.Tensor:
    """The IoU the tolerance threshold tests: (B, H, W) predicted labels (Eq. 6) and the true
    labels → (B,) the mean over objects 1 … K present in the true labels of |pred ∩ true| /
    |pred ∪ true|, void pixels left out; NaN for a frame without any object."""
    valid = (labels != VOID_LABEL)[:, None]
    predicted_masks = one_hot_objects(predicted, num_objects).bool() & valid
    true_masks = one_hot_objects(labels, num_objects).bool()
    intersection = (predicted_masks & true_masks).sum((2, 3))
    union = (predicted_masks | true_masks).sum((2, 3))
    present = true_masks.any(3).any(2)
    ratios = torch.where(present, intersection / union.clamp(min=1), 0.0)
    return ratios.sum(1) / present.sum(1)  # 0 / 0 = NaN without objects


def void_untracked(labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, L, H, W) uint8 labels of B clips, (B, K) their reference's object slots → int64
    labels where every object the reference does not hold (it appears later) is void: neither
    an object to track nor background to learn."""
    batch, num_objects = valid.shape
    ids = torch.arange(1, num_objects + 1, device=labels.device)
    table = torch.full((batch, 256), VOID_LABEL, dtype=torch.long, device=labels.device)
    table[:, 0] = 0
    table[:, 1:num_objects + 1] = torch.where(valid, ids, VOID_LABEL)
    return torch.gather(table, 1, labels.long().flatten(1)).view(labels.shape)


def pixel_cross_entropy(distribution: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The mean over the non-void pixels of −log P̂_label: (B, K + 1, H, W) probabilities
    (channel 0 the background, clamped below at `NORMALISATION_EPSILON`), (B, H, W) labels 0 … K
    or VOID_LABEL. 0 (connected to the graph) when every pixel is void."""
    known = labels != VOID_LABEL
    picked = distribution.gather(1, labels.masked_fill(~known, 0)[:, None])[:, 0]
    losses = -picked.clamp(min=NORMALISATION_EPSILON).log()
    return (losses * known).sum() / known.sum().clamp(min=1)


def against_background(distribution: torch.Tensor) -> torch.Tensor:
    """(B, K + 1, H, W) P̂ (channel 0 the background) → (B, K, H, W) P̂_k / (P̂_0 + P̂_k), each
    object's probability against the background alone. The harness labels a pixel with the object
    of highest probability if that is above 0.5: on these, the object of highest P̂_k if P̂_k > P̂_0,
    which is Eq. 6's argmax over background and objects."""
    background, objects = distribution[:, :1], distribution[:, 1:]
    return objects / (background + objects).clamp(min=torch.finfo(objects.dtype).tiny)


# --- the authors' test-time recipe (dvlab-research/AGSS-VOS, e9272365) -------------------------

YOUTUBE_VOS = "youtube-vos"  # `Video.dataset` of the videos whose recipe is infer_ytv.py's
NORMALISATION_SCOPES = ("all", "group")
LABEL_BACKGROUNDS = ("normalised", "constant")
WARP_NORMALISATIONS = ("corners", "half_size")
FLOW_SOURCES = ("provider", "flownet2c")
RESAMPLINGS = ("bilinear", "opencv")


def authors_input_size(height: int, width: int, halve: bool, multiple: int = 64,
                       max_side: int = 700) -> tuple[int, int]:
    """The network size (h, w) of an (height, width) video, tools/preprocess.py `get_dsize`
    with scale 64 (dataset/vos.py:270): each side floored to a multiple of `multiple`, after
    halving when `halve` (infer_ytv.py's `half_size=True`) and the longer side exceeds
    `max_side`; above 1280·720 pixels, 3/4 of each side floored to a multiple of 8; still
    above, 320×640 in the frame's orientation; each side at least `multiple`."""
    if halve and max(height, width) > max_side:
        height, width = height // 2, width // 2
    size_h, size_w = height // multiple * multiple, width // multiple * multiple
    if size_h * size_w > 1280 * 720:
        size_h, size_w = height // 4 * 3 // 8 * 8, width // 4 * 3 // 8 * 8
    if size_h * size_w > 1280 * 720:
        size_h, size_w = (640, 320) if height > width else (320, 640)
    return max(size_h, multiple), max(size_w, multiple)


def resize_frames_linear(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(T, 3, H, W) uint8 frames → (T, 3, h, w) uint8 at `size` = (h, w) by cv2.resize
    INTER_LINEAR, as dataset/vos.py:272 resizes the frames it reads (colour order kept: resizing
    treats the channels alike)."""
    images = frames.permute(0, 2, 3, 1).cpu().numpy()
    resized = np.stack([cv2.resize(image, size[::-1], interpolation=cv2.INTER_LINEAR)
                        for image in images])
    return torch.from_numpy(resized).permute(0, 3, 1, 2).to(frames.device)


def nearest_indices(source: int, target: int) -> torch.Tensor:
    """The source index cv2.resize INTER_NEAREST takes for each of `target` positions along a
    side of `source` pixels ((target,) int64), read from OpenCV itself."""
    positions = np.arange(source, dtype=np.float32)[None]  # exact integers in float32
    picked = cv2.resize(positions, (target, 1), interpolation=cv2.INTER_NEAREST)[0]
    return torch.from_numpy(picked.astype(np.int64))


def resize_nearest(values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) → (B, C, H, W) at `size` = (H, W), each pixel a copy of the one cv2.resize
    INTER_NEAREST picks (tools/visualize.py:59 resizes the labels so, dataset/vos.py:289 the
    masks)."""
    rows = nearest_indices(values.shape[-2], size[0]).to(values.device)
    cols = nearest_indices(values.shape[-1], size[1]).to(values.device)
    return values.index_select(-2, rows).index_select(-1, cols)


def half_size_sampling_flow(flow: torch.Tensor) -> torch.Tensor:
    """(N, 2, H, W) flow in pixels → the flow with which `warp_backward` samples where the
    authors' `flow_warp_tensor` (tools/utils.py:85–120) does. They normalise x + u as
    (x + u − W/2) / (W/2) and torch 0.4.0's grid_sample, which their scripts assert
    (infer_davis.py:13), maps ±1 to the corner pixels' centres (what align_corners=True does
    since torch 1.3): the sample lands at (x + u)(W − 1)/W, and likewise in y."""
    height, width = flow.shape[-2:]
    rows, cols = torch.meshgrid(torch.arange(height, device=flow.device, dtype=flow.dtype),
                                torch.arange(width, device=flow.device, dtype=flow.dtype),
                                indexing="ij")
    x = (cols + flow[:, 0]) * (width - 1) / width - cols
    y = (rows + flow[:, 1]) * (height - 1) / height - rows
    return torch.stack([x, y], 1)


def refinement_rows(theirs: str, ours: str) -> tuple[tuple[str, str], ...]:
    """Key table rows of one of the authors' `Refine` modules onto a `Refinement`."""
    return ((f"{theirs}.convFS1.", f"{ours}.project."),
            (f"{theirs}.convFS2.", f"{ours}.skip_block.branch.1."),
            (f"{theirs}.convFS3.", f"{ours}.skip_block.branch.3."),
            (f"{theirs}.convMM1.", f"{ours}.merge_block.branch.1."),
            (f"{theirs}.convMM2.", f"{ours}.merge_block.branch.3."))


ENCODER = "network.agnostic.encoder"
# The authors' `AGSSVOS` state dict (networks/agssvos.py; `module.` stripped) onto the official
# variant: their one `Encoder` is the IAM's, whose stem and layer1 the ISM shares; its `atn` is the
# ISM's attention generator; their `Decoder` is the IAM's fusion and refinements and the
# attention-guided decoder.
OFFICIAL_KEY_TABLE = (
    ("Encoder.conv1.", f"{ENCODER}.frame_conv."),
    ("Encoder.conv1_p.", f"{ENCODER}.mask_conv."),
    ("Encoder.bn1.", f"{ENCODER}.stem.1."),
    ("Encoder.res2.", f"{ENCODER}.stages.0.1."),  # max pooling, layer1
    *((f"Encoder.res{stage}.", f"{ENCODER}.stages.{stage - 2}.") for stage in (3, 4, 5)),
    ("Encoder.atn.", "network.specific.attention."),
    ("Decoder.GC.conv_l1.", "network.agnostic.fuse.0.tall_then_wide.0."),
    ("Decoder.GC.conv_l2.", "network.agnostic.fuse.0.tall_then_wide.1."),
    ("Decoder.GC.conv_r1.", "network.agnostic.fuse.0.wide_then_tall.0."),
    ("Decoder.GC.conv_r2.", "network.agnostic.fuse.0.wide_then_tall.1."),
    ("Decoder.convG1.", "network.agnostic.fuse.1.branch.1."),
    ("Decoder.convG2.", "network.agnostic.fuse.1.branch.3."),
    *refinement_rows("Decoder.RF4", "network.agnostic.refine_16"),
    *refinement_rows("Decoder.RF3", "network.agnostic.refine_8"),
    *refinement_rows("Decoder.RF2", "network.decoder.refine"),
    ("Decoder.pred2.", "network.decoder.predict.1."),
)
# train_davis.py:325 saves {"seg": the DataParallel model's state dict, "flow": FlowNet2-C's};
# infer_davis.py:119 and flow_inference.py:44 read them; torch 0.4 saved no num_batches_tracked
OFFICIAL_CHECKPOINT = CheckpointFormat(
    (CheckpointEntry("seg", "module.", OFFICIAL_KEY_TABLE),
     CheckpointEntry("flow", "", (("", "flow_network."),))),
    optional_buffers=("num_batches_tracked",))


class AGSSVOS(VOSMethod):
    """Semi-supervised multi-object segmentation, all objects of a frame in one pass.

    Training (§4.1, recurrent, manual optimisation): a clip of L frames in order (the
    `ConsecutiveSampler`, with temporal reversal) and a reference frame with its masks. The
    clip's first frame gives the ground truth that starts the recurrence; for each next frame
    the previous soft masks P̂_{t−1} are warped to it (backward flow estimated on the augmented
    clip frames by `flow`), the network predicts, and the instance IoU loss of that frame (plus
    `cross_entropy` × `pixel_cross_entropy`, when set) takes one optimiser step (L − 1 steps per
    clip: `trainer.max_steps` counts them). If the mean IoU of the frame's labels is below
    `tolerance`, the next frame is given the ground truth instead of the prediction (`next_masks`).
    Objects missing from a sample's reference are void in its targets, and the padded slots of a
    batch whose samples have fewer objects are left out of Eqs. 4–5.

    Inference: objects are grouped by the frame where they first appear; each group's reference
    features are computed once, from that frame and the group's masks; every later frame warps
    the previous P̂ with the backward flow, runs each group's objects through the network and
    normalises all objects seen so far together (Eqs. 4–5; `normalisation_scope`). An object is
    background before its first frame and its given mask at it; there the given masks also
    replace the earlier objects' P̂ under them (`overwrite_earlier_objects`). The returned
    channels are `against_background` of P̂, on which the harness's labels are Eq. 6's
    (`label_background`).

    The official variant (configs/methods/agssvos/official.yaml) is the authors' network and
    test recipe, each departure from the paper variant a switch below (see the module
    docstring); `official_forward` is their `AGSSVOS.forward` at test time, and `vosbench weights
    import agssvos` reads their checkpoint (`official_checkpoint`).

    Args:
        backbone, weights, channels, kernel_size: the network (see `AGSSNetwork`).
        instance_agnostic, instance_specific, normalise: Table 4's "w/o IAM", "w/o ISM" and
            "w/o NM" when False.
        shared_encoder, mask_conv_bias, mask_downsampling: the authors' network when True, True,
            "bilinear" (see `AGSSNetwork`).
        warp: warp the previous masks with the optical flow (Table 4, "w/o OF": False, the
            previous masks are used as they are).
        warp_normalisation: "corners": a pixel takes the value where its flow points (vosbench's
            `warp_backward`); "half_size": where the authors' `flow_warp_tensor` samples (see
            `half_size_sampling_flow`), in training and at inference.
        flow: the flow source at inference (`FlowProvider.backward`) and the estimator on the
            training clips (`FlowProvider.estimate`); default Farnebäck, no cache. Its time at
            inference counts as model time.
        flow_source: "provider": `flow`; "flownet2c": the model's own FlowNet2-C
            (`flow_network`, fixed; its weights are the checkpoint's, or `flow_weights`) on the
            frames at the network size in BGR order, as the authors (flow_inference.py:49, on
            dataset/vos.py's cv2 frames), at inference and on the training clips.
        flow_weights: a FlowNet2-C weights file for `flow_network` (NVIDIA's checkpoint or the
            authors'), to train the official architecture; None: the weights come with the
            checkpoint (`vosbench weights import`).
        input_size: (H, W) frames are resized to at inference ((448, 832) DAVIS, (320, 640)
            YouTube-VOS in the paper); None: each video's own size, its sides floored to
            multiples of 64 (the authors', `authors_input_size`); training clips come at the
            datamodule transform's size.
        halve_large_frames: with input_size None, halve the frames whose longer side exceeds
            700 first (infer_ytv.py: `half_size=True`); None: for YouTube-VOS videos only.
        resampling: "bilinear": frames and given masks resized bilinearly to the network size,
            the output bilinearly back; "opencv": the authors' cv2 INTER_LINEAR for the uint8
            frames, INTER_NEAREST for the given masks and for the output, which is composed
            (with the given masks) at the network size.
        normalisation_scope: "all": Eqs. 4–5 over every object seen so far; "group": over the
            objects of one first-frame group, as the authors' network normalises its batch.
        label_background: "normalised": each returned channel is P̂_k / (P̂_0 + P̂_k) with the
            P̂_0 of its normalisation (Eq. 6's argmax); "constant": P̂_k itself, which the
            harness compares with `threshold` (the authors' constant background 0.5 at
            `threshold` 0.5, infer_davis.py:173).
        overwrite_earlier_objects: at a frame where objects first appear, their given masks
            replace the earlier objects' P̂ (and output) under them; False: the earlier objects
            keep theirs, as the authors' groups do.
        drop_lost_objects: an object whose warped previous mask has no pixel above 0.5 gets
            P̂ = 0 from then on (infer_ytv.py:215–217); None: for YouTube-VOS videos only.
        tolerance: the IoU tolerance threshold of the recurrent training.
        cross_entropy: the weight of a pixel-wise cross-entropy on P̂ (void excluded) added to
            Eq. 7 (not in the paper; 0: Eq. 7 alone).
        lr, weight_decay, poly_power: the learning rate, the weight decay and the power of the
            per-step poly decay.
        head_lr_multiplier: the learning rate of the attention generator and the decoder (the
            last refinement and prediction layers) relative to `lr`.
        optimizer: "adam" (the paper), "adamw" or "sgd" (with `momentum`).
        freeze_encoder_bn: keep the ResNets' BatchNorm layers in eval mode (running statistics
            fixed) while training, as the paper's pretrained encoders are: at the start of
            training and whenever the model is put in train mode again.
        kwargs: VOSMethod's arguments (crf, threshold, protocol, …).
    """

    name = "agssvos"
    semi_supervised = True
    inference_only = ("input_size", "halve_large_frames", "resampling", "normalisation_scope",
                      "label_background", "overwrite_earlier_objects", "drop_lost_objects")
    official_checkpoint = OFFICIAL_CHECKPOINT
    official_settings = {
        "shared_encoder": True,  # networks/agssvos.py:190–194: one Encoder for every stream
        "mask_conv_bias": True,  # networks/agssvos.py:17
        "mask_downsampling": "bilinear",  # networks/agssvos.py:80
        "warp_normalisation": "half_size",  # tools/utils.py:85–120
        "flow_source": "flownet2c",  # infer_davis.py:106, 203
        "input_size": None,  # dataset/vos.py:270
        "halve_large_frames": None,  # infer_davis.py:132 False, infer_ytv.py:135 True
        "resampling": "opencv",  # dataset/vos.py:272, 289; tools/visualize.py:59
        "normalisation_scope": "group",  # networks/agssvos.py:148–157 over the batch
        "label_background": "constant",  # infer_davis.py:173
        "overwrite_earlier_objects": False,  # infer_davis.py:194, 215
        "drop_lost_objects": None,  # infer_davis.py: never; infer_ytv.py:215–217
    }

    def __init__(self, backbone: str = "resnet50", weights: str | None = None,
                 channels: int = 256, kernel_size: int = 7, instance_agnostic: bool = True,
                 instance_specific: bool = True, normalise: bool = True, warp: bool = True,
                 flow: FlowProvider | None = None,
                 input_size: tuple[int, int] | None = (448, 832),
                 tolerance: float = 0.5, cross_entropy: float = 0.0, lr: float = 1e-5,
                 weight_decay: float = 4e-5, poly_power: float = 0.9,
                 head_lr_multiplier: float = 10.0,
                 optimizer: str = "adam", momentum: float = 0.9, freeze_encoder_bn: bool = True,
                 shared_encoder: bool = False, mask_conv_bias: bool = False,
                 mask_downsampling: str = "area", warp_normalisation: str = "corners",
                 flow_source: str = "provider", flow_weights: str | None = None,
                 halve_large_frames: bool | None = False, resampling: str = "bilinear",
                 normalisation_scope: str = "all", label_background: str = "normalised",
                 overwrite_earlier_objects: bool = True, drop_lost_objects: bool | None = False,
                 **kwargs):
        super().__init__(**kwargs)
        check_optimizer(optimizer)
        if not 0 <= tolerance <= 1:
            raise ValueError(f"AGSSVOS: tolerance is an IoU in [0, 1], got {tolerance}")
        for setting, value, known in (
                ("warp_normalisation", warp_normalisation, WARP_NORMALISATIONS),
                ("flow_source", flow_source, FLOW_SOURCES), ("resampling", resampling, RESAMPLINGS),
                ("normalisation_scope", normalisation_scope, NORMALISATION_SCOPES),
                ("label_background", label_background, LABEL_BACKGROUNDS)):
            if value not in known:
                raise ValueError(f"AGSSVOS: {setting} is one of {', '.join(known)}, "
                                 f"got {value!r}")
        if halve_large_frames and input_size is not None:
            raise ValueError("AGSSVOS: halve_large_frames belongs to the authors' sizes: it "
                             "needs input_size null")
        if flow_weights is not None and flow_source != "flownet2c":
            raise ValueError("AGSSVOS: flow_weights are FlowNet2-C's: they need flow_source "
                             "flownet2c")
        self.save_hyperparameters(ignore=["flow"])
        self.automatic_optimization = False
        self.flow = flow or FlowProvider("farneback")
        self.network = AGSSNetwork(backbone, weights, channels, kernel_size, instance_agnostic,
                                   instance_specific, normalise, shared_encoder, mask_conv_bias,
                                   mask_downsampling)
        self.flow_network = None
        if flow_source == "flownet2c":
            self.flow_network = FlowNet2C() if flow_weights is None else \
                load_flownet2c(flow_weights)
            self.flow_network.requires_grad_(False)  # the authors' optimiser leaves it out

    def encoders(self) -> list[nn.Module]:
        """The ResNets: the IAM's encoder and the ISM's feature extractor (those present)."""
        return [module.encoder for module in (self.network.agnostic, self.network.specific)
                if module is not None and module.encoder is not None]

    def on_train_start(self) -> None:
        self.train()  # Lightning keeps the modules' modes as they were: freeze here

    def train(self, mode: bool = True) -> "AGSSVOS":
        """nn.Module.train, then the encoders' BatchNorm back in eval mode when frozen (wherever
        a loop or a user switches the model to training); the flow network always in eval
        mode."""
        super().train(mode)
        if mode and self.hparams.freeze_encoder_bn:
            for encoder in self.encoders():
                for module in encoder.modules():
                    if isinstance(module, nn.modules.batchnorm._BatchNorm):
                        module.eval()
        if self.flow_network is not None:
            self.flow_network.eval()
        return self

    @torch.inference_mode()
    def official_forward(self, x: torch.Tensor, l_merge: torch.Tensor,
                         l_obj: torch.Tensor | None = None, ref: torch.Tensor | None = None
                         ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The authors' `AGSSVOS.forward` at test time (networks/agssvos.py:188–197), computed
        by this model's network.

        x: (K, 3, H, W) ImageNet-normalised RGB copies of one frame (their `img`; H, W multiples
        of 64). l_merge: (1, H, W) the merged mask of the IAM's stream. l_obj: (K, H, W) the
        objects' warped masks. ref: the reference's top features, what this call returns
        without `ref`. Returns the (1, C_5, H/32, W/32) top features r5 of (x, l_merge) when
        `ref` is None; else (p, r5), p (K, 1, H, W) the objects' probabilities normalised
        together (their `Decoder._p_norm` over the batch: Eqs. 4–5 over these K). Their
        scripts pass K copies of one frame (`img.expand`, infer_davis.py line 209), and this
        model's network reads it once: other frames are a ValueError.
        """
        if not torch.equal(x, x[:1].expand_as(x)):
            raise ValueError("official_forward takes K copies of one frame (x[k] = x[0] for "
                             "every k), as the authors' inference scripts pass it")
        frame, merged = x[:1], l_merge[None].float()
        top = self.network.agnostic.encode_reference(frame, merged)
        if ref is None:
            return top
        objects = self.network.object_probabilities(frame, l_obj[None].float(), ref, merged)
        return self.network.distribution(objects)[0, 1:, None], top

    def flows_of_pairs(self, firsts: list[np.ndarray],
                       seconds: list[np.ndarray]) -> list[np.ndarray]:
        """(H, W, 3) uint8 RGB images → (H, W, 2) float32 flow from each first to its second,
        in pixels: `flow`'s estimator, or `flow_network` on the BGR images as the authors'
        `Inference_flow.infer`."""
        if self.flow_network is None:
            return self.flow.estimate(firsts, seconds)

        def bgr(images: list[np.ndarray]) -> list[np.ndarray]:
            return [np.ascontiguousarray(image[..., ::-1]) for image in images]

        return infer_flows(self.flow_network, bgr(firsts), bgr(seconds))

    def clip_flows(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, L, 3, H, W) clip frames in [0, 1] → (B, L − 1, 2, H, W) the backward flow of
        frames 1 … L − 1, each to the frame before it in the clip, in pixels."""
        batch, length = frames.shape[:2]
        images = frames.mul(255).round().clamp(0, 255).byte().permute(0, 1, 3, 4, 2).cpu().numpy()
        pairs = [(b, i) for b in range(batch) for i in range(1, length)]
        flows = self.flows_of_pairs([images[b, i] for b, i in pairs],
                                    [images[b, i - 1] for b, i in pairs])
        flows = torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2)
        return flows.unflatten(0, (batch, length - 1)).to(frames.device)

    def warp(self, masks: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        """(N, K, H, W) masks of frame t − 1, (N, 2, H, W) backward flow t → t − 1 in pixels →
        the masks warped to frame t by `warp_normalisation`'s convention."""
        if self.hparams.warp_normalisation == "half_size":
            flow = half_size_sampling_flow(flow)
        return warp_backward(masks, flow)

    def training_step(self, clip: Clip, batch_index: int) -> None:
        """One clip, frame by frame: warp, predict, one optimiser step per frame. A batch whose
        references hold no object (a reversed YouTube-VOS clip whose objects have left) takes no
        step and is counted in `train/clips_without_objects`; under DDP the other ranks would
        then wait for its gradients (not handled yet)."""
        if clip.reference_frame is None:
            raise InputError("AGSS-VOS trains on clips with a reference frame: give the "
                             "datamodule the ConsecutiveSampler (data.init_args.sampler)")
        hp = self.hparams
        optimizer, schedule = self.optimizers(), self.lr_schedulers()
        valid = object_slots(clip.reference_mask)  # (B, K)
        num_objects = valid.shape[1]
        if not valid.any():
            self.log("train/clips_without_objects", float(len(clip.video)))
            return
        labels = void_untracked(clip.masks, valid)
        reference_frame = normalize_images(clip.reference_frame)
        reference_masks = one_hot_objects(clip.reference_mask, num_objects)
        frames = normalize_images(clip.frames)
        flows = self.clip_flows(clip.frames) if hp.warp else None
        previous = one_hot_objects(labels[:, 0], num_objects)
        losses, truths = [], []
        length = clip.frames.shape[1]
        for i in range(1, length):
            masks = previous if flows is None else self.warp(previous, flows[:, i - 1])
            reference = self.network.encode_reference(reference_frame, reference_masks)
            distribution = self.network(frames[:, i], masks, reference, valid)
            loss = instance_iou_loss(distribution[:, 1:], labels[:, i])
            if hp.cross_entropy:
                loss = loss + hp.cross_entropy * pixel_cross_entropy(distribution, labels[:, i])
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()
            schedule.step()
            losses.append(loss.detach())
            if i < length - 1:  # the last frame has no next one to give its masks to
                previous, truth = self.next_masks(distribution, labels[:, i])
                truths.append(truth.float().mean())
        self.log("train/loss", torch.stack(losses).mean(), prog_bar=True)
        if truths:  # clips of 3 frames or more
            self.log("train/ground_truth_fraction", torch.stack(truths).mean())

    @torch.no_grad()
    def next_masks(self, distribution: torch.Tensor,
                   labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The IoU tolerance threshold: a frame's (B, K + 1, H, W) distribution and (B, H, W)
        labels → the (B, K, H, W) masks the next frame warps, the one-hot ground truth where the
        prediction's mean object IoU is below `tolerance` and P̂_1 … P̂_K otherwise, and (B,)
        bool where the ground truth was taken."""
        num_objects = distribution.shape[1] - 1
        iou = mean_object_iou(segmentation_labels(distribution), labels, num_objects)
        truth = iou < self.hparams.tolerance  # NaN (no object in the frame): keep the prediction
        masks = torch.where(truth[:, None, None, None], one_hot_objects(labels, num_objects),
                            distribution[:, 1:])
        return masks, truth

    @torch.inference_mode()
    def predict_video(self, video: LoadedVideo) -> torch.Tensor:
        """(T, K, H, W): channel k − 1 object k's output (`label_background`) at the video's
        size; the given masks at each object's first frame, 0 before it."""
        given = video.video.reference_masks()
        num_objects = max((int(labels.max()) for labels in given.values()), default=0)
        size, input_size = tuple(video.video.size), self.network_size(video.video)
        outputs = torch.zeros(len(video), max(num_objects, 1), *size, device=self.device)
        if num_objects == 0:
            return outputs
        opencv = self.hparams.resampling == "opencv"
        resized = resize_frames_linear(video.frames, input_size) \
            if opencv or self.flow_network is not None else None
        frames = normalize_images(resized.float().div(255) if opencv else
                                  resize(video.frames.float().div(255), input_size))
        bgr = None if self.flow_network is None else \
            resized.flip(1).permute(0, 2, 3, 1).cpu().numpy()  # the authors' `ori_img`
        groups: list[tuple[torch.Tensor, torch.Tensor | None]] = []  # (object slots, reference)
        previous = frames.new_zeros(1, num_objects, *input_size)  # P̂_{t−1} at input_size
        for t in range(len(video)):
            output = frames.new_zeros(1, num_objects, *input_size)
            if groups:
                previous, output = self.segment(frames[t:t + 1],
                                                self.warped(previous, video, t, bgr), groups,
                                                video.video)
            if t in given:
                labels = torch.from_numpy(given[t])[None].to(frames.device)
                masks = one_hot_objects(labels, num_objects)
                slots = masks.flatten(2).any(2)[0].nonzero()[:, 0]
                small = one_hot_objects(resize_nearest(labels[None], input_size)[0],
                                        num_objects) if opencv else resize(masks, input_size)
                groups.append((slots, self.network.encode_reference(frames[t:t + 1],
                                                                    small[:, slots])))
                previous = self.with_given(previous, small)
            if opencv:  # composed at the network size, then nearest (infer_davis.py:194, 227)
                if t in given:
                    output = self.with_given(output, small)
                output = resize_nearest(output, size)
            else:
                output = resize(output, size)
                if t in given:
                    output = self.with_given(output, masks)
            outputs[t] = output[0]
        return outputs

    def network_size(self, video: Video) -> tuple[int, int]:
        """The (h, w) the network sees `video` at: `input_size`, or the authors' size of its
        frames (`authors_input_size`, halved by `halve_large_frames`)."""
        if self.hparams.input_size is not None:
            return tuple(self.hparams.input_size)
        return authors_input_size(*video.size,
                                  self.dataset_rule(self.hparams.halve_large_frames, video))

    @staticmethod
    def dataset_rule(setting: bool | None, video: Video) -> bool:
        """A YouTube-VOS rule of the authors' (`halve_large_frames`, `drop_lost_objects`): the
        setting, or when None whether `video` is a YouTube-VOS video."""
        return video.dataset == YOUTUBE_VOS if setting is None else setting

    def segment(self, frame: torch.Tensor, masks: torch.Tensor,
                groups: list[tuple[torch.Tensor, torch.Tensor | None]],
                video: Video) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame of inference: (1, 3, h, w) normalised frame, (1, K, h, w) warped P_{t−1,t},
        each group's (object slots, reference features) → (P̂ (1, K, h, w), the output channels
        (1, K, h, w), see `label_background`), 0 for the objects of no group yet."""
        objects, active = torch.zeros_like(masks), torch.zeros(
            1, masks.shape[1], dtype=torch.bool, device=masks.device)
        for slots, reference in groups:
            objects[:, slots] = self.network.object_probabilities(frame, masks[:, slots],
                                                                  reference)
            active[:, slots] = True
        if self.hparams.normalisation_scope == "all":
            distribution = self.network.distribution(objects, active)
            probabilities, output = distribution[:, 1:], self.output_channels(distribution)
        else:
            probabilities, output = torch.zeros_like(objects), torch.zeros_like(objects)
            for slots, _ in groups:
                distribution = self.network.distribution(objects[:, slots])
                probabilities[:, slots] = distribution[:, 1:]
                output[:, slots] = self.output_channels(distribution)
        if self.dataset_rule(self.hparams.drop_lost_objects, video):
            kept = (masks > 0.5).flatten(2).any(2)[:, :, None, None]
            probabilities, output = probabilities * kept, output * kept
        return probabilities, output

    def output_channels(self, distribution: torch.Tensor) -> torch.Tensor:
        """(B, K + 1, h, w) P̂ → (B, K, h, w) what `predict_video` returns of it."""
        if self.hparams.label_background == "constant":
            return distribution[:, 1:]
        return against_background(distribution)

    def with_given(self, values: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """(1, K, h, w) P̂ or outputs with the (1, K, h, w) given masks of the objects first
        appearing at this frame (0 in the other channels) in their channels; and, when
        `overwrite_earlier_objects`, 0 for the other objects under those masks."""
        if self.hparams.overwrite_earlier_objects:
            return values * (1 - masks.amax(1, keepdim=True)) + masks
        return values + masks  # a new object's channel is 0 before its first frame

    def warped(self, previous: torch.Tensor, video: LoadedVideo, t: int,
               frames: np.ndarray | None = None) -> torch.Tensor:
        """(1, K, h, w) P̂_{t−1} → P_{t−1,t}: warped with the backward flow t → t − 1 at the
        input size (unchanged without `warp`): `flow`'s, resized to the input size, or
        `flow_network`'s on `frames`, the (T, h, w, 3) uint8 BGR frames at the input size."""
        if not self.hparams.warp:
            return previous
        if self.flow_network is None:
            flow = torch.from_numpy(self.flow.backward(video.video, t)).permute(2, 0, 1)[None]
            flow = resize_flow(flow.to(previous.device), tuple(previous.shape[-2:]))
        else:  # infer_davis.py:203, the flow of frame t to t − 1
            flow = torch.from_numpy(infer_flow(self.flow_network, frames[t], frames[t - 1]))
            flow = flow.permute(2, 0, 1)[None].to(previous.device)
        return self.warp(previous, flow)

    def configure_optimizers(self):
        hp = self.hparams
        faster = [self.network.decoder] + ([self.network.specific.attention]
                                           if self.network.specific is not None else [])
        groups = modules_faster(self.network, faster, hp.lr, hp.head_lr_multiplier)
        optimizer = make_optimizer(hp.optimizer, groups, hp.momentum, hp.weight_decay)
        return self.poly_schedule(optimizer, hp.poly_power, self.total_optimizer_steps())

    def total_optimizer_steps(self) -> int:
        """The run's optimiser steps, L − 1 per clip: `trainer.max_steps` if set, else the
        training batches times L − 1 (L: the datamodule sampler's clip length)."""
        trainer = self.trainer
        if trainer.max_steps != -1:
            return trainer.max_steps
        sampler = getattr(trainer.datamodule, "sampler", None)
        if not isinstance(sampler, ConsecutiveSampler):
            raise InputError("AGSS-VOS trains on ConsecutiveSampler clips "
                             "(data.init_args.sampler)")
        return trainer.estimated_stepping_batches * max(sampler.length - 1, 1)
