#!/usr/bin/env python
"""Speed benchmark of ``vosbench eval`` against the public evaluator vos-benchmark.

Run it with the project venv's python (after ``make install``)::

    python benchmarks/eval_speed.py [--work-dir benchmarks/.work] [--workers 2] [--seed 0]

Steps:

1. generate two synthetic DAVIS-style data sets (deterministic per seed) under the
   work dir: ``davis17`` (30 sequences, 50-90 frames, 1-5 objects, void pixels) and
   ``davis16`` (20 sequences x 50 frames, one object, 0/255 grayscale ground truth);
2. time ``vosbench eval`` (davis2017 without T, davis2016 with J, F and T) and
   vos-benchmark 0.1.0 (installed on first use into its own venv in the work dir),
   wall-clock around each subprocess, so start-up time counts;
3. cross-check vos-benchmark's per-object J and F means against vosbench's: equal
   where both must agree, and the known differences of vos-benchmark (void label 255 as
   an object, frames before an object's first appearance dropped, objects absent from
   every scored frame left out) grouped and measured;
4. print a table and write it, with the cross-check, to ``<work-dir>/eval_speed.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np

from vosbench.io import write_label_png

WIDTH, HEIGHT = 854, 480
VOID = 255
GENERATOR_VERSION = 2
REFERENCE_REQUIREMENT = "vos-benchmark==0.1.0"
DAVIS16_TARGET_S = 20.0
CROSS_CHECK_TOLERANCE = 1e-6
ANGLES = np.linspace(0.0, 2.0 * np.pi, 128, endpoint=False)

# vos-benchmark has no console script in its wheel: its documented entry point is the
# ``benchmark()`` function. This driver calls it and dumps the per-object means it returns.
REFERENCE_DRIVER = """
import json, sys
from vos_benchmark.benchmark import benchmark
gt_root, mask_root, processes, out = sys.argv[1:5]
*_, per_dataset = benchmark([gt_root], [mask_root], strict=True,
                            num_processes=int(processes), verbose=False)
result = {seq: {str(obj): {"J": float(j[obj]), "F": float(f[obj])} for obj in j}
          for seq, (j, f) in per_dataset[0].items()}
with open(out, "w") as fh:
    json.dump(result, fh)
"""


class BenchmarkError(RuntimeError):
    """A step of the benchmark failed; the message says which and why."""


@dataclass(frozen=True)
class DatasetSpec:
    """Shape of one synthetic data set."""

    name: str
    n_sequences: int
    frames: tuple[int, int]  # inclusive range of frames per sequence
    objects: tuple[int, int]  # inclusive range of objects per sequence
    davis2016: bool  # one object, GT as 0/255 grayscale, no void, prediction 0/1 palette


DATASETS = {
    "davis17": DatasetSpec("davis17", 30, (50, 90), (1, 5), davis2016=False),
    "davis16": DatasetSpec("davis16", 20, (50, 50), (1, 1), davis2016=True),
}




# ---------------------------------------------------------------------------
# Scene model: objects made of smooth star-shaped blobs that move and deform.
# ---------------------------------------------------------------------------


@dataclass
class Blob:
    """One smooth blob in object coordinates; its outline deforms slowly over time."""

    offset: np.ndarray  # (2,) position relative to the object's centre
    radius: float
    stretch: float  # aspect ratio (area preserving)
    harm_amp: np.ndarray  # amplitudes of the outline harmonics k = 2, 3, ...
    harm_phase: np.ndarray
    harm_speed: np.ndarray

    def outline(self, t: float, grow: float, jitter: np.ndarray | None) -> np.ndarray:
        """Outline points (len(ANGLES), 2) at time t; grow adds pixels to the radius."""
        k = np.arange(2, 2 + len(self.harm_amp))[:, None]
        amp = self.harm_amp[:, None] * (1 + 0.4 * np.sin(self.harm_speed[:, None] * t))
        phase = self.harm_phase[:, None] + self.harm_speed[:, None] * t
        r = 1 + (amp * np.cos(k * ANGLES + phase)).sum(axis=0)
        if jitter is not None:
            r = r + jitter
        r = np.maximum(r, 0.3) * self.radius + grow
        points = np.stack([r * np.cos(ANGLES) * self.stretch, r * np.sin(ANGLES) / self.stretch], 1)
        return points + self.offset


@dataclass
class SceneObject:
    """An object: blobs sharing one smooth trajectory, a depth and absence intervals."""

    obj_id: int
    blobs: list[Blob]
    start: np.ndarray  # (2,) centre at t = 0
    drift: np.ndarray  # (2,) pixels per frame
    sway_amp: np.ndarray  # (2, 2) two sinusoids per axis
    sway_freq: np.ndarray  # (2,)
    sway_phase: np.ndarray  # (2, 2)
    angle: float
    spin: float
    depth: float
    depth_phase: float
    absent: list[range]

    def visible(self, t: int) -> bool:
        """Whether the object is drawn at frame t (it can also be out of view or occluded)."""
        return not any(t in span for span in self.absent)

    def depth_at(self, t: int) -> float:
        """Depth at frame t (larger is farther); objects change their order smoothly."""
        return self.depth + 0.8 * np.sin(0.05 * t + self.depth_phase)

    def polygons(self, t: int, shift=(0.0, 0.0), grow=0.0, jitter=None) -> list[np.ndarray]:
        """Integer image polygons of the blobs at frame t, optionally perturbed."""
        sway = (self.sway_amp * np.sin(self.sway_freq[None, :] * t + self.sway_phase)).sum(axis=1)
        centre = self.start + self.drift * t + sway + np.asarray(shift)
        angle = self.angle + self.spin * t
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        return [
            np.round(blob.outline(t, grow, jitter) @ rotation.T + centre).astype(np.int32)
            for blob in self.blobs
        ]


def random_blob(rng: np.random.Generator, area: float, offset: np.ndarray) -> Blob:
    """A blob of about `area` pixels with a random smooth outline."""
    n_harm = 4
    return Blob(
        offset=offset,
        radius=float(np.sqrt(area / np.pi)),
        stretch=float(rng.uniform(0.7, 1.4)),
        harm_amp=rng.uniform(0.0, 0.5, n_harm) / np.arange(1, n_harm + 1),
        harm_phase=rng.uniform(0, 2 * np.pi, n_harm),
        harm_speed=rng.uniform(-0.08, 0.08, n_harm),
    )


def random_object(rng: np.random.Generator, obj_id: int, n_frames: int) -> SceneObject:
    """An object of 1% to 30% of the frame (log-uniform) made of 1-3 blobs."""
    area = WIDTH * HEIGHT * float(np.exp(rng.uniform(np.log(0.01), np.log(0.30))))
    n_blobs = int(rng.integers(1, 4))
    shares = rng.dirichlet(np.full(n_blobs, 2.0)) if n_blobs > 1 else np.ones(1)
    main_radius = np.sqrt(area * shares[0] / np.pi)
    blobs = [random_blob(rng, area * shares[0], np.zeros(2))]
    for share in shares[1:]:
        direction = rng.uniform(0, 2 * np.pi)
        offset = 0.9 * main_radius * np.array([np.cos(direction), np.sin(direction)])
        blobs.append(random_blob(rng, area * share, offset))
    absent = []
    if rng.random() < 0.15:  # fully occluded / out of view for a while
        first = int(rng.integers(2, n_frames - 5))
        absent.append(range(first, first + int(rng.integers(3, 15))))
    return SceneObject(
        obj_id=obj_id,
        blobs=blobs,
        start=np.array([rng.normal(WIDTH / 2, WIDTH / 4), rng.normal(HEIGHT / 2, HEIGHT / 4)]),
        drift=rng.normal(0, 1.5, 2),
        sway_amp=rng.uniform(0, 60, (2, 2)),
        sway_freq=2 * np.pi / rng.uniform(30, 150, 2),
        sway_phase=rng.uniform(0, 2 * np.pi, (2, 2)),
        angle=float(rng.uniform(0, 2 * np.pi)),
        spin=float(rng.normal(0, 0.01)),
        depth=float(rng.uniform(0, 3)),
        depth_phase=float(rng.uniform(0, 2 * np.pi)),
        absent=absent,
    )


def render(objects: list[SceneObject], t: int, perturb=None) -> np.ndarray:
    """Label map of frame t, far objects first so near ones occlude them.

    perturb(obj) returns keyword arguments for SceneObject.polygons, or None to skip obj.
    """
    label = np.zeros((HEIGHT, WIDTH), np.uint8)
    for obj in sorted(objects, key=lambda o: -o.depth_at(t)):
        kwargs = perturb(obj) if perturb else ({} if obj.visible(t) else None)
        if kwargs is not None:
            for polygon in obj.polygons(t, **kwargs):  # one call each: fillPoly is even-odd
                cv2.fillPoly(label, [polygon], obj.obj_id)
    return label


def random_scene(rng: np.random.Generator, n_objects: int, n_frames: int) -> list[SceneObject]:
    """Objects whose ids are all visible in frames 0 (at least 300 pixels each)."""
    while True:
        objects = [random_object(rng, i + 1, n_frames) for i in range(n_objects)]
        counts = np.bincount(render(objects, 0).ravel(), minlength=n_objects + 1)
        if (counts[1:] >= 300).all():
            return objects


def add_void(rng: np.random.Generator, label: np.ndarray, t: int, phases: np.ndarray) -> None:
    """Mark thin bands (1-3 px) on arcs of the object borders as void, as DAVIS annotators did."""
    for obj_id in np.unique(label[(label > 0) & (label != VOID)]):
        mask = (label == obj_id).astype(np.uint8)
        moments = cv2.moments(mask, binaryImage=True)
        cx, cy = moments["m10"] / moments["m00"], moments["m01"] / moments["m00"]
        width = int(rng.integers(1, 4))
        kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
        ys, xs = np.nonzero(cv2.dilate(mask, kernel) != cv2.erode(mask, kernel))
        start = phases[obj_id] + 0.03 * t
        on_arc = (np.arctan2(ys - cy, xs - cx) - start) % (2 * np.pi) < 2.0
        label[ys[on_arc], xs[on_arc]] = VOID


@dataclass
class PredictionModel:
    """How a simulated method's output deviates from the ground truth in one sequence."""

    quality: float  # 0 (poor) .. 1 (good)
    swap: tuple[int, int, range] | None  # two ids exchanged during a frame range
    lost: dict[int, range]  # object id -> frames the method misses it entirely
    empty: set[int]  # frames with an empty prediction
    shift_phase: np.ndarray  # (max id + 1, 2)

    def perturb(self, rng: np.random.Generator, t: int):
        """Per-object perturbation function for frame t (see `render`)."""
        bad = 1.0 - self.quality

        def perturb(obj: SceneObject):
            if not obj.visible(t) or t in self.lost.get(obj.obj_id, ()):
                return None
            size = obj.blobs[0].radius
            phase = self.shift_phase[obj.obj_id]
            return {
                "shift": 0.25 * bad * size * np.sin(0.07 * t + phase),
                "grow": 0.15 * bad * size * np.sin(0.05 * t + phase[0]) + rng.normal(0, 1.0),
                "jitter": smooth_noise(rng, 0.015 + 0.04 * bad),
            }

        return perturb


def smooth_noise(rng: np.random.Generator, scale: float) -> np.ndarray:
    """Random radial boundary noise (harmonics 6-14) of relative amplitude ~scale."""
    k = np.arange(6, 15)[:, None]
    amp = rng.normal(0, scale, (len(k), 1)) / np.sqrt(len(k))
    return (amp * np.cos(k * ANGLES + rng.uniform(0, 2 * np.pi, (len(k), 1)))).sum(axis=0)


def random_prediction_model(
    rng: np.random.Generator, n_objects: int, n_frames: int
) -> PredictionModel:
    """Errors of a plausible method: drift, missed objects, swaps and empty frames."""
    swap = None
    if n_objects >= 2 and rng.random() < 0.2:
        a, b = rng.choice(np.arange(1, n_objects + 1), 2, replace=False)
        first = int(rng.integers(1, n_frames - 10))
        swap = (int(a), int(b), range(first, first + int(rng.integers(5, 20))))
    lost = {}
    for obj_id in range(1, n_objects + 1):
        if rng.random() < 0.1:
            first = int(rng.integers(1, n_frames - 3))
            until_end = rng.random() < 0.4
            lost[obj_id] = range(first, n_frames if until_end else first + int(rng.integers(2, 12)))
    empty = {int(t) for t in np.flatnonzero(rng.random(n_frames) < 0.02)}
    return PredictionModel(
        quality=float(rng.uniform(0.3, 1.0)),
        swap=swap,
        lost=lost,
        empty=empty,
        shift_phase=rng.uniform(0, 2 * np.pi, (n_objects + 1, 2)),
    )


def predict(
    rng: np.random.Generator,
    objects: list[SceneObject],
    model: PredictionModel,
    t: int,
) -> np.ndarray:
    """The simulated method's label map at frame t."""
    if t in model.empty:
        return np.zeros((HEIGHT, WIDTH), np.uint8)
    label = render(objects, t, model.perturb(rng, t))
    bad = 1.0 - model.quality
    ids = np.unique(label[label > 0])
    for obj_id in ids:  # missed parts
        if rng.random() < 0.3 * bad:
            ys, xs = np.nonzero(label == obj_id)
            pick = int(rng.integers(len(ys)))
            hole = np.zeros_like(label)
            cv2.circle(hole, (int(xs[pick]), int(ys[pick])), int(rng.uniform(10, 60)), 1, -1)
            label[(hole > 0) & (label == obj_id)] = 0
    if rng.random() < 0.2 * bad + 0.02:  # false-positive blob
        centre = (int(rng.integers(WIDTH)), int(rng.integers(HEIGHT)))
        axes = (int(rng.uniform(8, 45)), int(rng.uniform(8, 45)))
        fp_id = int(rng.integers(1, len(objects) + 1))
        cv2.ellipse(label, centre, axes, float(rng.uniform(0, 180)), 0, 360, fp_id, -1)
    if model.swap and t in model.swap[2]:
        a, b, _ = model.swap
        lut = np.arange(256, dtype=np.uint8)
        lut[a], lut[b] = b, a
        label = lut[label]
    return label


# ---------------------------------------------------------------------------
# Data set generation
# ---------------------------------------------------------------------------


def sequence_objects(spec: DatasetSpec, rng: np.random.Generator, index: int,
                     n_frames: int) -> list[SceneObject]:
    """The objects of one sequence.

    davis17 sequences 3 and 17 have an object that vanishes right after frame 0 and comes
    back later, sequence 24 one that is only in frame 0: edge cases where vos-benchmark and
    the DAVIS 2017 toolkit disagree. davis16 objects never vanish.
    """
    n_objects = int(rng.integers(spec.objects[0], spec.objects[1] + 1))
    edge_case = not spec.davis2016 and index in (3, 17, 24)
    objects = random_scene(rng, max(n_objects, 2) if edge_case else n_objects, n_frames)
    if spec.davis2016:
        objects[0].absent = []
    elif index in (3, 17):
        objects[0].absent = [range(1, int(rng.integers(4, 12)))]
    elif index == 24:
        objects[0].absent = [range(1, n_frames)]
    return objects


def generate_sequence(job: tuple[str, str, int, int]) -> dict:
    """Generate and write one sequence; returns its manifest entry.

    The entry records, per object, the first scored frame (1 .. N-2) where it is in the GT
    or the prediction and whether it is in any scored GT frame: what vos-benchmark reports.
    """
    dataset, root, index, seed = job
    spec = DATASETS[dataset]
    name = f"{dataset}-{index:02d}"
    rng = np.random.default_rng([seed, GENERATOR_VERSION, list(DATASETS).index(dataset), index])
    n_frames = int(rng.integers(spec.frames[0], spec.frames[1] + 1))
    objects = sequence_objects(spec, rng, index, n_frames)
    model = random_prediction_model(rng, len(objects), n_frames)
    with_void = not spec.davis2016 and rng.random() < 0.7
    void_phases = rng.uniform(0, 2 * np.pi, len(objects) + 1)
    gt_dir, pred_dir = Path(root) / "Annotations" / name, Path(root) / "Predictions" / name
    gt_dir.mkdir(parents=True)
    pred_dir.mkdir(parents=True)

    first_seen: dict[str, int | None] = {str(o.obj_id): None for o in objects}
    in_gt: set[int] = set()
    void_pixels = 0
    for t in range(n_frames):
        gt = render(objects, t)
        pred = predict(rng, objects, model, t)
        if with_void:
            add_void(rng, gt, t, void_phases)
            void_pixels += int((gt == VOID).sum())
        if spec.davis2016:
            write_label_png(gt_dir / f"{t:05d}.png", np.where(gt > 0, 255, 0), grayscale=True)
        else:
            write_label_png(gt_dir / f"{t:05d}.png", gt)
        write_label_png(pred_dir / f"{t:05d}.png", pred)
        if 1 <= t <= n_frames - 2:
            present = set(np.unique(gt).tolist()) - {0, VOID}
            in_gt |= present
            for obj_id in present | set(np.unique(pred).tolist()) - {0}:
                if first_seen[str(obj_id)] is None:
                    first_seen[str(obj_id)] = t
    return {
        "name": name,
        "frames": n_frames,
        "objects": len(objects),
        "void_pixels": void_pixels,
        "first_scored_frame": first_seen,
        "in_scored_gt": sorted(in_gt),
    }


def ensure_dataset(spec: DatasetSpec, work_dir: Path, seed: int, workers: int) -> dict:
    """Generate the data set unless the work dir already holds it for this seed."""
    root = work_dir / spec.name
    manifest_path = root / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest["seed"] == seed and manifest["generator_version"] == GENERATOR_VERSION:
            print(f"[data] {spec.name}: reusing {root}")
            return manifest
    shutil.rmtree(root, ignore_errors=True)
    start = time.perf_counter()
    jobs = [(spec.name, str(root), i, seed) for i in range(spec.n_sequences)]
    with Pool(workers) as pool:
        sequences = pool.map(generate_sequence, jobs)
    (root / "ImageSets").mkdir()
    (root / "ImageSets" / "val.txt").write_text("".join(s["name"] + "\n" for s in sequences))
    manifest = {
        "seed": seed,
        "generator_version": GENERATOR_VERSION,
        "frames": sum(s["frames"] for s in sequences),
        "sequences": {s["name"]: s for s in sequences},
    }
    manifest_path.write_text(json.dumps(manifest, indent=1))
    print(
        f"[data] {spec.name}: {len(sequences)} sequences, {manifest['frames']} frames "
        f"written to {root} in {time.perf_counter() - start:.1f} s"
    )
    return manifest


# ---------------------------------------------------------------------------
# Tools under test
# ---------------------------------------------------------------------------


def find_vosbench() -> Path:
    """The `vosbench` console script of the environment running this script."""
    beside = Path(sys.executable).parent / "vosbench"
    found = beside if beside.exists() else shutil.which("vosbench")
    if not found:
        raise BenchmarkError(
            f"no `vosbench` command next to {sys.executable} or on PATH: run `make install` "
            "and start this script with the project venv's python (.venv/bin/python)"
        )
    return Path(found)


def run_logged(cmd: list[str], log_path: Path) -> float:
    """Run cmd with its output sent to log_path; wall-clock seconds, or BenchmarkError."""
    with open(log_path, "w") as log:
        start = time.perf_counter()
        returncode = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
        elapsed = time.perf_counter() - start
    if returncode != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-20:])
        raise BenchmarkError(
            f"command failed with exit status {returncode}: {' '.join(cmd)}\n"
            f"last lines of {log_path}:\n{tail}"
        )
    return elapsed


def ensure_reference_venv(work_dir: Path) -> Path:
    """Python of <work-dir>/venv-vosbenchmark, created with vos-benchmark on first use."""
    venv = work_dir / "venv-vosbenchmark"
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import vos_benchmark.benchmark"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    log = work_dir / "venv-vosbenchmark.log"
    print(f"[setup] creating {venv} with {REFERENCE_REQUIREMENT} (log: {log})")
    run_logged([sys.executable, "-m", "venv", "--clear", str(venv)], log)
    run_logged([str(python), "-m", "pip", "install", REFERENCE_REQUIREMENT], log)
    run_logged(check, log)
    return python


def vosbench_command(vosbench: Path, data: Path, protocol: str, workers: int, out: Path,
                     with_t: bool) -> list[str]:
    """`vosbench eval` on a generated data set."""
    return [
        str(vosbench), "eval",
        "--gt-root", str(data / "Annotations"),
        "--pred-root", str(data / "Predictions"),
        "--protocol", protocol,
        "--output", str(out),
        "--workers", str(workers),
        "--sequences", str(data / "ImageSets" / "val.txt"),
        "--t" if with_t else "--no-t",
    ]


def reference_command(python: Path, gt_root: Path, mask_root: Path, workers: int,
                      out_json: Path) -> list[str]:
    """vos-benchmark's `benchmark()` (DAVIS 2017 semi-supervised: first and last frame skipped)."""
    return [str(python), "-c", REFERENCE_DRIVER, str(gt_root), str(mask_root), str(workers),
            str(out_json)]


@dataclass
class Run:
    """One evaluator command with its own run folder, emptied before every run."""

    command: list[str]
    run_dir: Path
    link_predictions: Path | None = None  # vos-benchmark: predictions to link into run_dir/masks

    def __call__(self) -> float:
        """Empty run_dir, run the command (log in run_dir/log.txt); wall-clock seconds.

        vos-benchmark writes results.csv into its mask folder: it gets a folder of links
        to the predicted sequences, so that file lands in run_dir, not in the data set.
        """
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True)
        if self.link_predictions:
            masks = self.run_dir / "masks"
            masks.mkdir()
            for seq in sorted(self.link_predictions.iterdir()):
                (masks / seq.name).symlink_to(seq.resolve(), target_is_directory=True)
        return run_logged(self.command, self.run_dir / "log.txt")


def vosbench_run(vosbench: Path, data: Path, protocol: str, workers: int, run_dir: Path,
                 with_t: bool) -> Run:
    """`vosbench eval` writing to run_dir/out."""
    out = run_dir / "out"
    return Run(vosbench_command(vosbench, data, protocol, workers, out, with_t), run_dir)


def reference_run(python: Path, data: Path, workers: int, run_dir: Path) -> Run:
    """vos-benchmark writing its per-object means to run_dir/results.json."""
    cmd = reference_command(python, data / "Annotations", run_dir / "masks", workers,
                            run_dir / "results.json")
    return Run(cmd, run_dir, link_predictions=data / "Predictions")


@dataclass
class Timing:
    """One timed configuration and its measured runs."""

    dataset: str
    tool: str
    what: str
    workers: int
    frames: int
    run: Run
    seconds: list[float]

    def summary(self) -> dict:
        """JSON-ready figures of this configuration."""
        return {
            "dataset": self.dataset, "tool": self.tool, "what": self.what,
            "workers": self.workers, "frames": self.frames,
            "command": self.run.command,
            "seconds": [round(s, 3) for s in self.seconds],
            "best_s": round(min(self.seconds), 3),
            "median_s": round(statistics.median(self.seconds), 3),
        }


# ---------------------------------------------------------------------------
# Cross-check of per-object J and F means
# ---------------------------------------------------------------------------

AGREE = "agree"
REASONS = {
    AGREE: "in frame 1 of GT or prediction: both must agree (both read void as background)",
    "late": "in neither GT nor prediction at frame 1: vos-benchmark only scores the frames "
            "from its first appearance on",
    "absent": "in no scored GT frame: vos-benchmark does not report it",
    "void": "GT void label 255: vos-benchmark reports it as an object (DAVIS 2017 reads void "
            "as background)",
}
EXPECTED_PRESENCE = {"absent": (True, False), "void": (False, True)}  # (vosbench, vos-benchmark)


def vosbench_means(results_json: Path) -> dict[tuple[str, str], tuple[float, float]]:
    """(sequence, object id) -> (J-Mean, F-Mean) from vosbench's results.json."""
    results = json.loads(results_json.read_text())
    return {
        (seq, obj): (scores["J-Mean"], scores["F-Mean"])
        for seq, entry in results["sequences"].items()
        for obj, scores in entry["objects"].items()
    }


def reference_means(results_json: Path) -> dict[tuple[str, str], tuple[float, float]]:
    """(sequence, object id) -> (J, F) means of vos-benchmark, rescaled from % to 0..1."""
    results = json.loads(results_json.read_text())
    return {
        (seq, obj): (scores["J"] / 100, scores["F"] / 100)
        for seq, objects in results.items()
        for obj, scores in objects.items()
    }


def expected_difference(manifest: dict, seq: str, obj: str) -> str:
    """Why vosbench (DAVIS 2017) and vos-benchmark may differ on this object, or AGREE."""
    if obj == str(VOID):
        return "void"
    info = manifest["sequences"][seq]
    if int(obj) not in info["in_scored_gt"]:
        return "absent"
    if info["first_scored_frame"][obj] != 1:
        return "late"
    return AGREE


def compare(ours: dict, reference: dict, manifest: dict) -> dict:
    """Group the objects of both tools by expected difference and measure the gaps.

    Returns {"groups": {reason: {...}}, "unexpected": [...]}; unexpected lists the objects
    that should agree but do not, and those reported by an unexpected set of tools.
    """
    groups: dict[str, dict] = {}
    unexpected = []
    for seq, obj in sorted(set(ours) | set(reference)):
        reason = expected_difference(manifest, seq, obj)
        group = groups.setdefault(reason, {"objects": 0, "compared": 0, "max_abs_dJ": None,
                                           "max_abs_dF": None, "explanation": REASONS[reason]})
        group["objects"] += 1
        found = ((seq, obj) in ours, (seq, obj) in reference)
        if found != EXPECTED_PRESENCE.get(reason, (True, True)):
            unexpected.append(f"{seq} object {obj} ({reason}): reported by vosbench {found[0]}, "
                              f"by vos-benchmark {found[1]}")
        elif all(found):
            d_j = abs(ours[seq, obj][0] - reference[seq, obj][0])
            d_f = abs(ours[seq, obj][1] - reference[seq, obj][1])
            group["compared"] += 1
            group["max_abs_dJ"] = max(group["max_abs_dJ"] or 0.0, d_j)
            group["max_abs_dF"] = max(group["max_abs_dF"] or 0.0, d_f)
            if reason == AGREE and max(d_j, d_f) > CROSS_CHECK_TOLERANCE:
                unexpected.append(f"{seq} object {obj}: |dJ| = {d_j:.3g}, |dF| = {d_f:.3g}")
    return {"groups": groups, "unexpected": unexpected}


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=Path(__file__).parent / ".work",
                        help="data sets, runs, the vos-benchmark venv and eval_speed.json")
    parser.add_argument("--workers", type=int, default=2,
                        help="worker processes of both evaluators (and of the generator)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data sets")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each configuration")
    parser.add_argument("--skip-reference", action="store_true",
                        help="time only vosbench: no vos-benchmark venv, ratio or cross-check")
    args = parser.parse_args()
    if args.workers < 1 or args.repeats < 1:
        parser.error("--workers and --repeats must be at least 1")
    return args


def measure(timings: list[Timing], repeats: int) -> None:
    """Run every configuration `repeats` times, interleaved so drifts hit all alike."""
    for repeat in range(1, repeats + 1):
        for timing in timings:
            timing.seconds.append(timing.run())
            print(f"[time] run {repeat}/{repeats}: {timing.dataset} {timing.tool} "
                  f"({timing.what}): {timing.seconds[-1]:.2f} s")


def report(timings: list[Timing], args: argparse.Namespace) -> dict:
    """Print the timing table and return the figures for the JSON file."""
    rows = [t.summary() for t in timings]
    print(f"\n{'data set':<9}{'frames':>7}  {'tool':<14}{'what':<20}{'workers':>8}"
          f"{'best s':>9}{'median s':>10}  runs")
    for r in rows:
        print(f"{r['dataset']:<9}{r['frames']:>7}  {r['tool']:<14}{r['what']:<20}{r['workers']:>8}"
              f"{r['best_s']:>9.2f}{r['median_s']:>10.2f}  {len(r['seconds'])}")
    figures = {"timings": rows}
    by_tool = {(r["dataset"], r["tool"]): r for r in rows}
    if not args.skip_reference:
        ours, theirs = by_tool["davis17", "vosbench"], by_tool["davis17", "vos-benchmark"]
        figures["ratio_vos_benchmark_over_vosbench"] = {
            "best": round(theirs["best_s"] / ours["best_s"], 3),
            "median": round(theirs["median_s"] / ours["median_s"], 3),
        }
        print(f"\nvos-benchmark / vosbench on davis17 ({args.workers} workers): "
              f"{figures['ratio_vos_benchmark_over_vosbench']['best']:.2f}x (best), "
              f"{figures['ratio_vos_benchmark_over_vosbench']['median']:.2f}x (median)")
    davis16 = by_tool["davis16", "vosbench"]
    passed = davis16["median_s"] <= DAVIS16_TARGET_S
    figures["davis16_target"] = {"target_s": DAVIS16_TARGET_S, "median_s": davis16["median_s"],
                                 "passed": passed}
    print(f"davis16 20x50 J+F+T: {davis16['median_s']:.2f} s (median) against the "
          f"{DAVIS16_TARGET_S:.0f} s target: {'PASS' if passed else 'FAIL'}")
    return figures


def cross_check(runs: Path, manifest: dict) -> dict:
    """Compare the per-object J/F means of the last timed davis17 runs of both tools."""
    comparison = compare(vosbench_means(runs / "vosbench-davis17" / "out" / "results.json"),
                         reference_means(runs / "vos-benchmark-davis17" / "results.json"),
                         manifest)
    print(f"\nCross-check of per-object J and F means on davis17, vosbench davis2017 against "
          f"vos-benchmark (tolerance {CROSS_CHECK_TOLERANCE:g} where they must agree):")
    for reason, group in comparison["groups"].items():
        gaps = (f"max|dJ| {group['max_abs_dJ']:.2e}  max|dF| {group['max_abs_dF']:.2e}"
                if group["compared"] else f"{'(one tool only)':<34}")
        print(f"  {reason:<7}{group['objects']:>4} objects  {gaps}  {group['explanation']}")
    for line in comparison["unexpected"]:
        print(f"  UNEXPECTED: {line}")
    return comparison


def main() -> int:
    """Generate, time, cross-check, report; exit status 1 on a failed target or check."""
    args = parse_args()
    work_dir = args.work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    vosbench = find_vosbench()
    reference_python = None if args.skip_reference else ensure_reference_venv(work_dir)
    manifests = {name: ensure_dataset(spec, work_dir, args.seed, args.workers)
                 for name, spec in DATASETS.items()}
    d17, d16 = work_dir / "davis17", work_dir / "davis16"
    runs = work_dir / "runs"
    w = args.workers

    frames = {name: manifest["frames"] for name, manifest in manifests.items()}
    timings = [Timing("davis17", "vosbench", "davis2017 --no-t", w, frames["davis17"],
                      vosbench_run(vosbench, d17, "davis2017", w,
                                   runs / "vosbench-davis17", with_t=False), [])]
    if reference_python:
        timings.append(Timing("davis17", "vos-benchmark", "J, F", w, frames["davis17"],
                              reference_run(reference_python, d17, w,
                                            runs / "vos-benchmark-davis17"), []))
    timings.append(Timing("davis16", "vosbench", "davis2016 --t", w, frames["davis16"],
                          vosbench_run(vosbench, d16, "davis2016", w,
                                       runs / "vosbench-davis16", with_t=True), []))
    measure(timings, args.repeats)
    figures = report(timings, args)

    failed = not figures["davis16_target"]["passed"]
    if reference_python:
        figures["cross_check"] = cross_check(runs, manifests["davis17"])
        failed = failed or bool(figures["cross_check"]["unexpected"])
    else:
        print("\nvos-benchmark skipped (--skip-reference): no ratio and no cross-check")

    figures["setup"] = {
        "seed": args.seed, "workers": w, "repeats": args.repeats, "cpu_count": os.cpu_count(),
        "python": platform.python_version(), "platform": platform.platform(),
        "reference": None if args.skip_reference else REFERENCE_REQUIREMENT,
    }
    out = work_dir / "eval_speed.json"
    out.write_text(json.dumps(figures, indent=1))
    print(f"\nwritten to {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchmarkError as error:
        sys.exit(f"eval_speed: error: {error}")
