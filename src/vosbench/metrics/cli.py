"""`vosbench eval`: score folders of predicted label PNGs against the ground truth."""

import argparse
import os
import sys
import time
from pathlib import Path

from vosbench.errors import InputError
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
                    "(GT/<seq>/<frame>.png) with the J, F and T measures of the official DAVIS "
                    "toolkits. Writes global_results.csv, per-sequence_results.csv and "
                    "results.json to --output.")
    parser.add_argument("--gt-root", required=True, type=Path,
                        help="ground-truth folder, one subfolder per sequence (DAVIS: "
                             "Annotations/480p; db_info.yml beside it selects the T sequences)")
    parser.add_argument("--pred-root", required=True, type=Path,
                        help="prediction folder with the same layout and frame names")
    parser.add_argument("--protocol", required=True, choices=list(PROTOCOLS),
                        help="which objects and frames are scored, and how they are averaged")
    parser.add_argument("--output", required=True, type=Path, help="folder for the result files")
    parser.add_argument("--workers", type=int, default=available_cores(),
                        help="worker processes, one sequence each (default: available cores)")
    parser.add_argument("--sequences",
                        help="sequences to score: comma-separated names, or a file with one name "
                             "per line (e.g. ImageSets/2017/val.txt); default: all GT sequences")
    parser.add_argument("--t", dest="with_t", action=argparse.BooleanOptionalAction, default=None,
                        help="compute T, the temporal stability (default: only for davis2016; "
                             "for multi-object protocols it is computed per object)")
    parser.add_argument("--categories", type=Path,
                        help="youtube-objects: file of 'sequence category' lines; the global "
                             "score is then the mean over categories")
    parser.add_argument("--quiet", action="store_true", help="print no tables")
    return parser


def read_sequence_names(value: str) -> list[str]:
    """A comma-separated list, or the names in a file (one per line, blank lines ignored)."""
    path = Path(value)
    if path.is_file():
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
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


def run(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    protocol = get_protocol(args.protocol)
    sequences = read_sequence_names(args.sequences) if args.sequences else None
    categories = read_categories(args.categories) if args.categories else None
    if categories is not None and protocol.aggregate != "categories":
        raise InputError(f"--categories applies to the youtube-objects protocol, not "
                         f"{protocol.name}")
    if args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}")
    scores = score_folders(protocol, args.gt_root, args.pred_root, sequences=sequences,
                           workers=args.workers, with_t=args.with_t, progress=not args.quiet)
    if categories is not None:
        missing = [seq.name for seq in scores if seq.name not in categories]
        if missing:
            raise InputError(f"{args.categories}: no category for sequence(s) {', '.join(missing)}")
    document = results_document(protocol, scores, categories)
    write_results(args.output, document, protocol, scores)
    if not args.quiet:
        print(report_text(document, protocol, scores))
        print(f"\nResults written to {args.output} ({time.perf_counter() - start:.2f} s)")


def main(argv: list[str] | None = None, prog: str = "vosbench eval") -> int:
    args = build_parser(prog).parse_args(argv)
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
