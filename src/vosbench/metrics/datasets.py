"""Scoring label PNGs against a dataset's own ground truth (`vosbench eval --dataset`).

The ground truth is read by the dataset readers (`datamodules.readers`) in its native format:
DAVIS PNGs, YouTube-Objects thresholded JPEG labels, FBMS PGM/PPM region maps, SegTrack-v2
per-object folders, YouTube-VOS PNGs with meta.json. Predictions are label PNGs
PRED/<video>/<frame>.png, named after the video's frames. The ground-truth frames of a video are
its annotated frames, in order; the protocol's frame choice applies to that list.

YouTube-VOS: the ground truth of valid and test is not public (their PNGs hold only each object's
first mask), so the protocol runs on held-out videos of train, whose PNGs label every object
present. An object is "seen" when its category occurs among the objects of the other train videos,
on which a method may have been trained.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from vosbench.datamodules.davis import davis2017_videos
from vosbench.datamodules.readers import default_split, read_videos
from vosbench.datamodules.video import Video
from vosbench.errors import InputError
from vosbench.metrics.jobs import (
    GroundTruth,
    SequenceJob,
    run_jobs,
    select_sequences,
    temporal_sequences,
)
from vosbench.metrics.protocols import (
    Protocol,
    SequenceScores,
    frames_after_first_appearance,
    get_protocol,
)

# dataset -> the protocols that apply to its ground truth, the default first
DATASET_PROTOCOLS = {
    "davis2016": ("davis2016",),
    "davis2017": ("davis2017", "davis2016", "davis2017-unsupervised"),
    "synthetic": ("davis2017", "davis2016"),
    "youtube-objects": ("youtube-objects",),
    "fbms": ("fbms",),
    "segtrackv2": ("segtrackv2",),
    "youtube-vos": ("youtube-vos",),
}
DAVIS_LAYOUT = ("davis2016", "davis2017", "synthetic")  # Annotations/db_info.yml selects T


class DatasetScores(NamedTuple):
    """The scored videos, and for youtube-objects each video's category (else None)."""

    sequences: list[SequenceScores]
    categories: dict[str, str] | None


def dataset_protocol(dataset: str, name: str | None = None) -> Protocol:
    """The protocol `name` (default: the dataset's own) if it applies to the dataset."""
    if dataset not in DATASET_PROTOCOLS:
        raise InputError(f"dataset {dataset!r} has no evaluation protocol; known: "
                         f"{', '.join(DATASET_PROTOCOLS)}")
    applicable = DATASET_PROTOCOLS[dataset]
    if name is not None and name not in applicable:
        raise InputError(f"protocol {name} does not apply to dataset {dataset}; its ground truth "
                         f"is scored with {' or '.join(applicable)}")
    return get_protocol(name or applicable[0])


@dataclass(frozen=True)
class VideoJob(SequenceJob):
    """A video read by a dataset reader; its annotated frames are the ground-truth frames.

    masks: the video's (T, H, W) label maps when already decoded (the harness's loaded videos),
    so that they are not read again; None: read from the annotation files.
    """

    video: Video
    masks: np.ndarray | None = field(default=None, compare=False)

    def mask(self, index: int) -> np.ndarray:
        """The (H, W) labels of annotated frame `index`."""
        return self.video.mask(index) if self.masks is None else self.masks[index]

    @property
    def num_frames(self) -> int:
        return len(self.video.annotated)

    @property
    def object_ids(self) -> tuple[int, ...] | None:
        """youtube-vos: the ids of the video's objects in meta.json, the only labels its ground
        truth and predictions may hold; None for the other protocols."""
        return tuple(self.video.object_frames) if self.protocol.per_object_frames else None

    def read_ground_truth(self) -> GroundTruth:
        if self.protocol.per_object_frames:
            return self._read_per_object_frames()
        annotated, names = self.video.annotated, self.video.frame_names
        where = str(self.video.mask_files[annotated[0]].parent)
        indices = [annotated[i] for i in self.evaluated_indices(len(annotated), where)]
        gt = [self.mask(i) for i in indices]
        # K comes from the first annotated frame, decoded for that alone where it is not scored
        needs_first = indices[0] != annotated[0] and self.protocol.reading != "single"
        first = self.mask(annotated[0]) if needs_first else gt[0]
        return GroundTruth([names[i] for i in indices], gt, self.protocol.num_objects(first))

    def _read_per_object_frames(self) -> GroundTruth:
        """youtube-vos: the annotated frames from the first one scored for some object on, each
        object scored after its first appearance."""
        annotated = self.video.annotated
        masks = [self.mask(i) for i in annotated]
        for index, labels in zip(annotated, masks):
            self._check_object_ids(self.video.mask_files[index], labels)
        first_scored = frames_after_first_appearance(masks)
        if not first_scored:
            return GroundTruth([], [], 0)
        begin = min(first_scored.values())
        return GroundTruth([self.video.frame_names[i] for i in annotated[begin:]], masks[begin:],
                           max(self.object_ids),
                           {obj: start - begin for obj, start in first_scored.items()})

    def read_prediction(self, frame: str) -> np.ndarray:
        labels = super().read_prediction(frame)
        if self.object_ids is not None:
            self._check_object_ids(self.pred_dir / f"{frame}.png", labels)
        return labels

    def _check_object_ids(self, path: Path, labels: np.ndarray) -> None:
        """youtube-vos: every label of a (H, W) uint8 map is an object of the video in meta.json."""
        present = np.flatnonzero(np.bincount(labels.ravel(), minlength=256)).tolist()
        unknown = sorted(set(present) - {0, *self.object_ids})
        if unknown:
            listed = ", ".join(map(str, self.object_ids))
            raise InputError(f"{path}: object id {unknown[0]} is not an object of video "
                             f"{self.name!r} (meta.json lists {listed})")


def read_ground_truth_videos(dataset: str, root: Path, split: str,
                             protocol: Protocol) -> list[Video]:
    """The videos of a split whose ground truth is public, read as `protocol` needs them."""
    if dataset == "youtube-vos" and split != "train":
        raise InputError(f"youtube-vos {split}: the ground truth is not public (its PNGs hold "
                         f"only each object's first mask); submit {split} to the evaluation "
                         f"server, or score held-out train videos locally: --split train "
                         f"--sequences HELD_OUT.txt (the other train videos define the seen "
                         f"categories)")
    if dataset in ("davis2017", "synthetic") and split.startswith("test"):
        raise InputError(f"{dataset} {split}: only the first frame is annotated, the ground truth "
                         f"is not public; submit {split} to the evaluation server")
    if protocol.name == "davis2017-unsupervised":
        if not root.is_dir():
            raise InputError(f"{root}: dataset folder not found")
        return davis2017_videos(root, split, unsupervised=True, dataset=dataset)
    return read_videos(dataset, root, split)


def seen_categories(videos: list[Video], held_out: list[str]) -> set[str]:
    """youtube-vos: the categories of the objects of the train videos not held out."""
    excluded = set(held_out)
    return {category for video in videos if video.name not in excluded
            for category in video.object_categories.values()}


def mark_seen(sequences: list[SequenceScores], videos: dict[str, Video], seen: set[str],
              meta: Path) -> None:
    """youtube-vos: give every scored object its category and whether that category is seen."""
    for seq in sequences:
        for obj in seq.objects:
            category = videos[seq.name].object_categories.get(obj.object_id)
            if category is None:
                raise InputError(f"{meta}: object {obj.object_id} of video {seq.name!r} has no "
                                 f"category; youtube-vos sorts objects into seen and unseen "
                                 f"categories")
            obj.category, obj.seen = category, category in seen


def score_dataset(protocol: Protocol, dataset: str, root: str | Path, pred_root: str | Path, *,
                  split: str | None = None, sequences: list[str] | None = None,
                  workers: int = 1, with_t: bool | None = None,
                  progress: bool = False) -> DatasetScores:
    """Score a prediction folder against the ground truth of one split of a dataset folder.

    Args:
        protocol: one of `DATASET_PROTOCOLS[dataset]` (see `dataset_protocol`).
        dataset, root, split: as `read_videos` takes them (default split: the dataset's
            evaluation split). youtube-vos: only train, with `sequences` the held-out videos.
        pred_root: folder of <video>/<frame>.png label maps for the annotated frames.
        sequences: a subset, in the order to report; default every video of the split.
        workers, with_t, progress: as `score_folders` (DAVIS layouts: Annotations/db_info.yml
            selects the T sequences).

    Returns:
        One SequenceScores per video, and for youtube-objects the videos' categories.
    """
    dataset_protocol(dataset, protocol.name)
    root, pred_root, split = Path(root), Path(pred_root), split or default_split(dataset)
    videos = read_ground_truth_videos(dataset, root, split, protocol)
    if protocol.per_object_frames and sequences is None:
        raise InputError("youtube-vos train: --sequences must name the held-out videos to score "
                         "(comma-separated or a file, one per line); the other train videos "
                         "define the seen categories, so no method may have trained on the "
                         "held-out ones")
    by_name = {video.name: video for video in videos}
    names = select_sequences(list(by_name), pred_root, sequences, f"{dataset} {split} ({root})")
    with_t = protocol.temporal if with_t is None else with_t
    db_info = root / "Annotations" / "db_info.yml" if dataset in DAVIS_LAYOUT else None
    temporal = temporal_sequences(names, with_t, db_info)
    jobs = [VideoJob(protocol, name, pred_root / name, temporal[name], by_name[name])
            for name in names]
    scores = run_jobs(jobs, workers, progress)
    if protocol.aggregate == "seen-unseen":
        mark_seen(scores, by_name, seen_categories(videos, names), root / split / "meta.json")
    categories = ({name: by_name[name].category for name in names}
                  if protocol.aggregate == "categories" else None)
    return DatasetScores(scores, categories)
