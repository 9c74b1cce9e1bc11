"""How close oracle proposals are to their objects: the mean mask IoU of each proposal of a real
object with that object, by jitter strength, on a synthetic set's annotations (spurious proposals
left out; missed objects have none).

    .venv/bin/python benchmarks/oracle_proposals.py [--root DATA] [--frames 150]
        [--strengths 0 0.05 0.08 0.09 0.1]

DATA defaults to the synthetic default in the vosbench cache (`vosbench bench ... --data
synthetic` writes it); every 7th annotation file, up to --frames of them.
"""

import argparse
from pathlib import Path

import numpy as np

from vosbench.datamodules.families import cache_folder_name, cache_root
from vosbench.io import read_label_png
from vosbench.proposals.oracle import frame_rng, oracle_proposals


def mean_iou(files: list[Path], strength: float) -> float:
    ious = []
    for index, path in enumerate(files):
        labels = read_label_png(path)
        proposals = oracle_proposals(labels, frame_rng(0, str(path), index), strength=strength,
                                     spurious_rate=0.0)
        objects = [labels == label for label in np.unique(labels) if label not in (0, 255)]
        for mask in proposals.masks:
            ious.append(max((mask & truth).sum() / (mask | truth).sum() for truth in objects))
    return float(np.mean(ious))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path,
                        default=cache_root() / cache_folder_name(0, "default") / "Annotations")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0, 0.05, 0.08, 0.09, 0.1])
    args = parser.parse_args()
    files = sorted(args.root.rglob("*.png"))[::7][:args.frames]
    if not files:
        raise SystemExit(f"{args.root}: no annotation PNG files")
    for strength in args.strengths:
        print(f"strength {strength:.2f}: mean mask IoU {mean_iou(files, strength):.3f} "
              f"({len(files)} frames)")


if __name__ == "__main__":
    main()
