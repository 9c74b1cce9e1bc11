"""Scoring sequences in worker processes, wherever their ground truth comes from.

A job is one sequence. It reads its evaluated ground-truth frames (a `folders.FolderJob` from a
folder of label PNGs, a `datasets.VideoJob` through a dataset reader), `score_job` adds the
predicted label PNGs PRED/<seq>/<frame>.png (or labels in memory, from the evaluation loops) and
scores them with `score_sequence`, and `run_jobs`
runs many jobs in parallel worker processes. Every file is decoded once, in the worker that scores
its sequence. Any problem with the input raises InputError naming the sequence and file.
"""

from abc import ABC, abstractmethod
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from vosbench.errors import InputError
from vosbench.io import read_label_png
from vosbench.metrics.protocols import Protocol, SequenceScores, score_sequence
from vosbench.workers import init_worker, worker_context


@dataclass(frozen=True)
class GroundTruth:
    """The evaluated ground-truth frames of one sequence, as `score_sequence` takes them.

    frame_names: the frames' names, which are also the stems of the predicted PNGs. frames: (H, W)
    uint8 label maps. num_objects: K. first_scored: per-object first scored frame (protocols with
    per-object frames), else None.
    """

    frame_names: list[str]
    frames: list[np.ndarray]
    num_objects: int
    first_scored: dict[int, int] | None = None


@dataclass(frozen=True)
class SequenceJob(ABC):
    """Everything a worker needs to score one sequence; subclasses say where its GT is."""

    protocol: Protocol
    name: str
    pred_dir: Path
    with_t: bool

    @property
    @abstractmethod
    def num_frames(self) -> int:
        """Number of ground-truth frames (cheap: no decoding), to start long sequences first."""

    @abstractmethod
    def read_ground_truth(self) -> GroundTruth:
        """Decode the evaluated ground-truth frames."""

    def read_prediction(self, frame: str) -> np.ndarray:
        """The (H, W) uint8 labels of PRED/<seq>/<frame>.png."""
        path = self.pred_dir / f"{frame}.png"
        if not path.is_file():
            raise InputError(f"sequence {self.name!r}: prediction frame {frame}.png missing "
                             f"(expected {path})")
        return read_label_png(path)

    def evaluated_indices(self, count: int, where: str) -> range:
        """The protocol's evaluated frames among `count` GT frames; too few is an error naming
        `where`, the place of the GT frames."""
        indices = self.protocol.evaluated_frames(count)
        if not indices:
            raise InputError(f"sequence {self.name!r}: {count} ground-truth frame(s) in {where}; "
                             f"protocol {self.protocol.name} scores frames 1..N-2 and needs at "
                             f"least 3")
        return indices


def score_job(job: SequenceJob,
              labels: Mapping[str, np.ndarray] | None = None) -> SequenceScores:
    """Score one sequence (runs in a worker process) against its predicted `labels` (frame name
    → (H, W) uint8 labels), or without them, the PNGs PRED/<seq>/<frame>.png."""
    truth = job.read_ground_truth()
    if not truth.frames:  # youtube-vos: no object appears before the last annotated frame
        return SequenceScores(job.name, [], [])
    pred = [job.read_prediction(frame) if labels is None else labels[frame]
            for frame in truth.frame_names]
    try:
        return score_sequence(job.protocol, truth.frames, pred, truth.num_objects, name=job.name,
                              frame_names=truth.frame_names, with_t=job.with_t,
                              first_scored=truth.first_scored)
    except InputError as error:
        if labels is not None:
            raise
        raise InputError(f"{error} (predictions in {job.pred_dir})") from None


def select_sequences(available: list[str], pred_root: Path, selected: list[str] | None,
                     where: str) -> list[str]:
    """The sequences to score: `selected` in its order, else every GT sequence in `available`.

    where: names the ground truth in messages. Raises InputError when the prediction folder is
    missing, a selected sequence has no GT, a GT sequence no prediction folder or (without a
    selection) a prediction folder no GT.
    """
    if not pred_root.is_dir():
        raise InputError(f"{pred_root}: prediction folder not found (expected one folder per "
                         f"sequence)")
    pred_sequences = {p.name for p in pred_root.iterdir() if p.is_dir()}
    if selected is not None:
        unknown = [s for s in selected if s not in available]
        if unknown:
            raise InputError(f"{where}: no ground truth for selected sequence(s) "
                             f"{', '.join(unknown)}")
        sequences = list(selected)
    else:
        sequences = available
        extra = sorted(pred_sequences - set(available))
        if extra:
            raise InputError(f"{pred_root}: prediction sequence(s) {', '.join(extra)} have no "
                             f"ground truth in {where} (use --sequences to score a subset)")
    missing = [s for s in sequences if s not in pred_sequences]
    if missing:
        raise InputError(f"{pred_root}: prediction sequence(s) missing: {', '.join(missing)}")
    return sequences


def temporal_sequences(names: list[str], with_t: bool, db_info: Path | None) -> dict[str, bool]:
    """Whether T is computed for each sequence: for all when `with_t`, but only for the `eval_t`
    sequences of `db_info` (DAVIS: Annotations/db_info.yml) where that file exists."""
    if not with_t or db_info is None or not db_info.is_file():
        return dict.fromkeys(names, with_t)
    try:
        info = yaml.load(db_info.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        eval_t = {str(item["name"]): bool(item["eval_t"]) for item in info["sequences"]}
    except (yaml.YAMLError, KeyError, TypeError) as error:
        raise InputError(f"{db_info}: expected a 'sequences' list whose items have 'name' and "
                         f"'eval_t' ({error.__class__.__name__}: {error})") from None
    unlisted = [name for name in names if name not in eval_t]
    if unlisted:
        raise InputError(f"{db_info}: no entry for sequence(s) {', '.join(unlisted)} (needed to "
                         f"know whether T is scored)")
    return {name: eval_t[name] for name in names}


def run_jobs(jobs: list[SequenceJob], workers: int = 1,
             progress: bool = False) -> list[SequenceScores]:
    """Score every job, in `workers` processes (1: in this process); results in job order.

    The processes start from a fork server (`vosbench.workers.worker_context`): a script calling
    this needs the `if __name__ == "__main__":` guard.
    """
    bar = _progress_bar(len(jobs), progress)
    try:
        if workers <= 1 or len(jobs) <= 1:
            results = []
            for job in jobs:
                results.append(score_job(job))
                bar.update()
            return results
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=worker_context(),
                                 initializer=init_worker) as pool:
            # longest sequences first, so that no worker is left with a long one at the end
            longest_first = sorted(jobs, key=lambda job: -job.num_frames)
            futures = {job.name: pool.submit(score_job, job) for job in longest_first}
            for future in futures.values():
                future.add_done_callback(lambda _: bar.update())
            try:
                return [futures[job.name].result() for job in jobs]
            except BaseException:
                for future in futures.values():
                    future.cancel()
                raise
    finally:
        bar.close()


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="scoring sequences", unit="seq", disable=not enabled or None,
                leave=False)
