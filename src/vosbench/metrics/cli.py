"""`vosbench eval`: score folders of predicted label PNGs against the ground truth, given as a
folder of label PNGs (--gt-root) or as a dataset folder read in its native format (--dataset)."""

import argparse
import os
import sys
import time
from pathlib import Path

from vosbench.errors import InputError
from vosbench.io import read_names
from vosbench.metrics.datasets import DATASET_PROTOCOLS, dataset_protocol, score_dataset
from vosbench.metrics.folders import score_folders
from vosbench.metrics.protocols import PROTOCOLS, get_protocol
from vosbench.metrics.summary import report_text, results_document, write_results


def available_cores() -> int:
    """CPU cores this process may use (all cores where the platform cannot tell)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def build_parser(prog: str = "vosbench eval") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Score predicted label PNGs (PRED/<seq>/<frame>.png) against the ground truth "
                    "(GT/<seq>/<frame>.png, or a dataset folder read in its native format) with "
                    "the J, F and T measures of the official DAVIS toolkits. Writes "
                    "global_results.csv, per-sequence_results.csv and results.json to --output.")
    ground_truth = parser.add_mutually_exclusive_group(required=True)
    ground_truth.add_argument("--gt-root", type=Path,
                              help="ground-truth folder, one subfolder per sequence (DAVIS: "
                                   "Annotations/480p; db_info.yml beside it selects the T "
                                   "sequences)")
    ground_truth.add_argument("--dataset", choices=list(DATASET_PROTOCOLS),
                              help="instead of --gt-root: read the ground truth of --data-root "
                                   "with this dataset's reader; its annotated frames are scored")
    parser.add_argument("--data-root", type=Path,
                        help="with --dataset: the dataset folder as it unzips")
    parser.add_argument("--split",
                        help="with --dataset: the split (default: the dataset's evaluation split; "
                             "youtube-vos: train, with --sequences naming the held-out videos)")
    parser.add_argument("--pred-root", required=True, type=Path,
                        help="prediction folder: <seq>/<frame>.png, named as the GT frames")
    parser.add_argument("--protocol", choices=list(PROTOCOLS),
                        help="which objects and frames are scored, and how they are averaged "
                             "(required with --gt-root; with --dataset, default the dataset's)")
    parser.add_argument("--output", required=True, type=Path, help="folder for the result files")
    parser.add_argument("--workers", type=int, default=available_cores(),
                        help="worker processes, one sequence each (default: available cores)")
    parser.add_argument("--sequences",
                        help="sequences to score: comma-separated names, or a file with one name "
                             "per line (e.g. ImageSets/2017/val.txt); default: all GT sequences "
                             "(youtube-vos: required, the held-out train videos)")
    parser.add_argument("--t", dest="with_t", action=argparse.BooleanOptionalAction, default=None,
                        help="compute T, the temporal stability (default: only for davis2016; "
                             "for multi-object protocols it is computed per object)")
    parser.add_argument("--categories", type=Path,
                        help="with --gt-root and youtube-objects: file of 'sequence category' "
                             "lines; the global score is then the mean over categories (with "
                             "--dataset the categories come from the dataset)")
    parser.add_argument("--quiet", action="store_true", help="print no tables")
    return parser


def parse_arguments(argv: list[str] | None, prog: str) -> argparse.Namespace:
    """The command line, with the options that belong to one way of naming the ground truth
    checked against the way chosen (a mismatch is a usage error)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.dataset is None:
        misplaced = [option for option, value in (("--data-root", args.data_root),
                                                  ("--split", args.split)) if value is not None]
        if misplaced:
            parser.error(f"{' and '.join(misplaced)}: only with --dataset")
        if args.protocol is None:
            parser.error("--protocol is required with --gt-root")
    else:
        if args.data_root is None:
            parser.error("--data-root is required with --dataset")
        if args.categories is not None:
            parser.error("--categories: only with --gt-root (with --dataset the categories come "
                         "from the dataset)")
    return args


def read_sequence_names(value: str) -> list[str]:
    """A comma-separated list, or the names in a file (`read_names`: one per line, blank lines
    ignored, none twice)."""
    if Path(value).is_file():
        return read_names(value, "sequences")
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise InputError(f"--sequences {value!r}: no sequence names")
    return names


def read_categories(path: Path) -> dict[str, str]:
    """'sequence category' lines (whitespace or comma separated) → {sequence: category}."""
    if not path.is_file():
        raise InputError(f"{path}: categories file not found")
    categories = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.replace(",", " ").split()
        if not fields:
            continue
        if len(fields) != 2:
            raise InputError(f"{path}:{number}: expected 'sequence category', found {line!r}")
        categories[fields[0]] = fields[1]
    return categories


def score_gt_folder(args: argparse.Namespace, sequences: list[str] | None):
    """(protocol, scores, categories) against the --gt-root folder."""
    protocol = get_protocol(args.protocol)
    categories = read_categories(args.categories) if args.categories else None
    if categories is not None and protocol.aggregate != "categories":
        raise InputError(f"--categories applies to the youtube-objects protocol, not "
                         f"{protocol.name}")
    scores = score_folders(protocol, args.gt_root, args.pred_root, sequences=sequences,
                           workers=args.workers, with_t=args.with_t, progress=not args.quiet)
    if categories is not None:
        missing = [seq.name for seq in scores if seq.name not in categories]
        if missing:
            raise InputError(f"{args.categories}: no category for sequence(s) {', '.join(missing)}")
    return protocol, scores, categories


def score_dataset_folder(args: argparse.Namespace, sequences: list[str] | None):
    """(protocol, scores, categories) against the ground truth of the --dataset folder."""
    protocol = dataset_protocol(args.dataset, args.protocol)
    scores, categories = score_dataset(protocol, args.dataset, args.data_root, args.pred_root,
                                       split=args.split, sequences=sequences,
                                       workers=args.workers, with_t=args.with_t,
                                       progress=not args.quiet)
    return protocol, scores, categories


def run(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    sequences = read_sequence_names(args.sequences) if args.sequences else None
    if args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}")
    score = score_gt_folder if args.dataset is None else score_dataset_folder
    protocol, scores, categories = score(args, sequences)
    document = results_document(protocol, scores, categories)
    write_results(args.output, document, protocol, scores)
    if not args.quiet:
        print(report_text(document, protocol, scores))
        print(f"\nResults written to {args.output} ({time.perf_counter() - start:.2f} s)")


def main(argv: list[str] | None = None, prog: str = "vosbench eval") -> int:
    args = parse_arguments(argv, prog)
    try:
        run(args)
    except InputError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # e.g. an output folder that cannot be written
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; no result file was written", file=sys.stderr)
        return 130
    return 0
