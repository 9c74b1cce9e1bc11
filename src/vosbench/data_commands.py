"""`vosbench data`: dataset utilities. `synth` writes the built-in synthetic dataset, `check`
validates a dataset folder and prints its summary."""

import argparse
import json
import sys
import time
from pathlib import Path

from vosbench.errors import InputError


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Dataset utilities.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    synth = commands.add_parser(
        "synth", help="write the synthetic dataset (DAVIS 2017 layout)",
        description="Write the built-in synthetic video dataset in the DAVIS 2017 layout "
                    "(JPEGImages/480p, Annotations/480p, ImageSets/2016 and 2017, "
                    "Annotations/db_info.yml). The same seed gives byte-identical files.")
    synth.add_argument("--out", required=True, type=Path, help="new (or empty) folder to write")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    check = commands.add_parser(
        "check", help="validate a dataset folder and print its summary",
        description="Read every annotation and every frame header of one split of a dataset "
                    "folder; print per sequence the frames, annotated frames, object ids and size.")
    check.add_argument("--dataset", required=True, help="dataset name, e.g. davis2017")
    check.add_argument("--root", required=True, type=Path, help="the dataset folder as unzipped")
    check.add_argument("--split", help="split (default: the dataset's validation split)")
    check.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def synth(args: argparse.Namespace) -> None:
    from vosbench.datamodules.synthesis import write_synthetic_dataset

    start = time.perf_counter()
    summary = write_synthetic_dataset(args.out, args.seed, progress=not args.quiet)
    if not args.quiet:
        print(f"wrote the synthetic dataset (seed {args.seed}) to {args.out} in "
              f"{time.perf_counter() - start:.1f} s: {summary_text(summary)}")


def check(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from vosbench.datamodules.readers import default_split, read_videos

    videos = read_videos(args.dataset, args.root, args.split)
    sequences = {}
    for video in tqdm(videos, desc="checking", unit="video", leave=False,
                      disable=args.json or None):
        video.check_frames()
        sequences[video.name] = {"frames": len(video), "annotated": len(video.annotated),
                                 "objects": sorted(video.first_appearance),
                                 "size": list(video.size)}
    split = args.split or default_split(args.dataset)
    if args.json:
        print(json.dumps({"dataset": args.dataset, "split": split, "sequences": sequences},
                         indent=1))
        return
    print(f"{args.dataset} {split}: {len(sequences)} sequences in {args.root}")
    print(f"{'sequence':<24} {'frames':>6} {'annotated':>9} {'size':>10}  objects")
    for name, info in sequences.items():
        size = f"{info['size'][1]}x{info['size'][0]}"
        objects = " ".join(map(str, info["objects"])) or "-"
        print(f"{name:<24} {info['frames']:>6} {info['annotated']:>9} {size:>10}  {objects}")


def summary_text(summary: dict) -> str:
    """One line from the summary that `write_synthetic_dataset` returns."""
    splits = ", ".join(f"{len(names)} {split}" for split, names in summary["splits"].items())
    frames = sum(summary["num_frames"].values())
    return f"{splits} videos, {frames} frames of {summary['size'][1]}x{summary['size'][0]}"


def main(argv: list[str] | None = None, prog: str = "vosbench data") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        {"synth": synth, "check": check}[args.command](args)
    except (InputError, OSError) as error:
        print(f"{prog} {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0
