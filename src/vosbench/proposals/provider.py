"""`ProposalProvider`: the object proposals of a video's frames, from one of three sources behind
one interface, cached per frame on disk like the flow cache. The one object STG-Net asks for
proposals.

Sources (`method`):
- "oracle": the ground truth jittered (`vosbench.proposals.oracle`), boxes, masks and scores;
  every result made with them is labelled "oracle proposals";
- "maskrcnn": a class-agnostic torchvision Mask R-CNN from a local weights file
  (`vosbench.proposals.maskrcnn`): boxes and scores only. Their masks come from the crop segmenter
  (`vosbench.proposals.segmenter`, `ProposalProvider.segment`), which needs the object's previous
  mask warped to the frame (Q) and so runs inside the method, frame after frame;
- "files": precomputed proposals, one `.npz` per frame (`write_proposals`'s format).

Disk layout, shared by the cache and method "files":

    <folder>/<video name>/<frame name>.npz    boxes (P, 4) float32, scores (P,) float32,
                                              masks (P, H, W) bool (absent: boxes only)

where <folder> is `files_root` itself for method "files", and for the cache
`<vosbench cache>/proposals/<video.dataset>/<source>/<key>`, <source> the dataset folder's key
(`vosbench.flow.provider.source_key`) and <key> the source and its settings ("oracle-s0.09-m0.1-
f0.3-k3-seed0"; "<arch>-<first 10 hex digits of the SHA-256 of the weights>-s0.05-n0.6-800"), so
that different settings or weights never share files.
"""

from pathlib import Path

import numpy as np

from vosbench.datamodules.video import Video
from vosbench.errors import InputError
from vosbench.flow.provider import source_key
from vosbench.io import atomic_file
from vosbench.proposals.oracle import Proposals, frame_rng, oracle_proposals

METHODS = ("oracle", "maskrcnn", "files")
LABELS = {"oracle": "oracle proposals", "maskrcnn": "Mask R-CNN proposals",
          "files": "precomputed proposals"}


def write_proposals(path: Path, proposals: Proposals) -> None:
    """One frame's proposals as an `.npz` file (atomically: complete or absent)."""
    arrays = {"boxes": proposals.boxes, "scores": proposals.scores}
    if proposals.masks is not None:
        arrays["masks"] = proposals.masks
    with atomic_file(path, sync=False) as stream:
        np.savez_compressed(stream, **arrays)


def read_proposals(path: Path, size: tuple[int, int]) -> Proposals:
    """One frame's proposals from an `.npz` file of a frame of `size` (H, W), checked: InputError
    naming the file and the problem."""
    try:
        with np.load(path) as arrays:
            contents = {name: arrays[name] for name in arrays.files}
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: not a proposals .npz file ({error})") from None
    missing = [name for name in ("boxes", "scores") if name not in contents]
    if missing:
        raise InputError(f"{path}: proposals file without {' and '.join(missing)}")
    boxes, scores, masks = contents["boxes"], contents["scores"], contents.get("masks")
    count = len(scores)
    if scores.ndim != 1 or boxes.shape != (count, 4):
        raise InputError(f"{path}: boxes must be (P, 4) and scores (P,), found "
                         f"{boxes.shape} and {scores.shape}")
    if masks is not None and masks.shape != (count, *size):
        raise InputError(f"{path}: masks must be (P, H, W) = ({count}, {size[0]}, {size[1]}) "
                         f"for this frame, found {masks.shape}")
    return Proposals(boxes.astype(np.float32), None if masks is None else masks.astype(bool),
                     scores.astype(np.float32))


class ProposalProvider:
    """Object proposals of video frames by `method` ("oracle", "maskrcnn" or "files", see the
    module docstring).

    Args:
        method: the source.
        strength, miss_rate, spurious_rate, max_per_object, seed: the oracle jitter
            (`oracle_proposals`; `seed` with the video name and frame index gives each frame's
            random stream).
        weights, arch, score_threshold, nms_threshold, min_size, max_size: the Mask R-CNN
            (`MaskRCNNDetector`); `weights` a local state_dict file, required.
        segmenter_arch, segmenter_weights, crop_size, margin: the crop segmenter that gives
            "maskrcnn" boxes their masks (`CropSegmenter`; `segmenter_weights` a local state_dict
            file, None for random initialisation).
        files_root: the folder of method "files".
        cache: cache computed proposals in the vosbench cache folder
            (`$VOSBENCH_CACHE/proposals`) and read them back next time.
        device: where the Mask R-CNN and the crop segmenter run.

    Picklable: the networks are built on first use in each process.
    """

    def __init__(self, method: str = "oracle", strength: float = 0.09, miss_rate: float = 0.1,
                 spurious_rate: float = 0.3, max_per_object: int = 3, seed: int = 0,
                 weights: str | None = None, arch: str = "maskrcnn_resnet50_fpn",
                 score_threshold: float = 0.05, nms_threshold: float = 0.6, min_size: int = 800,
                 max_size: int = 1333, segmenter_arch: str = "deeplabv3_resnet101",
                 segmenter_weights: str | None = None, crop_size: int = 512,
                 margin: float = 0.15, files_root: str | Path | None = None,
                 cache: bool = True, device: str = "cpu") -> None:
        if method not in METHODS:
            raise ValueError(f"unknown proposal method {method!r}; known: {', '.join(METHODS)}")
        if (files_root is None) == (method == "files"):
            raise ValueError("files_root is given with method 'files', and only then")
        if method != "maskrcnn" and (weights is not None or segmenter_weights is not None):
            raise ValueError(f"weights are used by method 'maskrcnn' only, not {method!r}")
        if method == "maskrcnn" and weights is None:
            raise InputError("proposal method 'maskrcnn' needs a local Mask R-CNN weights file "
                             "(`weights`); vosbench never downloads weights")
        if strength < 0 or not 0 <= miss_rate <= 1 or not 0 <= spurious_rate <= 1 \
                or max_per_object < 1:
            raise ValueError(f"oracle jitter: strength ≥ 0, rates in [0, 1] and max_per_object ≥ "
                             f"1, got {strength}, {miss_rate}, {spurious_rate}, {max_per_object}")
        self.method = method
        self.jitter = dict(strength=strength, miss_rate=miss_rate, spurious_rate=spurious_rate,
                           max_per_object=max_per_object)
        self.seed = seed
        self.detector_settings = dict(weights=weights, arch=arch, score_threshold=score_threshold,
                                      nms_threshold=nms_threshold, min_size=min_size,
                                      max_size=max_size, device=device)
        self.segmenter_settings = dict(arch=segmenter_arch, weights=segmenter_weights,
                                       crop_size=crop_size, margin=margin)
        self.device = device
        self.files_root = None if files_root is None else Path(files_root)
        self.cache = cache and method != "files"
        self._detector = None
        self._segmenter = None

    @property
    def label(self) -> str:
        """What results rows say of these proposals: "oracle proposals", …"""
        return LABELS[self.method]

    @property
    def detector(self):
        """The `MaskRCNNDetector` (method "maskrcnn"), built on first use."""
        if self._detector is None:
            from vosbench.proposals.maskrcnn import MaskRCNNDetector

            self._detector = MaskRCNNDetector(**self.detector_settings)
        return self._detector

    @property
    def key(self) -> str | None:
        """Names the source and its settings in cache folders; None for method "files"."""
        if self.method == "oracle":
            jitter = self.jitter
            return (f"oracle-s{jitter['strength']}-m{jitter['miss_rate']}-"
                    f"f{jitter['spurious_rate']}-k{jitter['max_per_object']}-seed{self.seed}")
        return self.detector.key if self.method == "maskrcnn" else None

    def path(self, video: Video, index: int) -> Path | None:
        """The `.npz` file of frame `index`'s proposals (None: not cached)."""
        if self.files_root is not None:
            folder = self.files_root / video.name
        elif self.cache:
            from vosbench.datamodules.families import cache_root

            folder = (cache_root() / "proposals" / video.dataset / source_key(video) / self.key
                      / video.name)
        else:
            return None
        return folder / f"{video.frame_names[index]}.npz"

    def __call__(self, video: Video, index: int) -> Proposals:
        """Frame `index`'s proposals: boxes and scores, and masks except from method "maskrcnn"
        (then None: `segment` gives them)."""
        path = self.path(video, index)
        if self.method == "files" and not path.is_file():
            raise InputError(f"{path}: proposals file not found (method 'files' reads one .npz "
                             f"per frame under {self.files_root})")
        if path is not None and path.is_file():
            return read_proposals(path, tuple(video.size))
        if self.method == "oracle":
            if video.mask_files[index] is None:
                raise InputError(f"video {video.name!r}: oracle proposals need the ground truth "
                                 f"of every frame, and frame {video.frame_names[index]} has none")
            proposals = oracle_proposals(video.mask(index), frame_rng(self.seed, video.name,
                                                                      index), **self.jitter)
        else:
            boxes, scores = self.detector.detect([video.frame(index)])[0]
            proposals = Proposals(boxes, None, scores)
        if path is not None:
            write_proposals(path, proposals)
        return proposals

    def segment(self, frame, boxes, previous):
        """Masks of mask-less proposals by the crop segmenter: the (3, H, W) float frame in
        [0, 1], (P, 4) boxes, (P, H, W) float Q of the object each box is given to → (P, H, W)
        float probabilities (`CropSegmenter.forward`)."""
        if self._segmenter is None:
            from vosbench.proposals.segmenter import CropSegmenter

            self._segmenter = CropSegmenter(**self.segmenter_settings).eval().to(self.device)
        return self._segmenter(frame.to(self.device), boxes.to(self.device),
                               previous.to(self.device)).to(frame.device)
