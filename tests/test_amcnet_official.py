"""AMC-Net's official variant (methods/amcnet.py): the authors' released network, isyangshu/AMC-Net
model/AMCNet.py. Its size and key table against their state dict (reference/official/
amcnet_keys.txt), `official_forward` against the outputs their model computed on seeded weights
(reference/official/amcnet_reference.json, written in a scratch folder from their model file; its
metadata says how), `vosbench weights import` (strict errors; the round trip and a bench of the
imported checkpoint are slow: the checkpoint is 600 MB), each of the network's switches, and the
recipe of their test.py on hand-made values, beside the paper variant's (item 6)."""

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from official_weights import (
    KEY_TABLES,
    assert_matches_reference,
    import_with_command,
    read_keys,
    read_reference,
    seeded_state,
)
from PIL import Image
from torchvision import transforms

from tests.test_agnn import make_video
from tests.test_amcnet import (
    flow_clip,
    literal_channel_attention,
    literal_spatial_logits,
    randomised,
    unlogged,
)
from vosbench.cli import main as vosbench_main
from vosbench.datamodules.clips import LoadedVideo
from vosbench.datamodules.video import Video
from vosbench.flow.colour import flow_to_colour
from vosbench.methods.amcnet import AMCNet, MotionCorrection, conv_bn_prelu, official_key_table
from vosbench.methods.official import CheckpointEntry, read_official_state
from vosbench.weights import build_model

REFERENCE = KEY_TABLES / "amcnet_reference.json"
CONFIGS = Path(__file__).parents[1] / "configs" / "methods" / "amcnet"
# test.py lines 15-18: what their frames and flow images go through after the resize
IMAGE_TRANSFORMS = transforms.Compose([
    transforms.ToTensor(),
    transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
THEIR_KEYS = read_keys("amcnet")


def renamed(state: dict) -> dict:
    """Their state dict under the official variant's names (the key table)."""
    entry = AMCNet.official_checkpoint.entries[0]
    return {entry.rename(key): value for key, value in state.items()}


@pytest.fixture(scope="module")
def official():
    """The official preset's model (full size, built once) with the reference's seeded weights of
    the authors' state dict, in eval mode."""
    reference = read_reference(REFERENCE)
    model = build_model("amcnet", "official")
    state = seeded_state(THEIR_KEYS, reference["weights"]["seed"], reference["weights"]["scales"])
    model.load_state_dict(renamed(state), strict=True)
    return model.eval()


def tiny_official(**overrides) -> AMCNet:
    """The official switches on ResNet-18 encoders with small decoder widths, 64×64 inputs."""
    torch.manual_seed(0)
    options = dict(backbone="resnet18", reduced_channels=(8, 8, 8, 16, 16), input_size=(64, 64),
                   optimizer="adamw", **AMCNet.official_settings)
    return AMCNet(**{**options, **overrides})


def cheap_authors_file(path: Path, change=None) -> None:
    """Every key of their state dict with its shape, the values one zero expanded (a file of a
    few kB: for the errors, where values do not matter); `change` edits the dict first."""
    state = {key: torch.zeros((), dtype=dtype).expand(shape)
             for key, (dtype, shape) in THEIR_KEYS.items()}
    if change is not None:
        change(state)
    torch.save(state, path)


# --- the network: size, key table, outputs --------------------------------------------------------

def test_the_official_variant_has_the_authors_tensors_and_parameter_count(official):
    """model/AMCNet.py: 157,150,475 parameters in 1,628 state-dict entries (reference/official/
    amcnet_keys.txt); the paper preset keeps its 147,847,455."""
    assert sum(p.numel() for p in official.parameters()) == 157_150_475
    assert len(official.state_dict()) == len(THEIR_KEYS) == 1628
    with torch.device("meta"):
        paper = AMCNet()
    assert sum(p.numel() for p in paper.parameters()) == 147_847_455


def test_the_key_table_maps_each_authors_key_onto_a_tensor_of_its_shape(official):
    # built here, not the class's copy (made at import): a change of the function shows
    table = official_key_table()
    entry = CheckpointEntry(None, "", table)
    ours = official.state_dict()
    names = {key: entry.rename(key) for key in THEIR_KEYS}
    assert sorted(names.values()) == sorted(ours)  # one to one, nothing left unfilled
    # 148 distinct rows, each the longest match of some key of theirs: no row is dead
    assert len({theirs for theirs, _ in table}) == len(table) == 148
    longest = {max((row for row in table if key.startswith(row[0])), key=lambda row: len(row[0]))
               for key in THEIR_KEYS}
    assert longest == set(table)
    assert AMCNet.official_checkpoint.entries[0].table == table
    assert all(tuple(ours[names[key]].shape) == shape for key, (_, shape) in THEIR_KEYS.items())
    # by hand, from their module tree: conv1_* = (maxpool, *layer1), the gates' and decoders'
    # flat Sequentials, output1 (512 → 256) the projection of D_4, output5 the head
    assert {key: names[key] for key in (
        "conv0_Flow.2.weight", "conv1_RGB.2.conv2.weight", "conv3_Flow.22.bn3.running_var",
        "attention_feature0.3.bias", "attention_feature3.4.weight", "attention_feature4.6.weight",
        "atten_flow_channel_2.fc2.weight", "gate_Flow1.2.weight", "fuse2_Flow.4.running_var",
        "fuse0_RGB.3.bias", "channel4.fc1.weight", "spatial1.conv1.weight", "output1.0.weight",
        "output4.1.bias", "output5.3.weight")} == {
        "conv0_Flow.2.weight": "network.motion_encoder.stages.0.2.weight",
        "conv1_RGB.2.conv2.weight": "network.appearance_encoder.stages.1.1.1.conv2.weight",
        "conv3_Flow.22.bn3.running_var": "network.motion_encoder.stages.3.22.bn3.running_var",
        "attention_feature0.3.bias": "network.gates.0.gate.1.bias",
        "attention_feature3.4.weight": "network.gates.3.gate.1.1.weight",
        "attention_feature4.6.weight": "network.gates.4.gate.2.weight",
        "atten_flow_channel_2.fc2.weight": "network.gates.2.channel.mlp.2.weight",
        "gate_Flow1.2.weight": "network.reduce_motion.1.2.weight",
        "fuse2_Flow.4.running_var": "network.blocks.2.motion_conv.1.1.running_var",
        "fuse0_RGB.3.bias": "network.blocks.0.conv.1.0.bias",
        "channel4.fc1.weight": "network.blocks.4.channel.mlp.0.weight",
        "spatial1.conv1.weight": "network.blocks.1.spatial.conv.weight",
        "output1.0.weight": "network.project.3.0.weight",
        "output4.1.bias": "network.project.0.1.bias",
        "output5.3.weight": "network.head.1.weight"}


def test_official_forward_equals_the_authors_model_on_seeded_weights(official):
    """Their AMCNet with the same seeded weights computed the reference (float32, CPU); inputs
    as its metadata says: ImageNet-normalised uniform frames, then flow images."""
    reference = read_reference(REFERENCE)
    inputs = reference["inputs"]
    generator = torch.Generator().manual_seed(inputs["seed"])
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    shape = (inputs["batch"], 3, *inputs["size"])
    image = (torch.rand(shape, generator=generator) - mean) / std
    flow = (torch.rand(shape, generator=generator) - mean) / std
    with torch.no_grad():
        outputs = official.official_forward(image, flow)
    names = ["output", "c4_attention", "c3_attention", "c2_attention", "c1_attention",
             "c0_attention"]
    assert_matches_reference(dict(zip(names, outputs)), reference, atol=1e-5)
    # sigmoids far from 0 and 1 that vary: the comparison is of more than constants
    samples = {name: [float(value) for value in reference["outputs"][name]["sample"]]
               for name in names}
    assert all(0.01 < min(values) and max(values) < 0.99 for values in samples.values())
    assert all(max(samples[name]) - min(samples[name]) > 0.05 for name in names
               if name != "c4_attention")  # (c4: one sample of each frame)


# --- vosbench weights import --------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    (lambda state: state.pop("output5.3.bias"),
     "the official variant's 'network.head.1.bias' (the file's 'output5.3.bias') is not filled"),
    (lambda state: state.update({"output6.0.weight": torch.zeros(1)}),
     "key 'output6.0.weight' is not used by the official variant"),
    (lambda state: state.update({"fuse2_Flow.0.weight": torch.zeros(128, 128, 3, 3)}),
     "'network.blocks.2.motion_conv.0.0.weight' has shape (128, 128, 3, 3) in the file, "
     "(128, 256, 3, 3) in the official variant"),
])
def test_an_authors_checkpoint_that_does_not_fit_is_refused_naming_the_key(
        official, tmp_path, monkeypatch, capsys, change, message):
    monkeypatch.setattr("vosbench.weights.build_model", lambda *args, **kwargs: official)
    cheap_authors_file(tmp_path / "best.pth", change)
    code = vosbench_main(["weights", "import", "amcnet", str(tmp_path / "best.pth"), "--out",
                          str(tmp_path / "amcnet.ckpt")])
    error = capsys.readouterr().err
    assert code == 2 and message in error and "best.pth" in error
    assert not (tmp_path / "amcnet.ckpt").exists()


def test_a_checkpoint_of_torch_before_0_4_1_lacks_only_the_batch_counters(official, tmp_path):
    def drop_counters(state):
        for key in [key for key in state if key.endswith("num_batches_tracked")]:
            del state[key]

    cheap_authors_file(tmp_path / "best.pth", drop_counters)
    expected = official.state_dict()
    state = read_official_state(tmp_path / "best.pth", AMCNet.official_checkpoint, expected)
    counters = [key for key in state if key.endswith("num_batches_tracked")]
    # every BatchNorm of theirs: two ResNet-101s (104 each), the gates (one at stages 0-2, two
    # at 3-4), the channel reduction (2 × 5), fuse{i}_RGB and fuse{i}_Flow (2 × 2 × 5), output1-5
    assert len(counters) == 2 * 104 + (3 + 2 * 2) + 2 * 5 + 2 * 2 * 5 + 5 == 250
    assert all(torch.equal(state[key], expected[key]) for key in counters)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """An authors' checkpoint of seeded values (their bare state dict) whose head says
    foreground everywhere (last convolution zero, bias 20), imported with the command."""
    folder = tmp_path_factory.mktemp("amcnet_official")
    state = seeded_state(THEIR_KEYS, seed=3)
    state["output5.3.weight"].zero_()
    state["output5.3.bias"].fill_(20.0)
    torch.save(state, folder / "best.pth")
    return state, import_with_command("amcnet", folder / "best.pth", folder / "amcnet.ckpt")


def test_weights_import_round_trips_every_tensor_of_an_authors_checkpoint(imported):
    state, path = imported
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["state_dict"].keys() == renamed(state).keys()
    assert all(torch.equal(checkpoint["state_dict"][name], value)
               for name, value in renamed(state).items())
    hyperparameters = checkpoint["hyper_parameters"]
    assert all(hyperparameters[key] == value for key, value in AMCNet.official_settings.items()
               if key not in AMCNet.inference_only)
    assert not set(AMCNet.inference_options()) & set(hyperparameters)


def test_bench_scores_an_imported_authors_checkpoint(imported, synthetic_root, tmp_path,
                                                     monkeypatch):
    """The imported head says foreground everywhere: every pixel is scored foreground (their
    evaluation's PNG > 0 is threshold 0 without the CRF) and J is the objects' share."""
    _, path = imported
    monkeypatch.chdir(tmp_path)
    assert vosbench_main([
        "bench", "--method", "amcnet", "--preset", "official", "--ckpt_path", str(path),
        "--results", "results", "--data.init_args.root", str(synthetic_root),
        "--model.init_args.input_size", "[64, 64]", "--model.init_args.crf", "null",
        "--model.init_args.threshold", "0", "--model.init_args.output_workers", "0",
        "--model.init_args.save_probabilities", "true", "--data.init_args.num_workers", "0",
        "--data.init_args.flow.init_args.cache", "false", "--wandb_mode", "disabled"]) == 0
    (row,) = Path("results").glob("*.json")
    row = json.loads(row.read_text())
    assert row["checkpoint"] == str(path)
    assert row["config"]["model.init_args.pil_filter"] == "bicubic"
    assert 0.01 < row["metrics"]["J-Mean"] < 0.5
    maps = sorted(Path(row["probability_dir"]).glob("*/1/*.png"))
    assert maps and {int(np.asarray(Image.open(p)).min()) for p in maps} == {65535}


# --- the switches ---------------------------------------------------------------------------------

def test_each_switch_is_a_constructor_option_that_the_official_preset_sets(official):
    defaults = inspect.signature(AMCNet).parameters
    assert all(defaults[key].default != value for key, value in AMCNet.official_settings.items())
    assert official.official_departures() == []
    paper = yaml.safe_load((CONFIGS / "paper.yaml").read_text())["model"]["init_args"]
    assert not set(paper) & set(AMCNet.official_settings)  # the paper preset keeps the defaults
    assert {"pil_filter", "flow_colour_size", "threshold_before_resize"} <= set(
        AMCNet.inference_options())


def test_the_switches_build_the_authors_layers():
    """Biases on every 3×3 convolution outside the encoders, one PReLU slope everywhere (stems
    included), PReLU stems, two fusion layers before an r-channel attention in each MCM."""
    for model, official in ((tiny_official(), True), (tiny_official(
            conv_bias=False, prelu_per_channel=True, stem_activation="relu",
            motion_fusion="concat"), False)):
        network = model.network
        layers = [module for name, module in network.named_modules()  # conv, BN, PReLU
                  if isinstance(module, torch.nn.Sequential) and len(module) == 3
                  and isinstance(module[1], torch.nn.BatchNorm2d)
                  and not name.startswith(("appearance_encoder", "motion_encoder"))]
        # the gates' (1 at stages 0-2, 2 at 3-4), the reductions, the decoder's (fuse{i}_Flow's
        # too), the projections and the head's
        assert len(layers) == 7 + 2 * 5 + 2 * 5 + (2 * 5 if official else 0) + 4 + 1
        assert all((layer[0].bias is not None) == official for layer in layers)
        last = [network.head[1]] + [gate.gate[-1] for gate in network.gates]
        assert all(conv.bias is not None for conv in last)  # in both
        slopes = {module.weight.numel() for module in network.modules()
                  if isinstance(module, torch.nn.PReLU)}
        assert (slopes == {1}) == official
        for encoder in (network.appearance_encoder, network.motion_encoder):
            assert isinstance(encoder.stages[0][2], torch.nn.PReLU if official else torch.nn.ReLU)
        for block, width in zip(network.blocks, (8, 8, 8, 16, 16)):
            assert (block.motion_conv is not None) == official
            assert block.channel.mlp[0].in_channels == (width if official else 2 * width)


def test_the_authors_decoder_block_follows_their_forward():
    """model/AMCNet.py lines 222-226: E_Flow = fuse_Flow(cat(G^m, U)), A = spatial(channel(
    E_Flow) · E_Flow), D = A · fuse_RGB(cat(E, U)) + U."""
    block = randomised(MotionCorrection(8, fuse_motion=True, encoder_first=True,
                                        layer=lambda a, b: conv_bn_prelu(a, b, bias=True)))
    torch.manual_seed(2)
    decoder, appearance, motion = (torch.randn(2, 8, 6, 10) for _ in range(3))
    with torch.no_grad():
        result, logits = block(decoder, appearance, motion)
        fused = block.motion_conv(torch.cat([motion, decoder], 1))
        weighted = literal_channel_attention(block.channel, fused)[:, :, None, None] * fused
        attention = torch.sigmoid(literal_spatial_logits(block.spatial, weighted))
        expected = attention * block.conv(torch.cat([appearance, decoder], 1)) + decoder
    assert torch.allclose(logits.sigmoid(), attention, atol=1e-6)
    assert torch.allclose(result, expected, atol=1e-5)


def test_the_concatenation_order_only_permutes_the_first_convolutions_input_channels():
    torch.manual_seed(0)
    theirs = randomised(MotionCorrection(8, fuse_motion=True, encoder_first=True))
    ours = MotionCorrection(8, fuse_motion=True, encoder_first=False).eval()
    state = dict(theirs.state_dict())
    for name in ("conv.0.0.weight", "motion_conv.0.0.weight"):  # inputs (X, U) → (U, X)
        state[name] = torch.cat([state[name][:, 8:], state[name][:, :8]], 1)
    ours.load_state_dict(state)
    inputs = [torch.randn(1, 8, 5, 7) for _ in range(3)]
    unpermuted = MotionCorrection(8, fuse_motion=True, encoder_first=False).eval()
    unpermuted.load_state_dict(theirs.state_dict())
    with torch.no_grad():
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(theirs(*inputs),
                                                                    ours(*inputs)))
        assert not torch.allclose(theirs(*inputs)[0], unpermuted(*inputs)[0], atol=1e-3)


def test_align_corners_places_the_upsampled_samples_as_the_authors_interpolation():
    """A ramp [0, 1] upsampled to 4 samples: align_corners=True (their F.interpolate, lines 228-
    256) puts the two values on the end samples, [0, 1/3, 2/3, 1]; vosbench's default samples
    pixel centres, [0, 1/4, 3/4, 1]."""
    ramp = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
    assert torch.allclose(tiny_official().network.upsample(ramp, (1, 4)),
                          torch.tensor([0, 1 / 3, 2 / 3, 1]).view(1, 1, 1, 4))
    assert torch.allclose(tiny_official(align_corners=False).network.upsample(ramp, (1, 4)),
                          torch.tensor([0, 0.25, 0.75, 1]).view(1, 1, 1, 4))


def test_official_forward_returns_sigmoids_of_the_network_and_refuses_other_networks():
    torch.manual_seed(0)
    model = randomised(tiny_official())
    images, flows = torch.randn(2, 3, 64, 96), torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        output, *attention = model.official_forward(images, flows)
        logits, attention_logits = model.network(images, flows)
    assert output.shape == (2, 1, 64, 96) and len(attention) == 5
    assert torch.allclose(output, torch.sigmoid(F.interpolate(
        logits, (64, 96), mode="bilinear", align_corners=True)), atol=1e-6)
    assert all(torch.allclose(a, torch.sigmoid(b), atol=1e-6)
               for a, b in zip(attention, attention_logits))
    assert [tuple(a.shape[2:]) for a in attention] == [(2, 3), (4, 6), (8, 12), (16, 24),
                                                       (32, 48)]
    with pytest.raises(ValueError, match=r"differs in conv_bias: False \(theirs: True\)$"):
        tiny_official(conv_bias=False).official_forward(images, flows)
    # the recipe's switches are not the network's
    tiny_official(pil_filter=None).eval().official_forward(images, flows)


def test_the_official_architecture_trains_every_parameter():
    model = tiny_official().train()
    unlogged(model).training_step(flow_clip(batch=2), 0).backward()
    assert [name for name, p in model.named_parameters() if p.grad is None] == []


def test_switch_values_outside_their_choices_are_rejected():
    for key, value in (("stem_activation", "gelu"), ("motion_fusion", "add"),
                       ("concat_order", "random"), ("flow_colour_size", "half"),
                       ("pil_filter", "lanczos")):
        with pytest.raises(ValueError, match=f"AMCNet: {key} is one of .*, got '{value}'"):
            tiny_official(**{key: value})
    with pytest.raises(ValueError, match="threshold_before_resize is a probability"):
        tiny_official(threshold_before_resize=1.5)


# --- the recipe (test.py) -------------------------------------------------------------------------

class StubNetwork:
    """Stands in for a model's network in `predict_video`: records its inputs and returns
    `logits` (N, 1, h, w) at the input size, so that the network's upsampling is the identity."""

    def __init__(self, network, logits):
        self.upsample, self.logits, self.inputs = network.upsample, logits, []

    def __call__(self, images, motion):
        self.inputs.append((images, motion))
        return self.logits.expand(len(images), -1, -1, -1), [None] * 5


def stubbed(model: AMCNet, logits: torch.Tensor) -> StubNetwork:
    stub = StubNetwork(model.network, logits)
    model.__dict__["network"] = stub  # past nn.Module's registry: predict_video reads it
    return stub


def video_with_flow(frames: torch.Tensor, flow: torch.Tensor) -> LoadedVideo:
    count, _, height, width = frames.shape
    video = Video("clip", "fake", "val", tuple(Path(f"{i:05d}.jpg") for i in range(count)),
                  (None,) * count, (height, width))
    return LoadedVideo(video, frames, torch.zeros(count, height, width, dtype=torch.uint8), flow)


def test_the_official_recipe_feeds_the_network_as_test_py_does():
    """test.py lines 52-59: the frame and the flow image (PWC-Net's colour PNG, here
    flow_to_colour at the frame's size) resized to 384×384 (here 64×64) by PIL without a filter,
    then ToTensor and ImageNet normalisation."""
    loaded = make_video(num_frames=2)
    flow = torch.randn(2, 2, 40, 56, generator=torch.Generator().manual_seed(1)) * 4
    model = tiny_official(input_size=(64, 64)).eval()
    stub = stubbed(model, torch.zeros(1, 1, 64, 64))
    model.predict_video(video_with_flow(loaded.frames, flow))
    (images, motion), = stub.inputs
    for index in range(2):
        frame = Image.fromarray(loaded.frames[index].permute(1, 2, 0).numpy())
        coded = Image.fromarray(flow_to_colour(flow[index].permute(1, 2, 0).numpy()))
        assert torch.allclose(images[index], IMAGE_TRANSFORMS(np.array(frame.resize((64, 64)))),
                              atol=1e-6)
        assert torch.allclose(motion[index], IMAGE_TRANSFORMS(np.array(coded.resize((64, 64)))),
                              atol=1e-6)


def test_the_official_recipe_normalises_by_imagenet_statistics():
    """A frame of one colour (255, 0, 51) stays that colour through any resize: ((1 − 0.485) /
    0.229, (0 − 0.456) / 0.224, (0.2 − 0.406) / 0.225)."""
    frames = torch.tensor([255, 0, 51], dtype=torch.uint8).view(1, 3, 1, 1).expand(1, 3, 48, 80)
    model = tiny_official(input_size=(64, 64)).eval()
    stub = stubbed(model, torch.zeros(1, 1, 64, 64))
    model.predict_video(video_with_flow(frames.contiguous(), torch.ones(1, 2, 48, 80)))
    expected = torch.tensor([2.248908, -2.035714, -0.915556]).view(3, 1, 1)
    assert torch.allclose(stub.inputs[0][0][0], expected.expand(3, 64, 64), atol=1e-5)


def test_the_flow_is_colour_coded_at_the_frames_size_then_resized_as_an_image():
    """Motion (1, 0) px everywhere but one pixel of (40, 0): coded at the frame's size, the
    largest magnitude is 40 and the uniform part is the wheel's colour at its angle
    (atan2(−0, −1) / π = −1: colorwheel row 0, red (255, 0, 0)) at radius 1/40:
    floor(255 (1 − (1 − c) / 40)) = (255, 248, 248), which PIL's resize keeps away from the
    spike. Resized as a field first (the paper
    variant), the spike is thinned and the uniform part gets another colour."""
    flow = torch.zeros(1, 2, 96, 128)
    flow[:, 0] = 1.0
    flow[0, 0, 50, 61] = 40.0
    frames = torch.zeros(1, 3, 96, 128, dtype=torch.uint8)
    expected = IMAGE_TRANSFORMS(np.full((1, 1, 3), (255, 248, 248), dtype=np.uint8))
    for official in (True, False):
        model = tiny_official(input_size=(64, 64), **({} if official else dict(
            flow_colour_size="input", pil_filter=None))).eval()
        stub = stubbed(model, torch.zeros(1, 1, 64, 64))
        model.predict_video(video_with_flow(frames, flow))
        corner = stub.inputs[0][1][0, :, :8, :8]
        assert torch.allclose(corner, expected.expand(3, 8, 8), atol=1e-5) == official


def hand_made_logits() -> torch.Tensor:
    """(1, 1, 4, 4) logits at the input size: +0.1 (p 0.525) on the left half, −0.1 (p 0.475)
    on the right, and 0 (p exactly 0.5) at (0, 3)."""
    logits = torch.tensor([0.1, 0.1, -0.1, -0.1]).repeat(4, 1)
    logits[0, 3] = 0.0
    return logits.view(1, 1, 4, 4)


def test_the_official_recipe_thresholds_at_the_input_size_then_resizes_the_mask():
    """test.py lines 68-72, 82: mask_pred >= 0.5 → 1, else 0; Image.fromarray(mask · 255)
    .convert('L').resize((width, height)) with PIL's default filter; the probabilities are that
    image / 255, as their CRF reads it (line 46 of utils/apply_densecrf_davis.py)."""
    model = tiny_official(input_size=(4, 4)).eval()
    stubbed(model, hand_made_logits())
    frames = torch.zeros(1, 3, 8, 12, dtype=torch.uint8)
    probabilities = model.predict_video(video_with_flow(frames, torch.ones(1, 2, 8, 12)))
    mask = (torch.sigmoid(hand_made_logits())[0, 0] >= 0.5).numpy().astype(np.float32)
    assert mask[0, 3] == 1 and mask[:, 2:].sum() == 1  # p = 0.5 is foreground
    saved = np.array(Image.fromarray(mask * 255).convert("L").resize((12, 8)))
    assert torch.equal(probabilities[0, 0], torch.from_numpy(saved).float() / 255)
    assert probabilities[0, 0, 4, 0] == 1  # p = 0.525 becomes certain


def test_the_paper_variant_resizes_the_probabilities_before_any_threshold():
    """Item 6: the paper leaves the order open; the paper variant hands the harness (threshold,
    CRF) the probability map resized bilinearly to the frame's size, values between 0.475 and
    0.525 here, where the official recipe has a 0/255 mask."""
    model = tiny_official(input_size=(4, 4), pil_filter=None, flow_colour_size="input",
                          threshold_before_resize=None, align_corners=False).eval()
    assert inspect.signature(AMCNet).parameters["threshold_before_resize"].default is None
    stubbed(model, hand_made_logits())
    frames = torch.zeros(1, 3, 8, 12, dtype=torch.uint8)
    probabilities = model.predict_video(video_with_flow(frames, torch.ones(1, 2, 8, 12)))
    expected = F.interpolate(torch.sigmoid(hand_made_logits()), (8, 12), mode="bilinear",
                             align_corners=False)
    assert torch.allclose(probabilities, expected, atol=1e-6)
    assert 0.47 < probabilities.min() and probabilities.max() < 0.53


def test_pil_filters_resize_the_probability_map_itself_clipped_to_0_1():
    """Without threshold_before_resize, PIL resizes the float map (mode F); bicubic overshoots
    the step 0.02 | 0.98 and is clipped; nearest keeps the two values."""
    logits = torch.logit(torch.tensor([0.02, 0.02, 0.98, 0.98]).repeat(4, 1)).view(1, 1, 4, 4)
    frames = torch.zeros(1, 3, 8, 12, dtype=torch.uint8)
    probabilities = {}
    for name in ("bicubic", "nearest"):
        model = tiny_official(input_size=(4, 4), pil_filter=name,
                              threshold_before_resize=None).eval()
        stubbed(model, logits)
        probabilities[name] = model.predict_video(
            video_with_flow(frames, torch.ones(1, 2, 8, 12)))[0, 0]
    scores = torch.sigmoid(logits)[0, 0].numpy()
    bicubic = np.array(Image.fromarray(scores).resize((12, 8), Image.Resampling.BICUBIC))
    assert bicubic.max() > 1 and bicubic.min() < 0  # the overshoot that is clipped
    assert torch.allclose(probabilities["bicubic"], torch.from_numpy(bicubic.clip(0, 1)),
                          atol=1e-6)
    assert set(probabilities["nearest"].unique().tolist()) == set(np.unique(scores).tolist())
