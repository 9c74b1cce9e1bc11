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
"""

import math

import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import nn

from vosbench.datamodules.clips import Clip, LoadedVideo
from vosbench.methods.backbones import DeepLabV3, normalize_images, resize
from vosbench.methods.base import VOSMethod
from vosbench.methods.losses import FOREGROUND_LOSSES, ratio_scaled_bce
from vosbench.methods.optimizers import check_optimizer, embedding_and_rest, make_optimizer
from vosbench.methods.recurrent import ConvGRU

# "code": the loss of the authors' public code, an option next to the paper's Eq. 12 ("balanced")
LOSSES = {**FOREGROUND_LOSSES, "code": ratio_scaled_bce}
GATES = ("channel", "spatial", "none")


def frame_subsets(num_frames: int, num_nodes: int) -> list[list[int]]:
    """The test-time graphs of an N-frame video (paper §3.3): T = ⌈N / N′⌉ subsets
    {t, t + T, t + 2T, …}, t = 0 … T − 1; every frame is in exactly one. Their sizes are
    ⌈N / T⌉ ≤ N′ and, for the last ones, one less; a short video can give subsets well under N′.
    E.g. N = 7, N′ = 3: [[0, 3, 6], [1, 4], [2, 5]]; N = 6, N′ = 5: [[0, 2, 4], [1, 3, 5]]."""
    if num_nodes < 1:
        raise ValueError(f"a graph needs at least one node, got num_nodes={num_nodes}")
    num_subsets = math.ceil(num_frames / num_nodes)
    return [list(range(start, num_frames, num_subsets)) for start in range(num_subsets)]


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
    """

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.eye(channels) / math.sqrt(channels))  # W_c

    def attention(self, states: torch.Tensor) -> torch.Tensor:
        """(B, N, C, h, w) node states → (B, N, N − 1, hw, hw) softmax_rows(e_ij): entry
        [b, i, n, p, q] weighs position q of the n-th other node j of node i for position p of i.
        """
        nodes = states.flatten(3)  # (B, N, C, hw)
        receivers = torch.einsum("bncp,cd->bnpd", nodes, self.weight)  # h_i W_c: (B, N, hw, C)
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
    """

    def __init__(self, channels: int, kind: str):
        super().__init__()
        if kind not in GATES:
            raise ValueError(f"unknown gate {kind!r}; known: {', '.join(GATES)}")
        self.kind = kind
        out_channels = {"channel": channels, "spatial": 1}.get(kind)
        self.conv = None if out_channels is None else nn.Conv2d(channels, out_channels, 1)  # W_g

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
    graph per sample (Eqs. 4–10).

    Args:
        channels: C of the node states.
        num_iterations: K.
        attention_reduction: channel reduction of the intra-attention's query and key.
        gate: the message gate, "channel", "spatial" or "none" (see MessageGate).
        gru_kernel_size: kernel of the ConvGRU update (1 in the paper).
    """

    def __init__(self, channels: int = 256, num_iterations: int = 3,
                 attention_reduction: int = 8, gate: str = "channel", gru_kernel_size: int = 1):
        super().__init__()
        self.num_iterations = num_iterations
        self.intra_attention = IntraAttention(channels, attention_reduction)
        self.inter_attention = InterAttention(channels)
        self.gate = MessageGate(channels, gate)
        self.update = ConvGRU(channels, kernel_size=gru_kernel_size)

    def aggregate(self, states: torch.Tensor) -> torch.Tensor:
        """(B, N, C, h, w) states h^{k−1} → (B, N, C, h, w) messages m_i^k = Σ_j g_ji ⊙ m_ji over
        all nodes j, the node itself included (Eq. 9)."""
        loop = self.intra_attention(states.flatten(0, 1))  # m_ii (B·N, C, h, w)
        line = self.inter_attention(states)  # m_ji (B, N, N − 1, C, h, w)
        flat = line.flatten(0, 2)
        gated_line = (self.gate(flat) * flat).view_as(line)
        return (self.gate(loop) * loop).view_as(states) + gated_line.sum(2)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, N, C, h, w) node embeddings h^0 → (B, N, C, h, w) final states h^K."""
        states = embeddings
        for _ in range(self.num_iterations):
            messages = self.aggregate(states)
            states = self.update(states.flatten(0, 1), messages.flatten(0, 1)).view_as(states)
        return states


class Readout(nn.Sequential):
    """The readout R (Eq. 11): two 3×3 convolutions and a 1×1 convolution to one logit map; the
    paper gives the kernels only: here `channels` wide, each 3×3 followed by BatchNorm and ReLU
    (over B·N′ maps of h×w positions, so batches of one sample are fine).
    (M, in_channels, h, w) → (M, 1, h, w) logits."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, 1, 1))


class AGNN(VOSMethod):
    """Zero-shot segmentation by an attentive graph over N′ frames.

    Args:
        backbone, output_stride, channels, weights: the DeepLabV3 node embedding (ResNet-101 at
            stride 8, C = 256: 60×60×256 nodes at 473×473; `weights` a local ImageNet
            state_dict file).
        num_iterations: K message-passing iterations (Table 6: 1–4).
        num_nodes_test: N′, the frames of one graph at inference (Table 6: 3, 5, 6, 7).
        gate: "channel" (Eq. 8), "spatial" (authors' code) or "none" (Table 6).
        graph: False reads out the embedding alone (Table 6, "w/o AGNN").
        attention_reduction: channel reduction of the intra-attention's query and key.
        readout_channels: width of the readout's 3×3 convolutions.
        gru_kernel_size: kernel of the ConvGRU update.
        loss: "balanced" (Eq. 12), "code" (the authors' code: BCE / η + 0.8·L1) or "bce".
        input_size: (H, W) the frames are resized to at inference; training clips come at the
            size the datamodule's transform gives them.
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
        kwargs: VOSMethod's arguments (crf, threshold, protocol, …).
    """

    name = "agnn"
    inference_only = ("num_nodes_test", "input_size", "graphs_per_batch")

    def __init__(self, backbone: str = "resnet101", output_stride: int = 8, channels: int = 256,
                 weights: str | None = None, num_iterations: int = 3, num_nodes_test: int = 5,
                 gate: str = "channel", graph: bool = True, attention_reduction: int = 8,
                 readout_channels: int = 256, gru_kernel_size: int = 1, loss: str = "balanced",
                 input_size: tuple[int, int] = (473, 473), lr: float = 2.5e-4,
                 momentum: float = 0.9, weight_decay: float = 5e-4, poly_power: float = 0.9,
                 graph_lr_multiplier: float = 10.0, optimizer: str = "sgd",
                 static_every: int | None = None, graphs_per_batch: int = 2, **kwargs):
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
        self.save_hyperparameters()
        self.loss_function = LOSSES[loss]
        self.embedding = DeepLabV3(backbone, output_stride, channels, weights)
        self.graph = AttentiveGraph(channels, num_iterations, attention_reduction, gate,
                                    gru_kernel_size) if graph else None
        self.readout = Readout(2 * channels if graph else channels, readout_channels)
        self.static_head = None if static_every is None else nn.Conv2d(channels, 1, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, N′, 3, H, W) images in [0, 1], one graph per sample → (B, N′, H, W) foreground
        logits at the input size."""
        graphs = images.shape[:2]  # (B, N′)
        features = self.embedding(normalize_images(images.flatten(0, 1)))  # h^0 (B·N′, C, h, w)
        if self.graph is not None:
            states = self.graph(features.unflatten(0, graphs)).flatten(0, 1)
            features = torch.cat([states, features], 1)  # [h^K, h^0]
        logits = resize(self.readout(features), images.shape[-2:])
        return logits[:, 0].unflatten(0, graphs)

    def static_logits(self, images: torch.Tensor) -> torch.Tensor:
        """(M, 3, H, W) images in [0, 1] → (M, H, W) logits of the auxiliary head on the
        embedding (its sigmoid is in the loss)."""
        logits = self.static_head(self.embedding(normalize_images(images)))
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

    @torch.inference_mode()
    def predict_video(self, video: LoadedVideo) -> torch.Tensor:
        """(N, 1, H, W) foreground probabilities: the frames of each `frame_subsets` subset form
        one graph at `input_size`; subsets of equal size run together."""
        hp = self.hparams
        frames = video.frames
        size = tuple(video.video.size)
        logits = torch.empty(len(frames), 1, *size, device=frames.device)
        subsets = frame_subsets(len(frames), hp.num_nodes_test)
        for length in sorted({len(subset) for subset in subsets}, reverse=True):
            equal = [subset for subset in subsets if len(subset) == length]
            for start in range(0, len(equal), hp.graphs_per_batch):
                index = torch.tensor(equal[start:start + hp.graphs_per_batch],
                                     device=frames.device)  # (G, N′)
                images = resize(frames[index.flatten()].float().div(255), tuple(hp.input_size))
                graph_logits = self(images.unflatten(0, index.shape))  # (G, N′, h, w)
                logits[index.flatten()] = resize(graph_logits.flatten(0, 1)[:, None], size)
        return torch.sigmoid(logits)

    def configure_optimizers(self):
        hp = self.hparams
        groups = embedding_and_rest(self, self.embedding, hp.lr, hp.graph_lr_multiplier)
        optimizer = make_optimizer(hp.optimizer, groups, hp.momentum, hp.weight_decay)
        return self.poly_schedule(optimizer, hp.poly_power)
