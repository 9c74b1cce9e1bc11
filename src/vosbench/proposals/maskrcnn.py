"""STG-Net's detector (paper, "Proposal Generation" and "Implementation Details"): torchvision's
Mask R-CNN made class-agnostic, its boxes the object proposals of a frame.

The paper retrains Mask R-CNN with one foreground class; here any class count loads (read from the
weights file: COCO's 91 classes, or 2 for a class-agnostic model) and the classes are merged: every
detection of any class with a score of at least `score_threshold` (the paper's 0.05), then one
non-maximum suppression over all of them at `nms_threshold` (the paper's 0.6), the best
MAX_DETECTIONS kept. The model's own per-class suppression is switched off (threshold 1: it would
suppress a box of one class that the merged suppression keeps when the box that suppresses it
loses to a box of another class) and so is its cap on detections.

Boxes are those of `vosbench.proposals.boxes` (torchvision's already are): (x_min, y_min, x_max,
y_max) in pixels, continuous. The masks come from the crop segmenter
(`vosbench.proposals.segmenter`), so the mask head is dropped after loading and never runs.

Choices the paper leaves open:
- the backbone's BatchNorm runs in eval mode with eps 1e-5; torchvision's own COCO_V1 model
  freezes it with eps 0, so with COCO's weights the scores differ slightly from torchvision's
  (not measured: no COCO weights here);
- at most MAX_DETECTIONS = 100 proposals per frame (torchvision's default for Mask R-CNN), the
  highest-scored.
"""

import hashlib
from pathlib import Path

import numpy as np
import torch
from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2
from torchvision.ops import clip_boxes_to_image, nms

from vosbench.errors import InputError

ARCHITECTURES = {"maskrcnn_resnet50_fpn": maskrcnn_resnet50_fpn,
                 "maskrcnn_resnet50_fpn_v2": maskrcnn_resnet50_fpn_v2}
CLASS_KEY = "roi_heads.box_predictor.cls_score.weight"  # (classes incl. background, 1024)
MAX_DETECTIONS = 100  # proposals kept per frame after merging the classes
ALL_DETECTIONS = 2 ** 31 - 1  # the model's own cap on detections per image, switched off


def require_file(path: Path) -> None:
    """InputError naming `path` unless it is a file."""
    if not path.is_file():
        raise InputError(f"{path}: Mask R-CNN weights file not found (vosbench never downloads "
                         f"weights: save the state_dict of torchvision's maskrcnn_resnet50_fpn"
                         f"(weights=...) with torch.save on a machine with internet and copy it "
                         f"here)")


def file_digest(path: Path) -> str:
    """The sha256 of a file's bytes, as hex; InputError when there is no such file."""
    require_file(path)
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a Mask R-CNN saved with torch.save in a local file, on the CPU;
    InputError naming the file when it is missing, not a state dict or has no box classifier."""
    require_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for foreign files
        raise InputError(f"{path}: not a torch state_dict ({error})") from None
    if not isinstance(state, dict) or CLASS_KEY not in state:
        raise InputError(f"{path}: not the state_dict of a Mask R-CNN (no {CLASS_KEY})")
    return state


def build_model(arch: str, path: Path, score_threshold: float, min_size: int,
                max_size: int) -> MaskRCNN:
    """The Mask R-CNN `arch` with the weights of the file at `path` and as many classes, in eval
    mode, without its mask head; it keeps every detection of each class scored at least
    `score_threshold` (no per-class suppression, no cap), images resized to `min_size` pixels on
    their short side, at most `max_size` on the long one."""
    state = read_state_dict(path)
    # the model keeps scores > its threshold: the float32 just below keeps those ≥ score_threshold
    below = float(np.nextafter(np.float32(score_threshold), np.float32(0)))
    model = ARCHITECTURES[arch](weights=None, weights_backbone=None,
                                num_classes=state[CLASS_KEY].shape[0], min_size=min_size,
                                max_size=max_size, box_score_thresh=below, box_nms_thresh=1.0,
                                box_detections_per_img=ALL_DETECTIONS)
    try:  # BatchNorm fills in the counters that frozen-BatchNorm weights (COCO's) lack
        model.load_state_dict(state)
    except RuntimeError as error:  # missing or unexpected keys, shape mismatches
        raise InputError(f"{path}: does not fit {arch}: {str(error)[:300]}") from None
    model.roi_heads.mask_roi_pool = model.roi_heads.mask_head = None
    model.roi_heads.mask_predictor = None
    return model.eval()


def merge_classes(boxes: torch.Tensor, scores: torch.Tensor, score_threshold: float,
                  nms_threshold: float,
                  max_detections: int = MAX_DETECTIONS) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-agnostic proposals from the detections of all classes of one image: (N, 4) float
    boxes, (N,) float scores, whatever their classes → (P, 4) boxes and (P,) scores, those scored
    at least `score_threshold`, then non-maximum suppression over all of them (a box whose IoU
    with a higher-scored kept one exceeds `nms_threshold` goes), the best `max_detections`, by
    score descending."""
    confident = scores >= score_threshold
    boxes, scores = boxes[confident], scores[confident]
    keep = nms(boxes, scores, nms_threshold)[:max_detections]  # by score descending
    return boxes[keep], scores[keep]


class MaskRCNNDetector:
    """Class-agnostic object proposals of frames from a torchvision Mask R-CNN.

    The model is built on first use (the object pickles without it) from a local weights file.

    Args:
        weights: a state_dict file of `arch` with any number of classes (COCO's 91, or 2).
        arch: "maskrcnn_resnet50_fpn" or "maskrcnn_resnet50_fpn_v2".
        score_threshold: the least detection score kept (paper: 0.05).
        nms_threshold: the IoU above which the lower-scored of two boxes goes (paper: 0.6).
        min_size, max_size: the short side of the images the model sees, and the most its long
            side may have (pixels; torchvision's defaults).
        device: where the model runs.
    """

    def __init__(self, weights: str | Path, arch: str = "maskrcnn_resnet50_fpn",
                 score_threshold: float = 0.05, nms_threshold: float = 0.6, min_size: int = 800,
                 max_size: int = 1333, device: str = "cpu"):
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown Mask R-CNN architecture {arch!r}; known: "
                             f"{', '.join(ARCHITECTURES)}")
        self.weights = Path(weights)
        self.arch = arch
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.min_size = min_size
        self.max_size = max_size
        self.device = device
        self._digest: str | None = None
        self._model: MaskRCNN | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_model": None}

    @property
    def key(self) -> str:
        """The name of these proposals (their cache folder): the architecture, the first 10 hex
        digits of the sha256 of the weights file, the thresholds and the image sizes."""
        if self._digest is None:
            self._digest = file_digest(self.weights)
        return (f"{self.arch}-{self._digest[:10]}-s{self.score_threshold}-n{self.nms_threshold}"
                f"-{self.min_size}-{self.max_size}")

    @property
    def model(self) -> MaskRCNN:
        """The Mask R-CNN, built on first use, in eval mode on `device`."""
        if self._model is None:
            self._model = build_model(self.arch, self.weights, self.score_threshold,
                                      self.min_size, self.max_size).to(self.device)
        return self._model

    @torch.inference_mode()
    def detect(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(H, W, 3) uint8 RGB frames (sizes may differ) → per frame, its proposals: boxes (P, 4)
        float32 (x_min, y_min, x_max, y_max) in pixels, continuous, inside the frame, and scores
        (P,) float32 in [score_threshold, 1], by score descending."""
        for image in images:
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"detect takes (H, W, 3) uint8 RGB frames, got {image.dtype} "
                                 f"{image.shape}")
        if not images:
            return []
        tensors = [torch.from_numpy(np.ascontiguousarray(image)).to(self.device)
                   .permute(2, 0, 1) / 255.0 for image in images]
        proposals = []
        for detections, image in zip(self.model(tensors), images):
            boxes, scores = merge_classes(detections["boxes"], detections["scores"],
                                          self.score_threshold, self.nms_threshold)
            # torchvision scales its boxes back to the frame with rounding errors past its edges
            boxes = clip_boxes_to_image(boxes, image.shape[:2])
            proposals.append((boxes.cpu().numpy().astype(np.float32),
                              scores.cpu().numpy().astype(np.float32)))
        return proposals
