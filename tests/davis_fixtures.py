"""Tiny DAVIS 2016 and 2017 folders in the release layouts of ../shared/DATASETS.md."""

from pathlib import Path

import numpy as np
from PIL import Image

from vosbench.io import write_label_png


def write_jpeg(path: Path, height: int, width: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def object_labels(num_frames: int, height: int, width: int, num_objects: int) -> np.ndarray:
    """(T, H, W) labels: object k is a band that moves right; 255 on its left edge."""
    labels = np.zeros((num_frames, height, width), np.uint8)
    for t in range(num_frames):
        for k in range(1, num_objects + 1):
            top = 2 * k
            labels[t, top:top + 2, t + 1:t + 4] = k
            labels[t, top:top + 2, t] = 255
    return labels


def write_davis2017(root: Path, sequences: dict[str, tuple[str, int, int, int]],
                    test_dev: tuple[str, ...] = (), unsupervised: bool = False) -> None:
    """sequences: name -> (split, frames, width, objects); test-dev names get only 00000.png."""
    splits: dict[str, list[str]] = {}
    all_sequences = {**sequences, **{name: ("test-dev", 4, 16, 2) for name in test_dev}}
    for seed, (name, (split, frames, width, objects)) in enumerate(sorted(all_sequences.items())):
        splits.setdefault(split, []).append(name)
        labels = object_labels(frames, 12, width, objects)
        for t in range(frames):
            write_jpeg(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", 12, width, seed + t)
            if split != "test-dev" or t == 0:
                write_label_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", labels[t])
            if unsupervised:
                write_label_png(root / "Annotations_unsupervised" / "480p" / name / f"{t:05d}.png",
                                (labels[t] == 1).astype(np.uint8))
    for split, names in splits.items():
        year = "2019" if unsupervised and split == "test-dev" else "2017"
        for folder in {year, "2017"}:
            (root / "ImageSets" / folder).mkdir(parents=True, exist_ok=True)
            (root / "ImageSets" / folder / f"{split}.txt").write_text(
                "".join(f"{name}\n" for name in sorted(names)))


def write_davis2016_release(root: Path, sequences: dict[str, tuple[str, int]]) -> None:
    """sequences: name -> (split, frames); grayscale 0/255 PNGs, frame-pair ImageSets lines."""
    lines: dict[str, list[str]] = {"train": [], "val": []}
    for seed, (name, (split, frames)) in enumerate(sorted(sequences.items())):
        labels = object_labels(frames, 12, 20, 1)
        for t in range(frames):
            write_jpeg(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", 12, 20, seed + t)
            write_label_png(root / "Annotations" / "480p" / name / f"{t:05d}.png",
                            np.where(labels[t] == 1, 255, 0), grayscale=True)
            # the official files end each line with a space
            lines[split].append(f"/JPEGImages/480p/{name}/{t:05d}.jpg "
                                f"/Annotations/480p/{name}/{t:05d}.png \n")
    (root / "ImageSets" / "480p").mkdir(parents=True)
    for split, split_lines in lines.items():
        (root / "ImageSets" / "480p" / f"{split}.txt").write_text("".join(split_lines))
    (root / "ImageSets" / "480p" / "trainval.txt").write_text(
        "".join(lines["train"] + lines["val"]))
