"""FlowNet2-C (vosbench.flow.flownet2c), the flow network of AGSS-VOS's code: its correlation
against a literal loop written from the authors' CUDA kernel, the network against reference
outputs that the authors' model computed, its parameters, its weight files, AGSS-VOS's
`Inference_flow.infer` recipe and the "flownet2c" method of FlowProvider and `vosbench data
flow`."""

import hashlib
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from davis_fixtures import write_davis2017
from official_weights import (
    KEY_TABLES,
    assert_matches_reference,
    read_keys,
    read_reference,
    seeded_state,
)
from test_flow import data_flow, flo_files, make_video

from vosbench.errors import InputError
from vosbench.flow import FlowNet2CEstimator, FlowProvider
from vosbench.flow.flownet2c import (
    Correlation,
    FlowNet2C,
    infer_flow,
    infer_flows,
    load_flownet2c,
    network_size,
    read_flownet2c_state,
)
from vosbench.methods.official import CheckpointError

REFERENCE = read_reference(KEY_TABLES / "flownet2c_reference.json")


def literal_correlation(first: np.ndarray, second: np.ndarray, max_displacement: int,
                        stride: int) -> np.ndarray:
    """correlation_cuda_kernel.cu's Correlation_forward with kernel_size 1, stride1 1 and
    pad_size = max_displacement, one output value at a time: for output channel
    (tj + r)·(2r + 1) + (ti + r) at (y, x), the sum over channels of first(y, x) ·
    second(y + tj·stride, x + ti·stride), zero where that falls in the padding, divided by
    nelems = 1·1·C."""
    batch, channels, height, width = first.shape
    radius = max_displacement // stride
    size = 2 * radius + 1
    output = np.zeros((batch, size * size, height, width))
    for n in range(batch):
        for y in range(height):
            for x in range(width):
                for tj in range(-radius, radius + 1):
                    for ti in range(-radius, radius + 1):
                        y2, x2 = y + tj * stride, x + ti * stride
                        total = 0.0
                        if 0 <= y2 < height and 0 <= x2 < width:
                            for c in range(channels):
                                total += float(first[n, c, y, x]) * float(second[n, c, y2, x2])
                        output[n, (tj + radius) * size + ti + radius, y, x] = total / channels
    return output


@pytest.mark.parametrize("max_displacement, stride, height, width", [
    (4, 2, 5, 7), (4, 2, 6, 8), (3, 1, 4, 5), (20, 2, 7, 12), (20, 2, 24, 22)])
def test_correlation_equals_the_kernels_loop(max_displacement, stride, height, width):
    generator = torch.Generator().manual_seed(height * width)
    first = torch.randn(2, 3, height, width, generator=generator)
    second = torch.randn(2, 3, height, width, generator=generator)
    output = Correlation(max_displacement, stride)(first, second)
    expected = literal_correlation(first.numpy(), second.numpy(), max_displacement, stride)
    assert output.shape == expected.shape and output.dtype == torch.float32
    np.testing.assert_allclose(output.numpy(), expected, atol=1e-6, rtol=0)


def test_correlation_channel_order_and_normalisation_by_hand():
    # first(1, 1) = (1, 2), second(3, 1) = (3, 4): displacement dy = +2 (tj = 1), dx = 0
    # (ti = 0): channel (1 + 10)·21 + (0 + 10) = 241 at (1, 1) is (1·3 + 2·4) / 2 = 5.5
    first = torch.zeros(1, 2, 6, 5)
    second = torch.zeros(1, 2, 6, 5)
    first[0, :, 1, 1] = torch.tensor([1.0, 2.0])
    second[0, :, 3, 1] = torch.tensor([3.0, 4.0])
    output = Correlation()(first, second)
    assert output.shape == (1, 441, 6, 5)
    assert output[0, 241, 1, 1] == 5.5
    assert torch.count_nonzero(output) == 1


def reference_images(seed: int, batch: int, height: int, width: int) -> torch.Tensor:
    """The reference's inputs, drawn as its metadata says: image 0 uniform integers 0..255,
    image 1 = image 0 rolled by (8, -16) pixels with 10% of its pixels redrawn."""
    generator = torch.Generator().manual_seed(seed)
    first = torch.randint(0, 256, (batch, 3, height, width), generator=generator).float()
    second = torch.roll(first, (8, -16), (2, 3))
    redraw = torch.rand((batch, 1, height, width), generator=generator) < 0.1
    fresh = torch.randint(0, 256, (batch, 3, height, width), generator=generator).float()
    return torch.stack((first, torch.where(redraw, fresh, second)), 2)


REFERENCE_INPUTS = {name: reference_images(**size)
                    for name, size in REFERENCE["inputs"]["sizes"].items()}


@pytest.fixture(scope="module")
def reference_state() -> dict[str, torch.Tensor]:
    weights = REFERENCE["weights"]
    return seeded_state(read_keys("flownet2c"), weights["seed"], weights["scales"])


@pytest.fixture  # built by each test, so that mutation testing sees each test build it
def network(reference_state) -> FlowNet2C:
    network = FlowNet2C().eval()
    network.load_state_dict(reference_state)
    return network


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory, reference_state) -> dict[str, Path]:
    """The reference weights in the three formats: AGSS-VOS's checkpoint, NVIDIA's, a state
    dict."""
    folder = tmp_path_factory.mktemp("flownet2c")
    contents = {"agssvos": {"seg": {"conv1.weight": torch.ones(2)}, "flow": reference_state},
                "nvidia": {"arch": "FlowNet2C", "epoch": 40, "best_EPE": 2.5,
                           "state_dict": reference_state},
                "state_dict": reference_state}
    files = {}
    for kind, content in contents.items():
        files[kind] = folder / f"{kind}.pth"
        torch.save(content, files[kind])
    return files


def test_parameters_are_the_authors(network):
    assert sum(parameter.numel() for parameter in network.parameters()) == 39_175_298
    keys = read_keys("flownet2c")
    state = network.state_dict()
    assert list(state) == list(keys)  # the authors' names, in their order
    assert {key: (value.dtype, tuple(value.shape)) for key, value in state.items()} == keys
    assert not list(network.buffers())


def test_official_forward_equals_the_authors_model(network):
    with torch.inference_mode():
        outputs = {name: network.official_forward(images)
                   for name, images in REFERENCE_INPUTS.items()}
    assert all(output.dtype == torch.float32 for output in outputs.values())
    assert_matches_reference(outputs, REFERENCE, atol=1e-5)


def test_flow_is_not_saturated_in_the_reference():
    # a reference of near-constant flow would let a wrong network pass
    for entry in REFERENCE["outputs"].values():
        sample = torch.tensor([float(value) for value in entry["sample"]])
        assert sample.std() > 1.0 and sample.abs().max() < 50


def test_the_pair_is_ordered_and_the_batch_independent(network):
    images = REFERENCE_INPUTS["flow"]
    with torch.inference_mode():
        both = network(images)
        alone = network(images[1:])
        swapped = network(images.flip(2))
    torch.testing.assert_close(alone, both[1:], atol=1e-5, rtol=0)
    assert (swapped - both).abs().max() > 1.0


def test_a_new_network_is_initialised_as_the_authors():
    # FlowNetC.__init__: init.uniform_(bias) in [0, 1), init.xavier_uniform_(weight)
    torch.manual_seed(0)
    network = FlowNet2C()
    biases = torch.cat([parameter.detach() for name, parameter in network.named_parameters()
                        if name.endswith("bias")])
    assert 0 <= biases.min() and biases.max() < 1 and abs(biases.mean() - 0.5) < 0.02
    for name, parameter in network.named_parameters():
        if not name.endswith("bias"):
            fan_in = parameter.shape[1] * parameter[0, 0].numel()
            fan_out = parameter.shape[0] * parameter[0, 0].numel()
            bound = (6 / (fan_in + fan_out)) ** 0.5
            assert parameter.abs().max() <= bound, name
            assert parameter.abs().max() > 0.9 * bound, name


@pytest.mark.parametrize("shape, fragment", [
    ((1, 3, 64, 64), r"\(B, 3, 2, H, W\).*\(1, 3, 64, 64\)"),
    ((1, 6, 1, 64, 64), r"\(B, 3, 2, H, W\)"),
    ((1, 3, 2, 64, 96), "multiples of 64, got 96x64"),
    ((1, 3, 2, 32, 64), "multiples of 64, got 64x32")])
def test_images_of_another_shape_are_refused(shape, fragment):
    with pytest.raises(ValueError, match=fragment):
        FlowNet2C()(torch.zeros(shape))


# ---------------------------------------------------------------- weight files

@pytest.mark.parametrize("kind", ["agssvos", "nvidia", "state_dict"])
def test_each_weight_format_loads_every_tensor(weight_files, reference_state, kind):
    network = load_flownet2c(weight_files[kind])
    assert not network.training
    state = network.state_dict()
    assert list(state) == list(reference_state)
    assert all(torch.equal(state[key], reference_state[key]) for key in reference_state)


def save(path: Path, content: object) -> Path:
    torch.save(content, path)
    return path


def test_a_missing_key_is_named(tmp_path, reference_state):
    state = {key: value for key, value in reference_state.items() if key != "predict_flow2.bias"}
    path = save(tmp_path / "missing.pth", {"flow": state})
    with pytest.raises(CheckpointError, match="'predict_flow2.bias'") as error:
        read_flownet2c_state(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("state, fragment", [
    ({"conv7.0.weight": torch.zeros(2)}, "'conv7.0.weight'"),
    ({"conv1.0.weight": torch.zeros(64, 3, 5, 5)}, r"'conv1.0.weight' has shape \(64, 3, 5, 5\)"),
])
def test_an_extra_or_misshapen_key_is_named(tmp_path, state, fragment):
    for kind, content in {"agssvos": {"flow": state}, "nvidia": {"state_dict": state},
                          "state_dict": state}.items():
        path = save(tmp_path / f"{kind}.pth", content)
        with pytest.raises(CheckpointError, match=fragment) as error:
            read_flownet2c_state(path)
        assert str(path) in str(error.value)


@pytest.mark.parametrize("content, fragment", [
    ([torch.zeros(1)], "found a list"),
    ({"model": {"conv1.0.weight": torch.zeros(1)}}, "found 'model'"),
    ({"flow": {}, "state_dict": {}}, "found 'flow', 'state_dict'"),
    ({}, "found nothing"),
    ({"conv1.0.weight": torch.zeros(1), "epoch": 3}, "found 'conv1.0.weight', 'epoch'"),
    ({f"entry{i}": i for i in range(9)}, "found 'entry0', .* 'entry7'$"),  # the first eight
])
def test_a_file_of_no_known_format_is_refused(tmp_path, content, fragment):
    path = save(tmp_path / "weights.pth", content)
    with pytest.raises(CheckpointError, match=fragment) as error:
        read_flownet2c_state(path)
    assert str(path) in str(error.value) and "AGSS-VOS" in str(error.value)


def test_unreadable_or_absent_files_are_named(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    for path in (garbage, tmp_path / "absent.pth"):
        with pytest.raises(InputError, match=str(path)):
            read_flownet2c_state(path)


# ---------------------------------------------------------------- AGSS-VOS's infer

@pytest.mark.parametrize("height, width, scale, expected", [
    (448, 832, 1, (448, 832)), (480, 854, 1, (448, 832)), (70, 100, 1, (64, 64)),
    (30, 200, 1, (64, 192)), (480, 854, 2, (192, 384)), (720, 1280, 2, (320, 640))])
def test_network_size_floors_to_multiples_of_64(height, width, scale, expected):
    # flow_inference.py infer: resize = ori // scale // 64 * 64, and 64 where that is 0
    assert network_size(height, width, scale) == expected


class ConstantFlow(torch.nn.Module):
    """Records its input and returns the flow (1, 2) everywhere, at the input's size."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives infer_flows a device
        self.inputs: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.inputs.append(images)
        flow = torch.tensor([1.0, 2.0])[None, :, None, None]
        return flow.expand(len(images), 2, *images.shape[3:]).clone()


def random_frames(count: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def test_infer_resizes_to_multiples_of_64_and_scales_the_flow_back():
    first, second = random_frames(2, 70, 100)
    fake = ConstantFlow()
    flow = infer_flow(fake, first, second)
    # their input: np.array([img1, img2]).transpose(3, 0, 1, 2)[None] of the images resized to
    # 64 x 64 by cv2 (uint8), as float32
    resized = [cv2.resize(image, (64, 64), interpolation=cv2.INTER_LINEAR)
               for image in (first, second)]
    expected = np.array(resized).transpose(3, 0, 1, 2)[np.newaxis].astype(np.float32)
    np.testing.assert_array_equal(fake.inputs[0].numpy(), expected)
    # a constant flow resizes to itself; x times 100 / 64, y times 70 / 64
    assert flow.shape == (70, 100, 2) and flow.dtype == np.float32
    np.testing.assert_allclose(flow[..., 0], 100 / 64, rtol=1e-6)
    np.testing.assert_allclose(flow[..., 1], 2 * 70 / 64, rtol=1e-6)


def test_infer_leaves_multiples_of_64_alone(network):
    images = REFERENCE_INPUTS["flow"].numpy().astype(np.uint8)  # integers 0..255
    firsts = list(images[:, :, 0].transpose(0, 2, 3, 1))
    seconds = list(images[:, :, 1].transpose(0, 2, 3, 1))
    fake = ConstantFlow()
    infer_flows(fake, firsts, seconds)
    assert fake.inputs[0].shape == (2, 3, 2, 64, 128)
    np.testing.assert_array_equal(fake.inputs[0].numpy(), images.astype(np.float32))
    flows = infer_flows(network, firsts, seconds)
    output = torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2)
    with torch.inference_mode():
        tall = network(REFERENCE_INPUTS["flow_tall"])
    assert_matches_reference({"flow": output, "flow_tall": tall}, REFERENCE, atol=1e-5)


def test_infer_runs_at_the_frames_size_by_default():
    fake = ConstantFlow()
    infer_flow(fake, *random_frames(2, 128, 192))
    assert fake.inputs[0].shape == (1, 3, 2, 128, 192) and network_size(448, 832) == (448, 832)


def test_the_network_runs_on_its_device(weight_files):
    """Tensors on PyTorch's "meta" device carry shapes only: the images go to the network's
    device, the correlation builds its indices on its inputs' device, and the loaded network
    moves to the device asked for."""
    fake = ConstantFlow().to("meta")
    infer_flow(fake, *random_frames(2, 64, 64))
    assert fake.inputs[0].device.type == "meta"
    first, second = torch.empty(1, 8, 6, 7, device="meta"), torch.empty(1, 8, 6, 7, device="meta")
    correlation = Correlation(max_displacement=4, stride=2)(first, second)
    assert correlation.device.type == "meta" and correlation.shape == (1, 25, 6, 7)
    loaded = load_flownet2c(weight_files["state_dict"], "meta")
    assert {parameter.device.type for parameter in loaded.parameters()} == {"meta"}


def test_the_correlation_settings_reach_the_network():
    assert FlowNet2C(max_displacement=4, displacement_stride=1).corr.num_channels == 81
    assert FlowNet2C().corr.num_channels == 441
    # FlowNetC.py: corr_activation = LeakyReLU(0.1). (The reference's correlations, means of
    # products of mostly positive features, are all positive: it cannot see the slope.)
    slope = FlowNet2C().corr_activation(torch.tensor([-2.0, 3.0]))
    assert torch.equal(slope, torch.tensor([-0.2, 3.0]))


def test_infer_with_scale_runs_the_network_smaller():
    first, second = random_frames(2, 130, 260)
    fake = ConstantFlow()
    flow = infer_flow(fake, first, second, scale=2)
    assert fake.inputs[0].shape == (1, 3, 2, 64, 128) and flow.shape == (130, 260, 2)
    np.testing.assert_allclose(flow[..., 0], 260 / 128, rtol=1e-6)
    np.testing.assert_allclose(flow[..., 1], 2 * 130 / 64, rtol=1e-6)


# ---------------------------------------------------------------- FlowProvider("flownet2c")

def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:10]


def test_cache_key_names_the_weights_and_the_channel_order(tmp_path):
    # the key is computed from the file's bytes before the model is ever loaded
    weights = save(tmp_path / "one.pth", {"flow": {"conv1.0.bias": torch.zeros(64)}})
    another = save(tmp_path / "two.pth", {"flow": {"conv1.0.bias": torch.ones(64)}})
    rgb = FlowProvider("flownet2c", weights=weights, cache_dir=tmp_path)
    bgr = FlowProvider("flownet2c", weights=weights, cache_dir=tmp_path, channel_order="bgr")
    other = FlowProvider("flownet2c", weights=another, cache_dir=tmp_path)
    assert rgb.key == f"flownet2c-rgb-{digest(weights)}"
    assert bgr.key == f"flownet2c-bgr-{digest(weights)}"
    assert other.key == f"flownet2c-rgb-{digest(another)}" != rgb.key
    video = make_video(tmp_path / "frames", random_frames(2, 8, 8))
    assert rgb.folder(video) == tmp_path / "toy" / rgb.key / "clip"


def test_the_provider_computes_the_reference_flow_in_either_channel_order(network, weight_files):
    images = REFERENCE_INPUTS["flow"].numpy().astype(np.uint8)
    firsts = list(images[:, :, 0].transpose(0, 2, 3, 1))  # (H, W, 3) in the network's order
    seconds = list(images[:, :, 1].transpose(0, 2, 3, 1))
    with torch.inference_mode():
        tall = network(REFERENCE_INPUTS["flow_tall"])
    for order, flip in (("rgb", False), ("bgr", True)):
        provider = FlowProvider("flownet2c", weights=weight_files["agssvos"], channel_order=order)
        # a "bgr" provider hands the network the frames' channels reversed
        frames = [[frame[..., ::-1] if flip else frame for frame in group]
                  for group in (firsts, seconds)]
        flows = provider.estimate(*frames)
        assert len(flows) == 2 and flows[0].shape == (64, 128, 2)
        output = torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2)
        assert_matches_reference({"flow": output, "flow_tall": tall}, REFERENCE, atol=1e-5)


def test_the_provider_resizes_frames_as_infer_does(weight_files, tmp_path):
    frames = random_frames(2, 70, 100, seed=3)
    provider = FlowProvider("flownet2c", weights=weight_files["state_dict"],
                            channel_order="bgr")
    provider.estimator._model = fake = ConstantFlow()
    video = make_video(tmp_path, frames)
    flow = provider.backward(video, 1)  # frame 1 -> frame 0
    assert flow.shape == (70, 100, 2)
    np.testing.assert_allclose(flow[..., 0], 100 / 64, rtol=1e-6)
    resized = [cv2.resize(frame[..., ::-1], (64, 64), interpolation=cv2.INTER_LINEAR)
               for frame in (frames[1], frames[0])]
    np.testing.assert_array_equal(fake.inputs[0][0].numpy(),
                                  np.array(resized).transpose(3, 0, 1, 2).astype(np.float32))


def test_the_estimator_pickles_without_its_model(weight_files):
    estimator = FlowNet2CEstimator(weight_files["state_dict"])
    assert isinstance(estimator.model, FlowNet2C)  # loaded on first use
    copy = pickle.loads(pickle.dumps(estimator))
    assert copy._model is None and copy.key == estimator.key
    assert estimator._model is not None


def test_provider_settings_errors(weight_files, tmp_path):
    missing = tmp_path / "nowhere" / "FlowNet2-C_checkpoint.pth.tar"
    with pytest.raises(InputError, match="only from a local file") as error:
        FlowProvider("flownet2c", weights=missing)
    assert str(missing) in str(error.value)
    with pytest.raises(InputError, match="'flownet2c' needs a local weights file"):
        FlowProvider("flownet2c")
    with pytest.raises(ValueError, match="unknown channel order 'rbg'"):
        FlowProvider("flownet2c", weights=weight_files["state_dict"], channel_order="rbg")
    with pytest.raises(ValueError, match="channel_order is an option of method 'flownet2c'"):
        FlowProvider("farneback", channel_order="bgr")
    with pytest.raises(ValueError, match="weights are used by methods raft and flownet2c only"):
        FlowProvider("farneback", weights=weight_files["state_dict"])


def test_a_wrong_weights_file_fails_when_the_model_is_first_used(tmp_path):
    path = save(tmp_path / "raft.pth", {"conv7.0.weight": torch.zeros(2)})
    provider = FlowProvider("flownet2c", weights=path)
    with pytest.raises(CheckpointError, match="'conv7.0.weight'"):
        provider.estimate(random_frames(1, 64, 64), random_frames(1, 64, 64))


def test_data_flow_with_flownet2c(weight_files, tmp_path, capsys):
    root = tmp_path / "DAVIS"
    write_davis2017(root, {"bear": ("val", 3, 20, 1)})  # 12 x 20 frames
    out = tmp_path / "flow"
    weights = weight_files["state_dict"]
    code, _, err = data_flow(capsys, "--root", root, "--out", out, "--method", "flownet2c",
                             "--weights", weights, "--channel-order", "bgr", "--quiet")
    assert code == 0, err
    folder = f"davis2017/flownet2c-bgr-{digest(weights)}/bear"
    assert flo_files(out) == {f"{folder}/forward/00000.flo", f"{folder}/forward/00001.flo",
                              f"{folder}/backward/00001.flo", f"{folder}/backward/00002.flo"}
    code, _, err = data_flow(capsys, "--root", root, "--out", tmp_path / "other",
                             "--channel-order", "bgr", "--quiet")
    assert code == 2 and "--channel-order is only read with --method flownet2c" in err
