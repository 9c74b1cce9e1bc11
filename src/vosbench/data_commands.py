"""`vosbench data`: dataset utilities. `synth` writes the built-in synthetic dataset, `check`
validates a dataset folder and prints its summary, `flow` precomputes optical flow."""

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
    synth.add_argument("--variant", default="default",
                       help="default, or camouflage: the objects in the distractors' colours, "
                            "so that only motion tells them apart (default: default)")
    synth.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    check = commands.add_parser(
        "check", help="validate a dataset folder and print its summary",
        description="Read every annotation and every frame header of one split of a dataset "
                    "folder; print per sequence the frames, annotated frames, object ids and size.")
    check.add_argument("--dataset", required=True, help="dataset name, e.g. davis2017")
    check.add_argument("--root", required=True, type=Path, help="the dataset folder as unzipped")
    check.add_argument("--split", help="split (default: the dataset's validation split)")
    check.add_argument("--json", action="store_true", help="print the summary as JSON")
    flow = commands.add_parser(
        "flow", help="precompute the optical flow of a dataset split",
        description="Compute the forward and backward optical flow of every frame of every "
                    "video of one split and write it as .flo files to "
                    "OUT/<dataset>/<method key>/<video>/{forward,backward}/<frame>.flo, the "
                    "layout a FlowProvider with cache_dir=OUT reads. Files already there are "
                    "kept, so an interrupted run resumes.")
    flow.add_argument("--dataset", required=True, help="dataset name, e.g. davis2017")
    flow.add_argument("--root", required=True, type=Path, help="the dataset folder as unzipped")
    flow.add_argument("--split", help="split (default: the dataset's validation split)")
    flow.add_argument("--out", required=True, type=Path, help="flow cache folder to write")
    flow.add_argument("--method", choices=["farneback", "raft", "flownet2c"],
                      default="farneback", help="estimator (default farneback)")
    flow.add_argument("--weights", type=Path,
                      help="RAFT: local file holding the model's state_dict; FlowNet2-C: "
                           "AGSS-VOS's checkpoint, NVIDIA's FlowNet2-C_checkpoint.pth.tar or a "
                           "state_dict (never downloaded)")
    flow.add_argument("--arch", choices=["raft_large", "raft_small"], default="raft_large",
                      help="RAFT architecture of --weights (default raft_large)")
    flow.add_argument("--channel-order", choices=["rgb", "bgr"], default="rgb",
                      help="FlowNet2-C: the channel order its weights expect (rgb: NVIDIA's "
                           "training; bgr: as AGSS-VOS fed it cv2's frames; default rgb)")
    flow.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                      help="RAFT and FlowNet2-C device (default cpu)")
    flow.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return parser


def synth(args: argparse.Namespace) -> None:
    from vosbench.datamodules.synthesis import VARIANTS, write_synthetic_dataset

    if args.variant not in VARIANTS:
        raise InputError(f"--variant {args.variant}: no such variant; known: "
                         f"{', '.join(VARIANTS)}")
    start = time.perf_counter()
    summary = write_synthetic_dataset(args.out, args.seed, progress=not args.quiet,
                                      variant=args.variant)
    if not args.quiet:
        print(f"wrote the synthetic dataset ({args.variant}, seed {args.seed}) to {args.out} in "
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


def flow(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from vosbench.datamodules.readers import read_videos
    from vosbench.flow.provider import FlowProvider

    if args.weights is not None and args.method not in ("raft", "flownet2c"):
        raise InputError("--weights is only read with --method raft or flownet2c")
    if args.channel_order != "rgb" and args.method != "flownet2c":
        raise InputError("--channel-order is only read with --method flownet2c")
    start = time.perf_counter()
    provider = FlowProvider(args.method, weights=args.weights, arch=args.arch,
                            cache_dir=args.out, device=args.device,
                            channel_order=args.channel_order)
    videos = read_videos(args.dataset, args.root, args.split)
    written = present = 0
    with tqdm(total=sum(len(video) for video in videos), desc="flow", unit="frame", leave=False,
              disable=args.quiet or None) as progress:
        for video in videos:
            for pairs, new, old in provider.precompute(video):
                written, present = written + new, present + old
                progress.update(pairs)
            progress.update(1)  # the last frame: its flow came with the last pair
    if not args.quiet:
        print(f"flow of {len(videos)} videos in {args.out / args.dataset / provider.key}: "
              f"{written} .flo files written, {present} already present, "
              f"{time.perf_counter() - start:.1f} s")


def summary_text(summary: dict) -> str:
    """One line from the summary that `write_synthetic_dataset` returns."""
    splits = ", ".join(f"{len(names)} {split}" for split, names in summary["splits"].items())
    frames = sum(summary["num_frames"].values())
    return f"{splits} videos, {frames} frames of {summary['size'][1]}x{summary['size'][0]}"


def main(argv: list[str] | None = None, prog: str = "vosbench data") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        {"synth": synth, "check": check, "flow": flow}[args.command](args)
    except (InputError, OSError) as error:
        print(f"{prog} {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0
