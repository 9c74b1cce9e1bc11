"""Shared fixtures: label PNGs written in the DAVIS on-disk format; hypothesis profiles."""

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from vosbench.datamodules.synthesis import write_synthetic_dataset
from vosbench.io import write_label_png

# Property tests draw the same examples on every run, so that a failure in CI is a failure of the
# change and reproducible, not the luck of the draw (HYPOTHESIS_PROFILE=explore searches anew).
settings.register_profile("reproducible", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "reproducible"))


def write_sequence(root: Path, name: str, frames: np.ndarray, mode: str = "P") -> None:
    """Write (T, H, W) labels as root/name/00000.png … (palette, or grey with mode "L")."""
    for index, labels in enumerate(frames):
        write_label_png(root / name / f"{index:05d}.png", labels, grayscale=mode == "L")


def moving_objects(num_frames: int, height: int, width: int, num_objects: int, seed: int,
                   shift: int = 0) -> np.ndarray:
    """(T, H, W) uint8 labels: `num_objects` rectangles drifting over the frames."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((num_frames, height, width), np.uint8)
    for obj in range(1, num_objects + 1):
        y, x = rng.integers(0, height // 2), rng.integers(0, width // 2)
        h, w = rng.integers(3, height // 2), rng.integers(3, width // 2)
        dy, dx = rng.integers(-1, 2, size=2)
        for t in range(num_frames):
            top = np.clip(y + dy * t + shift, 0, height - 1)
            left = np.clip(x + dx * t, 0, width - 1)
            frames[t, top:top + h, left:left + w] = obj
    return frames


@pytest.fixture
def davis_folders(tmp_path):
    """GT and PRED folders of three 8-frame sequences with 2 objects at 60×100."""
    gt_root, pred_root = tmp_path / "Annotations" / "480p", tmp_path / "pred"
    for index, name in enumerate(["bear", "camel", "dog"]):
        gt = moving_objects(8, 60, 100, 2, seed=index)
        pred = moving_objects(8, 60, 100, 2, seed=index, shift=2)
        write_sequence(gt_root, name, gt)
        write_sequence(pred_root, name, pred)
    return gt_root, pred_root


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A small synthetic set in the DAVIS 2017 layout: 2 train and 3 val videos of 5–6 frames
    at 240×432."""
    root = tmp_path_factory.mktemp("data") / "synthetic"
    write_synthetic_dataset(root, seed=1, num_train=2, num_val=3, frame_range=(5, 6), workers=1)
    return root
