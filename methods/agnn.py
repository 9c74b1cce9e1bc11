"""`agnn`: Attentive Graph Neural Network for zero-shot VOS (Wang et al., ICCV 2019; paper §3).

The N′ frames of a sample are the nodes of a fully connected graph with self-loops. Each node
state is a DeepLabV3 feature map (Eq. 3); K message-passing iterations send an intra-attention
message along each loop edge (Eqs. 4, 6) and an inter-attention message along each line edge
(Eqs. 5, 7), gate them (Eq. 8), sum them (Eq. 9) and update the node with a ConvGRU (Eq. 10); a
small FCN reads out [h^K, h^0] (Eq. 11). Every function is shared by all nodes and iterations, and
the message is a sum over the nodes, so the graph takes any N′ ≥ 1 and is
permutation-equivariant. At test time a video is split into interleaved subsets of N′ = 5 frames,
one graph each (`frame_subsets`).

Choices the paper leaves open (see the classes): the query/key reduction of the intra-attention
(C/8), the initialisation of W_c (I/√C), the readout's channels (256, BatchNorm, ReLU), and the
gating of the loop message (gated by the same gate as every message: Eq. 9 sums g_ji ⊙ m_ji over
all j, i included).

The official variant (configs/methods/agnn/official.yaml) is the network the authors released
(carrierlxk/AGNN, deeplab/siamese_model_conf_gnn.py `GNNNet`, 82,324,932 parameters), whose
checkpoint `vosbench weights import agnn` reads (`AUTHORS_KEY_TABLE`), with their test-time recipe
(test_iteration_conf_gnn.py, dataloaders/PairwiseImg_test_new.py). It departs from the paper in
these switches (paper value → the authors'; `AGNN.official_settings`), each independent, so that a
sweep on the official preset can turn any one back:

- `trunk`: "timm" → "deeplabv2". The authors' ResNet-101 is DeepLab-v2's (`DeepLabV2ResNet`):
  strides on the first 1×1 convolutions, ceil-mode max pooling, every block of layer3 and layer4
  dilated (2, 4). timm's parameter names and shapes, another function.
- `embedding_head`: "aspp" → "aspp-pam". The paper's embedding is "the first five convolution
  blocks of DeepLabV3"; the authors' head (`layer5`) has 512-channel ASPP branches with biases,
  BatchNorm after the image pooling too, the pooling branch first, a 3×3 fusion to 256 with a
  bias, BatchNorm and a one-slope PReLU (`AUTHORS_AGNN_ASPP`), then a position self-attention
  (PAM: Eq. 4's form with C/4 queries and keys, `IntraAttention`), a 3×3 convolution with
  BatchNorm and ReLU, and Dropout2d(0.1) (`ContextHead`).
- `input_normalisation`: "imagenet" → "bgr-mean": BGR 0–255 minus the Caffe mean, no division
  (the input DeepLab-v2 was trained with).
- `gate`: "channel" (Eq. 8) → "spatial", and `gate_bias`: True (Eq. 8's b_g) → False: one
  σ(conv1×1(m)) map per message, without a bias.
- `aggregation`: "sum" (Eq. 9, any N′) → "concat": the gated messages of the two other nodes,
  concatenated in increasing order of the node, through a 3×3 convolution 2C → C with a bias
  (`conv_fusion`): graphs of exactly N′ = 3.
- `loop_message`: True (Eqs. 4, 6) → False: no intra-attention message along the self-loop (the
  authors' self-attention sits in the embedding instead).
- `num_iterations`: K = 3 (§3.3) → 5 (`propagate_layers`).
- `readout_depth`: 2 (Eq. 11's two 3×3 convolutions) → 1 (`conv1`, `bn1`, ReLU, then the 1×1).
- `parameter_layout`: "vosbench" → "authors": the ConvGRU's gates as separate convolutions, and
  the line-edge weight stored as their `nn.Linear` stores it (e_ij = h_i Wᵀ h_jᵀ: W_c = Wᵀ). The
  same functions, other tensors: the key table renames, it never transposes or splits.
- at test time (inference options): `test_graphs` "subsets" → "sampled" with `num_nodes_test`
  5 → 3 (each frame with two frames drawn at random from its whole video, seeded here),
  `test_scales` (1.0,) → (0.75, 1.0, 1.5) averaged, `test_resize` "vosbench" → "authors" (see
  `AGNN`).

Both variants share the rest: the line-edge attention and messages (Eqs. 5, 7), the synchronous
ConvGRU update with the message as input and the node state as state, the readout of
[h^K, h^0] and its bilinear upsampling (align_corners=False) before the sigmoid, and the static
head (their `main_classifier`).

Test-time graphs and scales (checked against the authors' inference): the paper says (§3.3)
"we split I into T subsets … with an interval of T frames … N′ = 5 during testing", at 473×473,
and nothing of several scales; the authors' script instead builds, for every frame, a graph of
that frame and two frames drawn with `random.sample` from the whole video (unseeded), at three
scales. The paper variant keeps what the paper says: deterministic interleaved subsets (T =
⌈N / N′⌉, so that no graph exceeds N′ where N′ does not divide N), one scale; the authors'
graphs and scales are the official recipe's. Where the paper is silent, the paper variant keeps
vosbench's conventions: frames resized as floats, logits (not probabilities) resized to the frame
size with align_corners=False, no 8-bit rounding; the official recipe uses the authors' (cv2 on
the 8-bit frames, probabilities resized with align_corners=True, truncated to 8 bits as they are
saved).
"""

import math
import random

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_info
from torch import nn

from vosbench.datamodules.clips import Clip, LoadedVideo
from vosbench.methods.backbones import (
    TRUNKS,
    DeepLabV3,
    normalize_images,
    resize,
    subtract_bgr_mean,
)
from vosbench.methods.base import VOSMethod
from vosbench.methods.losses import FOREGROUND_LOSSES, ratio_scaled_bce
from vosbench.methods.official import CheckpointEntry, CheckpointFormat
from vosbench.methods.optimizers import check_optimizer, embedding_and_rest, make_optimizer
from vosbench.methods.recurrent import ConvGRU

# "code": the loss of the authors' public code, an option next to the paper's Eq. 12 ("balanced")
LOSSES = {**FOREGROUND_LOSSES, "code": ratio_scaled_bce}
GATES = ("channel", "spatial", "none")
EMBEDDING_HEADS = ("aspp", "aspp-pam")
AGGREGATIONS = ("sum", "concat")
NORMALISATIONS = {"imagenet": normalize_images, "bgr-mean": subtract_bgr_mean}
PARAMETER_LAYOUTS = ("vosbench", "authors")
TEST_GRAPHS = ("subsets", "sampled")
TEST_RESIZES = ("vosbench", "authors")
# "concat" fuses the messages of the two other nodes of a 3-node graph (conv_fusion: 512 → 256)
CONCAT_NODES = 3
# the authors' ASPP (deeplab/siamese_model_conf_gnn.py, lines 98–119 and 138–162), as arguments
# of backbones.ASPP
AUTHORS_AGNN_ASPP = dict(branch_channels=512, bias=True, pooling_norm=True, pooling_first=True,
                         fuse_kernel_size=3, fuse_activation="prelu")

# Their state dict (GNNNet, 700 entries, saved from DataParallel: "module." first) → the official
# variant's: (their prefix, ours); the longest matching prefix wins (methods/official.py).
AUTHORS_KEY_TABLE = (
    ("encoder.", "embedding.encoder."),  # conv1, bn1, layer1–4: the DeepLab-v2 ResNet
    ("encoder.layer5.conv.", "embedding.aspp.pooling.1."),
    ("encoder.layer5.bn_x.", "embedding.aspp.pooling.2."),
    *((f"encoder.layer5.conv2d_{i}.", f"embedding.aspp.branches.{i}.0.") for i in range(4)),
    *((f"encoder.layer5.bn_{i}.", f"embedding.aspp.branches.{i}.1.") for i in range(4)),
    ("encoder.layer5.bottleneck.", "embedding.aspp.fuse.0."),
    ("encoder.layer5.bn.", "embedding.aspp.fuse.1."),
    ("encoder.layer5.prelu.", "embedding.aspp.fuse.2."),
    ("encoder.layer5.sa.query_conv.", "embedding.context.attention.query."),
    ("encoder.layer5.sa.key_conv.", "embedding.context.attention.key."),
    ("encoder.layer5.sa.value_conv.", "embedding.context.attention.value."),
    ("encoder.layer5.sa.gamma", "embedding.context.attention.scale"),
    ("encoder.layer5.conv51.", "embedding.context.conv."),
    ("encoder.main_classifier.", "static_head."),
    ("linear_e.weight", "graph.inter_attention.weight"),
    ("gate.", "graph.gate.conv."),
    ("conv_fusion.", "graph.fusion."),
    ("ConvGRU.reset_gate.", "graph.update.reset_gate."),
    ("ConvGRU.update_gate.", "graph.update.update_gate."),
    ("ConvGRU.out_gate.", "graph.update.candidate."),
    ("conv1.", "readout.0."),
    ("bn1.", "readout.1."),
    ("main_classifier1.", "readout.3."),
)
# test_iteration_conf_gnn.py line 116: torch.load(path)["model"], "module." stripped (line 87);
# checkpoints of torch < 0.4.1 have no BatchNorm counters, which their load_state_dict accepts
AUTHORS_CHECKPOINT = CheckpointFormat((CheckpointEntry("model", "module.", AUTHORS_KEY_TABLE),),
                                      optional_buffers=("num_batches_tracked",))


def frame_subsets(num_frames: int, num_nodes: int) -> list[list[int]]:
    """The test-time graphs of an N-frame video (paper §3.3): T = ⌈N / N′⌉ subsets
    {t, t + T, t + 2T, …}, t = 0 … T − 1; every frame is in exactly one. Their sizes are
    ⌈N / T⌉ ≤ N′ and, for the last ones, one less; a short video can give subsets well under N′.
    E.g. N = 7, N′ = 3: [[0, 3, 6], [1, 4], [2, 5]]; N = 6, N′ = 5: [[0, 2, 4], [1, 3, 5]]."""
    if num_nodes < 1:
        raise ValueError(f"a graph needs at least one node, got num_nodes={num_nodes}")
    num_subsets = math.ceil(num_frames / num_nodes)
    return [list(range(start, num_frames, num_subsets)) for start in range(num_subsets)]


def sampled_graphs(num_frames: int, num_nodes: int, generator: random.Random) -> list[list[int]]:
    """The authors' test-time graphs (dataloaders/PairwiseImg_test_new.py, lines 114–117): for
    each frame t in order, the graph [t, j_1, …, j_{N′−1}] of t and N′ − 1 distinct frames drawn
    by `generator.sample` from all N frames of the video (t itself may be drawn). A video of fewer
    than N′ − 1 frames, where their `random.sample` raises, draws all its frames and repeats them
    in that order: a one-frame video with N′ = 3 is the graph [0, 0, 0]."""
    if num_nodes < 2:
        raise ValueError(f"a sampled graph needs at least two nodes (the frame and one drawn), "
                         f"got num_nodes={num_nodes}")
    drawn = num_nodes - 1
    graphs = []
    for target in range(num_frames):
        others = generator.sample(range(num_frames), min(drawn, num_frames))
        graphs.append([target, *(others * drawn)[:drawn]])
    return graphs


def video_generator(seed: int, name: str) -> random.Random:
    """The random generator of one video's sampled graphs: Python's, as the authors' (who call
    `random.sample` unseeded), seeded by the seed and the video's name, so that a video gets the
    same graphs on any device and rank, in any order of the videos."""
    return random.Random(f"{seed}/{name}")


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """The input size at one test scale, rounded down as the authors' int(473 · scale)
    (PairwiseImg_test_new.py line 152): 473 at 0.75, 1.0, 1.5 → 354, 473, 709."""
    return int(size[0] * scale), int(size[1] * scale)


def resize_frames(frames: torch.Tensor, size: tuple[int, int], method: str) -> torch.Tensor:
    """(M, 3, H, W) uint8 frames → (M, 3, h, w) float images in [0, 1] at `size` = (h, w).
    "vosbench": bilinear on floats (align_corners=False, no antialiasing); "authors": cv2.resize
    with INTER_LINEAR on the 8-bit frames, 8-bit results (PairwiseImg_test_new.py line 153)."""
    if method == "vosbench":
        return resize(frames.float().div(255), size)
    images = frames.permute(0, 2, 3, 1).cpu().numpy()
    resized = np.stack([cv2.resize(image, size[::-1], interpolation=cv2.INTER_LINEAR)
                        for image in images])
    return torch.from_numpy(resized).to(frames.device).permute(0, 3, 1, 2).float().div(255)


def logits_to_probabilities(logits: torch.Tensor, size: tuple[int, int],
                            method: str) -> torch.Tensor:
    """(M, 1, h, w) logits at the input size → (M, 1, H, W) probabilities at the frame size.
    "vosbench": logits resized bilinearly (align_corners=False), then the sigmoid; "authors":
    the sigmoid, then bilinear with align_corners=True (test_iteration_conf_gnn.py line 161)."""
    if method == "vosbench":
        return torch.sigmoid(resize(logits, size))
    return F.interpolate(torch.sigmoid(logits), size=size, mode="bilinear", align_corners=True)


def truncate_to_8_bits(probabilities: torch.Tensor) -> torch.Tensor:
    """⌊255 p⌋ / 255: the map the authors save, `(p * 255).astype(np.uint8)` (truncation; test_
    iteration_conf_gnn.py line 166), which their CRF and evaluation read."""
    return probabilities.mul(255).to(torch.uint8).float().div(255)


def is_static_step(step: int, static_every: int | None) -> bool:
    """Whether optimizer step `step` (0-based) trains on static images: every `static_every`-th
    step (steps k − 1, 2k − 1, …); never when `static_every` is None."""
    return static_every is not None and step % static_every == static_every - 1


def neighbours(nodes: torch.Tensor) -> torch.Tensor:
    """(B, N, …) node tensors → (B, N, N − 1, …): for each node i, the other nodes j ≠ i in
    increasing order (empty for N = 1)."""
    num_nodes = nodes.shape[1]
    others = torch.arange(num_nodes - 1, device=nodes.device)
    receivers = torch.arange(num_nodes, device=nodes.device)[:, None]
    return nodes[:, others + (others >= receivers)]  # skips j = i: (N, N − 1) indices


class IntraAttention(nn.Module):
    """Loop-edge embedding (Eq. 4), the loop message m_ii (Eq. 6):
    `e_ii = α · softmax((W_f h)(W_h h)ᵀ)(W_l h) + h`, every W a 1×1 convolution.

    The paper does not give the channels of W_f and W_h; `reduction` = 8 (C/8) is that of the
    self-attention block Eq. 4 has the form of (SAGAN, Zhang et al. 2019). α starts at 0, so the
    loop message is the node state itself until the attention has learnt something.

    Args:
        channels: C of the node states.
        reduction: W_f and W_h map C to C // reduction channels.
    """

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        if channels < reduction:
            raise ValueError(f"IntraAttention: channels ({channels}) must be at least the "
                             f"reduction ({reduction})")
        self.query = nn.Conv2d(channels, channels // reduction, 1)  # W_f
        self.key = nn.Conv2d(channels, channels // reduction, 1)  # W_h
        self.value = nn.Conv2d(channels, channels, 1)  # W_l
        self.scale = nn.Parameter(torch.zeros(1))  # α

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """(M, C, h, w) node states → (M, C, h, w) loop messages."""
        queries = self.query(states).flatten(2).transpose(1, 2)  # (M, hw, C')
        keys = self.key(states).flatten(2)  # (M, C', hw)
        values = self.value(states).flatten(2)  # (M, C, hw)
        attention = (queries @ keys).softmax(-1)  # (M, hw, hw): row p weighs the positions q
        context = values @ attention.transpose(1, 2)  # (M, C, hw)
        return self.scale * context.view_as(states) + states


class InterAttention(nn.Module):
    """Line-edge embeddings (Eq. 5) and the messages along them (Eq. 7), for every ordered pair
    i ≠ j of the N′ nodes of every sample at once: `e_ij = h_i W_c h_jᵀ` (hw × hw) and
    `m_ji = softmax_rows(e_ij) h_j`, so that each position of node i receives a convex
    combination of node j's positions.

    W_c (C × C) is initialised to I / √C: the edge starts as scaled dot-product similarity, whose
    softmax is neither uniform nor saturated for unit-scale features (a random W_c would start
    from arbitrary correspondences). Every ordered pair uses W_c with the receiver on the left,
    so the graph is permutation-equivariant; the paper's `e_ji = e_ijᵀ` then holds while W_c is
    symmetric, as it is at initialisation.

    Args:
        channels: C of the node states.
        transposed: `weight` holds W_c transposed, W = W_cᵀ, as the authors' `linear_e`
            (an nn.Linear, which computes h Wᵀ) holds it: the same edges for that weight.
    """

    def __init__(self, channels: int, transposed: bool = False):
        super().__init__()
        self.transposed = transposed
        self.weight = nn.Parameter(torch.eye(channels) / math.sqrt(channels))  # W_c (or W_cᵀ)

    def attention(self, states: torch.Tensor) -> torch.Tensor:
        """(B, N, C, h, w) node states → (B, N, N − 1, hw, hw) softmax_rows(e_ij): entry
        [b, i, n, p, q] weighs position q of the n-th other node j of node i for position p of i.
        """
        nodes = states.flatten(3)  # (B, N, C, hw)
        weight = self.weight.T if self.transposed else self.weight  # W_c
        receivers = torch.einsum("bncp,cd->bnpd", nodes, weight)  # h_i W_c: (B, N, hw, C)
        return (receivers.unsqueeze(2) @ neighbours(nodes)).softmax(-1)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """(B, N, C, h, w) node states → (B, N, N − 1, C, h, w) messages m_ji to each node i from
        the other nodes j (in increasing order)."""
        senders = neighbours(states.flatten(3))  # (B, N, N − 1, C, hw)
        messages = senders @ self.attention(states).transpose(-1, -2)  # (B, N, N − 1, C, hw)
        return messages.view(*messages.shape[:-1], *states.shape[-2:])


class MessageGate(nn.Module):
    """The confidence g_ji of a message (Eq. 8), by which it is multiplied before the sum.

    kind "channel" (paper): `g = σ(GAP(W_g * m + b_g)) ∈ [0, 1]^C`, W_g a 1×1 convolution;
    "spatial" (authors' code): `g = σ(conv1x1(m)) ∈ [0, 1]^{h×w}`, one map for all channels;
    "none" (Table 6, "w/o gated message"): g = 1.

    Args:
        channels: C of the messages.
        kind: "channel", "spatial" or "none".
        bias: the convolution's bias b_g (the authors' spatial gate has none).
    """

    def __init__(self, channels: int, kind: str, bias: bool = True):
        super().__init__()
        if kind not in GATES:
            raise ValueError(f"unknown gate {kind!r}; known: {', '.join(GATES)}")
        self.kind = kind
        out_channels = {"channel": channels, "spatial": 1}.get(kind)
        self.conv = None if out_channels is None else \
            nn.Conv2d(channels, out_channels, 1, bias=bias)  # W_g

    def forward(self, messages: torch.Tensor) -> torch.Tensor:
        """(M, C, h, w) messages → gates in [0, 1] that broadcast over them: (M, C, 1, 1)
        channel, (M, 1, h, w) spatial, (M, 1, 1, 1) ones for none."""
        if self.kind == "none":
            return messages.new_ones(messages.shape[0], 1, 1, 1)
        if self.kind == "channel":
            # a 1×1 convolution commutes with the spatial average: pooling first gives the same
            # gate at 1/hw of the cost
            return torch.sigmoid(self.conv(messages.mean(dim=(2, 3), keepdim=True)))
        return torch.sigmoid(self.conv(messages))


class AttentiveGraph(nn.Module):
    """K iterations of gated message passing over fully connected graphs with self-loops, one
    graph per sample (Eqs. 4–10), all nodes updated at once from the states of the iteration
    before.

    Args:
        channels: C of the node states.
        num_iterations: K.
        attention_reduction: channel reduction of the intra-attention's query and key.
        gate: the message gate, "channel", "spatial" or "none" (see MessageGate).
        gru_kernel_size: kernel of the ConvGRU update (1 in the paper).
        gate_bias: the gate's bias b_g.
        loop_message: the intra-attention message along each self-loop (Eqs. 4, 6).
        aggregation: of the line messages into m_i: "sum" (Eq. 9, any N′) or "concat" (the
            authors': the gated messages of the other nodes, in increasing order, concatenated
            and fused by a 3×3 convolution 2C → C with a bias; graphs of 3 nodes only).
        separate_gru_gates, transposed_weight: the authors' parameter layout (ConvGRU's
            `separate_gates`, InterAttention's `transposed`).
    """

    def __init__(self, channels: int = 256, num_iterations: int = 3,
                 attention_reduction: int = 8, gate: str = "channel", gru_kernel_size: int = 1,
                 gate_bias: bool = True, loop_message: bool = True, aggregation: str = "sum",
                 separate_gru_gates: bool = False, transposed_weight: bool = False):
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {aggregation!r}; known: "
                             f"{', '.join(AGGREGATIONS)}")
        self.num_iterations = num_iterations
        self.intra_attention = IntraAttention(channels, attention_reduction) if loop_message \
            else None
        self.inter_attention = InterAttention(channels, transposed_weight)
        self.gate = MessageGate(channels, gate, gate_bias)
        self.fusion = nn.Conv2d((CONCAT_NODES - 1) * channels, channels, 3, padding=1) \
            if aggregation == "concat" else None
        self.update = ConvGRU(channels, kernel_size=gru_kernel_size,
                              separate_gates=separate_gru_gates)

    def aggregate(self, states: torch.Tensor) -> torch.Tensor:
        """(B, N, C, h, w) states h^{k−1} → (B, N, C, h, w) messages m_i^k: Σ_j g_ji ⊙ m_ji over
        all nodes j, the node itself included (Eq. 9); with "concat", the fusion of the gated
        line messages instead of their sum; without the loop message, no j = i term."""
        num_nodes = states.shape[1]
        if self.fusion is not None and num_nodes != CONCAT_NODES:
            raise ValueError(f"aggregation 'concat' fuses the messages of the two other nodes "
                             f"of a {CONCAT_NODES}-node graph; got graphs of {num_nodes} nodes "
                             f"(set aggregation 'sum' for other graph sizes)")
        loop = None if self.intra_attention is None else \
            self.intra_attention(states.flatten(0, 1))  # m_ii (B·N, C, h, w)
        line = self.inter_attention(states)  # m_ji (B, N, N − 1, C, h, w)
        flat = line.flatten(0, 2)
        gated_line = (self.gate(flat) * flat).view_as(line)
        messages = gated_line.sum(2) if self.fusion is None else \
            self.fusion(gated_line.flatten(2, 3).flatten(0, 1)).view_as(states)
        return messages if loop is None else (self.gate(loop) * loop).view_as(states) + messages

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, N, C, h, w) node embeddings h^0 → (B, N, C, h, w) final states h^K."""
        states = embeddings
        for _ in range(self.num_iterations):
            messages = self.aggregate(states)
            states = self.update(states.flatten(0, 1), messages.flatten(0, 1)).view_as(states)
        return states


class Readout(nn.Sequential):
    """The readout R (Eq. 11): `depth` 3×3 convolutions (two in the paper, one in the authors'
    code) and a 1×1 convolution to one logit map; the paper gives the kernels only: here
    `channels` wide, each 3×3 without a bias and followed by BatchNorm and ReLU (over B·N′ maps
    of h×w positions, so batches of one sample are fine).
    (M, in_channels, h, w) → (M, 1, h, w) logits."""

    def __init__(self, in_channels: int, channels: int, depth: int = 2):
        if depth < 1:
            raise ValueError(f"Readout: depth must be at least 1, got {depth}")
        blocks = [(nn.Conv2d(in_channels if index == 0 else channels, channels, 3, padding=1,
                             bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
                  for index in range(depth)]
        super().__init__(*(layer for block in blocks for layer in block),
                         nn.Conv2d(channels, 1, 1))


class ContextHead(nn.Module):
    """What the authors' embedding adds after its ASPP (deeplab/siamese_model_conf_gnn.py,
    lines 116–120 and 163–165): a position self-attention (their PAM_Module, deeplab/PAM.py: the
    form of Eq. 4, `IntraAttention` with C/`reduction` queries and keys), a 3×3 convolution
    without a bias, BatchNorm and ReLU, and Dropout2d (the identity at inference).
    (M, C, h, w) → (M, C, h, w).

    Args:
        channels: C.
        reduction: the attention's query and key map C to C // reduction channels (4).
        dropout: the probability of Dropout2d in training (0.1).
    """

    def __init__(self, channels: int, reduction: int = 4, dropout: float = 0.1):
        super().__init__()
        self.attention = IntraAttention(channels, reduction)
        self.conv = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout2d(dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.conv(self.attention(features)))


class NodeEmbedding(DeepLabV3):
    """The node embedding h^0 (Eq. 3): DeepLabV3 (`backbones.DeepLabV3`: a ResNet trunk and an
    ASPP) and, for the authors' head, a `ContextHead` after it.
    (B, 3, H, W) normalised images → (B, channels, H/s, W/s).

    Args:
        backbone, output_stride, channels, weights, trunk: DeepLabV3's.
        head: "aspp" (DeepLabV3's ASPP) or "aspp-pam" (the authors': `AUTHORS_AGNN_ASPP` and a
            `ContextHead`).
    """

    def __init__(self, backbone: str, output_stride: int, channels: int, weights: str | None,
                 trunk: str = "timm", head: str = "aspp"):
        if head not in EMBEDDING_HEADS:
            raise ValueError(f"unknown embedding_head {head!r}; known: "
                             f"{', '.join(EMBEDDING_HEADS)}")
        authors = head == "aspp-pam"
        super().__init__(backbone, output_stride, channels, weights, trunk,
                         AUTHORS_AGNN_ASPP if authors else None)
        self.context = ContextHead(channels) if authors else None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = super().forward(images)
        return features if self.context is None else self.context(features)


def check_choice(setting: str, value: str, known) -> None:
    """ValueError naming the setting when `value` is not one of `known`."""
    if value not in known:
        raise ValueError(f"AGNN: unknown {setting} {value!r}; known: {', '.join(known)}")


class AGNN(VOSMethod):
    """Zero-shot segmentation by an attentive graph over N′ frames.

    Args:
        backbone, output_stride, channels, weights: the DeepLabV3 node embedding (ResNet-101 at
            stride 8, C = 256: 60×60×256 nodes at 473×473; `weights` a local ImageNet
            state_dict file of the trunk).
        num_iterations: K message-passing iterations (Table 6: 1–4; the authors' code 5).
        num_nodes_test: N′, the frames of one graph at inference (Table 6: 3, 5, 6, 7).
        gate: "channel" (Eq. 8), "spatial" (authors' code) or "none" (Table 6).
        graph: False reads out the embedding alone (Table 6, "w/o AGNN").
        attention_reduction: channel reduction of the intra-attention's query and key.
        readout_channels: width of the readout's 3×3 convolutions.
        gru_kernel_size: kernel of the ConvGRU update.
        loss: "balanced" (Eq. 12), "code" (the authors' code: BCE / η + 0.8·L1) or "bce".
        input_size: (H, W) the frames are resized to at inference (at test scale 1); training
            clips come at the size the datamodule's transform gives them.
        lr, momentum, weight_decay, poly_power: the learning rate, SGD momentum, weight decay
            and the power of the per-step poly decay.
        optimizer: "sgd" (the paper), "adam" or "adamw" (momentum unused), all with the poly
            decay.
        graph_lr_multiplier: the learning rate of everything after the embedding (graph,
            readout, static head, all newly initialised) relative to `lr`.
        static_every: k ≥ 2: every k-th step trains the embedding on the "static" images of a
            {"video": Clip, "static": Clip} batch through a 1×1 auxiliary head; None: no static
            steps and no auxiliary head. (Under DDP, static steps leave the graph unused: use
            strategy ddp_find_unused_parameters_true.)
        graphs_per_batch: test-time graphs of equal size run in one forward pass.
        trunk: "timm" (timm's ResNet) or "deeplabv2" (DeepLab-v2's, the authors').
        embedding_head: "aspp" (DeepLabV3's) or "aspp-pam" (the authors': `NodeEmbedding`).
        input_normalisation: "imagenet" (RGB, ImageNet mean and std) or "bgr-mean" (BGR in
            0–255 minus the Caffe mean, the authors').
        gate_bias: the message gate's bias (Eq. 8's b_g; none in the authors' code).
        aggregation: "sum" (Eq. 9) or "concat" (the authors', graphs of 3 frames only; see
            AttentiveGraph).
        loop_message: the intra-attention message along the self-loops (none in the authors').
        readout_depth: the readout's 3×3 convolutions (2; the authors' 1).
        parameter_layout: "vosbench" or "authors" (ConvGRU gates apart, W_c transposed: the
            same function, the authors' tensors).
        test_graphs: "subsets" (§3.3: interleaved subsets of N′ frames, `frame_subsets`) or
            "sampled" (the authors': each frame with N′ − 1 frames drawn from its video,
            `sampled_graphs`; only the frame's own node is kept).
        test_scales: the frames run at input_size × each scale (rounded down), their
            probabilities at the frame size averaged (the authors': 0.75, 1.0, 1.5).
        test_resize: "vosbench" (frames resized as floats, logits to the frame size with
            align_corners=False) or "authors" (`resize_frames` by cv2 on the 8-bit frames,
            probabilities resized with align_corners=True, the average truncated to 8 bits).
        test_seed: seeds the sampled graphs (with each video's name).
        kwargs: VOSMethod's arguments (crf, threshold, protocol, …).
    """

    name = "agnn"
    inference_only = ("num_nodes_test", "input_size", "graphs_per_batch", "test_graphs",
                      "test_scales", "test_resize", "test_seed")
    official_checkpoint = AUTHORS_CHECKPOINT
    # the authors' network and recipe: deeplab/siamese_model_conf_gnn.py, test_iteration_conf_
    # gnn.py and dataloaders/PairwiseImg_test_new.py (configs/methods/agnn/official.yaml: lines)
    official_settings = {
        "trunk": "deeplabv2", "embedding_head": "aspp-pam", "input_normalisation": "bgr-mean",
        "gate": "spatial", "gate_bias": False, "aggregation": "concat", "loop_message": False,
        "num_iterations": 5, "readout_depth": 1, "parameter_layout": "authors",
        "num_nodes_test": 3, "test_graphs": "sampled", "test_scales": (0.75, 1.0, 1.5),
        "test_resize": "authors"}

    def __init__(self, backbone: str = "resnet101", output_stride: int = 8, channels: int = 256,
                 weights: str | None = None, num_iterations: int = 3, num_nodes_test: int = 5,
                 gate: str = "channel", graph: bool = True, attention_reduction: int = 8,
                 readout_channels: int = 256, gru_kernel_size: int = 1, loss: str = "balanced",
                 input_size: tuple[int, int] = (473, 473), lr: float = 2.5e-4,
                 momentum: float = 0.9, weight_decay: float = 5e-4, poly_power: float = 0.9,
                 graph_lr_multiplier: float = 10.0, optimizer: str = "sgd",
                 static_every: int | None = None, graphs_per_batch: int = 2,
                 trunk: str = "timm", embedding_head: str = "aspp",
                 input_normalisation: str = "imagenet", gate_bias: bool = True,
                 aggregation: str = "sum", loop_message: bool = True, readout_depth: int = 2,
                 parameter_layout: str = "vosbench", test_graphs: str = "subsets",
                 test_scales: tuple[float, ...] = (1.0,), test_resize: str = "vosbench",
                 test_seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)}")
        if num_iterations < 1 or num_nodes_test < 1 or graphs_per_batch < 1:
            raise ValueError(f"AGNN: num_iterations ({num_iterations}), num_nodes_test "
                             f"({num_nodes_test}) and graphs_per_batch ({graphs_per_batch}) "
                             f"must be at least 1")
        check_optimizer(optimizer)
        if static_every is not None and static_every < 2:
            raise ValueError(f"AGNN: static_every must be None or an integer ≥ 2 (every k-th "
                             f"step static), got {static_every}")
        for setting, value, known in (
                ("trunk", trunk, TRUNKS), ("embedding_head", embedding_head, EMBEDDING_HEADS),
                ("input_normalisation", input_normalisation, NORMALISATIONS),
                ("aggregation", aggregation, AGGREGATIONS),
                ("parameter_layout", parameter_layout, PARAMETER_LAYOUTS),
                ("test_graphs", test_graphs, TEST_GRAPHS),
                ("test_resize", test_resize, TEST_RESIZES)):
            check_choice(setting, value, known)
        if not test_scales or min(test_scales) <= 0:
            raise ValueError(f"AGNN: test_scales must be positive factors, got {test_scales}")
        if test_graphs == "sampled" and num_nodes_test < 2:
            raise ValueError(f"AGNN: test_graphs 'sampled' draws num_nodes_test − 1 frames for "
                             f"each frame: num_nodes_test must be at least 2, got "
                             f"{num_nodes_test}")
        self.save_hyperparameters()
        self.loss_function = LOSSES[loss]
        self.normalise = NORMALISATIONS[input_normalisation]
        self.embedding = NodeEmbedding(backbone, output_stride, channels, weights, trunk,
                                       embedding_head)
        authors_layout = parameter_layout == "authors"
        self.graph = AttentiveGraph(channels, num_iterations, attention_reduction, gate,
                                    gru_kernel_size, gate_bias, loop_message, aggregation,
                                    authors_layout, authors_layout) if graph else None
        self.readout = Readout(2 * channels if graph else channels, readout_channels,
                               readout_depth)
        self.static_head = None if static_every is None else nn.Conv2d(channels, 1, 1)

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, N′, 3, H, W) normalised inputs, one graph per sample → (B, N′, H, W) foreground
        logits at the input size (upsampled bilinearly, align_corners=False)."""
        graphs = inputs.shape[:2]  # (B, N′)
        features = self.embedding(inputs.flatten(0, 1))  # h^0 (B·N′, C, h, w)
        if self.graph is not None:
            states = self.graph(features.unflatten(0, graphs)).flatten(0, 1)
            features = torch.cat([states, features], 1)  # [h^K, h^0]
        logits = resize(self.readout(features), inputs.shape[-2:])
        return logits[:, 0].unflatten(0, graphs)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, N′, 3, H, W) RGB images in [0, 1], one graph per sample → (B, N′, H, W)
        foreground logits at the input size."""
        return self.logits(self.normalise(images))

    def official_forward(self, input1: torch.Tensor, input2: torch.Tensor,
                         input3: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What the authors' `GNNNet.forward(input1, input2, input3)` returns at test time (in
        eval mode), `x1s, x2s, x3s`: three (B, 3, H, W) frames as their loader gives them (BGR,
        0–255, minus the Caffe mean; any H, W) → the (B, 1, H, W) foreground probabilities of the
        three nodes of each sample's graph. (Their two further outputs, the static head's maps of
        input2 and input3, are for training.)"""
        probabilities = torch.sigmoid(self.logits(torch.stack([input1, input2, input3], 1)))
        return tuple(probabilities[:, node, None] for node in range(3))

    def static_logits(self, images: torch.Tensor) -> torch.Tensor:
        """(M, 3, H, W) images in [0, 1] → (M, H, W) logits of the auxiliary head on the
        embedding (its sigmoid is in the loss)."""
        logits = self.static_head(self.embedding(self.normalise(images)))
        return resize(logits, images.shape[-2:])[:, 0]

    def on_train_start(self) -> None:
        if self.hparams.static_every is not None and \
                getattr(self.trainer.datamodule, "static_root", None) is None:
            rank_zero_info("AGNN: static_every is set but the datamodule has no static_root "
                           "(saliency images): training runs video steps only")

    def training_step(self, batch: Clip | dict[str, Clip], batch_index: int) -> torch.Tensor:
        """A video step (the clip's N′ frames form one graph per sample) or, by the schedule of
        `is_static_step`, a static step on the batch's "static" images (T = 1)."""
        video, static = ((batch["video"], batch.get("static")) if isinstance(batch, dict)
                         else (batch, None))
        static_step = static is not None and is_static_step(self.global_step,
                                                            self.hparams.static_every)
        clip = static if static_step else video
        target, valid = clip.foreground()
        # The loss compares logits upsampled (bilinearly) to the clip's size with the masks at
        # that size. §3.3 writes S and Ŝ at the node resolution (60×60); scoring at the input size
        # supervises the same map after the same upsampling that inference applies, keeps thin
        # structures that a 60×60 nearest-neighbour mask drops, and needs no mask resizing.
        logits = (self.static_logits(clip.frames.flatten(0, 1)) if static_step
                  else self(clip.frames).flatten(0, 1))
        loss = self.loss_function(logits, target.flatten(0, 1), valid.flatten(0, 1))
        # logged per step only: Lightning needs no batch size to average them over an epoch
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/step_type", float(static_step))
        return loss

    def check_test_graphs(self) -> None:
        """ValueError unless the test-time graphs fit the graph's aggregation: "concat" takes
        graphs of exactly 3 frames (test_graphs "sampled", num_nodes_test 3). Checked before
        inference, not when the model is built: a checkpoint holds no inference options, and
        `load_from_checkpoint` builds the model with the defaults before the caller sets them."""
        hp = self.hparams
        if self.graph is not None and self.graph.fusion is not None and (
                hp.test_graphs, hp.num_nodes_test) != ("sampled", CONCAT_NODES):
            raise ValueError(f"AGNN: aggregation 'concat' takes graphs of {CONCAT_NODES} frames: "
                             f"set test_graphs 'sampled' and num_nodes_test {CONCAT_NODES} (got "
                             f"{hp.test_graphs!r}, {hp.num_nodes_test})")

    @torch.inference_mode()
    def predict_video(self, video: LoadedVideo) -> torch.Tensor:
        """(N, 1, H, W) foreground probabilities at the video's size. test_graphs "subsets": the
        frames of each `frame_subsets` subset form one graph, each frame's map its node's;
        "sampled": each frame's graph is `sampled_graphs`' (seeded by `video_generator`), the
        frame's map that of its node, the first. Every graph runs at each test scale; the
        scales' probabilities are averaged (then truncated to 8 bits with the authors'
        resizing)."""
        self.check_test_graphs()
        hp = self.hparams
        if hp.test_graphs == "subsets":
            graphs, kept = frame_subsets(len(video), hp.num_nodes_test), None
        else:
            generator = video_generator(hp.test_seed, video.name)
            graphs, kept = sampled_graphs(len(video), hp.num_nodes_test, generator), 1
        probabilities = torch.stack([
            self.predict_graphs(video, graphs, kept, scaled_size(tuple(hp.input_size), scale))
            for scale in hp.test_scales]).mean(0)
        return truncate_to_8_bits(probabilities) if hp.test_resize == "authors" else \
            probabilities

    def predict_graphs(self, video: LoadedVideo, graphs: list[list[int]], kept: int | None,
                       input_size: tuple[int, int]) -> torch.Tensor:
        """(N, 1, H, W) probabilities of a video's frames from its graphs at one input size: the
        first `kept` nodes of each graph (None: all) give their frames' maps; graphs of equal
        size run together, `graphs_per_batch` at a time."""
        hp = self.hparams
        frames = video.frames
        size = tuple(video.video.size)
        probabilities = torch.empty(len(frames), 1, *size, device=frames.device)
        for length in sorted({len(graph) for graph in graphs}, reverse=True):
            equal = [graph for graph in graphs if len(graph) == length]
            for start in range(0, len(equal), hp.graphs_per_batch):
                index = torch.tensor(equal[start:start + hp.graphs_per_batch],
                                     device=frames.device)  # (G, N′)
                images = resize_frames(frames[index.flatten()], input_size, hp.test_resize)
                logits = self(images.unflatten(0, index.shape))[:, :kept]  # (G, kept, h, w)
                probabilities[index[:, :kept].flatten()] = logits_to_probabilities(
                    logits.flatten(0, 1)[:, None], size, hp.test_resize)
        return probabilities

    def configure_optimizers(self):
        hp = self.hparams
        groups = embedding_and_rest(self, self.embedding, hp.lr, hp.graph_lr_multiplier)
        optimizer = make_optimizer(hp.optimizer, groups, hp.momentum, hp.weight_decay)
        return self.poly_schedule(optimizer, hp.poly_power)
