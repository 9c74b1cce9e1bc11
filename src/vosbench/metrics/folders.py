"""Scoring folders of label PNGs: GT/<seq>/<frame>.png against PRED/<seq>/<frame>.png.

Sequences are scored in parallel worker processes; every PNG is decoded once, in the worker that
scores its sequence. Any problem with the input raises InputError naming the sequence and file.
"""

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from vosbench.errors import InputError
from vosbench.io import read_label_png
from vosbench.metrics.protocols import Protocol, SequenceScores, score_sequence, size_text


@dataclass(frozen=True)
class SequenceJob:
    """Everything a worker needs to score one sequence."""

    protocol: Protocol
    name: str
    gt_dir: Path
    pred_dir: Path
    with_t: bool


def list_sequences(gt_root: Path, pred_root: Path, selected: list[str] | None) -> list[str]:
    """The sequences to score: `selected` in its order, else every GT sequence, sorted.

    Raises InputError when a folder is missing or empty, or when GT and prediction folders do not
    hold the same sequences.
    """
    for root, what in ((gt_root, "ground-truth"), (pred_root, "prediction")):
        if not root.is_dir():
            raise InputError(f"{root}: {what} folder not found (expected one folder per sequence)")
    gt_sequences = sorted(p.name for p in gt_root.iterdir() if p.is_dir())
    if not gt_sequences:
        raise InputError(f"{gt_root}: no sequence folders in the ground-truth folder")
    pred_sequences = {p.name for p in pred_root.iterdir() if p.is_dir()}
    if selected is not None:
        unknown = [s for s in selected if s not in gt_sequences]
        if unknown:
            raise InputError(f"{gt_root}: no ground truth for selected sequence(s) "
                             f"{', '.join(unknown)}")
        sequences = list(selected)
    else:
        sequences = gt_sequences
        extra = sorted(pred_sequences - set(gt_sequences))
        if extra:
            raise InputError(f"{pred_root}: prediction sequence(s) {', '.join(extra)} have no "
                             f"ground truth in {gt_root} (use --sequences to score a subset)")
    missing = [s for s in sequences if s not in pred_sequences]
    if missing:
        raise InputError(f"{pred_root}: prediction sequence(s) missing: {', '.join(missing)}")
    return sequences


def read_temporal_sequences(gt_root: Path) -> dict[str, bool] | None:
    """`eval_t` of each sequence from `db_info.yml` beside the GT folder (DAVIS layout:
    Annotations/db_info.yml next to Annotations/480p); None when there is no such file."""
    path = gt_root.parent / "db_info.yml"
    if not path.is_file():
        return None
    try:
        info = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        return {str(item["name"]): bool(item["eval_t"]) for item in info["sequences"]}
    except (yaml.YAMLError, KeyError, TypeError) as error:
        raise InputError(f"{path}: expected a 'sequences' list whose items have 'name' and "
                         f"'eval_t' ({error.__class__.__name__}: {error})") from None


def score_sequence_folder(job: SequenceJob) -> SequenceScores:
    """Read and score one sequence (runs in a worker process)."""
    gt_files = sorted(job.gt_dir.glob("*.png"))
    if not gt_files:
        raise InputError(f"sequence {job.name!r}: no PNG frames in {job.gt_dir}")
    indices = job.protocol.evaluated_frames(len(gt_files))
    if not indices:
        raise InputError(f"sequence {job.name!r}: {len(gt_files)} ground-truth frame(s) in "
                         f"{job.gt_dir}; protocol {job.protocol.name} scores frames 1..N-2 and "
                         f"needs at least 3")
    gt = [read_label_png(gt_files[i]) for i in indices]
    for i, labels in zip(indices, gt):
        if labels.shape != gt[0].shape:
            raise InputError(f"sequence {job.name!r}: {gt_files[i]} is {size_text(labels)} but "
                             f"{gt_files[indices[0]].name} is {size_text(gt[0])}")
    # K comes from GT frame 0, decoded for that alone where it is not scored (davis2017)
    needs_first = indices[0] != 0 and job.protocol.reading != "single"
    first = read_label_png(gt_files[0]) if needs_first else gt[0]
    pred = []
    for i in indices:
        path = job.pred_dir / gt_files[i].name
        if not path.is_file():
            raise InputError(f"sequence {job.name!r}: prediction frame {gt_files[i].name} missing "
                             f"(expected {path})")
        pred.append(read_label_png(path))
    try:
        return score_sequence(job.protocol, gt, pred, job.protocol.num_objects(first),
                              name=job.name,
                              frame_names=[gt_files[i].stem for i in indices], with_t=job.with_t)
    except InputError as error:
        raise InputError(f"{error} (predictions in {job.pred_dir})") from None


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)  # parallelism comes from the processes


def score_folders(protocol: Protocol, gt_root: str | Path, pred_root: str | Path, *,
                  sequences: list[str] | None = None, workers: int = 1,
                  with_t: bool | None = None, progress: bool = False) -> list[SequenceScores]:
    """Score every sequence of a prediction folder against a ground-truth folder.

    Args:
        protocol: how objects and frames are read (see `protocols.PROTOCOLS`).
        gt_root, pred_root: folders holding <seq>/<frame>.png label maps.
        sequences: a subset, in the order to report; default all GT sequences, sorted.
        workers: number of worker processes (1: score in this process).
        with_t: compute T; default the protocol's choice. With db_info.yml beside the GT
            folder, only its `eval_t` sequences get T.
        progress: show a progress bar on stderr.

    Returns:
        One SequenceScores per sequence, in order.
    """
    gt_root, pred_root = Path(gt_root), Path(pred_root)
    names = list_sequences(gt_root, pred_root, sequences)
    with_t = protocol.temporal if with_t is None else with_t
    temporal = read_temporal_sequences(gt_root) if with_t else None
    if temporal is not None:
        unlisted = [name for name in names if name not in temporal]
        if unlisted:
            raise InputError(f"{gt_root.parent / 'db_info.yml'}: no entry for sequence(s) "
                             f"{', '.join(unlisted)} (needed to know whether T is scored)")
    jobs = [SequenceJob(protocol, name, gt_root / name, pred_root / name,
                        with_t and (temporal is None or temporal[name])) for name in names]
    bar = _progress_bar(len(jobs), progress)
    try:
        if workers <= 1 or len(jobs) == 1:
            results = []
            for job in jobs:
                results.append(score_sequence_folder(job))
                bar.update()
            return results
        context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context,
                                 initializer=_worker_init) as pool:
            # longest sequences first, so that no worker is left with a long one at the end
            longest_first = sorted(jobs, key=lambda job: -len(list(job.gt_dir.glob("*.png"))))
            futures = {job.name: pool.submit(score_sequence_folder, job) for job in longest_first}
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
