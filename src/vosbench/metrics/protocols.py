"""Evaluation protocols: which objects and frames are scored, and how one sequence is scored.

| protocol               | objects                               | frames               | measures |
|------------------------|---------------------------------------|----------------------|----------|
| davis2016              | one: every nonzero pixel              | 1 … N−2              | J, F, T  |
| davis2017              | ids 1..K of GT frame 0, matched by id | 1 … N−2              | J, F     |
| davis2017-unsupervised | ≤ 20 proposals, Hungarian-matched     | all, void out        | J, F     |
| youtube-objects        | one                                   | all annotated        | J        |
| fbms                   | one                                   | all annotated        | J, F     |
| segtrackv2             | one                                   | all annotated        | J        |
| youtube-vos            | meta.json ids, matched by id          | after 1st appearance | J, F     |

`score_sequence` takes label arrays and returns per-frame values and statistics; it is the one
implementation behind `vosbench eval` (folders or dataset readers) and the training loops.

youtube-vos scores each object on its own frames: the annotated frames after the first one that
holds it (that frame's mask is what a semi-supervised method is given; earlier frames have nothing
to score). `frames_after_first_appearance` finds them and `score_sequence(first_scored=…)` applies
them; objects are averaged separately over seen and unseen categories (see summary.py).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from vosbench.errors import InputError
from vosbench.metrics.boundary import boundary_radius, f_measure, mask_boundary
from vosbench.metrics.region import jaccard_from_overlap, label_overlap
from vosbench.metrics.statistics import nanmean, statistics
from vosbench.metrics.temporal import sequence_stability

VOID_LABEL = 255
MAX_PROPOSALS = 20  # davis2017-unsupervised: at most 20 object proposals per sequence


@dataclass(frozen=True)
class Protocol:
    """How a benchmark reads objects and frames.

    reading: "single" (foreground = any nonzero label), "by-id" (GT object k vs predicted label k,
    K from GT frame 0, or for youtube-vos the video's largest object id) or "proposals" (predicted
    ids matched to GT objects by the Hungarian method).
    skip_ends: the first and last frames are not scored. void: GT label 255 is left out of J and F.
    per_object_frames: each object is scored from its own first scored frame on (`first_scored`
    of `score_sequence`), not on every evaluated frame.
    aggregate: "objects" (mean over all objects), "categories" (mean over category means),
    "sequences" (mean over sequences; the mean over frames is reported beside it) or
    "seen-unseen" (means over the objects of seen and of unseen categories).
    """

    name: str
    reading: str
    skip_ends: bool
    measures: tuple[str, ...]
    aggregate: str
    void: bool = False
    temporal: bool = False  # T is computed by default (unless the user turns it off)
    per_object_frames: bool = False

    def evaluated_frames(self, num_frames: int) -> range:
        """Indices of the scored frames among the `num_frames` ground-truth frames."""
        return range(1, num_frames - 1) if self.skip_ends else range(num_frames)

    def num_objects(self, first_gt: np.ndarray) -> int:
        """Number of GT objects, read from the first GT frame (void counts as background)."""
        if self.reading == "single":
            return 1
        labels = first_gt[first_gt != VOID_LABEL]
        return int(labels.max()) if labels.size else 0


PROTOCOLS = {p.name: p for p in (
    Protocol("davis2016", "single", skip_ends=True, measures=("J", "F"), aggregate="objects",
             temporal=True),
    Protocol("davis2017", "by-id", skip_ends=True, measures=("J", "F"), aggregate="objects"),
    Protocol("davis2017-unsupervised", "proposals", skip_ends=False, measures=("J", "F"),
             aggregate="objects", void=True),
    Protocol("youtube-objects", "single", skip_ends=False, measures=("J",), aggregate="categories"),
    Protocol("fbms", "single", skip_ends=False, measures=("J", "F"), aggregate="sequences"),
    Protocol("segtrackv2", "single", skip_ends=False, measures=("J",), aggregate="sequences"),
    Protocol("youtube-vos", "by-id", skip_ends=False, measures=("J", "F"), aggregate="seen-unseen",
             per_object_frames=True),
)}


def get_protocol(name: str) -> Protocol:
    """The protocol called `name`; an unknown name lists the known ones."""
    if name not in PROTOCOLS:
        raise InputError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


@dataclass
class ObjectScores:
    """Per-frame values (None when not computed) and their statistics for one GT object.

    first_frame: index, among the sequence's frames, of the first frame scored for this object
    (0 except for per-object frames). category, seen: youtube-vos only, the object's category and
    whether it occurs among the training objects (set by the dataset evaluation).
    """

    object_id: int
    J: np.ndarray | None = None
    F: np.ndarray | None = None
    T: np.ndarray | None = None
    stats: dict[str, float] = field(default_factory=dict)
    first_frame: int = 0
    category: str | None = None
    seen: bool | None = None

    def summarize(self) -> "ObjectScores":
        """Fill `stats` with Mean/Recall/Decay of J and F and the mean of T."""
        for measure in ("J", "F"):
            values = getattr(self, measure)
            if values is not None:
                mean, recall, decay = statistics(values)
                self.stats.update({f"{measure}-Mean": mean, f"{measure}-Recall": recall,
                                   f"{measure}-Decay": decay})
        if self.T is not None:
            self.stats["T-Mean"] = nanmean(self.T)
        return self


@dataclass
class SequenceScores:
    """The scores of one sequence: its evaluated frame names and one entry per GT object, in the
    order the official toolkit aggregates them."""

    name: str
    frames: list[str]
    objects: list[ObjectScores]

    @property
    def t_mean(self) -> float | None:
        """Mean T over the sequence's objects (NaN if no pair had a polygon); None if not
        computed."""
        means = [obj.stats["T-Mean"] for obj in self.objects if "T-Mean" in obj.stats]
        return nanmean(np.array(means)) if means else None


def _object_masks(labels: np.ndarray, count: int, void: np.ndarray | None) -> list[np.ndarray]:
    """Bool masks of labels 1..count (void pixels removed when given)."""
    masks = [labels == k for k in range(1, count + 1)]
    return masks if void is None else [mask & ~void for mask in masks]


def _pairwise_scores(gt: np.ndarray, pred: np.ndarray, num_gt: int, num_pred: int,
                     void: np.ndarray | None, measures: tuple[str, ...], radius: int,
                     all_pairs: bool) -> dict[str, np.ndarray]:
    """J and F of one frame for every (predicted, GT) object pair, or only the pairs (k, k).

    Returns {measure: (num_pred, num_gt) array} (all_pairs) or {measure: (num_gt,) array}.
    """
    scores = {}
    if "J" in measures:
        jaccard = jaccard_from_overlap(label_overlap(gt, pred, num_gt, num_pred, void)).T
        scores["J"] = jaccard if all_pairs else np.diagonal(jaccard).copy()
    if "F" in measures:
        gt_bounds = [mask_boundary(m, radius) for m in _object_masks(gt, num_gt, void)]
        pred_bounds = [mask_boundary(m, radius) for m in _object_masks(pred, num_pred, void)]
        if all_pairs:
            scores["F"] = np.array([[f_measure(g, p) for g in gt_bounds] for p in pred_bounds],
                                   dtype=np.float64).reshape(num_pred, num_gt)
        else:
            scores["F"] = np.array([f_measure(g, p) for g, p in zip(gt_bounds, pred_bounds)])
    return scores


def _check_shapes(name: str, gt: Sequence[np.ndarray], pred: Sequence[np.ndarray],
                  frame_names: Sequence[str]) -> None:
    if len(gt) != len(pred):
        raise InputError(f"sequence {name!r}: {len(gt)} ground-truth frames but "
                         f"{len(pred)} predicted frames")
    for gt_frame, pred_frame, frame in zip(gt, pred, frame_names):
        if pred_frame.shape != gt_frame.shape:
            raise InputError(f"sequence {name!r}: prediction {frame} is "
                             f"{size_text(pred_frame)} but the ground truth is "
                             f"{size_text(gt_frame)}")


def _as_labels(name: str, frames: Sequence[np.ndarray], what: str) -> list[np.ndarray]:
    """The frames as uint8 label maps (a no-op for uint8 input)."""
    labels = []
    for frame in frames:
        frame = np.asarray(frame)
        if frame.dtype != np.uint8:
            if frame.size and (frame.min() < 0 or frame.max() > 255):
                raise InputError(f"sequence {name!r}: {what} labels must lie in 0..255")
            frame = frame.astype(np.uint8)
        labels.append(frame)
    return labels


def size_text(labels: np.ndarray) -> str:
    """"WxH" of a label map, as image sizes are usually written."""
    return "x".join(str(n) for n in labels.shape[1::-1]) if labels.ndim == 2 else str(labels.shape)


def score_sequence(protocol: Protocol, gt: Sequence[np.ndarray], pred: Sequence[np.ndarray],
                   num_objects: int, *, name: str = "sequence",
                   frame_names: Sequence[str] | None = None, with_t: bool | None = None,
                   first_scored: Mapping[int, int] | None = None) -> SequenceScores:
    """Score the evaluated frames of one sequence.

    Args:
        protocol: one of PROTOCOLS.
        gt, pred: the evaluated frames only (see `Protocol.evaluated_frames`), each an (H, W)
            integer label map (0 background, 1..K objects, 255 void).
        num_objects: K, from `protocol.num_objects(first GT frame)`; youtube-vos: the largest
            object id of the video.
        name, frame_names: used in error messages and in the result.
        with_t: compute T (temporal stability of consecutive predicted masks, per object);
            default: the protocol's choice.
        first_scored: required by (and only by) protocols with per-object frames (youtube-vos):
            object id → index of its first scored frame among `gt`, e.g. from
            `frames_after_first_appearance(gt)`. Only these objects are scored, each on its
            frames from there on.

    Returns:
        SequenceScores with per-frame J/F (and per-pair T) for each GT object.
    """
    if protocol.per_object_frames != (first_scored is not None):
        raise ValueError(f"protocol {protocol.name}: first_scored is "
                         f"{'required' if protocol.per_object_frames else 'not used'}")
    if first_scored is not None and any(not 1 <= obj <= num_objects or not 0 <= start < len(gt)
                                        for obj, start in first_scored.items()):
        raise ValueError(f"first_scored {dict(first_scored)}: ids must lie in 1..{num_objects} "
                         f"and frames in 0..{len(gt) - 1}")
    frame_names = list(frame_names or [f"{i:05d}" for i in range(len(gt))])
    gt, pred = _as_labels(name, gt, "ground-truth"), _as_labels(name, pred, "predicted")
    _check_shapes(name, gt, pred, frame_names)
    if not gt:
        raise InputError(f"sequence {name!r}: no frame to evaluate")
    with_t = protocol.temporal if with_t is None else with_t
    height, width = gt[0].shape
    radius = boundary_radius(height, width)

    if protocol.reading == "single":
        gt = [(frame != 0).view(np.uint8) for frame in gt]
        pred = [(frame != 0).view(np.uint8) for frame in pred]

    num_pred = max(int(frame.max()) for frame in pred)
    if protocol.reading == "by-id" and num_pred > num_objects:
        frame = next(f for f, labels in zip(frame_names, pred) if labels.max() > num_objects)
        raise InputError(f"sequence {name!r}: prediction {frame} has object id {num_pred}, but the "
                         f"ground truth has objects 1..{num_objects}"
                         f"{' (read from its first frame)' if first_scored is None else ''}")
    if protocol.reading == "proposals" and num_pred > MAX_PROPOSALS:
        frame = next(f for f, labels in zip(frame_names, pred) if labels.max() > MAX_PROPOSALS)
        raise InputError(f"sequence {name!r}: prediction {frame} has id {num_pred}; at most "
                         f"{MAX_PROPOSALS} proposals (ids 1..{MAX_PROPOSALS}) are allowed")
    num_pred = max(num_pred, num_objects)  # missing predicted objects are empty masks
    all_pairs = protocol.reading == "proposals"

    per_frame = [_pairwise_scores(g, p, num_objects, num_pred,
                                  (g == VOID_LABEL) if protocol.void else None,
                                  protocol.measures, radius, all_pairs)
                 for g, p in zip(gt, pred)]
    # (frames, ...) -> (..., frames), the contiguous layout of the official per-object arrays, so
    # that NumPy's reductions add in the same order and give the same bits
    values = {m: np.ascontiguousarray(np.moveaxis(np.array([s[m] for s in per_frame]), 0, -1))
              for m in protocol.measures}

    if all_pairs:
        pred_ids, gt_ids = _match_proposals(values)
        values = {m: v[pred_ids, gt_ids] for m, v in values.items()}
    else:
        pred_ids = gt_ids = np.arange(num_objects)

    objects = []
    for row, (pred_index, gt_index) in enumerate(zip(pred_ids, gt_ids)):
        object_id = int(gt_index) + 1
        if first_scored is not None and object_id not in first_scored:
            continue
        start = 0 if first_scored is None else first_scored[object_id]
        obj = ObjectScores(object_id, first_frame=start,
                           **{m: v[row][start:] for m, v in values.items()})
        if with_t:
            obj.T = sequence_stability([labels == pred_index + 1 for labels in pred[start:]])
        objects.append(obj.summarize())
    return SequenceScores(name, frame_names, objects)


def frames_after_first_appearance(gt: Sequence[np.ndarray]) -> dict[int, int]:
    """youtube-vos: object id → index of its first scored frame, the one after the first GT frame
    that holds the object (the mask a semi-supervised method is given there is not scored, and
    before it there is nothing to score). An object first seen in the last frame has no scored
    frame and is left out.

    gt: every annotated (H, W) label map of the video, in order (exhaustive: each labels every
    object present, as YouTube-VOS train PNGs do).
    """
    first: dict[int, int] = {}
    for index, labels in enumerate(gt):
        counts = np.bincount(np.asarray(labels, np.uint8).ravel(), minlength=VOID_LABEL + 1)
        for label in np.flatnonzero(counts[1:VOID_LABEL]) + 1:
            first.setdefault(int(label), index)
    return {obj: index + 1 for obj, index in sorted(first.items()) if index + 1 < len(gt)}


def _match_proposals(values: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian matching of proposals to GT objects maximising the mean of J-Mean and F-Mean.

    `values[m]` has shape (num_pred, num_gt, frames). Returns (proposal indices, GT indices) in
    the order of scipy's `linear_sum_assignment` (ascending proposal index), as the official code.
    """
    # imported here: scipy.optimize takes a third of a second to load, and only this needs it
    from scipy.optimize import linear_sum_assignment

    if "J" in values and "F" in values:
        score = (np.mean(values["J"], axis=2) + np.mean(values["F"], axis=2)) / 2
    else:
        score = np.mean(next(iter(values.values())), axis=2)
    return linear_sum_assignment(-score)
