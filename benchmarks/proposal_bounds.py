"""The ceiling and the floor of a method that picks one proposal per object and frame, scored by
the metrics engine like a method's predictions: the ceiling takes, for each object and frame, the
proposal of highest mask IoU with the object (nothing when none overlaps it); the floor the
proposal of highest detection score among those whose box overlaps the object's true box more
than any other object's (nothing when there is none). Each object's given mask stands at its
first frame, as a semi-supervised method is given it; objects are painted in the order of their
ids.

    .venv/bin/python benchmarks/proposal_bounds.py [--root DATA] [--strength 0.09] [--seed 0]
        [--out /tmp/proposal_bounds]

DATA defaults to the synthetic default in the vosbench cache (`vosbench bench ... --data
synthetic` writes it); its validation videos (ImageSets/2017/val.txt) are scored with the
davis2017 protocol. The proposals are the oracle ones `ProposalProvider` gives STG-Net with the
same settings (the same frames get the same proposals), read from or written to its cache.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou

from vosbench.datamodules.families import cache_folder_name, cache_root
from vosbench.datamodules.readers import read_videos
from vosbench.datamodules.video import Video
from vosbench.io import write_label_png
from vosbench.metrics.cli import main as evaluate
from vosbench.proposals.oracle import Proposals, box_of
from vosbench.proposals.provider import ProposalProvider


def pick(proposals: Proposals, truth: np.ndarray, objects: list[int], rule: str) -> dict[int, int]:
    """Object id → the index of its proposal by `rule` ("ceiling" or "floor"), for the objects of
    the (H, W) labels that get one."""
    chosen = {}
    if not len(proposals) or not objects:
        return chosen
    masks = [truth == label for label in objects]
    if rule == "ceiling":
        for label, mask in zip(objects, masks):
            ious = [(proposal & mask).sum() / max((proposal | mask).sum(), 1)
                    for proposal in proposals.masks]
            if max(ious) > 0:
                chosen[label] = int(np.argmax(ious))
        return chosen
    boxes = torch.from_numpy(np.stack([box_of(mask) for mask in masks]))
    overlap = box_iou(torch.from_numpy(proposals.boxes), boxes)  # (P, O)
    owner = torch.where(overlap.max(1).values > 0, overlap.argmax(1), -1).numpy()
    for k, label in enumerate(objects):
        mine = np.flatnonzero(owner == k)
        if len(mine):
            chosen[label] = int(mine[np.argmax(proposals.scores[mine])])
    return chosen


def write_bound(video: Video, provider: ProposalProvider, rule: str, out: Path) -> None:
    """The label PNGs of one video by `rule` under out/<video>/."""
    given = video.reference_masks()
    first = video.first_appearance
    for index in range(len(video)):
        truth = video.mask(index)
        objects = [label for label in np.unique(truth).tolist() if label not in (0, 255)]
        labels = np.zeros_like(truth)
        tracked = [label for label in objects if first[label] < index]
        proposals = provider(video, index)
        for label, proposal in pick(proposals, truth, tracked, rule).items():
            labels[proposals.masks[proposal]] = label
        if index in given:
            labels = np.where(given[index] > 0, given[index], labels)
        write_label_png(out / video.name / f"{video.frame_names[index]}.png", labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=cache_root() / cache_folder_name(0, "default"))
    parser.add_argument("--strength", type=float, default=0.09)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/proposal_bounds"))
    args = parser.parse_args()
    provider = ProposalProvider("oracle", strength=args.strength, seed=args.seed)
    videos = read_videos("synthetic", args.root, "val")
    for video in videos:
        for rule in ("ceiling", "floor"):
            write_bound(video, provider, rule, args.out / rule)
    for rule in ("ceiling", "floor"):
        print(f"== {rule}: oracle proposals, strength {args.strength}, seed {args.seed}")
        evaluate(["--gt-root", str(args.root / "Annotations" / "480p"),
                  "--pred-root", str(args.out / rule), "--protocol", "davis2017",
                  "--sequences", ",".join(video.name for video in videos),
                  "--output", str(args.out / f"{rule}-scores")])


if __name__ == "__main__":
    main()
