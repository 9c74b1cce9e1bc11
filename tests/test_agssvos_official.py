"""AGSS-VOS's official variant (methods/agssvos.py) against the authors' network and test recipe
(dvlab-research/AGSS-VOS): the preset, the parameter counts, the key table and the importer on a
checkpoint of their key table, `official_forward` against the outputs their model computed from
the same seeded weights (tests/reference/official/agssvos_reference.json), each switch of the
network and of the recipe on hand-made values (the shared encoder, the mask convolution's bias,
the masks' bilinear downsampling, the normalisation within a group, the constant background, the
sizes, cv2's resizing, the warp's normalisation, the YouTube-VOS rules, per-group reference
features, objects appearing mid-video), the recipe against a literal transcription of their
inference loop, the paper variant's handling of a new object (item 6), and `vosbench bench` of
an imported checkpoint."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
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

import vosbench.methods.agssvos as agssvos
from vosbench.cli import main as vosbench_main
from vosbench.datamodules.clips import LoadedVideo, load_video
from vosbench.datamodules.davis import davis2017_videos
from vosbench.datamodules.video import Video
from vosbench.flow.flownet2c import FlowNet2C, infer_flows
from vosbench.io import write_label_png
from vosbench.methods.agssvos import (
    AGSSVOS,
    OFFICIAL_CHECKPOINT,
    AGSSNetwork,
    authors_input_size,
    downsample_masks,
    half_size_sampling_flow,
    nearest_indices,
    resize_frames_linear,
    resize_nearest,
)
from vosbench.methods.backbones import IMAGENET_MEAN, IMAGENET_STD
from vosbench.outputs import binarize
from vosbench.weights import build_model

REFERENCE = read_reference(KEY_TABLES / "agssvos_reference.json")
SEGMENTATION_PARAMETERS = 52_751_298  # AGSSVOS() of networks/agssvos.py
FLOW_PARAMETERS = 39_175_298  # FlowNet2C of flow_inference/models.py
PAPER_PARAMETERS = 52_979_714
# every official switch of the network and the recipe (the flow network apart: most tests stub
# the flow; tiny models keep ResNet-18)
OFFICIAL_NETWORK = dict(shared_encoder=True, mask_conv_bias=True, mask_downsampling="bilinear")
OFFICIAL_RECIPE = dict(warp_normalisation="half_size", input_size=None, halve_large_frames=None,
                       resampling="opencv", normalisation_scope="group",
                       label_background="constant", overwrite_earlier_objects=False,
                       drop_lost_objects=None)


def authors_checkpoint(seed: int, scales: dict[str, float]) -> dict[str, dict]:
    """The authors' checkpoint ({"seg": {"module." + key: tensor}, "flow": {key: tensor}}) with
    the values `seeded_state` gives the keys of agssvos_keys.txt (`<entry>/<key>`)."""
    document: dict[str, dict] = {"seg": {}, "flow": {}}
    for name, value in seeded_state(read_keys("agssvos"), seed, scales).items():
        entry, key = name.split("/", 1)
        document[entry][key] = value
    return document


def seeded_inputs(seed: int, num_objects: int, height: int, width: int
                  ) -> tuple[torch.Tensor, ...]:
    """What their `AGSSVOS.forward` takes at test time, drawn from `seed` in this order: the
    target frame x (K copies of one N(0, 1) frame, ImageNet-normalised-like), the objects' soft
    warped masks l_obj (K, H, W) (uniform noise at 1/16, bilinearly upsampled, (v − 0.35)/0.65
    clamped to [0, 1]) and l_merge = their maximum (1, H, W); the reference frame (K copies of
    one N(0, 1) frame) and its merged mask (1, H, W), binary blocks of 32 pixels."""
    generator = torch.Generator().manual_seed(seed)
    frame = torch.randn(1, 3, height, width, generator=generator)
    coarse = torch.rand(num_objects, 1, height // 16, width // 16, generator=generator)
    masks = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    masks = ((masks[:, 0] - 0.35).clamp(0, 1) / 0.65)
    reference = torch.randn(1, 3, height, width, generator=generator)
    blocks = (torch.rand(num_objects, 1, height // 32, width // 32, generator=generator) > 0.5)
    reference_masks = F.interpolate(blocks.float(), size=(height, width), mode="nearest")[:, 0]
    return (frame.expand(num_objects, -1, -1, -1), masks.max(0, keepdim=True)[0], masks,
            reference.expand(num_objects, -1, -1, -1), reference_masks.max(0, keepdim=True)[0])


def tiny_official(**overrides) -> AGSSVOS:
    """AGSS-VOS on ResNet-18s with 8 channels and every official switch, the flow from the
    provider (stubbed by the tests that warp) unless overridden."""
    torch.manual_seed(0)
    options = dict(backbone="resnet18", channels=8, optimizer="adamw", lr=1e-3,
                   **OFFICIAL_NETWORK, **OFFICIAL_RECIPE)
    return AGSSVOS(**{**options, **overrides}).eval()


@pytest.fixture(scope="module")
def authors_file(tmp_path_factory) -> tuple[Path, dict]:
    """The reference's seeded weights in the authors' checkpoint format, and the document."""
    weights = REFERENCE["weights"]
    document = authors_checkpoint(weights["seed"], weights["scales"])
    path = tmp_path_factory.mktemp("authors") / "model_199.pth"
    torch.save(document, path)
    return path, document


@pytest.fixture(scope="module")
def imported(authors_file, tmp_path_factory) -> Path:
    return import_with_command("agssvos", authors_file[0],
                               tmp_path_factory.mktemp("imported") / "agssvos-official.ckpt")


@pytest.fixture(scope="module")
def official_model(imported) -> AGSSVOS:
    """The official preset's model (the one full-size build of this module) with the imported
    weights, in eval mode."""
    return official_model_from("agssvos", imported)


# --- the preset, the parameters, the importer -----------------------------------------------------

def test_the_official_preset_is_the_authors_network_and_recipe():
    """configs/methods/agssvos/official.yaml sets every switch to the authors' value (nothing
    departs), each against their code (networks/agssvos.py N, infer_davis.py D, dataset/vos.py
    V), and keeps the paper preset's training settings."""
    with torch.device("meta"):
        model = build_model("agssvos", "official")
    hp = model.hparams
    assert model.official_departures() == []
    # N lines 17, 80, 190-194: conv1_p with a bias, bilinear masks, one Encoder for all streams
    assert (hp.shared_encoder, hp.mask_conv_bias, hp.mask_downsampling) == (True, True,
                                                                            "bilinear")
    assert model.network.specific.encoder is None
    # D lines 106, 203: FlowNet2-C; V line 270: get_dsize; D line 173: background 0.5
    assert (hp.flow_source, hp.input_size, hp.resampling) == ("flownet2c", None, "opencv")
    assert isinstance(model.flow_network, FlowNet2C)
    assert (hp.normalisation_scope, hp.label_background, hp.threshold) == ("group", "constant",
                                                                            0.5)
    assert (hp.overwrite_earlier_objects, hp.crf, hp.warp_normalisation) == (False, None,
                                                                            "half_size")
    assert hp.halve_large_frames is None and hp.drop_lost_objects is None  # by the dataset
    with torch.device("meta"):
        paper = build_model("agssvos", "paper")
    assert {key: value for key, value in paper.hparams.items()
            if key not in AGSSVOS.official_settings} == {
        key: value for key, value in hp.items() if key not in AGSSVOS.official_settings}
    assert len(paper.official_departures()) == len(AGSSVOS.official_settings) == 12
    assert paper.flow_network is None


def test_the_parameter_counts_are_the_authors_and_the_papers():
    """The official variant: AGSSVOS's 52,751,298 (one encoder; conv1_p's 64 biases) and
    FlowNet2C's 39,175,298; the paper preset keeps 52,979,714 (a second stem and layer1:
    9,408 + 128 + 215,808 + 3,136 more, the 64 biases fewer)."""
    with torch.device("meta"):
        official, paper = build_model("agssvos", "official"), build_model("agssvos", "paper")
    def count(module):
        return sum(parameter.numel() for parameter in module.parameters())

    assert count(official.network) == SEGMENTATION_PARAMETERS
    assert count(official.flow_network) == FLOW_PARAMETERS
    assert count(official) == SEGMENTATION_PARAMETERS + FLOW_PARAMETERS
    assert count(paper) == count(paper.network) == PAPER_PARAMETERS
    assert PAPER_PARAMETERS - SEGMENTATION_PARAMETERS == 9408 + 128 + 215_808 + 3136 - 64


def test_the_key_table_maps_every_authors_key_onto_a_tensor_of_its_shape():
    """Each key of agssvos_keys.txt (their seg and flow entries) renames to a tensor of the
    official variant of the same shape, one to one; the variant's only other entries are the
    num_batches_tracked buffers torch 0.4 never saved."""
    with torch.device("meta"):
        model = build_model("agssvos", "official")
    ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    entries = {entry.key: entry for entry in OFFICIAL_CHECKPOINT.entries}
    renamed = {}
    for name, (_, shape) in read_keys("agssvos").items():
        entry, key = name.split("/", 1)
        renamed[entries[entry].rename(key.removeprefix(entries[entry].strip))] = shape
    assert len(renamed) == len(read_keys("agssvos")) == 365
    assert {key: ours[key] for key in renamed} == renamed
    assert all(key.endswith("num_batches_tracked") for key in set(ours) - set(renamed))
    seg = entries["seg"]
    assert seg.rename("Encoder.res5.2.bn3.weight") == \
        "network.agnostic.encoder.stages.3.2.bn3.weight"
    assert seg.rename("Decoder.RF2.convMM2.bias") == \
        "network.decoder.refine.merge_block.branch.3.bias"
    assert seg.rename("Encoder.conv1_p.bias") == "network.agnostic.encoder.mask_conv.bias"
    assert entries["flow"].rename("conv_redir.0.weight") == "flow_network.conv_redir.0.weight"


def test_weights_import_fills_every_tensor_from_the_authors_file(authors_file, imported):
    _, document = authors_file
    state = torch.load(imported, weights_only=True)["state_dict"]
    entries = {entry.key: entry for entry in OFFICIAL_CHECKPOINT.entries}
    filled = 0
    for entry_key, tensors in document.items():
        entry = entries[entry_key]
        for key, value in tensors.items():
            assert torch.equal(state[entry.rename(key.removeprefix(entry.strip))], value), key
            filled += 1
    assert filled == 365
    assert len(state) == filled + sum(key.endswith("num_batches_tracked") for key in state)


def stub_file(path: Path, change) -> None:
    """A checkpoint of the authors' key table whose tensors cost nothing (one stored value,
    expanded to each shape), changed by `change`."""
    document: dict[str, dict] = {"seg": {}, "flow": {}}
    for name, (dtype, shape) in read_keys("agssvos").items():
        entry, key = name.split("/", 1)
        document[entry][key] = torch.zeros((), dtype=dtype).expand(shape)
    change(document)
    torch.save(document, path)


@pytest.mark.parametrize("change, message", [
    (lambda document: document["seg"].pop("module.Encoder.conv1_p.bias"),
     "the official variant's 'network.agnostic.encoder.mask_conv.bias' (the file's "
     "'module.Encoder.conv1_p.bias') is not filled"),
    (lambda document: document["seg"].update({"module.Encoder.res6.weight": torch.zeros(1)}),
     "key 'module.Encoder.res6.weight' is not used by the official variant"),
    (lambda document: document["seg"].update({"module.Encoder.atn.0.weight":
                                              torch.zeros(256, 256, 1, 1)}),
     "'network.specific.attention.0.weight' has shape (256, 256, 1, 1) in the file, "
     "(256, 257, 1, 1) in the official variant"),
    (lambda document: document["flow"].pop("predict_flow2.weight"),
     "'flow_network.predict_flow2.weight' (the file's 'predict_flow2.weight') is not filled"),
])
def test_a_key_that_does_not_fit_fails_the_import_naming_it(tmp_path, capsys, change, message):
    stub_file(tmp_path / "theirs.pth", change)
    code = vosbench_main(["weights", "import", "agssvos", str(tmp_path / "theirs.pth"), "--out",
                          str(tmp_path / "agssvos.ckpt")])
    error = capsys.readouterr().err
    assert code == 2 and message in error and "theirs.pth" in error
    assert not (tmp_path / "agssvos.ckpt").exists()


# --- official_forward against the authors' model --------------------------------------------------

def test_official_forward_equals_the_authors_model_on_seeded_weights(official_model):
    """The reference: their AGSSVOS on the same seeded weights and inputs at 128×192 with two
    objects, the reference stream's r5, then (p, r5) of the target; within 1e-5. The
    probabilities are far from saturated."""
    inputs = REFERENCE["inputs"]
    x, l_merge, l_obj, reference, reference_merge = seeded_inputs(
        inputs["seed"], inputs["num_objects"], *inputs["size"])
    ref = official_model.official_forward(reference, reference_merge)
    p, r5 = official_model.official_forward(x, l_merge, l_obj, ref=ref)
    assert p.shape == (2, 1, 128, 192) and r5.shape == ref.shape == (1, 2048, 4, 6)
    outputs = {"reference_r5": ref[:, ::128], "r5": r5[:, ::128], "p": p[..., ::16, ::16]}
    assert_matches_reference(outputs, REFERENCE, atol=1e-5)
    sample = torch.tensor([float(value) for value in REFERENCE["outputs"]["p"]["sample"]])
    assert sample.min() < 0.25 and sample.max() > 0.6 and sample.std() > 0.05
    other = x.clone()
    other[1, 0, 0, 0] += 1
    with pytest.raises(ValueError, match=r"K copies of one frame \(x\[k\] = x\[0\]"):
        official_model.official_forward(other, l_merge, l_obj, ref=ref)


def test_each_network_switch_turned_back_changes_the_authors_output(official_model):
    """The reference is sensitive to every switch of the network: the masks downsampled by
    area, or conv1_p without its bias, move p by far more than the tolerance."""
    inputs = REFERENCE["inputs"]
    x, l_merge, l_obj, reference, reference_merge = seeded_inputs(
        inputs["seed"], inputs["num_objects"], *inputs["size"])
    ref = official_model.official_forward(reference, reference_merge)
    p, _ = official_model.official_forward(x, l_merge, l_obj, ref=ref)
    specific = official_model.network.specific
    specific.mask_downsampling = "area"
    try:
        area, _ = official_model.official_forward(x, l_merge, l_obj, ref=ref)
    finally:
        specific.mask_downsampling = "bilinear"
    bias = official_model.network.agnostic.encoder.mask_conv.bias
    saved = bias.detach().clone()
    with torch.no_grad():
        bias.zero_()
    try:
        unbiased, _ = official_model.official_forward(x, l_merge, l_obj, ref=ref)
    finally:
        with torch.no_grad():
            bias.copy_(saved)
    assert (area - p).abs().max() > 1e-3 and (unbiased - p).abs().max() > 1e-3


# --- the network's switches ---------------------------------------------------------------------

def small_scene(num_objects: int = 2, size: tuple[int, int] = (64, 96)):
    generator = torch.Generator().manual_seed(3)
    frame = torch.randn(1, 3, *size, generator=generator)
    masks = torch.rand(1, num_objects, *size, generator=generator)
    return frame, masks


def test_the_shared_encoder_gives_the_instance_features_of_the_iams_stem_and_layer1():
    """With shared_encoder the ISM has no ResNet: F^vs_k is layer1 of the IAM's encoder on the
    frame with object k's mask (their Encoder.forward with objr2=True), and the attention
    generator reads it with the mask; the network is smaller by one stem and layer1."""
    torch.manual_seed(0)
    network = AGSSNetwork("resnet18", channels=8, **OFFICIAL_NETWORK).eval()
    frame, masks = small_scene()
    assert network.specific.encoder is None
    with torch.no_grad():
        visual, attention = network.specific(frame, masks, network.agnostic.encoder)
        for k in range(2):
            _, layer1, *_ = network.agnostic.encoder(frame, masks[:, k:k + 1])
            assert torch.allclose(visual[k], layer1[0], atol=1e-6)
            small = F.interpolate(masks[:, k:k + 1], size=(16, 24), mode="bilinear",
                                  align_corners=True)
            literal = network.specific.attention(torch.cat([layer1, small], 1))
            assert torch.allclose(attention[k], literal[0], atol=1e-6)
    with pytest.raises(ValueError, match="shares the IAM's encoder: pass it"):
        network.specific(frame, masks)
    torch.manual_seed(0)
    separate = AGSSNetwork("resnet18", channels=8)
    stem_and_layer1 = sum(p.numel() for p in separate.specific.encoder.parameters())
    assert sum(p.numel() for p in separate.parameters()) - stem_and_layer1 + 64 == sum(
        p.numel() for p in network.parameters())  # + conv1_p's bias


def test_the_mask_convolution_adds_its_bias_to_the_stem():
    """conv1(frame) + conv1_p(mask) with conv1_p's bias: the stem before its BatchNorm moves by
    the bias, channel by channel, wherever the mask is."""
    torch.manual_seed(0)
    network = AGSSNetwork("resnet18", channels=8, **OFFICIAL_NETWORK).eval()
    encoder = network.agnostic.encoder
    assert encoder.mask_conv.bias.shape == (64,)
    frame, masks = small_scene(1)
    with torch.no_grad():
        encoder.mask_conv.bias.copy_(torch.arange(64.0))
        stem = encoder.frame_conv(frame) + encoder.mask_conv(masks)
        unbiased = encoder.frame_conv(frame) + F.conv2d(masks, encoder.mask_conv.weight,
                                                        stride=2, padding=3)
    assert torch.allclose(stem - unbiased, torch.arange(64.0).view(1, 64, 1, 1).expand_as(stem),
                          atol=1e-4)
    with pytest.raises(ValueError, match="mask_downsampling is one of area, bilinear, got"):
        AGSSNetwork("resnet18", channels=8, mask_downsampling="nearest")
    with pytest.raises(ValueError, match="shared_encoder shares the IAM's encoder"):
        AGSSNetwork("resnet18", channels=8, shared_encoder=True, instance_agnostic=False)


def test_bilinear_mask_downsampling_puts_the_corner_pixels_at_the_corners():
    """align_corners=True: a ramp 0 … 7 along 8 pixels brought to 2 keeps its ends 0 and 7 (and
    3 pixels the values 0, 3.5, 7); area averaging gives the blocks' means 1.5 and 5.5."""
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 1, 4, 8)
    assert torch.allclose(downsample_masks(ramp, (1, 2), "bilinear"),
                          torch.tensor([[[[0.0, 7.0]]]]))
    assert torch.allclose(downsample_masks(ramp, (1, 3), "bilinear"),
                          torch.tensor([[[[0.0, 3.5, 7.0]]]]))
    assert torch.allclose(downsample_masks(ramp, (1, 2)), torch.tensor([[[[1.5, 5.5]]]]))


# --- the recipe's parts by hand ------------------------------------------------------------------

@pytest.mark.parametrize("size, halve, expected", [
    ((480, 854), False, (448, 832)),  # DAVIS 480p (dataset/vos.py line 270)
    ((720, 1280), True, (320, 640)),  # YouTube-VOS: halved to 360x640, then 320x640
    ((720, 1280), False, (704, 1280)),  # 901,120 pixels: not above 1280·720
    ((480, 854), True, (192, 384)),  # 854 > 700: halved to 240x427
    ((600, 700), True, (576, 640)),  # 700 is not above 700: not halved
    ((1080, 1920), False, (320, 640)),  # 1024x1920, then 3/4: 808x1440, both too many pixels
    ((1920, 1080), False, (640, 320)),  # the same upright
    ((1000, 1000), False, (960, 960)),  # 921,600 pixels: not above
    ((1040, 1000), False, (776, 744)),  # 1024x960 is above: 3/4 of 1040, 1000 floored to 8s
    ((50, 60), False, (64, 64)),  # at least one multiple of 64
])
def test_the_sizes_are_the_authors_get_dsize_with_scale_64(size, halve, expected):
    assert authors_input_size(*size, halve) == expected


def test_the_network_size_follows_the_setting_or_the_dataset():
    """input_size fixed; else the authors' size, halved for YouTube-VOS videos when
    halve_large_frames is None, always when True, never when False."""
    def video(dataset):
        return Video("v", dataset, "val", (Path("0.jpg"),), (None,), (720, 1280))

    model = tiny_official()
    assert model.network_size(video("youtube-vos")) == (320, 640)
    assert model.network_size(video("davis2017")) == (704, 1280)
    model.hparams.halve_large_frames = True
    assert model.network_size(video("davis2017")) == (320, 640)
    model.hparams.halve_large_frames = False
    assert model.network_size(video("youtube-vos")) == (704, 1280)
    model.hparams.input_size = (64, 128)
    assert model.network_size(video("youtube-vos")) == (64, 128)
    with pytest.raises(ValueError, match="halve_large_frames belongs to the authors' sizes"):
        tiny_official(input_size=(64, 64), halve_large_frames=True)


def test_frames_are_resized_by_cv2_on_8_bits_and_labels_by_cv2s_nearest():
    """resize_frames_linear is cv2.resize INTER_LINEAR of each uint8 frame (the same in BGR and
    RGB order); resize_nearest copies the pixels cv2.resize INTER_NEAREST picks, on sizes whose
    ratios are not whole (448 → 480, 832 → 854, 7 → 5)."""
    generator = np.random.default_rng(0)
    frames = generator.integers(0, 256, (2, 37, 53, 3), dtype=np.uint8)
    resized = resize_frames_linear(torch.from_numpy(frames).permute(0, 3, 1, 2), (24, 40))
    assert resized.dtype == torch.uint8 and resized.shape == (2, 3, 24, 40)
    for frame, ours in zip(frames, resized):
        expected = cv2.resize(frame[..., ::-1].copy(), (40, 24), interpolation=cv2.INTER_LINEAR)
        assert np.array_equal(ours.permute(1, 2, 0).numpy()[..., ::-1], expected)
    for (source, target) in [((448, 832), (480, 854)), ((7, 5), (5, 9)), ((64, 64), (48, 100))]:
        labels = generator.integers(0, 5, source, dtype=np.uint8)
        expected = cv2.resize(labels, target[::-1], interpolation=cv2.INTER_NEAREST)
        ours = resize_nearest(torch.from_numpy(labels)[None, None].float(), target)[0, 0]
        assert np.array_equal(ours.numpy().astype(np.uint8), expected)
    assert nearest_indices(4, 8).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_the_authors_warp_samples_at_x_plus_u_times_w_minus_1_over_w():
    """Their flow_warp_tensor: (x + u − W/2)/(W/2) under grid_sample with the corners' centres
    at ±1. On a ramp v(x) = x of W = 5 with zero flow, pixel x takes v(0.8 x): 0, 0.8, 1.6, 2.4,
    3.2; with u = 1, v(0.8 (x + 1)): 0.8 … 4; vosbench's own warp keeps x, shifts to x + 1 (0
    outside). Rows likewise (H = 4: 0.75 y)."""
    model = tiny_official()
    ramp = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 1, 4, 5)
    flow = torch.zeros(1, 2, 4, 5)
    assert torch.allclose(model.warp(ramp, flow)[0, 0, 0],
                          torch.tensor([0.0, 0.8, 1.6, 2.4, 3.2]), atol=1e-6)
    flow[:, 0] = 1.0
    assert torch.allclose(model.warp(ramp, flow)[0, 0, 0],
                          torch.tensor([0.8, 1.6, 2.4, 3.2, 4.0]), atol=1e-6)
    rows = torch.arange(4.0).view(1, 1, 4, 1).expand(1, 1, 4, 5)
    assert torch.allclose(model.warp(rows, torch.zeros(1, 2, 4, 5))[0, 0, :, 0],
                          torch.tensor([0.0, 0.75, 1.5, 2.25]), atol=1e-6)
    model.hparams.warp_normalisation = "corners"
    assert torch.allclose(model.warp(ramp, flow)[0, 0, 0],
                          torch.tensor([1.0, 2.0, 3.0, 4.0, 0.0]), atol=1e-6)
    # their formula, written as they wrote it, on a random field
    generator = torch.Generator().manual_seed(0)
    values, field = torch.rand(2, 3, 6, 10, generator=generator), torch.randn(
        2, 2, 6, 10, generator=generator) * 3
    ys, xs = torch.meshgrid(torch.arange(6.0), torch.arange(10.0), indexing="ij")
    grid = torch.stack([(xs + field[:, 0] - 5.0) / 5.0, (ys + field[:, 1] - 3.0) / 3.0], -1)
    literal = F.grid_sample(values, grid, mode="bilinear", padding_mode="zeros",
                            align_corners=True)
    model.hparams.warp_normalisation = "half_size"
    assert torch.allclose(model.warp(values, field), literal, atol=1e-5)
    assert torch.allclose(half_size_sampling_flow(torch.zeros(1, 2, 4, 5))[0, 0, 0],
                          torch.tensor([0.0, -0.2, -0.4, -0.6, -0.8]), atol=1e-6)


def stubbed_probabilities(model: AGSSVOS, values: dict[int, float]) -> list[int]:
    """Makes the network's P_k the constant values[k] for object slot k (whatever it sees);
    returns the list that records each call's number of objects."""
    calls = []

    def constant(frame, masks, reference, agnostic=None):
        calls.append(masks.shape[1])
        slots = [int(round(masks[0, i, 0, 0].item() * 100)) for i in range(masks.shape[1])]
        return torch.stack([torch.full(frame.shape[-2:], values[slot]) for slot in slots])[None]

    model.network.object_probabilities = constant
    return calls


def test_the_normalisation_runs_within_each_group_or_over_all_objects():
    """Objects 0 and 1 in one group (P = 0.6, 0.3), object 2 in another (P = 0.8). Within
    groups: background 0.4, odds 0.6667 + 1.5 + 0.42857 = 2.5952 → 0.5780, 0.1651; background
    0.2, odds 0.25 + 4 → 0.9412. Over all: background 0.2, odds 0.25 + 1.5 + 0.42857 + 4 =
    6.1786 → 0.2428, 0.0694, 0.6474. The warped masks carry each slot's id (k / 100) for the
    stub."""
    model = tiny_official()
    stubbed_probabilities(model, {0: 0.6, 1: 0.3, 2: 0.8})
    masks = torch.tensor([0.0, 0.01, 0.02]).view(1, 3, 1, 1).expand(1, 3, 2, 2).clone()
    masks[..., 1, 1] += 0.9  # pixels above 0.5: nothing is lost
    groups = [(torch.tensor([0, 1]), None), (torch.tensor([2]), None)]
    video = Video("v", "davis2017", "val", (Path("0.jpg"),), (None,), (2, 2))
    probabilities, output = model.segment(torch.zeros(1, 3, 2, 2), masks, groups, video)
    assert torch.allclose(probabilities[0, :, 0, 0], torch.tensor([0.5780, 0.1651, 0.9412]),
                          atol=1e-4)
    assert torch.equal(output, probabilities)  # the constant background: P̂ itself
    model.hparams.normalisation_scope = "all"
    probabilities, _ = model.segment(torch.zeros(1, 3, 2, 2), masks, groups, video)
    assert torch.allclose(probabilities[0, :, 0, 0], torch.tensor([0.2428, 0.0694, 0.6474]),
                          atol=1e-4)


def test_the_constant_background_labels_an_object_only_above_one_half():
    """P̂ = (0.45, 0.30) with P̂_0 = 0.25: Eq. 6's argmax (the paper's channels, each against its
    background) says object 1; the authors' argmax over [0.5, P̂_1, P̂_2] says background; P̂_1 =
    0.55 is object 1 either way."""
    distribution = torch.tensor([[0.25, 0.45, 0.30], [0.15, 0.55, 0.30]]).T.reshape(1, 3, 1, 2)
    model = tiny_official()
    constant = model.output_channels(distribution).numpy()
    model.hparams.label_background = "normalised"
    normalised = model.output_channels(distribution).numpy()
    assert binarize(normalised, 0.5)[0, 0].tolist() == [1, 1]
    assert binarize(constant, 0.5)[0, 0].tolist() == [0, 1]
    assert np.allclose(constant[0, :, 0], [[0.45, 0.55], [0.30, 0.30]])


def test_an_object_whose_warped_mask_has_no_pixel_above_one_half_is_zeroed_on_youtube_vos():
    """infer_ytv.py lines 215-217: object 1's warped mask peaks at 0.5 (not above): its P̂ and
    output are 0 for a YouTube-VOS video (drop_lost_objects None), or always with True; a DAVIS
    video keeps it; object 0 (peak 0.51) is kept."""
    model = tiny_official()
    stubbed_probabilities(model, {0: 0.6, 1: 0.3})
    masks = torch.tensor([0.0, 0.01]).view(1, 2, 1, 1).expand(1, 2, 2, 2).clone()
    masks[0, 0, 1, 1], masks[0, 1, 1, 1] = 0.51, 0.5
    groups = [(torch.tensor([0, 1]), None)]

    def video(dataset):
        return Video("v", dataset, "val", (Path("0.jpg"),), (None,), (2, 2))

    frame = torch.zeros(1, 3, 2, 2)
    kept, _ = model.segment(frame, masks, groups, video("davis2017"))
    dropped, output = model.segment(frame, masks, groups, video("youtube-vos"))
    assert (kept[0, 1] > 0.1).all() and torch.equal(dropped[0, 1], torch.zeros(2, 2))
    assert torch.equal(dropped[0, 0], kept[0, 0]) and torch.equal(output[0, 1],
                                                                   torch.zeros(2, 2))
    model.hparams.drop_lost_objects = True
    assert torch.equal(model.segment(frame, masks, groups, video("davis2017"))[0], dropped)
    model.hparams.drop_lost_objects = False
    assert torch.equal(model.segment(frame, masks, groups, video("youtube-vos"))[0], kept)


# --- predict_video: groups, objects appearing mid-video, the whole recipe ----------------------

def write_video(root: Path, dataset: str, size: tuple[int, int], num_frames: int = 5,
                late: int = 2) -> LoadedVideo:
    """A video on disk: objects 1 and 2 from frame 0 (moving), object 3 from frame `late` (on
    top of object 2's place at that frame: its first mask covers part of object 2's track);
    annotations at frames 0 and `late` only, as a semi-supervised set gives them."""
    height, width = size
    generator = np.random.default_rng(1)
    base = cv2.GaussianBlur(generator.integers(0, 256, (height, width + 40, 3)).astype(np.uint8),
                            (0, 0), 2)
    frame_files, mask_files = [], []
    for t in range(num_frames):
        labels = np.zeros(size, np.uint8)
        labels[height // 8:height // 2, width // 10 + 2 * t:width // 3 + 2 * t] = 1
        labels[height // 2:height - 4, width // 2 - t:width - width // 6 - t] = 2
        if t >= late:
            labels[height // 2 + 2:height - 8, width // 2 + 4:width - width // 4] = 3
        image = base[:, 2 * t:2 * t + width].copy()
        for k in (1, 2, 3):
            image[labels == k] = image[labels == k] // 2 + 60 * k
        frame_files.append(root / f"{t:05d}.jpg")
        cv2.imwrite(str(frame_files[-1]), image)
        if t in (0, late):
            mask_files.append(root / f"{t:05d}.png")
            write_label_png(mask_files[-1], labels)
        else:
            mask_files.append(None)
    return load_video(Video("clip", dataset, "val", tuple(frame_files), tuple(mask_files), size))


def constant_flow(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """A stand-in for FlowNet2-C that reads its images: 2 pixels left, 1 down, plus a hundredth
    of the mean difference of the two images."""
    shift = float(first.astype(np.float32).mean() - second.astype(np.float32).mean()) / 100
    flow = np.empty((*first.shape[:2], 2), np.float32)
    flow[..., 0], flow[..., 1] = -2.0 + shift, 1.0
    return flow


def authors_loop(model: AGSSVOS, video: LoadedVideo, size: tuple[int, int],
                 youtube_vos: bool, flow_of) -> np.ndarray:
    """A transcription of their inference (dataset/vos.py Valset.__getitem__, infer_davis.py /
    infer_ytv.py lines 159-228, tools/utils.py flow_warp_tensor, tools/visualize.py
    show_save_lab_savesmall) on `model.official_forward`: (T, H, W) uint8 labels."""
    height, width = size
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    ori_img, img = [], []
    for frame in video.frames.permute(0, 2, 3, 1).numpy():
        image = cv2.resize(np.ascontiguousarray(frame[..., ::-1]), (width, height),
                           interpolation=cv2.INTER_LINEAR)  # cv2.imread's BGR, resized
        ori_img.append(image)
        normalised = (image[:, :, ::-1].astype(np.float64) / 255.0 - mean) / std
        img.append(torch.from_numpy(normalised.transpose(2, 0, 1)).float())
    given = video.video.reference_masks()
    starts = {int(k): t for t, labels in given.items() for k in np.unique(labels) if k}
    num_objects = max(starts)
    lab = {k: torch.from_numpy(cv2.resize((given[s] == k).astype(np.uint8), (width, height),
                                          interpolation=cv2.INTER_NEAREST)).float()
           for k, s in starts.items()}
    save_lab = torch.zeros(len(img), num_objects + 1, height, width)
    save_lab[:, 0] += 0.5
    ys, xs = torch.meshgrid(torch.arange(height).float(), torch.arange(width).float(),
                            indexing="ij")
    with torch.inference_mode():  # their loop runs under no_grad; official_forward's tensors
        save_lab = loop_groups(model, img, ori_img, lab, starts, save_lab, (xs, ys),
                               youtube_vos, flow_of)
    original = tuple(video.video.size)
    return np.stack([cv2.resize(np.argmax(labels.numpy(), 0).astype(np.uint8), original[::-1],
                                interpolation=cv2.INTER_NEAREST) for labels in save_lab])


def loop_groups(model, img, ori_img, lab, starts, save_lab, coordinates, youtube_vos, flow_of):
    """infer_davis.py lines 176-215 (with infer_ytv.py lines 215-217 for YouTube-VOS)."""
    xs, ys = coordinates
    height, width = xs.shape
    for start in sorted(set(starts.values())):
        objects = [k for k, s in sorted(starts.items()) if s == start]
        ref_lab = torch.stack([lab[k] for k in objects])
        preds = [ref_lab[:, None]]
        for k in objects:
            save_lab[start, k] = lab[k]
        count = len(objects)
        ms = model.official_forward(img[start][None].expand(count, -1, -1, -1),
                                    ref_lab.max(0, keepdim=True)[0])
        for i in range(start + 1, len(img)):
            flow = torch.from_numpy(flow_of(ori_img[i], ori_img[i - 1]))
            grid = torch.stack([(xs + flow[..., 0] - width / 2) / (width / 2),
                                (ys + flow[..., 1] - height / 2) / (height / 2)], -1)
            prev_lab = F.grid_sample(preds[-1], grid[None].expand(count, -1, -1, -1),
                                     align_corners=True)
            output, _ = model.official_forward(img[i][None].expand(count, -1, -1, -1),
                                               prev_lab.max(0)[0], prev_lab[:, 0], ref=ms)
            if youtube_vos:
                for idx in range(count):
                    if (prev_lab[idx] > 0.5).sum() == 0:
                        output[idx, 0] *= 0
            preds.append(output)
            for idx, k in enumerate(objects):
                save_lab[i, k] = output[idx, 0]
    return save_lab


@pytest.mark.parametrize("dataset, size, network_size", [
    ("davis2017", (70, 150), (64, 128)),
    ("youtube-vos", (136, 720), (64, 320)),  # halved: 720 > 700
])
def test_predict_video_is_the_authors_recipe(tmp_path, monkeypatch, dataset, size,
                                             network_size):
    """The official recipe on a video of two groups (objects 1, 2 from frame 0; 3 from frame 2)
    labels every pixel as the transcription of the authors' loop does, with a stand-in flow
    that both call on the BGR frames at the network size (their ori_img): once per frame (the
    authors ask it once per group and frame, for the same flow)."""
    model = tiny_official(flow_source="flownet2c")
    seen = []
    monkeypatch.setattr(agssvos, "infer_flow", lambda network, first, second: seen.append(
        first) or constant_flow(first, second))
    video = write_video(tmp_path, dataset, size)
    assert model.network_size(video.video) == network_size
    probabilities = model.predict_video(video)
    expected = authors_loop(model, video, network_size, dataset == "youtube-vos", constant_flow)
    labels = binarize(probabilities.numpy(), 0.5)
    assert np.array_equal(labels, expected)
    assert len(seen) == 4  # frames 1-4
    bgr = cv2.resize(np.ascontiguousarray(video.frames[1].permute(1, 2, 0).numpy()[..., ::-1]),
                     network_size[::-1], interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(seen[0], bgr)
    assert all(np.isin(np.unique(frame), [0, 1, 2, 3]).all() for frame in labels)
    assert (labels[1:] != 0).any()


def test_each_group_gets_its_reference_features_once_from_its_first_frame(tmp_path):
    """Two groups: reference features from frame 0 with objects 1 and 2's merged masks, and
    from frame 2 with object 3's; every later frame runs each group's objects as a batch of its
    own (2 objects at frames 1-4, 1 object at 3-4)."""
    model = tiny_official()
    model.flow.backward = lambda video, t: np.zeros((*video.size, 2), np.float32)
    video = write_video(tmp_path, "davis2017", (70, 150))
    network = model.network
    references, passes = [], []
    encode, probabilities = network.encode_reference, network.object_probabilities
    network.encode_reference = lambda frame, masks: references.append(
        (frame.clone(), masks.clone())) or encode(frame, masks)
    network.object_probabilities = lambda frame, masks, reference: passes.append(
        masks.shape[1]) or probabilities(frame, masks, reference)
    output = model.predict_video(video)
    assert [masks.shape[1] for _, masks in references] == [2, 1]
    frames = agssvos.normalize_images(resize_frames_linear(video.frames, (64, 128)).float()
                                      .div(255))
    truth = video.masks.long()
    for (frame, masks), t, objects in zip(references, (0, 2), ([1, 2], [3])):
        assert torch.equal(frame, frames[t:t + 1])
        small = resize_nearest(truth[t][None, None].float(), (64, 128))[0]
        assert torch.equal(masks[0], torch.stack([(small[0] == k).float() for k in objects]))
    assert passes == [2, 2, 2, 1, 2, 1]
    assert torch.equal(output[:2, 2], torch.zeros(2, 70, 150))


def test_a_new_object_keeps_the_earlier_objects_outputs_or_overwrites_them(tmp_path):
    """At frame 2 object 3 arrives over part of object 2's track. The authors (official) keep
    the earlier objects' outputs under it (their argmax gives object 3 there all the same) and
    the earlier group warps its own previous outputs; the paper variant (item 6: the given mask
    says those pixels are object 3's) sets the earlier objects' output and P̂ to 0 under it."""
    video = write_video(tmp_path, "davis2017", (64, 128))
    truth = video.masks[2].long()
    new = truth == 3
    warped_inputs = {}
    for overwrite in (False, True):
        model = tiny_official(overwrite_earlier_objects=overwrite)
        warped_inputs[overwrite] = recorded_warps(model)
        output = model.predict_video(video)
        assert torch.equal(output[2, 2], new.float())
        labels = binarize(output.numpy(), 0.5)
        assert (labels[2][new.numpy()] == 3).all()
        under = output[2, :2][:, new]
        if overwrite:
            assert torch.equal(under, torch.zeros_like(under))
            assert warped_inputs[True][3][0, :2][:, new].abs().max() == 0
        else:
            assert under.max() > 0
            assert warped_inputs[False][3][0, :2][:, new].max() > 0
    assert torch.equal(warped_inputs[False][3][0, 2], warped_inputs[True][3][0, 2])


def recorded_warps(model: AGSSVOS) -> dict[int, torch.Tensor]:
    """Zero flow for `model`, and the P̂_{t−1} its predict_video warps to each frame t."""
    model.flow.backward = lambda video, t: np.zeros((*video.size, 2), np.float32)
    warped, record = model.warped, {}

    def recording(previous, video, t, frames=None):
        record[t] = previous.clone()
        return warped(previous, video, t, frames)

    model.warped = recording
    return record


def test_the_paper_variant_overwrites_earlier_objects_and_normalises_all_together(tmp_path):
    """Item 6, the paper's reading (§3.1, Eqs. 4-6: one pixel belongs to one of all N objects):
    at object 3's first frame the given mask replaces objects 1 and 2 under it in the output and
    in the P̂ the next frame warps; from then on one normalisation spans the three objects (one
    background for all: P̂ of every channel and the background sum to 1)."""
    video = write_video(tmp_path, "davis2017", (64, 128))
    torch.manual_seed(0)
    model = AGSSVOS(backbone="resnet18", channels=8, input_size=(64, 128)).eval()
    model.flow.backward = lambda video, t: np.zeros((*video.size, 2), np.float32)
    distributions = []
    distribution = model.network.distribution
    model.network.distribution = lambda objects, valid=None: distributions.append(
        distribution(objects, valid)) or distributions[-1]
    output = model.predict_video(video)
    new = video.masks[2].long() == 3
    assert torch.equal(output[2, :2][:, new], torch.zeros(2, int(new.sum())))
    assert torch.equal(output[2, 2], new.float())
    assert [d.shape[1] for d in distributions] == [4, 4, 4, 4]  # background + 3 objects
    assert torch.allclose(distributions[-1].sum(1), torch.ones(1, 64, 128), atol=1e-5)


# --- training with the official architecture ---------------------------------------------------

def test_the_flow_network_is_fixed_and_sees_the_clips_in_bgr_order():
    """The authors' optimiser holds the segmentation network only (train_davis.py lines
    145-159): FlowNet2-C takes no gradient, stays in eval mode in training, and is in no
    parameter group; clip flows are its flows of the BGR images (their cv2 frames)."""
    model = tiny_official(flow_source="flownet2c")
    model.train()
    assert not model.flow_network.training and model.network.training
    assert not any(parameter.requires_grad for parameter in model.flow_network.parameters())
    model._trainer = type("Trainer", (), {"max_steps": 10})()
    optimizer = model.configure_optimizers()["optimizer"]
    grouped = {id(parameter) for group in optimizer.param_groups for parameter in group["params"]}
    assert grouped == {id(parameter) for parameter in model.network.parameters()}
    generator = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (1, 2, 3, 64, 64), generator=generator).float() / 255
    flows = model.clip_flows(frames)
    images = (frames * 255).round().byte().permute(0, 1, 3, 4, 2).numpy()
    (expected,) = infer_flows(model.flow_network, [images[0, 1, ..., ::-1].copy()],
                              [images[0, 0, ..., ::-1].copy()])
    assert torch.equal(flows[0, 0], torch.from_numpy(expected).permute(2, 0, 1))
    assert model.encoders() == [model.network.agnostic.encoder]


def test_inconsistent_settings_are_rejected():
    for setting, value in [("warp_normalisation", "pixels"), ("flow_source", "raft"),
                           ("resampling", "nearest"), ("normalisation_scope", "frame"),
                           ("label_background", "zero")]:
        with pytest.raises(ValueError, match=f"{setting} is one of .*, got '{value}'"):
            tiny_official(**{setting: value})
    with pytest.raises(ValueError, match="flow_weights are FlowNet2-C's: they need flow_source"):
        tiny_official(flow_weights="flownet2c.pth")


def test_the_flow_weights_file_fills_the_flow_network(tmp_path):
    state = FlowNet2C().state_dict()
    torch.save({"state_dict": {key: value + 1 for key, value in state.items()}},
               tmp_path / "FlowNet2-C_checkpoint.pth.tar")
    model = tiny_official(flow_source="flownet2c",
                          flow_weights=str(tmp_path / "FlowNet2-C_checkpoint.pth.tar"))
    for key, value in model.flow_network.state_dict().items():
        assert torch.equal(value, state[key] + 1), key


# --- vosbench bench of an imported checkpoint -----------------------------------------------------

def test_bench_scores_an_imported_checkpoint_with_the_official_recipe(
        imported, official_model, synthetic_root, tmp_path, monkeypatch):
    """`vosbench bench --preset official --ckpt_path` of the imported weights at a small input
    size (an inference option): the results row names the checkpoint and the official variant's
    parameter count, and the probabilities it saved are those of predict_video with the same
    weights and options."""
    monkeypatch.chdir(tmp_path)
    assert vosbench_main([
        "bench", "--method", "agssvos", "--preset", "official", "--ckpt_path", str(imported),
        "--data.init_args.root", str(synthetic_root), "--model.init_args.input_size",
        "[64, 128]", "--model.init_args.save_probabilities", "true",
        "--model.init_args.output_workers", "0", "--data.init_args.num_workers", "0",
        "--wandb_mode", "disabled"]) == 0
    (row,) = Path("results").glob("*.json")
    row = json.loads(row.read_text())
    assert (row["method"], row["preset"], row["checkpoint"]) == ("agssvos", "official",
                                                                 str(imported))
    assert row["parameters"] == SEGMENTATION_PARAMETERS + FLOW_PARAMETERS
    assert len(row["sequences"]) >= 3 and 0 <= row["metrics"]["J-Mean"] <= 1
    video = load_video(davis2017_videos(synthetic_root, "val")[0])
    official_model.hparams.input_size = (64, 128)
    try:
        expected = official_model.predict_video(video)
    finally:
        official_model.hparams.input_size = None
    for k in range(expected.shape[1]):
        saved = np.stack([np.array(Image.open(Path(row["probability_dir"]) / video.name /
                                              str(k + 1) / f"{name}.png"))
                          for name in video.video.frame_names])
        assert np.array_equal(saved, np.rint(expected[:, k].numpy() * 65535).astype(np.uint16))
