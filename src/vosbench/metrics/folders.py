"""Scoring folders of label PNGs: GT/<seq>/<frame>.png against PRED/<seq>/<frame>.png.

Sequences are scored in parallel worker processes (see jobs.py). Any problem with the input raises
InputError naming the sequence and file.
"""

from dataclasses import dataclass
from pathlib import Path

from vosbench.errors import InputError
from vosbench.io import read_label_png
from vosbench.metrics.jobs import (
    GroundTruth,
    SequenceJob,
    run_jobs,
    select_sequences,
    temporal_sequences,
)
from vosbench.metrics.protocols import Protocol, SequenceScores, size_text


@dataclass(frozen=True)
class FolderJob(SequenceJob):
    """A sequence whose ground truth is a folder of label PNGs, one per frame, all scored."""

    gt_dir: Path

    @property
    def num_frames(self) -> int:
        return len(list(self.gt_dir.glob("*.png")))

    def read_ground_truth(self) -> GroundTruth:
        gt_files = sorted(self.gt_dir.glob("*.png"))
        if not gt_files:
            raise InputError(f"sequence {self.name!r}: no PNG frames in {self.gt_dir}")
        indices = self.evaluated_indices(len(gt_files), str(self.gt_dir))
        gt = [read_label_png(gt_files[i]) for i in indices]
        for i, labels in zip(indices, gt):
            if labels.shape != gt[0].shape:
                raise InputError(f"sequence {self.name!r}: {gt_files[i]} is {size_text(labels)} "
                                 f"but {gt_files[indices[0]].name} is {size_text(gt[0])}")
        # K comes from GT frame 0, decoded for that alone where it is not scored (davis2017)
        needs_first = indices[0] != 0 and self.protocol.reading != "single"
        first = read_label_png(gt_files[0]) if needs_first else gt[0]
        return GroundTruth([gt_files[i].stem for i in indices], gt,
                           self.protocol.num_objects(first))


def score_folders(protocol: Protocol, gt_root: str | Path, pred_root: str | Path, *,
                  sequences: list[str] | None = None, workers: int = 1,
                  with_t: bool | None = None, progress: bool = False) -> list[SequenceScores]:
    """Score every sequence of a prediction folder against a ground-truth folder.

    Args:
        protocol: how objects and frames are read (see `protocols.PROTOCOLS`); not youtube-vos,
            whose objects come from meta.json (see `datasets.score_dataset`).
        gt_root, pred_root: folders holding <seq>/<frame>.png label maps.
        sequences: a subset, in the order to report; default all GT sequences, sorted.
        workers: number of worker processes (1: score in this process; see `jobs.run_jobs`).
        with_t: compute T; default the protocol's choice. With db_info.yml beside the GT
            folder, only its `eval_t` sequences get T.
        progress: show a progress bar on stderr.

    Returns:
        One SequenceScores per sequence, in order.
    """
    if protocol.per_object_frames:
        raise InputError(f"protocol {protocol.name} reads its objects and categories from the "
                         f"dataset's meta.json: use --dataset {protocol.name} --data-root ROOT "
                         f"instead of --gt-root")
    gt_root, pred_root = Path(gt_root), Path(pred_root)
    if not gt_root.is_dir():
        raise InputError(f"{gt_root}: ground-truth folder not found (expected one folder per "
                         f"sequence)")
    available = sorted(p.name for p in gt_root.iterdir() if p.is_dir())
    if not available:
        raise InputError(f"{gt_root}: no sequence folders in the ground-truth folder")
    names = select_sequences(available, pred_root, sequences, str(gt_root))
    with_t = protocol.temporal if with_t is None else with_t
    temporal = temporal_sequences(names, with_t, gt_root.parent / "db_info.yml")
    jobs = [FolderJob(protocol, name, pred_root / name, temporal[name], gt_root / name)
            for name in names]
    return run_jobs(jobs, workers, progress)
