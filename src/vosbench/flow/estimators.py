"""Optical flow estimators: Farnebäck (OpenCV, no weights), RAFT (torchvision, local weights) and
FlowNet2-C (the flow network of AGSS-VOS's code, local weights).

An estimator is called with two RGB frames, `estimator(first, second)`, each an (H, W, 3) uint8
array, and returns the flow from the first to the second: an (H, W, 2) float32 array in pixels,
channel 0 = x (columns), channel 1 = y (rows), such that pixel (y, x) of `first` moves to
(y + flow[y, x, 1], x + flow[y, x, 0]) in `second`. `estimate_pairs(firsts, seconds)` does the
same for several pairs of frames of one size at once.
"""

import hashlib
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.optical_flow import raft_large, raft_small

from vosbench.errors import InputError
from vosbench.flow.flownet2c import infer_flows, load_flownet2c

RAFT_ARCHITECTURES = {"raft_large": raft_large, "raft_small": raft_small}
# torchvision's RAFT works at 1/8 resolution and its correlation pyramid halves that 3 more times.
RAFT_STRIDE = 8
RAFT_MIN_SIDE = 128
CHANNEL_ORDERS = ("rgb", "bgr")


class FlowEstimator:
    """Base class: subclasses implement `estimate_pairs`; `key` names the estimator (and its
    weights) in cache folder names."""

    key: str

    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Flow (H, W, 2) float32 from `first` to `second`, both (H, W, 3) uint8 RGB."""
        return self.estimate_pairs([first], [second])[0]

    def estimate_pairs(self, firsts: Sequence[np.ndarray],
                       seconds: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The flow from firsts[i] to seconds[i] for every i (all frames of one size)."""
        raise NotImplementedError


class FarnebackEstimator(FlowEstimator):
    """Dense flow by Farnebäck's polynomial expansion (cv2.calcOpticalFlowFarneback) on grey.

    Defaults: OpenCV's sample values, with 5 pyramid levels (halving each time) so that motions
    of tens of pixels at 480p are reached; OpenCV drops the levels smaller than 32 pixels itself.
    winsize: averaging window in pixels (larger is smoother and more robust to noise).
    poly_n, poly_sigma: neighbourhood size and Gaussian sigma of the polynomial fit.
    """

    key = "farneback"

    def __init__(self, pyramid_scale: float = 0.5, levels: int = 5, window_size: int = 15,
                 iterations: int = 3, poly_n: int = 5, poly_sigma: float = 1.2) -> None:
        self.parameters = (pyramid_scale, levels, window_size, iterations, poly_n, poly_sigma)

    def estimate_pairs(self, firsts, seconds):
        return [self._estimate(first, second) for first, second in zip(firsts, seconds)]

    def _estimate(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        grey_first = cv2.cvtColor(np.ascontiguousarray(first), cv2.COLOR_RGB2GRAY)
        grey_second = cv2.cvtColor(np.ascontiguousarray(second), cv2.COLOR_RGB2GRAY)
        flow = cv2.calcOpticalFlowFarneback(grey_first, grey_second, None, *self.parameters, 0)
        return flow.astype(np.float32, copy=False)


def weights_digest(path: Path) -> str:
    """The first 10 hex digits of the SHA-256 of a file: tells weight files apart in cache names."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:10]


class NetworkEstimator(FlowEstimator):
    """An estimator built around a network read from a local weights file on `device`: `model`
    loads it (`_load_model`) on first use in each process, and pickling leaves it out, so that
    DataLoader workers each load their own. InputError when the file is missing (`where_to_get`
    says how to obtain it) or CUDA is asked for and absent."""

    network = "the network"

    def __init__(self, weights: str | Path, device: str, where_to_get: str) -> None:
        self.weights = Path(weights)
        if not self.weights.is_file():
            raise InputError(f"{self.weights}: {self.network} weights file not found; vosbench "
                             f"reads weights only from a local file, never downloads them. "
                             f"{where_to_get}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise InputError(f"device {device!r} asked for {self.network}, but torch sees no "
                             f"CUDA device")
        self.device = device
        self._model: torch.nn.Module | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_model": None}

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            self._model = self._load_model()
        return self._model

    def _load_model(self) -> torch.nn.Module:
        raise NotImplementedError


class RaftEstimator(NetworkEstimator):
    """RAFT (Teed & Deng, 2020) from torchvision, with weights read from a local file only.

    weights: a file holding the `state_dict` of torchvision's `arch` ("raft_large" or
    "raft_small"), as written by `torch.save(model.state_dict(), path)`. num_flow_updates: the
    number of recurrent refinements (12, as torchvision's default and the paper's test setting).
    device: "cpu" or "cuda". The model is built on first use, in each process (DataLoader
    workers), and is not pickled.
    """

    network = "RAFT"

    def __init__(self, weights: str | Path, arch: str = "raft_large", device: str = "cpu",
                 num_flow_updates: int = 12) -> None:
        if arch not in RAFT_ARCHITECTURES:
            raise ValueError(f"unknown RAFT architecture {arch!r}; known: "
                             f"{', '.join(RAFT_ARCHITECTURES)}")
        path = Path(weights)
        super().__init__(path, device, (
            f"On a machine with internet, save torchvision's checkpoint with `torch.save("
            f"torchvision.models.optical_flow.{arch}(weights='DEFAULT').state_dict(), "
            f"'{path.name}')` (for raft_large that is Raft_Large_Weights.C_T_SKHT_V2) and copy "
            f"the file to {path}"))
        self.arch = arch
        self.num_flow_updates = num_flow_updates
        self.key = f"{arch}-{weights_digest(self.weights)}"

    def _load_model(self) -> torch.nn.Module:
        model = RAFT_ARCHITECTURES[self.arch](weights=None)
        expected = f"a state_dict of torchvision's {self.arch}"
        try:
            state = torch.load(self.weights, map_location="cpu", weights_only=True)
        except Exception as error:  # unpickling raises many types
            raise InputError(f"{self.weights}: cannot be read as {expected} by torch.load "
                             f"({type(error).__name__})") from None
        if not isinstance(state, dict):
            raise InputError(f"{self.weights}: expected {expected}, found a "
                             f"{type(state).__name__}")
        mismatch = state_dict_mismatch(model.state_dict(), state)
        if mismatch:
            raise InputError(f"{self.weights}: not {expected}: {mismatch}")
        model.load_state_dict(state)
        return model.eval().to(self.device)

    def estimate_pairs(self, firsts, seconds):
        height, width = firsts[0].shape[:2]
        images = torch.from_numpy(np.stack([*firsts, *seconds])).to(self.device)
        # uint8 [0, 255] -> float [-1, 1], the range torchvision's RAFT weights were trained on
        images = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        images = F.pad(images, padding(height, width), mode="replicate")
        with torch.inference_mode():
            predictions = self.model(images[:len(firsts)], images[len(firsts):],
                                     num_flow_updates=self.num_flow_updates)
        flows = predictions[-1][:, :, :height, :width].permute(0, 2, 3, 1).contiguous()
        return list(flows.float().cpu().numpy())


class FlowNet2CEstimator(NetworkEstimator):
    """FlowNet2-C (`vosbench.flow.flownet2c`), with weights read from a local file only, run as
    AGSS-VOS's `Inference_flow.infer` runs it: frames whose sides are not multiples of 64 are
    resized to the multiples below (cv2, bilinear) and the flow back to the frames' size, its
    vectors scaled.

    weights: AGSS-VOS's checkpoint (its "flow" entry), NVIDIA's flownet2-pytorch
    FlowNet2-C_checkpoint.pth.tar ("state_dict") or a bare state dict of the network.
    channel_order: the order in which the network sees the colour channels of the (RGB) frames:
    "rgb" (what NVIDIA's weights were trained on) or "bgr" (what AGSS-VOS fed it: cv2's frames).
    device: "cpu" or "cuda". The model is built on first use, in each process (DataLoader
    workers), and is not pickled.
    """

    network = "FlowNet2-C"

    def __init__(self, weights: str | Path, device: str = "cpu",
                 channel_order: str = "rgb") -> None:
        if channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"unknown channel order {channel_order!r}; known: "
                             f"{', '.join(CHANNEL_ORDERS)}")
        super().__init__(weights, device, (
            f"Use NVIDIA's FlowNet2-C_checkpoint.pth.tar (github.com/NVIDIA/flownet2-pytorch) or "
            f"an AGSS-VOS checkpoint (its 'flow' entry), copied to {Path(weights)}"))
        self.channel_order = channel_order
        self.key = f"flownet2c-{channel_order}-{weights_digest(self.weights)}"

    def _load_model(self) -> torch.nn.Module:
        return load_flownet2c(self.weights, self.device)

    def estimate_pairs(self, firsts, seconds):
        if self.channel_order == "bgr":
            firsts, seconds = ([np.ascontiguousarray(frame[..., ::-1]) for frame in frames]
                               for frames in (firsts, seconds))
        return infer_flows(self.model, firsts, seconds)


def state_dict_mismatch(expected: dict, found: dict) -> str:
    """What keeps `found` from loading where `expected` is wanted ("" when it fits): counts of
    missing keys, unexpected keys and tensors of another shape, each with an example."""
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    reshaped = [key for key in expected if key in found
                and tuple(getattr(found[key], "shape", ())) != tuple(expected[key].shape)]
    problems = [f"{len(keys)} {what} (e.g. {keys[0]!r})" for what, keys in
                [("missing keys", missing), ("unexpected keys", unexpected),
                 ("tensors of another shape", reshaped)] if keys]
    return ", ".join(problems)


def padding(height: int, width: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) padding that makes a frame a size RAFT accepts: both sides
    multiples of 8 and at least 128. Only the right and bottom are padded, so cropping the
    flow back is [:height, :width]."""
    def padded(side: int) -> int:
        return max(-(-side // RAFT_STRIDE) * RAFT_STRIDE, RAFT_MIN_SIDE)

    return 0, padded(width) - width, 0, padded(height) - height
