#!/usr/bin/env python
"""Data loading speed: decoded frames per second of the vosbench datamodules at DAVIS 480p.

Run it with the project venv's python (after ``make install``)::

    python benchmarks/loader_speed.py [--work-dir benchmarks/.work] [--workers 0 2] [--repeats 2]

1. Writes (once per generator version; reused) a DAVIS 2017 folder of 854×480 videos: JPEG frames
   (quality 90) of a textured background with 1-3 moving objects, palette PNG annotations, and
   ImageSets/2017/{train,val}.txt.
2. For each worker count, times full passes (best of ``--repeats``) over
   - the evaluation loader: whole videos, every JPEG frame and PNG mask decoded to tensors
     (`LoadedVideo`), one video per item;
   - the training loader: 80 of AGNN's clips (3 segments, one frame each, 2 clips per batch)
     resized and augmented to 473×473 (flip, ±10° rotation, scale 0.75-1.25, crop around the
     objects, colour jitter).
3. Prints a table and writes it to ``<work-dir>/loader_speed.json``.
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from vosbench.datamodules.clip_transform import ClipTransform
from vosbench.datamodules.families import DAVIS2017DataModule
from vosbench.datamodules.sampling import SegmentSampler
from vosbench.io import write_label_png

WIDTH, HEIGHT = 854, 480
GENERATOR_VERSION = 1


def textured(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8 smooth multi-scale colour noise, so that JPEG sizes are realistic."""
    image = np.zeros((height, width, 3), np.float32)
    for cells, weight in ((6, 1.0), (24, 0.5), (96, 0.25)):
        noise = rng.random((cells, cells * width // height, 3), dtype=np.float32)
        image += weight * cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(image / 1.75 * 255, 0, 255).astype(np.uint8)


def write_video(root: Path, name: str, num_frames: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    background = textured(rng, HEIGHT, WIDTH)
    num_objects = int(rng.integers(1, 4))
    starts = rng.uniform([100, 100], [WIDTH - 100, HEIGHT - 100], (num_objects, 2))
    velocity = rng.uniform(-4, 4, (num_objects, 2))
    looks = [textured(rng, HEIGHT, WIDTH) for _ in range(num_objects)]
    for t in range(num_frames):
        frame, labels = background.copy(), np.zeros((HEIGHT, WIDTH), np.uint8)
        for obj in range(num_objects):
            cx, cy = starts[obj] + velocity[obj] * t
            shape = np.zeros_like(labels)
            cv2.ellipse(shape, (int(cx), int(cy)), (60 + 10 * obj, 40), 7 * t, 0, 360, 1, -1)
            frame[shape == 1] = looks[obj][shape == 1]
            labels[shape == 1] = obj + 1
        jpeg = root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg"
        jpeg.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(jpeg), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        write_label_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", labels)


def write_dataset(root: Path, num_videos: int, num_frames: int) -> None:
    """The benchmark's DAVIS 2017 folder (skipped when already written for this version)."""
    stamp = root / f".generated-v{GENERATOR_VERSION}-{num_videos}x{num_frames}"
    if stamp.exists():
        return
    names = [f"video-{index:02d}" for index in range(num_videos)]
    for index, name in enumerate(names):
        write_video(root, name, num_frames, seed=index)
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        (root / "ImageSets" / "2017" / f"{split}.txt").write_text("\n".join(names) + "\n")
    stamp.touch()


def time_pass(loader, frames_per_batch) -> tuple[float, int]:
    """Seconds for one full pass over `loader` and the frames it decoded."""
    start, frames = time.perf_counter(), 0
    for batch in loader:
        frames += frames_per_batch(batch)
    return time.perf_counter() - start, frames


def measure(root: Path, workers: int, repeats: int) -> dict:
    torch.manual_seed(0)
    data = DAVIS2017DataModule(
        root, sampler=SegmentSampler(3), batch_size=2, num_workers=workers, clips_per_epoch=80,
        transform=ClipTransform((473, 473), flip_probability=0.5, max_rotation=10,
                                scale_range=(0.75, 1.25), crop_around_objects=True,
                                brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05))
    data.setup("fit")
    results = {}
    loaders = {"evaluation (whole videos)": (data.val_dataloader, lambda video: len(video)),
               "training (AGNN clips, 473x473)": (data.train_dataloader,
                                                  lambda clip: clip.frames.shape[0] * clip.frames
                                                  .shape[1])}
    for name, (make_loader, count) in loaders.items():
        passes = [time_pass(make_loader(), count) for _ in range(repeats)]
        seconds, frames = min(passes)
        results[name] = {"frames": frames, "seconds": round(seconds, 3),
                         "frames_per_second": round(frames / seconds, 1)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--work-dir", type=Path, default=Path(__file__).parent / ".work")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    root = args.work_dir / "loader-davis480p"
    write_dataset(root, args.videos, args.frames)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    report = {"machine": f"{platform.processor() or platform.machine()}, "
                         f"{len(os.sched_getaffinity(0))} cores",
              "dataset": f"{args.videos} videos x {args.frames} frames, {WIDTH}x{HEIGHT} JPEG",
              "results": {}}
    print(f"{'loader':<34} {'workers':>7} {'frames':>7} {'seconds':>8} {'frames/s':>9}")
    for workers in args.workers:
        results = measure(root, workers, args.repeats)
        report["results"][str(workers)] = results
        for name, row in results.items():
            print(f"{name:<34} {workers:>7} {row['frames']:>7} {row['seconds']:>8.2f} "
                  f"{row['frames_per_second']:>9.1f}")
    out = args.work_dir / "loader_speed.json"
    out.write_text(json.dumps(report, indent=1))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
