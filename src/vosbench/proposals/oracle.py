"""Oracle proposals: detector-like boxes and masks made by perturbing a frame's ground truth, for
STG-Net on data without a trained detector (tests, the synthetic set). They use the ground truth
of the frames being segmented, so every result made with them says so ("oracle proposals").

Per object of the frame (labels 1 … 254): missed with probability `miss_rate`; otherwise
1 … `max_per_object` proposals, each the object's mask shifted by (dx, dy) ~ N(0, strength · (w,
h)) pixels and grown or shrunk by a disc of radius ~ N(0, strength · min(w, h) / 2), cut to its
box, which is the true box moved with the mask, its width and height scaled by independent
exp(N(0, strength)).
(w, h) is the object's box size. Per frame, one spurious proposal with probability
`spurious_rate`: an ellipse in a box of an object's size at a uniform position. Scores mimic a
detector's: the box IoU with its object plus N(0, 0.1), spurious ones U(0.05, 0.5), all
clipped to [0.05, 1].

`strength` sets how far proposals are from the truth. On the synthetic default the mean mask IoU
of a proposal with its object is 1.0 at strength 0, 0.82 at 0.05, 0.73 at 0.08, 0.70 at the
default 0.09 and 0.68 at 0.10 (`benchmarks/oracle_proposals.py`, 150 annotated frames).
"""

import zlib
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torchvision.ops import box_iou

from vosbench.proposals.boxes import mask_boxes

MIN_SCORE = 0.05  # the detection score threshold of the paper's Mask R-CNN


def box_of(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool → (4,) float32 box of its pixels (zeros when empty)."""
    return mask_boxes(torch.from_numpy(mask)[None]).numpy()[0]


@dataclass(frozen=True)
class Proposals:
    """The proposals of one frame. boxes: (P, 4) float32 (x_min, y_min, x_max, y_max) in pixels,
    continuous (a one-pixel box is (x, y, x + 1, y + 1)). masks: (P, H, W) bool, full frame, or
    None for boxes without masks yet (a detector's, see `vosbench.proposals.provider`). scores:
    (P,) float32 detection scores in [0, 1]."""

    boxes: np.ndarray
    masks: np.ndarray | None
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def frame_rng(seed: int, video: str, index: int) -> np.random.Generator:
    """The random stream of frame `index` of `video`: the same proposals whatever the order in
    which frames are asked for."""
    return np.random.default_rng([seed, zlib.crc32(video.encode("utf-8")), index])


def shift(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """(H, W) bool moved by dx columns and dy rows; what leaves the frame is lost."""
    height, width = mask.shape
    translation = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
    return cv2.warpAffine(mask.view(np.uint8), translation, (width, height),
                          flags=cv2.INTER_NEAREST).astype(bool)


def grow(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilated by a disc of `radius` pixels (eroded for a negative radius)."""
    if radius == 0:
        return mask
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(radius) + 1,) * 2)
    operation = cv2.dilate if radius > 0 else cv2.erode
    return operation(mask.view(np.uint8), disc).astype(bool)


def clip_box(box: np.ndarray, height: int, width: int) -> np.ndarray:
    """(4,) box cut to the frame, float32."""
    return np.clip(box, 0, [width, height, width, height]).astype(np.float32)


def box_region(box: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool, the pixels a (4,) box touches."""
    region = np.zeros(shape, bool)
    x0, y0 = np.floor(box[:2]).astype(int)
    x1, y1 = np.ceil(box[2:]).astype(int)
    region[y0:y1, x0:x1] = True
    return region


def ellipse_in(box: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool, the pixels whose centres lie in the ellipse inscribed in a (4,) box."""
    ys, xs = np.mgrid[:shape[0], :shape[1]] + 0.5
    centre, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) / 2
    return ((xs - centre[0]) / half[0]) ** 2 + ((ys - centre[1]) / half[1]) ** 2 <= 1


@dataclass(frozen=True)
class Jitter:
    """How one proposal departs from its object: a shift of (dx, dy) pixels of mask and box, the
    mask grown by `radius` pixels (shrunk if negative), the box's width and height multiplied by
    `scales` (2,) about its centre."""

    dx: int
    dy: int
    radius: int
    scales: np.ndarray


def draw_jitter(rng: np.random.Generator, strength: float, size: np.ndarray) -> Jitter:
    """The jitter of a proposal of an object whose box is `size` (w, h) pixels: (dx, dy) ~
    N(0, strength · (w, h)), radius ~ N(0, strength · min(w, h) / 2), both rounded, and
    independent log-normal scales exp(N(0, strength))."""
    dx, dy = np.rint(rng.normal(0, strength * size))
    radius = int(np.rint(rng.normal(0, strength * size.min() / 2)))
    return Jitter(int(dx), int(dy), radius, np.exp(rng.normal(0, strength, 2)))


def jittered(mask: np.ndarray, jitter: Jitter) -> tuple[np.ndarray, np.ndarray]:
    """One proposal of an object: its (H, W) bool mask → (box (4,) float32, mask (H, W) bool), the
    box the object's moved and scaled, the mask moved, grown and cut to the box."""
    box = box_of(mask)
    centre = (box[:2] + box[2:]) / 2 + (jitter.dx, jitter.dy)
    half = (box[2:] - box[:2]) * jitter.scales / 2
    proposal = clip_box(np.concatenate([centre - half, centre + half]), *mask.shape)
    moved = grow(shift(mask, jitter.dx, jitter.dy), jitter.radius)
    return proposal, moved & box_region(proposal, mask.shape)


def spurious(shape: tuple[int, int], size: np.ndarray,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A proposal of nothing: the ellipse of a box of `size` (w, h) (at most the frame's) at a
    uniform place in the frame."""
    height, width = shape
    size = np.minimum(size, [width, height])
    corner = rng.uniform(0, [width - size[0], height - size[1]])
    box = np.concatenate([corner, corner + size]).astype(np.float32)
    return box, ellipse_in(box, shape)


def oracle_proposals(labels: np.ndarray, rng: np.random.Generator, strength: float = 0.09,
                     miss_rate: float = 0.1, spurious_rate: float = 0.3,
                     max_per_object: int = 3) -> Proposals:
    """Jittered proposals of the objects of one frame's (H, W) uint8 labels (0 background,
    255 void, the rest objects), see the module docstring; boxes in the order of the object ids,
    the spurious one last."""
    boxes, masks, scores = [], [], []
    objects = [label for label in np.unique(labels).tolist() if label not in (0, 255)]
    true_boxes = {label: box_of(labels == label) for label in objects}
    for label in objects:
        if rng.random() < miss_rate:
            continue
        size = true_boxes[label][2:] - true_boxes[label][:2]
        for _ in range(int(rng.integers(1, max_per_object + 1))):
            box, mask = jittered(labels == label, draw_jitter(rng, strength, size))
            boxes.append(box)
            masks.append(mask)
            overlap = box_iou(torch.from_numpy(box)[None],
                              torch.from_numpy(true_boxes[label])[None])
            scores.append(float(overlap) + rng.normal(0, 0.1))
    if objects and rng.random() < spurious_rate:
        template = true_boxes[objects[int(rng.integers(len(objects)))]]
        box, mask = spurious(labels.shape, template[2:] - template[:2], rng)
        boxes.append(box)
        masks.append(mask)
        scores.append(rng.uniform(MIN_SCORE, 0.5))
    count = len(scores)
    return Proposals(np.array(boxes, np.float32).reshape(count, 4),
                     np.array(masks, bool).reshape(count, *labels.shape),
                     np.clip(np.array(scores, np.float32), MIN_SCORE, 1))
