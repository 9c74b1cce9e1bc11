"""From per-sequence scores to the benchmark's global numbers, tables and result files."""

import csv
import io
from pathlib import Path

import numpy as np

from vosbench.io import to_json, write_atomic
from vosbench.metrics.protocols import Protocol, SequenceScores
from vosbench.metrics.statistics import nanmean

STATISTICS = ("J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
COLUMNS = ("J&F-Mean",) + STATISTICS  # davis2017-evaluation's columns, T-Mean appended if computed
SEEN_UNSEEN = ("Overall", "J-Seen", "F-Seen", "J-Unseen", "F-Unseen")  # youtube-vos global
OBJECT_COLUMNS = ("Video", "Object", "Category", "Seen", "J-Mean", "F-Mean")  # youtube-vos rows


def headline_metric(protocol: Protocol) -> str:
    """The global metric that ranks runs under `protocol` (best checkpoint, leaderboard Δ)."""
    if protocol.aggregate == "seen-unseen":
        return "Overall"
    return "J&F-Mean" if "F" in protocol.measures else "J-Mean"


def _mean_or_none(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def global_scores(protocol: Protocol, sequences: list[SequenceScores],
                  categories: dict[str, str] | None = None) -> dict[str, float | None]:
    """The benchmark's global numbers; None for a measure the protocol does not compute.

    "objects": each statistic is the mean over all objects of all sequences (davis2016 has one
    object per sequence, so this is its mean over sequences); J&F = (J-Mean + F-Mean) / 2.
    "sequences" (fbms, segtrackv2): mean over sequences, plus J-/F-Mean-Frames, the mean over all
    scored frames pooled. "categories" (youtube-objects): with `categories` (sequence → category),
    mean over sequences per category, then over categories; J-Mean-Sequences keeps the plain mean.
    "seen-unseen" (youtube-vos): see `seen_unseen_scores`.
    T-Mean: mean over the sequences that have a T value (NaN values left out).
    """
    t_means = [seq.t_mean for seq in sequences if seq.t_mean is not None]
    t_mean = nanmean(t_means) if t_means else None
    if protocol.aggregate == "seen-unseen":
        return {**seen_unseen_scores(sequences), "T-Mean": t_mean}
    objects = [obj for seq in sequences for obj in seq.objects]
    result: dict[str, float | None] = {}
    for key in STATISTICS:
        if protocol.aggregate == "categories" and categories is not None:
            groups: dict[str, list[float]] = {}
            for seq in sequences:
                for obj in seq.objects:
                    if key in obj.stats:
                        groups.setdefault(categories[seq.name], []).append(obj.stats[key])
            result[key] = _mean_or_none([float(np.mean(v)) for v in groups.values()])
        else:
            result[key] = _mean_or_none([obj.stats[key] for obj in objects if key in obj.stats])
    both = result["J-Mean"] is not None and result["F-Mean"] is not None
    result["J&F-Mean"] = (result["J-Mean"] + result["F-Mean"]) / 2 if both else None
    result["T-Mean"] = t_mean
    if protocol.aggregate == "categories":
        result["J-Mean-Sequences"] = _mean_or_none([obj.stats["J-Mean"] for obj in objects])
    if protocol.aggregate == "sequences":
        for measure in protocol.measures:
            frames = [getattr(obj, measure) for obj in objects]
            result[f"{measure}-Mean-Frames"] = float(np.mean(np.concatenate(frames)))
    return {key: result[key] for key in COLUMNS + tuple(k for k in result if k not in COLUMNS)}


def seen_unseen_scores(sequences: list[SequenceScores]) -> dict[str, float | None]:
    """youtube-vos: J-Seen, F-Seen = means of J-Mean and F-Mean over the objects of seen
    categories, J-Unseen, F-Unseen over the others, Overall = their mean. A group without objects
    has None for its two values, and Overall is then the mean of the other two (the server never
    meets that case; a local held-out split can)."""
    objects = [obj for seq in sequences for obj in seq.objects]
    result = {}
    for group, seen in (("Seen", True), ("Unseen", False)):
        for measure in ("J", "F"):
            result[f"{measure}-{group}"] = _mean_or_none(
                [obj.stats[f"{measure}-Mean"] for obj in objects if obj.seen is seen])
    result["Overall"] = _mean_or_none([result[key] for key in SEEN_UNSEEN[1:]
                                       if result[key] is not None])
    return {key: result[key] for key in SEEN_UNSEEN}


def category_scores(sequences: list[SequenceScores], categories: dict[str, str]) -> dict:
    """J-Mean per category (mean over its sequences) and the sequences it holds."""
    table: dict[str, list[SequenceScores]] = {}
    for seq in sequences:
        table.setdefault(categories[seq.name], []).append(seq)
    return {cat: {"J-Mean": float(np.mean([o.stats["J-Mean"] for s in seqs for o in s.objects])),
                  "sequences": [s.name for s in seqs]} for cat, seqs in sorted(table.items())}


def _object_row(obj) -> dict[str, float | None]:
    row = {key: obj.stats.get(key) for key in STATISTICS}
    both = row["J-Mean"] is not None and row["F-Mean"] is not None
    row["J&F-Mean"] = (row["J-Mean"] + row["F-Mean"]) / 2 if both else None
    return row


def per_object_rows(protocol: Protocol, sequences: list[SequenceScores]) -> list[dict]:
    """One row per object (named `seq_id` as davis2017-evaluation) or per sequence (one object);
    youtube-vos: video, object id, category, seen, J-Mean and F-Mean."""
    rows = []
    for seq in sequences:
        for obj in seq.objects:
            if protocol.aggregate == "seen-unseen":
                row = {"Video": seq.name, "Object": str(obj.object_id),
                       "Category": obj.category or "", "Seen": str(obj.seen),
                       "J-Mean": obj.stats["J-Mean"], "F-Mean": obj.stats["F-Mean"]}
            else:
                name = seq.name if protocol.reading == "single" else f"{seq.name}_{obj.object_id}"
                row = {"Sequence": name, **_object_row(obj)}
            rows.append({**row, "T-Mean": obj.stats.get("T-Mean")})
    return rows


def table_columns(protocol: Protocol, document: dict) -> tuple[list[str], list[str]]:
    """(global columns, per-object row columns) of the CSV files and the printed tables."""
    with_t = ["T-Mean"] if document["global"]["T-Mean"] is not None else []
    if protocol.aggregate == "seen-unseen":
        return list(SEEN_UNSEEN) + with_t, list(OBJECT_COLUMNS) + with_t
    return list(COLUMNS) + with_t, ["Sequence"] + list(COLUMNS) + with_t


def results_document(protocol: Protocol, sequences: list[SequenceScores],
                     categories: dict[str, str] | None = None) -> dict:
    """The content of results.json: global numbers and every per-frame value, full precision.
    With per-object frames (youtube-vos) each object also names its scored frames, its category
    and whether it is seen."""
    document = {"protocol": protocol.name,
                "global": global_scores(protocol, sequences, categories),
                "sequences": {}}
    for seq in sequences:
        objects = {}
        for obj in seq.objects:
            entry = {"J": obj.J, "F": obj.F, **{key: obj.stats.get(key) for key in STATISTICS}}
            if protocol.per_object_frames:
                entry = {"frames": seq.frames[obj.first_frame:], "category": obj.category,
                         "seen": obj.seen, **entry}
            if obj.T is not None and protocol.reading != "single":
                entry.update({"T": obj.T, "T-Mean": obj.stats["T-Mean"]})
            objects[str(obj.object_id)] = entry
        single_t = seq.objects[0].T if protocol.reading == "single" else None
        document["sequences"][seq.name] = {"frames": seq.frames, "objects": objects,
                                           "T": single_t, "T-Mean": seq.t_mean}
    if categories is not None:
        document["categories"] = category_scores(sequences, categories)
    return document


def _format(value: float | None, decimals: int) -> str:
    return "" if value is None or np.isnan(value) else f"{value:.{decimals}f}"


def _csv_text(header: list[str], rows: list[dict]) -> str:
    """CSV rounded to 3 decimals like davis2017-evaluation's files (results.json keeps all)."""
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([row[key] if isinstance(row[key], str) else _format(row[key], 3)
                         for key in header])
    return stream.getvalue()


def write_results(output: str | Path, document: dict, protocol: Protocol,
                  sequences: list[SequenceScores]) -> None:
    """Write global_results.csv, per-sequence_results.csv and results.json atomically."""
    output = Path(output)
    columns, row_columns = table_columns(protocol, document)
    per_object = per_object_rows(protocol, sequences)
    write_atomic(output / "global_results.csv", _csv_text(columns, [document["global"]]))
    write_atomic(output / "per-sequence_results.csv", _csv_text(row_columns, per_object))
    write_atomic(output / "results.json", to_json(document))


def _empty_group_notes(scores: dict) -> list[str]:
    """youtube-vos: a line saying which group (seen, unseen) has no object, if one has none."""
    empty = [group for group in ("Seen", "Unseen") if scores[f"J-{group}"] is None]
    if len(empty) == 2:
        return ["No object was scored: every value is undefined (null)."]
    return [f"No {group.lower()} object: J-{group} and F-{group} are undefined (null); Overall is "
            f"the mean of the other two." for group in empty]


def format_table(header: list[str], rows: list[dict], decimals: int = 6) -> str:
    """Right-aligned text table, as pandas prints the official toolkit's tables."""
    cells = [[row[key] if isinstance(row[key], str) else (_format(row[key], decimals) or "-")
              for key in header] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def report_text(document: dict, protocol: Protocol, sequences: list[SequenceScores]) -> str:
    """The printed report: global results, then per-sequence (youtube-vos: per-object) results."""
    columns, row_columns = table_columns(protocol, document)
    extra = [k for k in document["global"] if k not in columns and k != "T-Mean"]
    lines = [f"--------------------------- Global results for {protocol.name} "
             f"---------------------------",
             format_table(columns + extra, [document["global"]])]
    if protocol.aggregate == "seen-unseen":
        lines += _empty_group_notes(document["global"])
    unit = "object" if protocol.aggregate == "seen-unseen" else "sequence"
    lines += ["",
              f"---------- Per {unit} results for {protocol.name} ----------",
              format_table(row_columns, per_object_rows(protocol, sequences))]
    if "categories" in document:
        rows = [{"Category": cat, "J-Mean": v["J-Mean"], "Sequences": str(len(v["sequences"]))}
                for cat, v in document["categories"].items()]
        lines += ["", "---------- Per category results ----------",
                  format_table(["Category", "J-Mean", "Sequences"], rows)]
    return "\n".join(lines)
