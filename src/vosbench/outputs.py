"""From a video's probabilities to its outputs: the dense CRF, the labels, the scores and the
label PNGs, in worker processes while the model predicts the next videos.

On a CPU the CRF costs several times the model (about 0.2 s a frame at 432×240 against 0.03 s
for AGNN's tiny preset) and holds the GIL (pydensecrf); the T measure is plain Python too. An
`OutputPool` of W processes refines and scores W videos at once beside the model. Each video is
refined and scored by the same single-threaded code in a worker as in the main process, so the
results are identical; the CRF time of a video is measured in the worker that refines it, so the
frame rates stay per frame of work.
"""

import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vosbench.io import atomic_file, write_label_png
from vosbench.metrics.datasets import VideoJob
from vosbench.metrics.jobs import score_job
from vosbench.metrics.protocols import SequenceScores
from vosbench.postprocess import CRFRecipe, refine_video
from vosbench.workers import init_worker, worker_context

# The workers yield to the main process: while the model runs, it gets the cores it would have
# alone (its frame rate is then nearly that of a lone model), and the workers take the rest.
WORKER_NICENESS = 10
# a probability PNG stores round(p · 65535): 16 bits, steps of 1.5e-5
PROBABILITY_LEVELS = 65535


@dataclass
class VideoTiming:
    """Seconds spent on one video: the model (`predict_video`), its flow, the CRF."""

    frames: int
    model: float
    flow: float
    crf: float


def binarize(probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """(T, K, H, W) object probabilities → (T, H, W) uint8 labels. Object k (label k + 1) where
    its probability is the highest and above `threshold`, else background 0."""
    best = probabilities.argmax(axis=1)
    above = np.take_along_axis(probabilities, best[:, None], axis=1)[:, 0] > threshold
    return np.where(above, best + 1, 0).astype(np.uint8)


@dataclass(frozen=True)
class OutputJob:
    """What becomes of one video's probabilities.

    probabilities: (T, K, H, W) float32 at the video's size. frames: (T, H, W, 3) uint8 RGB, for
    the CRF. crf: the recipe, or None for none. threshold: of `binarize`. frame_names: the T
    frames' names. truth: the video's ground truth to score against, or None (prediction only).
    label_dir: where to write <frame>.png, or None. keep_frame: the frame whose labels come back
    (an overlay), or None. timing: the model's and the flow's seconds (the CRF's are added).
    category: the video's category, passed on for the scores.
    """

    name: str
    probabilities: np.ndarray
    frames: np.ndarray | None
    crf: CRFRecipe | None
    threshold: float
    frame_names: tuple[str, ...]
    truth: VideoJob | None
    label_dir: Path | None
    keep_frame: int | None
    timing: VideoTiming
    category: str | None = None
    probability_dir: Path | None = None


@dataclass(frozen=True)
class VideoOutput:
    """The outcome of an `OutputJob`: its scores (None without truth), timing, category and the
    (H, W) labels of its `keep_frame`."""

    name: str
    scores: SequenceScores | None
    timing: VideoTiming
    category: str | None
    kept_labels: np.ndarray | None


def write_probability_pngs(folder: Path, frame_names: tuple[str, ...],
                           probabilities: np.ndarray) -> None:
    """(T, K, H, W) probabilities in [0, 1] → 16-bit grey PNGs <folder>/<k + 1>/<frame>.png,
    each pixel round(p · 65535), for k = 0 … K − 1 (object ids from 1)."""
    levels = np.rint(np.clip(probabilities, 0, 1) * PROBABILITY_LEVELS).astype(np.uint16)
    for name, frame in zip(frame_names, levels):
        for object_index, values in enumerate(frame):
            with atomic_file(folder / str(object_index + 1) / f"{name}.png",
                             sync=False) as stream:
                Image.fromarray(values).save(stream, format="PNG")


def run_output_job(job: OutputJob) -> VideoOutput:
    """Write the probabilities (if asked), refine (with a CRF), binarize, score and write one
    video."""
    if job.probability_dir is not None:
        write_probability_pngs(job.probability_dir, job.frame_names, job.probabilities)
    probabilities, crf_seconds = job.probabilities, 0.0  # no CRF: no CRF time (no fps_with_crf)
    if job.crf is not None:
        start = time.perf_counter()
        probabilities = refine_video(job.frames, probabilities, job.crf)
        crf_seconds = time.perf_counter() - start
    labels = binarize(probabilities, job.threshold)
    scores = None
    if job.truth is not None:
        scores = score_job(job.truth, dict(zip(job.frame_names, labels)))
    if job.label_dir is not None:
        for name, frame_labels in zip(job.frame_names, labels):
            write_label_png(job.label_dir / f"{name}.png", frame_labels)
    timing = VideoTiming(job.timing.frames, job.timing.model, job.timing.flow, crf_seconds)
    kept = None if job.keep_frame is None else labels[job.keep_frame]
    return VideoOutput(job.name, scores, timing, job.category, kept)


class OutputPool:
    """Runs `run_output_job` in `workers` processes (0: in this process, when submitted).

    At most 2 × `workers` jobs wait at a time: `submit` then waits for the oldest, so that a
    model faster than its workers does not pile up the probabilities of a whole split.
    """

    def __init__(self, workers: int):
        if workers < 0:
            raise ValueError(f"output workers must be 0 or more, got {workers}")
        self.workers = workers
        self.executor = None
        self.pending: deque[Future] = deque()
        self.done: list[VideoOutput] = []

    def submit(self, job: OutputJob) -> None:
        if self.workers == 0:
            self.done.append(run_output_job(job))
            return
        if self.executor is None:
            self.executor = ProcessPoolExecutor(self.workers, mp_context=worker_context(),
                                                initializer=init_worker,
                                                initargs=(WORKER_NICENESS,))
        if len(self.pending) >= 2 * self.workers:
            self.done.append(self.pending.popleft().result())
        self.pending.append(self.executor.submit(run_output_job, job))

    def results(self) -> list[VideoOutput]:
        """Every output submitted since the last call, in submission order (waits for them).
        A job's error is raised here, and the other outputs of the call are dropped."""
        try:
            while self.pending:
                self.done.append(self.pending.popleft().result())
        except BaseException:
            for future in self.pending:
                future.cancel()
            self.pending.clear()
            self.done = []
            raise
        done, self.done = self.done, []
        return done

    def close(self) -> None:
        """Stop the worker processes (a later `submit` starts new ones)."""
        if self.executor is not None:
            self.executor.shutdown(cancel_futures=True)
            self.executor = None
        self.pending.clear()
        self.done = []
