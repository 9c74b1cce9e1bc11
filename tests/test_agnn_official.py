"""AGNN's official variant (methods/agnn.py, methods/backbones.py `DeepLabV2ResNet`, the ConvGRU's
separate gates) against the authors' network (carrierlxk/AGNN): the importer on a checkpoint of
their key table, `official_forward` against the outputs their model computed from the same
seeded weights (tests/reference/official/agnn_reference.json), the DeepLab-v2 trunk's
differences from timm's, the graph's concatenation, the authors' test-time recipe (sampled
graphs, scales, resizing, 8-bit maps) on hand-made values, and `vosbench bench` of an imported
checkpoint."""

import json
import math
import random
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from official_weights import (
    KEY_TABLES,
    assert_matches_reference,
    import_with_command,
    official_model_from,
    read_keys,
    read_reference,
    seeded_state,
)
from PIL import Image

from vosbench.cli import main as vosbench_main
from vosbench.datamodules.clips import LoadedVideo, load_video
from vosbench.datamodules.davis import davis2017_videos
from vosbench.datamodules.video import Video
from vosbench.methods.agnn import (
    AGNN,
    AUTHORS_CHECKPOINT,
    AttentiveGraph,
    InterAttention,
    NodeEmbedding,
    Readout,
    frame_subsets,
    logits_to_probabilities,
    resize_frames,
    sampled_graphs,
    scaled_size,
    truncate_to_8_bits,
    video_generator,
)
from vosbench.methods.backbones import CAFFE_BGR_MEAN, DeepLabV2ResNet, subtract_bgr_mean
from vosbench.weights import build_model, lightning_checkpoint

REFERENCE = read_reference(KEY_TABLES / "agnn_reference.json")
OFFICIAL_PARAMETERS = 82_324_932  # GNNNet(num_classes=2) of the authors' code
# the official switches, every one (the trunk apart: tiny models keep timm's ResNet-18)
TINY_OFFICIAL = dict(embedding_head="aspp-pam", input_normalisation="bgr-mean", gate="spatial",
                     gate_bias=False, aggregation="concat", loop_message=False, num_iterations=5,
                     readout_depth=1, parameter_layout="authors", num_nodes_test=3,
                     test_graphs="sampled", test_scales=(0.75, 1.0, 1.5), test_resize="authors")


def their_checkpoint(path: Path, state: dict) -> None:
    """A checkpoint as the authors' training script saves it (train_iteration_conf_agnn.py
    line 388, a DataParallel model): {"epoch", "model": {"module." + key: tensor}}."""
    torch.save({"epoch": 51, "model": OrderedDict(("module." + key, value)
                                                  for key, value in state.items())}, path)


def tiny_official(**overrides) -> AGNN:
    torch.manual_seed(0)
    options = dict(backbone="resnet18", channels=16, readout_channels=16, input_size=(40, 40),
                   **TINY_OFFICIAL)
    return AGNN(**{**options, **overrides}).eval()


@pytest.fixture(scope="module")
def authors_file(tmp_path_factory) -> tuple[Path, dict]:
    """The reference's seeded weights in the authors' checkpoint format, and their state dict."""
    weights = REFERENCE["weights"]
    state = seeded_state(read_keys("agnn"), weights["seed"], weights["scales"])
    path = tmp_path_factory.mktemp("authors") / "attention_agnn_51.pth"
    their_checkpoint(path, state)
    return path, state


@pytest.fixture(scope="module")
def imported(authors_file, tmp_path_factory) -> Path:
    return import_with_command("agnn", authors_file[0],
                               tmp_path_factory.mktemp("imported") / "agnn-official.ckpt")


@pytest.fixture(scope="module")
def official_model(imported) -> AGNN:
    """The official preset's model (the one full-size build of this module) with the imported
    weights, in eval mode."""
    return official_model_from("agnn", imported)


# --- the network and its weights ----------------------------------------------------------------

def test_the_official_preset_is_the_authors_network_and_recipe():
    """configs/methods/agnn/official.yaml sets every switch to the authors' value (nothing
    departs), each against their code: deeplab/siamese_model_conf_gnn.py (M),
    test_iteration_conf_gnn.py (T), dataloaders/PairwiseImg_test_new.py (D)."""
    with torch.device("meta"):
        model = build_model("agnn", "official")
    hp = model.hparams
    assert model.official_departures() == []
    # M line 365: Bottleneck [3, 4, 23, 3]; lines 183-184 dilations 2, 4 (output stride 8);
    # line 254 propagate_layers = 5; line 242 the gate's bias=False
    assert (hp.backbone, hp.trunk, hp.output_stride, hp.channels) == (
        "resnet101", "deeplabv2", 8, 256)
    assert (hp.num_iterations, hp.gate, hp.gate_bias, hp.aggregation, hp.loop_message) == (
        5, "spatial", False, "concat", False)
    # T line 36: my_scales; line 53: sample_range 2 (3 nodes); line 63: 473 × 473
    assert tuple(hp.test_scales) == (0.75, 1.0, 1.5) and hp.num_nodes_test == 3
    assert tuple(hp.input_size) == (473, 473) and hp.test_graphs == "sampled"
    assert hp.crf == "agnn" and hp.static_every == 2  # README line 25; their main_classifier
    # the paper preset's training settings
    assert (hp.loss, hp.lr, hp.optimizer) == ("balanced", 2.5e-4, "sgd")
    with torch.device("meta"):
        paper = build_model("agnn", "paper")
    assert {key: value for key, value in paper.hparams.items()
            if key not in AGNN.official_settings} == {
        key: value for key, value in hp.items() if key not in AGNN.official_settings}
    assert len(paper.official_departures()) == len(AGNN.official_settings)


def test_the_official_variant_has_the_authors_parameters_key_for_key():
    """82,324,932 parameters and 700 state-dict entries, as GNNNet; the key table maps each of
    their keys (tests/reference/official/agnn_keys.txt) onto a tensor of the same shape, one to
    one."""
    with torch.device("meta"):
        model = build_model("agnn", "official")
    assert sum(parameter.numel() for parameter in model.parameters()) == OFFICIAL_PARAMETERS
    theirs = read_keys("agnn")
    ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert len(theirs) == len(ours) == 700
    (entry,) = AUTHORS_CHECKPOINT.entries
    renamed = {entry.rename(key): shape for key, (_, shape) in theirs.items()}
    assert renamed == ours
    assert renamed["graph.inter_attention.weight"] == (256, 256)
    assert entry.rename("encoder.layer5.sa.gamma") == "embedding.context.attention.scale"


def test_weights_import_fills_every_tensor_from_the_authors_file(authors_file, imported):
    _, theirs = authors_file
    state = torch.load(imported, weights_only=True)["state_dict"]
    (entry,) = AUTHORS_CHECKPOINT.entries
    assert len(state) == len(theirs)
    for key, value in theirs.items():
        assert torch.equal(state[entry.rename(key)], value), key


def stub_file(path: Path, change) -> None:
    """A checkpoint of the authors' key table whose tensors cost nothing (one stored value,
    expanded to each shape), changed by `change`."""
    state = {key: torch.zeros((), dtype=dtype).expand(shape)
             for key, (dtype, shape) in read_keys("agnn").items()}
    change(state)
    their_checkpoint(path, state)


@pytest.mark.parametrize("change, message", [
    (lambda state: state.pop("conv_fusion.bias"),
     "the official variant's 'graph.fusion.bias' (the file's 'module.conv_fusion.bias') is not "
     "filled"),
    (lambda state: state.update({"main_classifier2.weight": torch.zeros(1, 256, 1, 1)}),
     "key 'module.main_classifier2.weight' is not used by the official variant"),
    (lambda state: state.update({"linear_e.weight": torch.zeros(256, 512)}),
     "'graph.inter_attention.weight' has shape (256, 512) in the file, (256, 256) in the "
     "official variant"),
])
def test_a_key_that_does_not_fit_fails_the_import_naming_it(tmp_path, capsys, change, message):
    stub_file(tmp_path / "theirs.pth", change)
    code = vosbench_main(["weights", "import", "agnn", str(tmp_path / "theirs.pth"), "--out",
                          str(tmp_path / "agnn.ckpt")])
    error = capsys.readouterr().err
    assert code == 2 and message in error and "theirs.pth" in error
    assert not (tmp_path / "agnn.ckpt").exists()


def test_official_forward_equals_the_authors_model_on_seeded_weights(official_model):
    """The reference (x1s, x2s, x3s of their GNNNet on the same seeded weights and inputs, a
    97×113 graph: not a multiple of 8), within 1e-5; the maps are far from saturated."""
    inputs = REFERENCE["inputs"]
    generator = torch.Generator().manual_seed(inputs["seed"])
    frames = [torch.rand(inputs["batch"], 3, *inputs["size"], generator=generator) * 255 - 120
              for _ in range(3)]
    with torch.no_grad():
        outputs = official_model.official_forward(*frames)
    assert all(output.shape == (1, 1, 97, 113) for output in outputs)
    assert_matches_reference(dict(zip(("x1s", "x2s", "x3s"), outputs)), REFERENCE, atol=1e-5)
    sample = torch.tensor([float(value) for value in REFERENCE["outputs"]["x1s"]["sample"]])
    assert sample.min() < 0.2 and sample.max() > 0.8 and sample.std() > 0.1


# --- the DeepLab-v2 trunk -------------------------------------------------------------------------

def small_trunk(**overrides) -> DeepLabV2ResNet:
    torch.manual_seed(0)
    options = dict(depths=(1, 2, 2, 1), widths=(4, 8, 8, 16), stem_channels=8)
    return DeepLabV2ResNet(**{**options, **overrides}).eval()


def test_the_deeplab_v2_trunk_has_timms_parameter_names_and_shapes():
    with torch.device("meta"):
        ours = DeepLabV2ResNet()
        timms = timm.create_model("resnet101", pretrained=False, num_classes=0)
    assert {key: value.shape for key, value in ours.state_dict().items()} == {
        key: value.shape for key, value in timms.state_dict().items()}
    assert ours.channels == 2048


def test_its_weights_load_into_timms_resnet_and_compute_something_else():
    """The same tensors, another network: the reason the official variant has its own trunk."""
    # timm's stem has 64 channels (but a deep stem's); widths that double at every stage give
    # every stage a downsampling shortcut in timm's ResNet too
    ours = small_trunk(depths=(1, 1, 1, 1), widths=(4, 8, 16, 32), stem_channels=64)
    timms = timm.models.resnet.ResNet(timm.models.resnet.Bottleneck, [1, 1, 1, 1],
                                      channels=(4, 8, 16, 32), num_classes=0,
                                      output_stride=8).eval()
    timms.load_state_dict(ours.state_dict(), strict=True)
    with torch.no_grad():
        odd, even = torch.rand(1, 3, 49, 49), torch.rand(1, 3, 48, 48)
        assert timms.forward_features(odd).shape == ours(odd).shape == (1, 128, 7, 7)
        assert not torch.allclose(timms.forward_features(odd), ours(odd), atol=1e-3)
        assert timms.forward_features(even).shape[-1] == 6 and ours(even).shape[-1] == 7


@pytest.mark.parametrize(("size", "nodes"), [(97, 13), (48, 7), (473, 60), (113, 15)])
def test_ceil_mode_pooling_sizes_at_output_stride_8(size, nodes):
    """Stem ⌊(n − 1) / 2⌋ + 1, pooling ⌈(m − 1) / 2⌉ + 1 (ceil mode), layer2 ⌊(k − 1) / 2⌋ + 1:
    97 → 49 → 25 → 13; 48 → 24 → 13 (timm's floor: 12) → 7; 473 → 237 → 119 → 60;
    113 → 57 → 29 → 15."""
    with torch.no_grad():
        features = small_trunk()(torch.rand(1, 3, size, size))
    assert features.shape == (1, 64, nodes, nodes)


def test_the_stride_is_on_the_first_1x1_convolution():
    """layer2's first block (its 1×1 convolution and its shortcut both of stride 2) sees the
    even positions of its input only: a change at an odd row and column changes nothing. A
    strided 3×3 (timm's) would see it."""
    trunk = small_trunk()
    features = torch.rand(1, trunk.layer2[0].conv1.in_channels, 9, 9)
    changed = features.clone()
    changed[..., 1::2, :] += 5
    changed[..., :, 1::2] += 5
    with torch.no_grad():
        assert torch.equal(trunk.layer2[0](features), trunk.layer2[0](changed))
        assert not torch.equal(trunk.layer2[0](features[..., 1:, 1:]),
                               trunk.layer2[0](changed[..., 1:, 1:]))


@pytest.mark.parametrize(("layer", "dilation"), [("layer3", 2), ("layer4", 4)])
@pytest.mark.parametrize("block", [0, 1])
def test_every_block_of_layer3_and_layer4_is_dilated(layer, block, dilation):
    """A change at one position of a block's input reaches the outputs at offsets in
    {−d, 0, d}² only (1×1, dilated 3×3, 1×1): d = 2 in layer3, 4 in layer4, the first block
    (which timm leaves undilated) included."""
    module = getattr(small_trunk(depths=(1, 1, 2, 2)), layer)[block]
    features = torch.rand(1, module.conv1.in_channels, 15, 15)
    changed = features.clone()
    changed[..., 7, 7] += 10
    with torch.no_grad():
        moved = (module(changed) - module(features)).abs().sum(1)[0] > 0
    reached = {(row - 7, column - 7) for row, column in moved.nonzero().tolist()}
    offsets = {(dy, dx) for dy in (-dilation, 0, dilation) for dx in (-dilation, 0, dilation)}
    assert reached <= offsets and (dilation, dilation) in reached and (0, 0) in reached


def test_the_authors_embedding_head_follows_the_aspp_with_its_context_head():
    """"aspp-pam": 512-channel ASPP branches, then position attention with C/4 queries, a 3×3
    block and Dropout2d(0.1), the identity at inference; "aspp": DeepLabV3's ASPP alone."""
    torch.manual_seed(0)
    authors = NodeEmbedding("resnet18", 8, 16, None, head="aspp-pam").eval()
    assert authors.aspp.branches[0][0].out_channels == 512
    assert authors.context.attention.query.out_channels == 4
    assert authors.context.dropout.p == 0.1
    images = torch.rand(2, 3, 33, 33)
    with torch.no_grad():
        features = authors.aspp(authors.encoder(images))
        torch.testing.assert_close(authors(images), authors.context.conv(
            authors.context.attention(features)))
    assert NodeEmbedding("resnet18", 8, 16, None).context is None
    with pytest.raises(ValueError, match="unknown embedding_head 'pam'; known: aspp, aspp-pam"):
        NodeEmbedding("resnet18", 8, 16, None, head="pam")


def test_the_trunk_rejects_what_it_cannot_build():
    with pytest.raises(ValueError, match="output_stride must be 8, 16 or 32, got 4"):
        DeepLabV2ResNet(output_stride=4)
    with pytest.raises(ValueError, match="four stages"):
        DeepLabV2ResNet(depths=(1, 1, 1))
    with pytest.raises(ValueError, match="deeplabv2 trunk is a bottleneck ResNet.*'resnet18'"):
        AGNN(backbone="resnet18", trunk="deeplabv2")


def test_output_stride_16_keeps_layer4_at_the_resolution_of_layer3():
    with torch.no_grad():
        assert small_trunk(output_stride=16)(torch.rand(1, 3, 97, 97)).shape[-1] == 7
        assert small_trunk(output_stride=32)(torch.rand(1, 3, 97, 97)).shape[-1] == 4


# --- the graph ------------------------------------------------------------------------------------

def authors_graph(graph: AttentiveGraph, states: torch.Tensor) -> torch.Tensor:
    """The authors' K rounds over one 3-node graph per sample, literally (deeplab/siamese_model_
    conf_gnn.py lines 285-302, 320-342, ConvGRU2.py lines 44-48), sample by sample."""
    weight = graph.inter_attention.weight  # their linear_e.weight
    gru = graph.update

    def generate_attention(exemplar, query):  # the message to `exemplar` from `query`
        flat_e, flat_q = exemplar.flatten(1), query.flatten(1)  # (C, hw)
        energy = torch.einsum("cp,dc,dq->pq", flat_e, weight, flat_q)  # (h_e Wᵀ) h_q
        attention = torch.einsum("cq,pq->cp", flat_q, energy.softmax(dim=1))
        attention = attention.view_as(exemplar)
        return attention * torch.sigmoid(F.conv2d(attention[None], graph.gate.conv.weight)[0])

    def conv_gru(inputs, state):
        stacked = torch.cat([inputs, state])[None]
        update = torch.sigmoid(gru.update_gate(stacked))[0]
        reset = torch.sigmoid(gru.reset_gate(stacked))[0]
        out = torch.tanh(gru.candidate(torch.cat([inputs, state * reset])[None]))[0]
        return state * (1 - update) + out * update

    results = []
    for sample in states:
        nodes = list(sample)
        for _ in range(graph.num_iterations):
            fused = [graph.fusion(torch.cat([generate_attention(nodes[i], nodes[j])
                                             for j in range(3) if j != i])[None])[0]
                     for i in range(3)]
            nodes = [conv_gru(fused[i], nodes[i]) for i in range(3)]
        results.append(torch.stack(nodes))
    return torch.stack(results)


def test_the_authors_graph_concatenates_the_messages_of_the_two_other_nodes_in_order():
    """Their gated messages to node i from the other nodes j, in increasing order, fused by
    conv_fusion, no loop message, a ConvGRU with the message as input, 5 synchronous rounds:
    the graph with the official switches computes it, for a weight that is not symmetric."""
    torch.manual_seed(0)
    graph = AttentiveGraph(8, 5, gate="spatial", gate_bias=False, loop_message=False,
                           aggregation="concat", separate_gru_gates=True,
                           transposed_weight=True)
    with torch.no_grad():
        graph.inter_attention.weight.copy_(torch.randn(8, 8) / 2)
        graph.gate.conv.weight.mul_(5)
    assert graph.intra_attention is None and graph.gate.conv.bias is None
    states = torch.randn(2, 3, 8, 4, 5)
    with torch.no_grad():
        outputs = graph(states)
        torch.testing.assert_close(outputs, authors_graph(graph, states))
        # the order of the two messages matters: the fusion's halves swapped change the states
        halves = graph.fusion.weight.chunk(2, 1)
        graph.fusion.weight.copy_(torch.cat(halves[::-1], 1))
        assert not torch.allclose(graph(states), outputs, atol=1e-3)


def test_concatenation_takes_three_node_graphs_only():
    graph = AttentiveGraph(8, 1, aggregation="concat")
    with pytest.raises(ValueError, match="'concat' fuses the messages of the two other nodes of "
                                         "a 3-node graph; got graphs of 4 nodes"):
        graph(torch.randn(1, 4, 8, 3, 3))
    with pytest.raises(ValueError, match="^unknown aggregation 'mean'; known: sum, concat$"):
        AttentiveGraph(8, 1, aggregation="mean")


def test_the_line_edge_weight_is_w_c_unless_stored_transposed():
    """e_ij = h_i W_c h_jᵀ (Eq. 5) with W = [[1, 2], [0, 1]], not symmetric: node 0 (both
    positions e_0) weighs node 1's positions (e_0, e_1) by softmax(W_c[0, 0], W_c[0, 1]): (1, 2)
    when `weight` is W_c (the default), (1, 0) when it holds W_cᵀ (the authors' layout)."""
    e_0, e_1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    states = torch.stack([torch.stack([e_0, e_0], 1), torch.stack([e_0, e_1], 1)])
    states = states.view(1, 2, 2, 1, 2)  # (B, N, C, h, w)
    for attention, logits in ((InterAttention(2), [1.0, 2.0]),
                              (InterAttention(2, transposed=True), [1.0, 0.0])):
        with torch.no_grad():
            attention.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, 1.0]]))
            weights = attention.attention(states)[0, 0, 0, 0]
        torch.testing.assert_close(weights, torch.tensor(logits).softmax(0))


def test_the_authors_parameter_layout_is_the_same_function():
    """ConvGRU with separate gates and W_c stored transposed compute what the fused layout
    computes with the same numbers rearranged."""
    torch.manual_seed(0)
    fused, apart = AttentiveGraph(8, 2), AttentiveGraph(8, 2, separate_gru_gates=True,
                                                        transposed_weight=True)
    state = fused.state_dict()
    update, reset = state.pop("update.gates.weight").chunk(2)  # z first, then r
    update_bias, reset_bias = state.pop("update.gates.bias").chunk(2)
    state.update({"update.update_gate.weight": update, "update.reset_gate.weight": reset,
                  "update.update_gate.bias": update_bias, "update.reset_gate.bias": reset_bias})
    state["inter_attention.weight"] = torch.randn(8, 8)
    apart.load_state_dict(state)
    with torch.no_grad():
        fused.inter_attention.weight.copy_(state["inter_attention.weight"].T)
        states = torch.randn(1, 3, 8, 3, 4)
        torch.testing.assert_close(fused(states), apart(states))


def test_the_one_block_readout_is_a_3x3_block_then_a_1x1():
    readout = Readout(10, 6, depth=1)
    kinds = [type(layer).__name__ for layer in readout]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d"]
    assert (readout[0].in_channels, readout[0].kernel_size, readout[0].bias) == (10, (3, 3), None)
    assert readout[3].kernel_size == (1, 1) and readout(torch.rand(2, 10, 5, 5)).shape == (
        2, 1, 5, 5)
    with pytest.raises(ValueError, match="depth must be at least 1"):
        Readout(10, 6, depth=0)


def test_each_official_switch_turns_back_alone():
    """A sweep on the official preset sets one switch back to the paper's: each such model
    builds and runs (the concatenation with its 3-frame graphs)."""
    paper_values = dict(embedding_head="aspp", input_normalisation="imagenet", gate="channel",
                        gate_bias=True, loop_message=True, num_iterations=3, readout_depth=2,
                        parameter_layout="vosbench", test_scales=(1.0,), test_resize="vosbench")
    for key, value in paper_values.items():
        model = tiny_official(**{key: value})
        assert any(departure.startswith(f"{key}: ") for departure in
                   model.official_departures())
        with torch.no_grad():
            assert model(torch.rand(1, 3, 3, 33, 33)).shape == (1, 3, 33, 33)
    model = tiny_official(aggregation="sum", num_nodes_test=5, test_graphs="subsets")
    assert model.graph.fusion is None
    with torch.no_grad():
        assert model(torch.rand(1, 5, 3, 33, 33)).shape == (1, 5, 33, 33)


def test_inconsistent_official_switches_are_rejected():
    for options in (dict(test_graphs="subsets"), dict(num_nodes_test=4)):
        model = tiny_official(**options)  # a checkpoint loads with the default test options
        with pytest.raises(ValueError, match="aggregation 'concat' takes graphs of 3 frames: "
                                             "set test_graphs 'sampled' and num_nodes_test 3"):
            model.predict_video(make_video(4))
    tiny_official().check_test_graphs()
    with pytest.raises(ValueError, match="num_nodes_test must be at least 2, got 1"):
        tiny_official(aggregation="sum", num_nodes_test=1)
    assert tiny_official(aggregation="sum", num_nodes_test=2).hparams.num_nodes_test == 2
    for setting in ("trunk", "embedding_head", "input_normalisation", "aggregation",
                    "parameter_layout", "test_graphs", "test_resize"):
        with pytest.raises(ValueError, match=f"^AGNN: unknown {setting} 'other'; known: "
                                             f"[a-z0-9-]+, [a-z0-9-]+$"):
            tiny_official(**{setting: "other"})
    for scales in ((), (1.0, 0.0)):
        with pytest.raises(ValueError, match="test_scales must be positive"):
            tiny_official(test_scales=scales)


# --- the test-time recipe -------------------------------------------------------------------------

def test_an_official_checkpoint_loads_with_load_from_checkpoint(tmp_path):
    """Lightning's own loader builds the model from the checkpoint's settings, which hold no
    inference options (their defaults, here inconsistent with "concat"), and the caller sets
    them: the weights and the network settings come back."""
    model = tiny_official()
    torch.save(lightning_checkpoint(model, model.state_dict()), tmp_path / "official.ckpt")
    loaded = AGNN.load_from_checkpoint(tmp_path / "official.ckpt", map_location="cpu")
    assert (loaded.hparams.aggregation, loaded.hparams.test_graphs) == ("concat", "subsets")
    assert all(torch.equal(value, model.state_dict()[key])
               for key, value in loaded.state_dict().items())
    loaded.hparams.update(test_graphs="sampled", num_nodes_test=3)
    loaded.eval().check_test_graphs()


def test_sampled_graphs_replay_the_authors_draws_from_all_frames():
    """Frame t's graph is [t] and the two frames their loop draws for it (random.sample over
    the video's frame indices, one call per frame in order), from a generator seeded by the
    seed and the video's name."""
    graphs = sampled_graphs(7, 3, video_generator(0, "bmx-trees"))
    replay = random.Random("0/bmx-trees")
    assert graphs == [[t, *replay.sample(list(range(7)), 2)] for t in range(7)]
    assert graphs == sampled_graphs(7, 3, video_generator(0, "bmx-trees"))
    assert graphs != sampled_graphs(7, 3, video_generator(1, "bmx-trees"))
    assert graphs != sampled_graphs(7, 3, video_generator(0, "blackswan"))
    drawn = [frame for seed in range(40) for graph in
             sampled_graphs(7, 3, video_generator(seed, "x")) for frame in graph[1:]]
    assert set(drawn) == set(range(7))  # every frame, not only neighbours
    itself = [graph for seed in range(40) for graph in
              sampled_graphs(7, 3, video_generator(seed, "x")) if graph[0] in graph[1:]]
    assert itself  # the frame itself can be drawn, as random.sample over all frames allows
    for graph in graphs:
        assert len(set(graph[1:])) == 2


def test_short_videos_repeat_their_frames_to_fill_a_sampled_graph():
    assert sampled_graphs(1, 3, random.Random(0)) == [[0, 0, 0]]
    for graph in sampled_graphs(2, 3, random.Random(0)):
        assert sorted(graph[1:]) == [0, 1]
    assert sampled_graphs(2, 5, random.Random(0))[0][1:3] * 2 == sampled_graphs(
        2, 5, random.Random(0))[0][1:]
    pairs = sampled_graphs(4, 2, random.Random(0))  # the smallest graph: a frame and one more
    assert [len(graph) for graph in pairs] == [2] * 4
    with pytest.raises(ValueError, match="at least two nodes"):
        sampled_graphs(4, 1, random.Random(0))


def test_the_authors_sizes_and_normalisation_by_hand():
    assert [scaled_size((473, 473), scale) for scale in (0.75, 1.0, 1.5)] == [
        (354, 354), (473, 473), (709, 709)]
    assert scaled_size((480, 854), 0.75) == (360, 640)
    rgb = torch.tensor([255.0, 0.0, 51.0]).div(255).view(3, 1, 1)
    expected = torch.tensor([51 - 104.00698793, -116.66876762, 255 - 122.67891434])
    torch.testing.assert_close(subtract_bgr_mean(rgb).flatten(), expected)
    assert CAFFE_BGR_MEAN == (104.00698793, 116.66876762, 122.67891434)
    frames = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    back = subtract_bgr_mean(resize_frames(frames, (16, 16), "authors"))  # 8-bit values exact
    assert torch.equal(back[0, 0] + torch.tensor(CAFFE_BGR_MEAN[0]), frames[0, 0].float())


def test_the_authors_resizing_is_cv2s_on_8_bit_frames():
    """A 2×2 frame to 4×4: bilinear (half-pixel centres) gives 0, 2.5, 7.5, 10 on the first row
    and 2.5, 5.625, 11.875, 15 on the second; cv2's 8-bit INTER_LINEAR rounds them to
    0, 2, 7, 10 and 3, 6, 12, 15. The floats stay with vosbench's resizing."""
    frame = torch.tensor([[0, 10], [10, 30]], dtype=torch.uint8).expand(1, 3, 2, 2)
    authors = resize_frames(frame, (4, 4), "authors") * 255
    assert torch.equal(authors[0, 1, :2], torch.tensor([[0.0, 2, 7, 10], [3, 6, 12, 15]]))
    floats = resize_frames(frame, (4, 4), "vosbench") * 255
    torch.testing.assert_close(floats[0, 2, :2], torch.tensor([[0.0, 2.5, 7.5, 10],
                                                               [2.5, 5.625, 11.875, 15]]))
    assert resize_frames(torch.zeros(2, 3, 5, 7, dtype=torch.uint8), (3, 6),
                         "authors").shape == (2, 3, 3, 6)


def test_the_authors_maps_are_resized_as_probabilities_with_aligned_corners():
    """Logits 0 and ln 3 (p = 1/2, 3/4) from 1×2 to 1×4: the authors' sigmoid first, then
    align_corners=True: 1/2, 7/12, 2/3, 3/4; vosbench's logits resized (half-pixel centres:
    0, ln3/4, 3ln3/4, ln3), then the sigmoid."""
    logits = torch.tensor([0.0, math.log(3)]).view(1, 1, 1, 2)
    authors = logits_to_probabilities(logits, (1, 4), "authors").flatten()
    torch.testing.assert_close(authors, torch.tensor([1 / 2, 7 / 12, 2 / 3, 3 / 4]))
    ours = logits_to_probabilities(logits, (1, 4), "vosbench").flatten()
    expected = torch.sigmoid(torch.tensor([0.0, 0.25, 0.75, 1.0]) * math.log(3))
    torch.testing.assert_close(ours, expected)


def test_the_authors_maps_are_truncated_to_8_bits():
    """(p · 255).astype(uint8): 0.999 → 254 (rounding: 255), 0.5 → 127 (128), 1 → 255,
    0.0039 → 0 (1)."""
    probabilities = torch.tensor([0.0, 0.999, 0.5, 1.0, 0.0039])
    assert torch.equal(truncate_to_8_bits(probabilities) * 255,
                       torch.tensor([0.0, 254, 127, 255, 0]))


def make_video(num_frames: int, height: int = 30, width: int = 44, name: str = "clip"
               ) -> LoadedVideo:
    video = Video(name, "fake", "val", tuple(Path(f"{i:05d}.jpg") for i in range(num_frames)),
                  tuple(Path(f"{i:05d}.png") for i in range(num_frames)), (height, width))
    frames = torch.randint(0, 256, (num_frames, 3, height, width), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    return LoadedVideo(video, frames, torch.zeros(num_frames, height, width, dtype=torch.uint8))


def authors_recipe(model: AGNN, video: LoadedVideo, scales: tuple[float, ...]) -> np.ndarray:
    """test_iteration_conf_gnn.py lines 148-166 with PairwiseImg_test_new.py lines 114-158,
    literally, frame by frame: the frame and the two frames drawn for it, each cv2-resized to
    int(40 · s) squared, BGR minus the mean; the frame's map of each scale resized with
    align_corners=True, the mean over scales, truncated to 8 bits. → (N, H, W) uint8."""
    import cv2

    generator = random.Random(f"{model.hparams.test_seed}/{video.name}")
    frames = video.frames.permute(0, 2, 3, 1).numpy()[..., ::-1]  # BGR, as cv2.imread
    maps = []
    for target in range(len(frames)):
        search = generator.sample(list(range(len(frames))), 2)
        output_sum = []
        for scale in scales:
            side = int(40 * scale)
            inputs = [torch.from_numpy((cv2.resize(frames[index].copy(), (side, side))
                                        .astype(np.float32) - np.array(
                                            CAFFE_BGR_MEAN, np.float32)).transpose(2, 0, 1))[None]
                      for index in (target, *search)]
            with torch.no_grad():
                pred1 = model.official_forward(*inputs)[0]
            output_sum.append(F.interpolate(pred1, size=tuple(video.video.size), mode="bilinear",
                                            align_corners=True)[0, 0])
        maps.append((torch.mean(torch.stack(output_sum), 0).numpy() * 255).astype(np.uint8))
    return np.stack(maps)


def test_predict_video_is_the_authors_recipe():
    """Sampled graphs (seeded by the video's name), several scales, cv2 resizing, BGR mean,
    probabilities resized with aligned corners and averaged, 8-bit truncation: predict_video of
    the official switches equals the authors' loop written out; the same every time."""
    model = tiny_official(test_scales=(0.75, 1.5))
    video = make_video(5)
    probabilities = model.predict_video(video)
    assert probabilities.shape == (5, 1, 30, 44)
    levels = probabilities[:, 0] * 255
    assert torch.equal(levels, levels.round())
    expected = authors_recipe(model, video, (0.75, 1.5))
    difference = np.abs(levels.round().numpy().astype(int) - expected.astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.01  # float ties of the floor
    assert torch.equal(model.predict_video(video), probabilities)
    renamed = make_video(5, name="other")
    assert not torch.equal(model.predict_video(renamed), probabilities)


def test_each_frame_keeps_the_map_of_its_own_node():
    """With test_resize vosbench and one scale, frame t's probabilities are those of node 0 of
    its sampled graph run alone, whichever graphs share its forward pass."""
    model = tiny_official(test_scales=(1.0,), test_resize="vosbench", graphs_per_batch=3)
    video = make_video(4)
    probabilities = model.predict_video(video)
    graphs = sampled_graphs(4, 3, video_generator(0, "clip"))
    for target, graph in enumerate(graphs):
        images = F.interpolate(video.frames[graph].float() / 255, size=(40, 40),
                               mode="bilinear", align_corners=False)
        with torch.no_grad():
            logits = model(images[None])[0, 0]
        expected = torch.sigmoid(F.interpolate(logits[None, None], size=(30, 44),
                                               mode="bilinear", align_corners=False))
        torch.testing.assert_close(probabilities[target], expected[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("graphs", ["subsets", "sampled"])
def test_predictions_stay_on_the_device_of_the_frames(graphs):
    """On the meta device (no compute): the probabilities are where the frames are."""
    with torch.device("meta"):
        model = AGNN(backbone="resnet18", channels=16, readout_channels=16, input_size=(40, 40),
                     num_nodes_test=3, test_graphs=graphs).eval()
    video = Video("clip", "fake", "val", tuple(Path(f"{i}.jpg") for i in range(5)), (None,) * 5,
                  (30, 44))
    frames = torch.empty(5, 3, 30, 44, dtype=torch.uint8, device="meta")
    probabilities = model.predict_video(LoadedVideo(video, frames, frames[:, 0]))
    assert probabilities.device.type == "meta" and probabilities.shape == (5, 1, 30, 44)


def test_the_paper_variant_keeps_its_deterministic_subsets_at_one_scale():
    """Item 6: the paper's test-time graphs (§3.3: interleaved subsets, N′ = 5, one 473×473
    scale) stay the paper variant's; test_seed (the authors' sampling) does not reach it."""
    with torch.device("meta"):
        model = build_model("agnn", "paper")
    hp = model.hparams
    assert (hp.test_graphs, tuple(hp.test_scales), hp.test_resize) == (
        "subsets", (1.0,), "vosbench")
    torch.manual_seed(0)
    small = AGNN(backbone="resnet18", channels=16, readout_channels=16, input_size=(40, 40),
                 num_nodes_test=3).eval()
    video = make_video(7)
    probabilities = small.predict_video(video)
    small.hparams.test_seed = 5
    assert torch.equal(small.predict_video(video), probabilities)
    assert frame_subsets(7, 3) == [[0, 3, 6], [1, 4], [2, 5]]


# --- vosbench bench of an imported checkpoint -----------------------------------------------------

def test_bench_scores_an_imported_checkpoint_with_the_official_recipe(
        imported, official_model, synthetic_root, tmp_path, monkeypatch):
    """`vosbench bench --preset official --ckpt_path` of the imported weights at a tiny input
    size (an inference option): the results row names the checkpoint and the official variant's
    parameter count, and the probabilities it saved are those of predict_video with the same
    weights and options."""
    monkeypatch.chdir(tmp_path)
    assert vosbench_main([
        "bench", "--method", "agnn", "--preset", "official", "--ckpt_path", str(imported),
        "--data.init_args.root", str(synthetic_root), "--model.init_args.input_size", "[33, 33]",
        "--model.init_args.test_scales", "[1.0]", "--model.init_args.crf", "null",
        "--model.init_args.save_probabilities", "true", "--model.init_args.output_workers", "0",
        "--data.init_args.num_workers", "0", "--wandb_mode", "disabled"]) == 0
    (row,) = Path("results").glob("*.json")
    row = json.loads(row.read_text())
    assert (row["method"], row["preset"], row["checkpoint"]) == ("agnn", "official",
                                                                 str(imported))
    assert row["parameters"] == OFFICIAL_PARAMETERS and len(row["sequences"]) == 3
    assert 0 <= row["metrics"]["J-Mean"] <= 1
    video = load_video(davis2017_videos(synthetic_root, "val")[0])
    official_model.hparams.update(input_size=(33, 33), test_scales=(1.0,))
    try:
        expected = official_model.predict_video(video)[:, 0]
    finally:
        official_model.hparams.update(input_size=(473, 473), test_scales=(0.75, 1.0, 1.5))
    saved = np.stack([np.array(Image.open(Path(row["probability_dir"]) / video.name / "1" /
                                          f"{name}.png")) for name in video.video.frame_names])
    assert np.array_equal(saved, np.rint(expected.numpy() * 65535).astype(np.uint16))
