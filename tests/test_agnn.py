"""AGNN (methods/agnn.py): the paper preset's shapes and size, each graph function against its
equation (gates, convex messages, gated sum with the self-loop, ConvGRU), permutation
equivariance, any number of nodes, the losses, the test-time frame subsets, training (the loss
falls; the static/video schedule) and `predict_video`."""

import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
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


def fit(model: AGNN, batch, steps: int) -> tuple[list[dict], pl.Trainer]:
    """Train `model` for `steps` optimizer steps on the same batch; the per-step records."""
    recorder = StepRecorder()
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[recorder])
    loader = DataLoader([batch] * steps, batch_size=1, collate_fn=lambda items: items[0])
    trainer.fit(model, loader)
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
    assert 0.5e6 < graph < 1e6  # ConvGRU 0.39 M + attentions 0.15 M + gate 0.07 M
    assert 1.5e6 < readout < 2e6  # 512→256 3×3, 256→256 3×3, 256→1


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


def test_gates_lie_in_the_unit_interval():
    torch.manual_seed(0)
    messages = torch.randn(5, 16, 4, 4) * 10
    channel = MessageGate(16, "channel")(messages)
    spatial = MessageGate(16, "spatial")(messages)
    assert channel.shape == (5, 16, 1, 1) and spatial.shape == (5, 1, 4, 4)
    for gates in (channel, spatial):
        assert gates.min() >= 0 and gates.max() <= 1 and gates.std() > 0
    assert torch.equal(MessageGate(16, "none")(messages), torch.ones(5, 1, 1, 1))
    with pytest.raises(ValueError, match="unknown gate"):
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


def test_intra_attention_starts_as_the_state_and_adds_a_convex_context():
    torch.manual_seed(0)
    attention = IntraAttention(16, reduction=4)
    assert attention.query.out_channels == 4 and attention.value.out_channels == 16
    states = torch.randn(3, 16, 4, 4)
    assert torch.equal(attention(states), states)  # α = 0 at initialisation
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


def test_graph_ablation_reads_out_the_embedding_alone():
    model = tiny_agnn(graph=False)
    assert model.graph is None and model.readout[0].in_channels == 16
    assert model(torch.rand(1, 2, 3, SIZE, SIZE)).shape == (1, 2, SIZE, SIZE)


def test_invalid_options_are_rejected():
    with pytest.raises(ValueError, match="unknown loss"):
        tiny_agnn(loss="dice")
    with pytest.raises(ValueError, match="static_every"):
        tiny_agnn(static_every=1)
    with pytest.raises(ValueError, match="num_iterations"):
        tiny_agnn(num_iterations=0)
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
    steps, _ = fit(tiny_agnn(lr=0.01), make_clip(batch=2, num_frames=3), steps=15)
    losses = [step["loss"] for step in steps]
    assert all(step["step_type"] == 0 for step in steps)
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
