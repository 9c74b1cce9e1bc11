"""AGNN (methods/agnn.py): the paper preset's shapes and size, each graph function against its
equation (gates, convex messages, gated sum with the self-loop, ConvGRU), permutation
equivariance, any number of nodes, the losses, the test-time frame subsets, training (the loss
falls; the static/video schedule) and `predict_video`."""

import logging
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import timm
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from vosbench.datamodules.clips import Clip, LoadedVideo
from vosbench.datamodules.video import Video
from vosbench.methods.agnn import (
    AGNN,
    LOSSES,
    AttentiveGraph,
    InterAttention,
    IntraAttention,
    MessageGate,
    Readout,
    frame_subsets,
    is_static_step,
)
from vosbench.methods.backbones import normalize_images, resize
from vosbench.methods.recurrent import ConvGRU

SIZE = 64  # tiny inputs: 8×8 node states at output stride 8


def tiny_agnn(**overrides) -> AGNN:
    torch.manual_seed(0)
    options = dict(backbone="resnet18", channels=16, readout_channels=16, input_size=(SIZE, SIZE))
    return AGNN(**{**options, **overrides})


def make_clip(batch: int, num_frames: int, seed: int = 0) -> Clip:
    """Noise frames with a brighter square object (label 1) and a void band at the top."""
    generator = torch.Generator().manual_seed(seed)
    frames = torch.rand(batch, num_frames, 3, SIZE, SIZE, generator=generator) * 0.4
    masks = torch.zeros(batch, num_frames, SIZE, SIZE, dtype=torch.uint8)
    masks[..., 16:40, 20:44] = 1
    frames[..., 16:40, 20:44] += 0.5
    masks[..., :2, :] = 255
    return Clip(["clip"] * batch, torch.arange(num_frames).repeat(batch, 1), frames, masks)


class StepRecorder(pl.Callback):
    """Per optimizer step: which heads got gradients, the loss and the logged step type."""

    def __init__(self):
        self.steps = []

    def on_before_optimizer_step(self, trainer, module, optimizer):
        self.steps.append({
            "readout": module.readout[-1].weight.grad is not None,
            "static_head": module.static_head is not None
            and module.static_head.weight.grad is not None})

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_index):
        self.steps[-1]["loss"] = float(outputs["loss"])
        self.steps[-1]["step_type"] = float(trainer.callback_metrics["train/step_type"])


class RepeatedBatch(pl.LightningDataModule):
    """`steps` copies of one batch, from a datamodule with the given `attributes` (e.g. a
    `static_root` of saliency images: a path, None, or no such attribute)."""

    def __init__(self, batch, steps: int, **attributes):
        super().__init__()
        self.batch, self.steps = batch, steps
        for name, value in attributes.items():
            setattr(self, name, value)

    def train_dataloader(self) -> DataLoader:
        return DataLoader([self.batch] * self.steps, batch_size=1,
                          collate_fn=lambda items: items[0])


def fit(model: AGNN, batch, steps: int, **datamodule_attributes) -> tuple[list[dict], pl.Trainer]:
    """Train `model` for `steps` optimizer steps on the same batch; the per-step records."""
    recorder = StepRecorder()
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[recorder])
    trainer.fit(model, datamodule=RepeatedBatch(batch, steps, **datamodule_attributes))
    return recorder.steps, trainer


# --- the paper preset ---------------------------------------------------------------------------

def test_paper_preset_shapes_and_parameter_count():
    """ResNet-101 at stride 8, C = 256, 473×473: shapes checked on the meta device (no compute)."""
    with torch.device("meta"):
        model = AGNN()
        frame = torch.empty(1, 3, 473, 473)
        sample = torch.empty(1, 3, 3, 473, 473)
    assert model.embedding(normalize_images(frame)).shape == (1, 256, 60, 60)
    assert model(sample).shape == (1, 3, 473, 473)

    def count(module):
        return sum(parameter.numel() for parameter in module.parameters())

    total, embedding = count(model), count(model.embedding)
    graph, readout = count(model.graph), count(model.readout)
    print(f"AGNN paper preset: {total / 1e6:.2f} M parameters (embedding {embedding / 1e6:.2f} M,"
          f" graph {graph / 1e6:.2f} M, readout {readout / 1e6:.2f} M)")
    # the official layout has ~82 M (512-channel ASPP branches, 3×3 fusion); ours 256 channels
    assert 60e6 < total < 100e6 and total == embedding + graph + readout
    # by hand: intra-attention 2 · (256 · 32 + 32) + 256 · 256 + 256 + α; W_c 256²; gate
    # 256 · 256 + 256; ConvGRU gates 512 · 512 + 512 and candidate 512 · 256 + 256
    assert graph == 82_241 + 65_536 + 65_792 + 393_984
    # 3×3 512→256 and 256→256 without biases, each with a BatchNorm (γ, β), then 1×1 256→1
    assert readout == 512 * 256 * 9 + 512 + 256 * 256 * 9 + 512 + 257
    hp = model.hparams  # the paper's K, N′ at test and poly power
    assert (hp.num_iterations, hp.num_nodes_test, hp.poly_power) == (3, 5, 0.9)
    assert model.graph.num_iterations == 3


def test_the_graph_defaults_to_the_paper_preset():
    """The graph built alone has the paper preset's shapes, K and gate."""
    with torch.device("meta"):
        model, graph = AGNN(), AttentiveGraph()

    def shapes(module):
        return {name: tuple(value.shape) for name, value in module.state_dict().items()}

    assert shapes(graph) == shapes(model.graph)
    assert (graph.num_iterations, graph.gate.kind) == (3, "channel")


@pytest.mark.slow
def test_paper_preset_forward_backward():
    """A training forward and backward of one 3-node sample at 473×473 (about 70 s on 2 cores)."""
    model = AGNN()
    logits = model(torch.rand(1, 3, 3, 473, 473))
    assert logits.shape == (1, 3, 473, 473)
    logits.mean().backward()
    assert model.graph.inter_attention.weight.grad.abs().sum() > 0
    assert model.embedding.encoder.body.conv1.weight.grad is not None


# --- the graph's functions ----------------------------------------------------------------------

def test_conv_gru_keeps_positions_apart_with_1x1_kernels():
    torch.manual_seed(0)
    state = torch.rand(1, 8, 6, 6) * 2 - 1
    inputs = torch.randn(1, 4, 6, 6)
    nudged = inputs.clone()
    nudged[..., 2, 3] += 1
    # 3×3: the reset gate then the candidate, two stacked convolutions, reach 5×5 positions
    for kernel_size, reach in ((1, 1), (3, 25)):
        gru = ConvGRU(8, input_channels=4, kernel_size=kernel_size)
        new_state = gru(state, inputs)
        assert new_state.shape == state.shape and new_state.abs().max() <= 1  # (1 − z)h + z·tanh
        changed = (gru(state, nudged) - new_state).abs().sum(1)[0] > 0
        assert changed.sum() == reach and changed[2, 3]
    with pytest.raises(ValueError, match="odd"):
        ConvGRU(8, kernel_size=2)


def test_conv_gru_follows_its_equations():
    """Eq. 10's ConvGRU with the default 1×1 kernels, position by position from its equations:
    z = σ(W_z [x, h] + b_z), r = σ(W_r [x, h] + b_r), h̃ = tanh(W [x, r ⊙ h] + b),
    h' = (1 − z) ⊙ h + z ⊙ h̃ (the gate convolution holds W_z then W_r)."""
    torch.manual_seed(0)
    gru = ConvGRU(4, input_channels=3)
    state, inputs = torch.rand(2, 4, 3, 5) * 2 - 1, torch.randn(2, 3, 3, 5)
    gates, candidate = gru.gates.weight[:, :, 0, 0], gru.candidate.weight[:, :, 0, 0]
    expected = torch.empty_like(state)
    for b in range(2):
        for y in range(3):
            for x in range(5):
                h, u = state[b, :, y, x], inputs[b, :, y, x]
                z, r = torch.sigmoid(gates @ torch.cat([u, h]) + gru.gates.bias).split(4)
                proposal = torch.tanh(candidate @ torch.cat([u, r * h]) + gru.candidate.bias)
                expected[b, :, y, x] = (1 - z) * h + z * proposal
    assert torch.allclose(gru(state, inputs), expected, atol=1e-6)
    wide = ConvGRU(4, kernel_size=5)  # same-size padding for any odd kernel
    assert wide(state, torch.randn(2, 4, 3, 5)).shape == state.shape


def test_gates_lie_in_the_unit_interval():
    torch.manual_seed(0)
    messages = torch.randn(5, 16, 4, 4) * 10
    channel = MessageGate(16, "channel")(messages)
    spatial = MessageGate(16, "spatial")(messages)
    assert channel.shape == (5, 16, 1, 1) and spatial.shape == (5, 1, 4, 4)
    for gates in (channel, spatial):
        assert gates.min() >= 0 and gates.max() <= 1 and gates.std() > 0
    assert torch.equal(MessageGate(16, "none")(messages), torch.ones(5, 1, 1, 1))
    with pytest.raises(ValueError, match="^unknown gate 'global'; known: channel, spatial, none$"):
        MessageGate(16, "global")


def literal_gate(gate: MessageGate, message: torch.Tensor) -> torch.Tensor:
    """g_ji of one (C, h, w) message as Eq. 8 writes it: the 1×1 convolution W_g * m + b_g at
    every position first, then the spatial average (GAP), then σ; the spatial variant is
    σ(w · m + b) at every position (one map for all channels)."""
    weight, bias = gate.conv.weight[:, :, 0, 0], gate.conv.bias  # (C_out, C), (C_out,)
    response = torch.einsum("oc,chw->ohw", weight, message) + bias[:, None, None]
    if gate.kind == "channel":
        return torch.sigmoid(response.mean(dim=(1, 2)))[:, None, None]  # (C, 1, 1)
    return torch.sigmoid(response)  # (1, h, w)


def test_gates_follow_equation_8():
    torch.manual_seed(0)
    messages = torch.randn(4, 16, 5, 3)
    for kind in ("channel", "spatial"):
        gate = MessageGate(16, kind)
        expected = torch.stack([literal_gate(gate, message) for message in messages])
        assert torch.allclose(gate(messages), expected, atol=1e-6)


def test_inter_attention_messages_are_convex_combinations():
    torch.manual_seed(0)
    attention = InterAttention(8)
    with torch.no_grad():
        attention.weight.copy_(torch.randn(8, 8))  # not symmetric, far from the initial I/√C
    states = torch.randn(2, 3, 8, 4, 5)
    weights = attention.attention(states)
    assert weights.shape == (2, 3, 2, 20, 20) and weights.min() >= 0
    assert torch.allclose(weights.sum(-1), torch.ones(2, 3, 2, 20))
    messages = attention(states)
    assert messages.shape == (2, 3, 2, 8, 4, 5)
    # the message from node 1 to node 0 lies, per channel, within node 1's values
    sender = states[:, 1].flatten(2)
    low, high = sender.amin(-1)[..., None, None], sender.amax(-1)[..., None, None]
    assert (messages[:, 0, 0] >= low - 1e-5).all() and (messages[:, 0, 0] <= high + 1e-5).all()
    # a sender whose every position holds the vector c sends c to every position
    constant = torch.randn(2, 8, 1, 1)
    states[:, 2] = constant
    assert torch.allclose(attention(states)[:, 0, 1], constant.expand(2, 8, 4, 5), atol=1e-6)


def test_inter_attention_starts_as_scaled_dot_product_similarity():
    """W_c = I / √C at initialisation: e_ij[p, q] = h_i[:, p] · h_j[:, q] / √C, row-softmaxed."""
    torch.manual_seed(0)
    states = torch.randn(1, 2, 9, 2, 3)  # C = 9: √C = 3
    receiver, sender = states[0, 0].flatten(1), states[0, 1].flatten(1)  # (C, hw)
    expected = torch.softmax(receiver.T @ sender / 3, dim=1)
    assert torch.allclose(InterAttention(9).attention(states)[0, 0, 0], expected, atol=1e-6)


def test_intra_attention_starts_as_the_state_and_adds_a_convex_context():
    torch.manual_seed(0)
    attention = IntraAttention(16, reduction=4)
    assert attention.query.out_channels == 4 and attention.value.out_channels == 16
    states = torch.randn(3, 16, 4, 4)
    assert torch.equal(attention(states), states)  # α = 0 at initialisation
    assert IntraAttention(4, reduction=4).query.out_channels == 1
    with pytest.raises(ValueError, match=r"^IntraAttention: channels \(4\) must be at least the "
                                         r"reduction \(8\)$"):
        IntraAttention(4, reduction=8)
    with torch.no_grad():
        attention.scale.fill_(1.0)
    context = (attention(states) - states).flatten(2)
    values = attention.value(states).flatten(2)
    assert (context >= values.amin(-1, keepdim=True) - 1e-5).all()
    assert (context <= values.amax(-1, keepdim=True) + 1e-5).all()


def literal_aggregation(graph: AttentiveGraph, states: torch.Tensor) -> torch.Tensor:
    """m_i = Σ_j g_ji ⊙ m_ji (Eq. 9) for every node of (B, N, C, h, w) states, node pair by node
    pair from the equations: the loop message (Eqs. 4, 6) e_ii = α softmax(f gᵀ) l + h with
    f, g, l the 1×1 convolutions W_f h, W_h h, W_l h as (hw, ·) matrices; the line messages
    (Eqs. 5, 7) m_ji = softmax_rows(h_i W_c h_jᵀ) h_j; the gates of Eq. 8 (`literal_gate`)."""
    intra, weight_c = graph.intra_attention, graph.inter_attention.weight
    batch, num_nodes, channels, height, width = states.shape

    def conv(layer, h):  # a 1×1 convolution of a (hw, C) matrix → (hw, C_out)
        return h @ layer.weight[:, :, 0, 0].T + layer.bias

    def as_map(matrix):  # (hw, C) → (C, h, w)
        return matrix.T.reshape(channels, height, width)

    result = torch.zeros_like(states)
    for b in range(batch):
        nodes = [states[b, i].reshape(channels, -1).T for i in range(num_nodes)]  # (hw, C)
        for i, h_i in enumerate(nodes):
            for j, h_j in enumerate(nodes):
                if i == j:
                    attention = torch.softmax(conv(intra.query, h_i) @ conv(intra.key, h_i).T, 1)
                    message = intra.scale * attention @ conv(intra.value, h_i) + h_i
                else:
                    message = torch.softmax(h_i @ weight_c @ h_j.T, dim=1) @ h_j
                message = as_map(message)
                gate = 1.0 if graph.gate.kind == "none" else literal_gate(graph.gate, message)
                result[b, i] += gate * message
    return result


@pytest.mark.parametrize("gate", ["channel", "spatial", "none"])
def test_aggregation_follows_equations_4_to_9_node_by_node(gate):
    """Every message gated by its own gate, the loop and the other nodes' alike (Eq. 9), against
    the equations computed pair by pair; α ≠ 0 and a non-symmetric W_c so that every term
    counts."""
    torch.manual_seed(0)
    graph = AttentiveGraph(16, gate=gate, attention_reduction=4)
    with torch.no_grad():
        graph.intra_attention.scale.fill_(0.7)
        graph.inter_attention.weight.copy_(torch.randn(16, 16) * 0.3)
        if graph.gate.conv is not None:  # gates well inside (0, 1), unlike each other
            graph.gate.conv.weight.mul_(4.0)
    states = torch.randn(2, 3, 16, 4, 5)
    with torch.no_grad():
        assert torch.allclose(graph.aggregate(states), literal_aggregation(graph, states),
                              atol=1e-5)


def test_aggregation_sums_the_gated_messages_of_every_node_and_the_loop():
    torch.manual_seed(0)
    states = torch.randn(2, 3, 16, 4, 4)
    ungated = AttentiveGraph(16, gate="none")
    loop = ungated.intra_attention(states.flatten(0, 1)).view_as(states)
    line = ungated.inter_attention(states)
    assert torch.allclose(ungated.aggregate(states), loop + line.sum(2), atol=1e-6)

    gated = AttentiveGraph(16, gate="channel")
    with torch.no_grad():
        gated.intra_attention.scale.fill_(0.5)
    single = states[:, :1]  # N′ = 1: the loop message alone, gated too (Eq. 9 includes j = i)
    loop = gated.intra_attention(single.flatten(0, 1))
    expected = (gated.gate(loop) * loop).view_as(single)
    assert not torch.allclose(expected, loop.view_as(single))
    assert torch.allclose(gated.aggregate(single), expected, atol=1e-6)


def test_graph_is_permutation_equivariant_and_passes_messages():
    torch.manual_seed(0)
    graph = AttentiveGraph(16, num_iterations=2)
    with torch.no_grad():
        graph.intra_attention.scale.fill_(0.5)
        graph.inter_attention.weight.copy_(torch.randn(16, 16) * 0.3)
    states = torch.randn(2, 4, 16, 8, 8)
    order = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        final = graph(states)
        assert torch.allclose(graph(states[:, order]), final[:, order], atol=1e-5)
        changed = states.clone()
        changed[:, 1] = torch.randn(2, 16, 8, 8)
        assert (graph(changed)[:, 0] - final[:, 0]).abs().max() > 1e-2  # node 0 hears node 1

    model = tiny_agnn(num_iterations=2).eval()  # the whole model, embedding and readout too
    with torch.no_grad():
        model.graph.load_state_dict(graph.state_dict())
        images = torch.rand(2, 4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
        assert torch.allclose(model(images[:, order]), model(images)[:, order], atol=1e-5)


def test_single_node_graphs_forward_and_train():
    model = tiny_agnn()
    assert model(torch.rand(2, 1, 3, SIZE, SIZE)).shape == (2, 1, SIZE, SIZE)
    steps, _ = fit(model, make_clip(batch=2, num_frames=1), steps=1)
    assert math.isfinite(steps[0]["loss"]) and steps[0]["readout"]


def test_readout_reads_the_final_states_then_the_embedding():
    """Eq. 11: R([h^K, h^0]), the final states in the first C input channels of the readout.
    With the readout blind to channels C…2C only the graph's states reach the output (changing
    the graph changes it); blind to channels 0…C, only the embedding does."""
    model = tiny_agnn(num_iterations=2).eval()
    images = torch.rand(1, 3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    first = model.readout[0].weight  # (channels, 2C, 3, 3): C = 16
    for blind, graph_matters in ((slice(16, 32), True), (slice(0, 16), False)):
        with torch.no_grad():
            original = first.clone()
            first[:, blind] = 0
            before = model(images)
            model.graph.update.candidate.weight.mul_(-2.0)  # another h^K, the same h^0
            after = model(images)
            model.graph.update.candidate.weight.div_(-2.0)
            first.copy_(original)
        assert ((after - before).abs().max() > 1e-4) == graph_matters


def test_readout_is_two_same_size_conv_blocks_then_a_1x1_convolution():
    """R (Eq. 11) in evaluation mode against its layers written out: 3×3 convolution with zero
    padding 1 (same size), BatchNorm with its running statistics, ReLU; again; then 1×1."""
    torch.manual_seed(0)
    readout = Readout(6, 5).eval()
    with torch.no_grad():
        for norm in (readout[1], readout[4]):
            norm.running_mean.normal_()
            norm.running_var.uniform_(0.5, 2.0)
            norm.weight.normal_()
            norm.bias.normal_()
    features = torch.randn(2, 6, 4, 7)

    def block(x, conv, norm):
        x = F.conv2d(x, conv.weight, padding=1)
        x = (x - norm.running_mean[:, None, None]) / torch.sqrt(
            norm.running_var[:, None, None] + norm.eps)
        return (x * norm.weight[:, None, None] + norm.bias[:, None, None]).clamp(min=0)

    hidden = block(block(features, readout[0], readout[1]), readout[3], readout[4])
    expected = F.conv2d(hidden, readout[6].weight, readout[6].bias)
    assert torch.allclose(readout(features), expected, atol=1e-5)


def test_graph_ablation_reads_out_the_embedding_alone():
    model = tiny_agnn(graph=False)
    assert model.graph is None and model.readout[0].in_channels == 16
    assert model(torch.rand(1, 2, 3, SIZE, SIZE)).shape == (1, 2, SIZE, SIZE)


def test_options_reach_their_modules(tmp_path):
    """`weights` loads the backbone from a local state_dict file (a classifier head in it is
    ignored); the GRU's kernel, the readout's width and the static head (a 1×1 convolution to one
    logit) are those asked for."""
    body = timm.create_model("resnet18", pretrained=False)
    torch.save(body.state_dict(), tmp_path / "resnet18.pth")
    model = tiny_agnn(weights=str(tmp_path / "resnet18.pth"), gru_kernel_size=3,
                      readout_channels=24, static_every=2)
    assert torch.equal(model.embedding.encoder.body.conv1.weight, body.conv1.weight)
    assert model.graph.update.gates.kernel_size == (3, 3)
    assert model.readout[0].out_channels == 24
    head = model.static_head
    assert (head.in_channels, head.out_channels, head.kernel_size) == (16, 1, (1, 1))


def test_invalid_options_are_rejected():
    with pytest.raises(ValueError, match="^unknown loss 'dice'; known: balanced, bce, code$"):
        tiny_agnn(loss="dice")
    with pytest.raises(ValueError, match="static_every"):
        tiny_agnn(static_every=1)
    for option in ("num_iterations", "num_nodes_test", "graphs_per_batch"):
        with pytest.raises(ValueError, match="must be at least 1"):
            tiny_agnn(**{option: 0})
    model = tiny_agnn(num_iterations=1, num_nodes_test=1, graphs_per_batch=1)  # Table 6's K = 1
    assert model.graph.num_iterations == 1
    with pytest.raises(ValueError, match="unknown optimizer"):
        tiny_agnn(optimizer="lbfgs")


# --- losses -------------------------------------------------------------------------------------

def test_balanced_loss_weights_classes_by_the_foreground_ratio():
    """Eq. 12 by hand on a 4×4 mask: 4 foreground pixels, 1 void, so η = 4 / 15."""
    logits = torch.randn(1, 4, 4, generator=torch.Generator().manual_seed(0))
    target = torch.zeros(1, 4, 4)
    target[0, 1:3, 1:3] = 1
    valid = torch.ones(1, 4, 4, dtype=torch.bool)
    valid[0, 3, 3] = False
    eta = 4 / 15
    p = torch.sigmoid(logits)
    per_pixel = -((1 - eta) * target * p.log() + eta * (1 - target) * (1 - p).log())
    expected = per_pixel[valid].sum() / 15
    assert torch.allclose(LOSSES["balanced"](logits, target, valid), expected, atol=1e-6)


def test_code_loss_by_hand_and_finite_on_an_empty_mask():
    logits = torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(0))
    target = torch.zeros(2, 4, 4)
    target[0, :2] = 1  # η = 0.5; image 1 is empty: η clamped to 0.01
    valid = torch.ones(2, 4, 4, dtype=torch.bool)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean((1, 2))
    l1 = (torch.sigmoid(logits) - target).abs().mean((1, 2))
    expected = (bce / torch.tensor([0.5, 0.01]) + 0.8 * l1).mean()
    loss = LOSSES["code"](logits, target, valid)
    assert torch.isfinite(loss) and torch.allclose(loss, expected, atol=1e-5)


# --- inference subsets --------------------------------------------------------------------------

def test_frame_subsets_interleave_the_video():
    """§3.3: T = ⌈N / N′⌉ subsets {t, t + T, …}; a short video gives smaller subsets than N′
    (N = 6, N′ = 5: T = 2, two subsets of 3 frames)."""
    assert frame_subsets(10, 5) == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]
    assert frame_subsets(7, 3) == [[0, 3, 6], [1, 4], [2, 5]]
    assert frame_subsets(6, 5) == [[0, 2, 4], [1, 3, 5]]
    assert frame_subsets(3, 5) == [[0, 1, 2]]
    assert frame_subsets(11, 1) == [[i] for i in range(11)]
    for num_frames in range(1, 40):
        for num_nodes in range(1, 9):
            subsets = frame_subsets(num_frames, num_nodes)
            stride = math.ceil(num_frames / num_nodes)
            assert len(subsets) == stride
            assert sorted(i for subset in subsets for i in subset) == list(range(num_frames))
            assert [subset[0] for subset in subsets] == list(range(stride))
            assert all(b - a == stride for subset in subsets for a, b in zip(subset, subset[1:]))
            sizes = {len(subset) for subset in subsets}
            assert max(sizes) <= num_nodes and max(sizes) - min(sizes) <= 1
            assert max(sizes) == math.ceil(num_frames / stride)
    with pytest.raises(ValueError, match="at least one node"):
        frame_subsets(5, 0)


def make_video(num_frames: int, height: int = 40, width: int = 56) -> LoadedVideo:
    """A loaded video of random frames (no objects) at height × width."""
    video = Video("clip", "fake", "val", tuple(Path(f"{i:05d}.jpg") for i in range(num_frames)),
                  tuple(Path(f"{i:05d}.png") for i in range(num_frames)), (height, width))
    frames = torch.randint(0, 256, (num_frames, 3, height, width), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    return LoadedVideo(video, frames, torch.zeros(num_frames, height, width, dtype=torch.uint8))


def test_predict_video_runs_each_subset_as_one_graph():
    model = tiny_agnn(num_nodes_test=3, graphs_per_batch=1).eval()
    height, width, num_frames = 40, 56, 7
    loaded = make_video(num_frames, height, width)
    frames = loaded.frames
    probabilities = model.predict_video(loaded)
    assert probabilities.shape == (num_frames, 1, height, width)
    assert probabilities.min() >= 0 and probabilities.max() <= 1
    assert torch.equal(model.predict_video(loaded), probabilities)
    with torch.no_grad():  # frames 1 and 4 form one graph (T = 3)
        images = resize(frames[[1, 4]].float() / 255, (SIZE, SIZE))[None]
        expected = torch.sigmoid(resize(model(images)[0][:, None], (height, width)))
    assert torch.allclose(probabilities[[1, 4]], expected, atol=1e-5)


def test_graphs_of_equal_size_run_together_with_the_same_results():
    """graphs_per_batch = 2 (the default): N = 7, N′ = 3 gives subsets [0, 3, 6], [1, 4], [2, 5];
    the two 2-frame graphs run in one forward pass, and every frame's probability is that of
    its graph run alone."""
    alone = tiny_agnn(num_nodes_test=3, graphs_per_batch=1).eval()
    together = tiny_agnn(num_nodes_test=3).eval()
    assert together.hparams.graphs_per_batch == 2
    together.load_state_dict(alone.state_dict())
    video = make_video(num_frames=7)
    calls = []
    together.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape))
    probabilities = together.predict_video(video)
    assert [tuple(shape[:2]) for shape in calls] == [(1, 3), (2, 2)]
    assert torch.allclose(probabilities, alone.predict_video(video), atol=1e-5)


# --- training -----------------------------------------------------------------------------------

def test_training_reduces_the_loss():
    steps, trainer = fit(tiny_agnn(lr=0.01), make_clip(batch=2, num_frames=3), steps=15)
    losses = [step["loss"] for step in steps]
    assert all(step["step_type"] == 0 for step in steps)
    assert set(trainer.progress_bar_metrics) == {"train/loss"}
    assert losses[-1] < 0.6 * losses[0], losses


def test_adamw_keeps_the_two_learning_rates():
    _, trainer = fit(tiny_agnn(optimizer="adamw", lr=1e-3), make_clip(batch=1, num_frames=2),
                     steps=1)
    optimizer = trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.AdamW)
    assert [group["initial_lr"] for group in optimizer.param_groups] == pytest.approx([1e-3, 1e-2])


def test_static_steps_follow_the_schedule():
    assert [is_static_step(step, 3) for step in range(6)] == [False, False, True] * 2
    assert not any(is_static_step(step, None) for step in range(6))
    video, static = make_clip(batch=2, num_frames=2), make_clip(batch=2, num_frames=1, seed=1)

    steps, trainer = fit(tiny_agnn(static_every=2), {"video": video, "static": static}, steps=4)
    assert [step["step_type"] for step in steps] == [0, 1, 0, 1]
    assert [step["static_head"] for step in steps] == [False, True, False, True]
    assert [step["readout"] for step in steps] == [True, False, True, False]
    groups = trainer.optimizers[0].param_groups
    assert [group["initial_lr"] for group in groups] == pytest.approx([2.5e-4, 2.5e-3])
    model = trainer.lightning_module
    assert any(parameter is model.static_head.weight for parameter in groups[1]["params"])

    steps, _ = fit(tiny_agnn(static_every=2), {"video": video}, steps=2)
    assert [step["step_type"] for step in steps] == [0, 0]
    steps, _ = fit(tiny_agnn(), {"video": video, "static": static}, steps=2)
    assert [step["step_type"] for step in steps] == [0, 0]


def test_a_static_step_trains_the_static_head_on_the_static_images():
    """With lr = 0 the weights stay those of the start (BatchNorm normalises by the batch in
    training mode), so each step's loss can be recomputed after the fit: the video step's is the
    graph's on the video clip, the static step's the auxiliary head's on the static images."""
    video, static = make_clip(batch=1, num_frames=2), make_clip(batch=2, num_frames=1, seed=1)
    model = tiny_agnn(static_every=2, lr=0.0)
    steps, _ = fit(model, {"video": video, "static": static}, steps=2)
    model.train()
    with torch.no_grad():
        video_loss = LOSSES["balanced"](model(video.frames).flatten(0, 1),
                                        *[part.flatten(0, 1) for part in video.foreground()])
        static_loss = LOSSES["balanced"](model.static_logits(static.frames.flatten(0, 1)),
                                         *[part.flatten(0, 1) for part in static.foreground()])
    assert [step["loss"] for step in steps] == pytest.approx(
        [float(video_loss), float(static_loss)], rel=1e-5)


NO_STATIC_IMAGES = ("AGNN: static_every is set but the datamodule has no static_root (saliency "
                    "images): training runs video steps only")


@pytest.mark.parametrize(("static_every", "datamodule", "notice"),
                         [(2, {"static_root": None}, True), (2, {}, True),
                          (2, {"static_root": Path("saliency")}, False), (None, {}, False)],
                         ids=["no-images", "no-attribute", "images", "no-schedule"])
def test_a_static_schedule_without_static_images_is_announced(static_every, datamodule, notice,
                                                              caplog):
    """Also from a datamodule that knows nothing of static images (no `static_root`)."""
    video = make_clip(batch=1, num_frames=2)
    with caplog.at_level(logging.INFO):
        fit(tiny_agnn(static_every=static_every), {"video": video}, steps=1, **datamodule)
    assert (NO_STATIC_IMAGES in caplog.messages) == notice
