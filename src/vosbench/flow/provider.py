"""`FlowProvider`: the optical flow of a video's frames, computed, cached on disk, or read from
precomputed `.flo` files. The one object datamodules and methods ask for flow.

Every flow is an (H, W, 2) float32 array in pixels at the video's size, channel 0 = x (columns),
channel 1 = y (rows). Forward flow of frame i maps frame i to frame i + 1; backward flow of
frame i maps frame i to frame i - 1.

Disk layout, shared by the cache, `vosbench data flow` and method "files":

    <folder>/<video name>/forward/<frame name>.flo     frames 0 .. T-2
    <folder>/<video name>/backward/<frame name>.flo    frames 1 .. T-1

where <folder> is `<cache_dir>/<video.dataset>/<method key>` for a cache_dir (the flow of one
dataset folder: what `vosbench data flow --out` writes), `files_root` itself for method "files",
and `<vosbench cache>/flow/<video.dataset>/<source>/<method key>` for `cache=True`. The method key
is "farneback", "<arch>-<digest>" for RAFT or "flownet2c-<channel order>-<digest>" for
FlowNet2-C, <digest> the first 10 hex digits of the SHA-256 of the weights file, so that
different weights never share files; <source>, the first 10 hex digits of the SHA-256 of the
absolute path of the folder holding the video's frame folder, keeps apart the videos of one name
in different dataset folders that the shared cache sees (the synthetic variants and seeds, DAVIS
at 480p and at full resolution).
"""

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vosbench.datamodules.video import Video
from vosbench.errors import InputError
from vosbench.flow.estimators import (
    FarnebackEstimator,
    FlowEstimator,
    FlowNet2CEstimator,
    RaftEstimator,
)
from vosbench.flow.flo import read_flo, write_flo

METHODS = ("farneback", "raft", "flownet2c", "files")
WEIGHTED_METHODS = ("raft", "flownet2c")
DIRECTIONS = {"forward": 1, "backward": -1}  # direction -> offset of the frame it maps to


def source_key(video: Video) -> str:
    """The first 10 hex digits of the SHA-256 of the absolute path of the folder that holds
    `video`'s frame folder (`JPEGImages/480p` of a DAVIS folder: one key per dataset folder)."""
    folder = str(Path(video.frame_files[0]).parent.parent.resolve())
    return hashlib.sha256(folder.encode("utf-8")).hexdigest()[:10]


class FlowProvider:
    """Optical flow of video frames by `method`: "farneback" (default, no weights), "raft"
    (torchvision RAFT `arch` with the local `weights` file, on `device`, `num_flow_updates`
    refinements), "flownet2c" (FlowNet2-C, the flow network of AGSS-VOS's code, with the local
    `weights` file — AGSS-VOS's checkpoint, NVIDIA's or a state dict —, on `device`, fed the
    frames' channels in `channel_order`: "rgb", or "bgr" as AGSS-VOS did) or "files" (read
    precomputed `.flo` files under `files_root`, see the module docstring). With a
    `cache_dir`, computed flow is written there and read back next time; `cache=True` without
    one caches in the vosbench cache folder (`$VOSBENCH_CACHE/flow`, see
    `vosbench.datamodules.families.cache_root`), as presets do.

    Picklable for DataLoader workers: RAFT and FlowNet2-C are loaded on first use in each
    process.
    """

    def __init__(self, method: str = "farneback", weights: str | Path | None = None,
                 arch: str = "raft_large", cache_dir: str | Path | None = None,
                 files_root: str | Path | None = None, device: str = "cpu",
                 num_flow_updates: int = 12, cache: bool = False,
                 channel_order: str = "rgb") -> None:
        if method not in METHODS:
            raise ValueError(f"unknown flow method {method!r}; known: {', '.join(METHODS)}")
        if (files_root is None) == (method == "files"):
            raise ValueError("files_root is given with method 'files', and only then")
        if weights is not None and method not in WEIGHTED_METHODS:
            raise ValueError(f"weights are used by methods {' and '.join(WEIGHTED_METHODS)} "
                             f"only, not {method!r}")
        if channel_order != "rgb" and method != "flownet2c":
            raise ValueError(f"channel_order is an option of method 'flownet2c' only, not "
                             f"{method!r}")
        if cache and (cache_dir is not None or method == "files"):
            raise ValueError("cache=True caches computed flow in the vosbench cache folder: "
                             "not with a cache_dir of its own, nor with method 'files'")
        if cache:
            from vosbench.datamodules.families import cache_root

            cache_dir = cache_root() / "flow"
        self.method = method
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.shared_cache = cache
        self.files_root = None if files_root is None else Path(files_root)
        self.estimator: FlowEstimator | None = None
        if method == "farneback":
            self.estimator = FarnebackEstimator()
        elif method in WEIGHTED_METHODS:
            if weights is None:
                raise InputError(f"flow method {method!r} needs a local weights file "
                                 f"(`weights`, --weights on the command line); vosbench never "
                                 f"downloads weights")
            self.estimator = (RaftEstimator(weights, arch, device, num_flow_updates)
                              if method == "raft" else
                              FlowNet2CEstimator(weights, device, channel_order))

    @property
    def key(self) -> str | None:
        """Names the estimator and its weights in cache folders; None for method "files"."""
        return None if self.estimator is None else self.estimator.key

    def folder(self, video: Video) -> Path | None:
        """The folder holding `video`'s forward/ and backward/ flow files (None: no cache)."""
        if self.files_root is not None:
            return self.files_root / video.name
        if self.cache_dir is None:
            return None
        if self.shared_cache:
            return self.cache_dir / video.dataset / source_key(video) / self.key / video.name
        return self.cache_dir / video.dataset / self.key / video.name

    def path(self, video: Video, direction: str, index: int) -> Path | None:
        """The `.flo` file of frame `index`'s flow in `direction` ("forward" or "backward")."""
        folder = self.folder(video)
        return None if folder is None else folder / direction / f"{video.frame_names[index]}.flo"

    def forward(self, video: Video, index: int) -> np.ndarray:
        """(H, W, 2) flow from frame `index` to frame `index + 1` (index < len(video) - 1)."""
        return self._flow(video, "forward", index)

    def backward(self, video: Video, index: int) -> np.ndarray:
        """(H, W, 2) flow from frame `index` to frame `index - 1` (index > 0)."""
        return self._flow(video, "backward", index)

    def motion(self, video: Video, index: int) -> np.ndarray:
        """The (H, W, 2) motion input of frame `index`, defined for every frame: its forward
        flow, except for the last frame, which has none and gets its backward flow negated
        (AMC-Net's convention here). A one-frame video has zero motion."""
        _check_index(video, index, 0, len(video) - 1, "motion")
        if len(video) == 1:
            return np.zeros((*video.size, 2), np.float32)
        if index == len(video) - 1:
            return -self.backward(video, index)
        return self.forward(video, index)

    def estimate(self, firsts: list[np.ndarray], seconds: list[np.ndarray]) -> list[np.ndarray]:
        """The (H, W, 2) flow from firsts[i] to seconds[i], (H, W, 3) uint8 RGB images of one size
        that need not be frames of a dataset (augmented training clips), never cached."""
        if self.estimator is None:
            raise InputError("flow method 'files' reads the precomputed flow of dataset frames "
                             "and cannot estimate flow between other images (augmented training "
                             "clips): use method 'farneback', 'raft' or 'flownet2c'")
        return self.estimator.estimate_pairs(firsts, seconds)

    def _flow(self, video: Video, direction: str, index: int) -> np.ndarray:
        offset = DIRECTIONS[direction]
        _check_index(video, index, max(0, -offset), len(video) - 1 - max(0, offset),
                     f"{direction} flow")
        path = self.path(video, direction, index)
        if self.method == "files" and not path.is_file():
            raise InputError(f"{path}: flow file not found (method 'files' reads flow precomputed "
                             f"by `vosbench data flow` from {self.files_root})")
        if path is not None and path.is_file():
            return self._read(video, path)
        flow = self.estimator(video.frame(index), video.frame(index + offset))
        if path is not None:
            write_flo(path, flow)
        return flow

    def _read(self, video: Video, path: Path) -> np.ndarray:
        flow = read_flo(path)
        if flow.shape[:2] != tuple(video.size):
            raise InputError(f"{path}: flow size {flow.shape[1]}x{flow.shape[0]} differs from "
                             f"the video's {video.size[1]}x{video.size[0]} (video {video.name!r})")
        return flow

    def precompute(self, video: Video, pairs_per_batch: int = 2) -> Iterator[tuple[int, int, int]]:
        """Write every missing forward and backward flow file of `video` into the cache, keeping
        the files already there (an interrupted run resumes). Works through consecutive frame
        pairs, `pairs_per_batch` at a time (one estimator batch); yields after each batch
        (frame pairs done, files written, files already present)."""
        if self.estimator is None or self.cache_dir is None:
            raise ValueError("precompute needs a computing method and a cache_dir")
        for start in range(0, len(video) - 1, pairs_per_batch):
            pairs = range(start, min(start + pairs_per_batch, len(video) - 1))
            # (source, target, path) of each flow of these pairs: i -> i+1 and i+1 -> i
            wanted = [(i, i + 1, self.path(video, "forward", i)) for i in pairs]
            wanted += [(i + 1, i, self.path(video, "backward", i + 1)) for i in pairs]
            missing = [flow for flow in wanted if not flow[2].is_file()]
            if missing:
                frames = {i: video.frame(i) for i in range(pairs[0], pairs[-1] + 2)}
                flows = self.estimator.estimate_pairs([frames[source] for source, _, _ in missing],
                                                      [frames[target] for _, target, _ in missing])
                for (_, _, path), flow in zip(missing, flows):
                    write_flo(path, flow)
            yield len(pairs), len(missing), len(wanted) - len(missing)


def _check_index(video: Video, index: int, first: int, last: int, what: str) -> None:
    if not first <= index <= last:
        valid = f"frames {first}..{last}" if first <= last else "no frame"
        raise IndexError(f"video {video.name!r} has {len(video)} frames: {what} exists for "
                         f"{valid}, asked for frame {index}")
