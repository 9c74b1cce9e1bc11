"""`vosbench leaderboard`: tables from the results rows of benchmark runs (results/*.json), with
the numbers the papers report beside them (methods/reported/*.yaml), as Markdown, LaTeX or CSV.

Metric values in the rows are fractions (as the metrics engine gives them); the tables show them
in percent, as the papers print them. The reported numbers are stored in percent already.
"""

import argparse
import importlib.resources
import json
import math
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from vosbench.errors import InputError
from vosbench.io import write_atomic
from vosbench.metrics.protocols import get_protocol
from vosbench.metrics.summary import COLUMNS, SEEN_UNSEEN, headline_metric
from vosbench.results import READABLE_VERSIONS

REQUIRED_KEYS = ("schema_version", "method", "preset", "dataset", "split", "protocol", "metrics",
                 "created")
KNOWN_METRICS = (*COLUMNS, *SEEN_UNSEEN, "T-Mean", "J-Mean-Sequences", "J-Mean-Frames",
                 "F-Mean-Frames")

# protocol -> its metric columns, in the layout of the papers' tables
LAYOUTS = {
    "davis2016": ("J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay", "T-Mean",
                  "J&F-Mean"),
    "davis2017": ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"),
    "davis2017-unsupervised": ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall",
                               "F-Decay"),
    "youtube-vos": ("Overall", "J-Seen", "J-Unseen", "F-Seen", "F-Unseen"),
    "youtube-objects": ("J-Mean",),
    "fbms": ("J-Mean", "F-Mean"),
    "segtrackv2": ("J-Mean",),
}
HEADERS = {"J-Mean": "J Mean", "J-Recall": "J Recall", "J-Decay": "J Decay", "F-Mean": "F Mean",
           "F-Recall": "F Recall", "F-Decay": "F Decay", "T-Mean": "T Mean", "J&F-Mean": "J&F",
           "Overall": "Overall", "J-Seen": "J seen", "J-Unseen": "J unseen", "F-Seen": "F seen",
           "F-Unseen": "F unseen"}
LOWER_IS_BETTER = {"J Decay", "F Decay", "T Mean"}
TEXT_COLUMNS = ("Method", "Source")
# the columns rendered as text: TEXT_COLUMNS, and an ablation table's Setting
LABEL_COLUMNS = (*TEXT_COLUMNS, "Setting")
DELTA = "Δ"
# n: the seeds an entry of ours averages (reported rows: none)
EXTRA_COLUMNS = ("FPS", "Params (M)", DELTA, "n")
# the column of a metric's standard deviation over the seeds ("J Mean std"), which md and LaTeX
# show after the mean ("77.3±3.1") and CSV as a column
STD = " std"
# the config keys that can tell settings apart (not the seed: runs that differ only in it are one
# entry), less SITE_KEYS, which say where and how a run was made, not what was trained and scored
SETTING_PREFIXES = ("model.", "data.", "trainer.max_steps", "trainer.max_epochs")
SITE_KEYS = {"data.init_args.root", "data.init_args.num_workers", "model.init_args.output_workers",
             "model.init_args.prediction_dir", "model.init_args.num_overlays"}
FORMATS = ("md", "latex", "csv")
MISSING = {"md": "–", "latex": "--"}


# ------------------------------------------------------------------------------ reading

def _created(value, path: Path) -> datetime:
    """The row's `created` timestamp (ISO 8601); one without a time zone is taken as UTC."""
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{path}: 'created' is not an ISO 8601 timestamp: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_row(row, path: Path) -> dict:
    """The row with `created` parsed, or InputError naming the file and what is wrong."""
    if not isinstance(row, dict):
        raise InputError(f"{path}: expected a JSON object (a results row), found "
                         f"{type(row).__name__}")
    missing = [key for key in REQUIRED_KEYS if row.get(key) is None]
    if missing:
        raise InputError(f"{path}: not a results row: missing {', '.join(missing)}")
    if row["schema_version"] not in READABLE_VERSIONS:
        raise InputError(f"{path}: unknown schema_version {row['schema_version']!r}; this "
                         f"vosbench reads versions {', '.join(map(str, READABLE_VERSIONS))}")
    for key in ("method", "preset", "dataset", "split"):
        if not isinstance(row[key], str):
            raise InputError(f"{path}: '{key}' must be a string, found {row[key]!r}")
    if row["protocol"] not in LAYOUTS:
        raise InputError(f"{path}: unknown protocol {row['protocol']!r}; known: "
                         f"{', '.join(LAYOUTS)}")
    metrics = row["metrics"]
    if not isinstance(metrics, dict) or not all(
            value is None or _is_number(value) for value in metrics.values()):
        raise InputError(f"{path}: 'metrics' must map metric names to numbers or null")
    for key in ("fps", "parameters"):
        if row.get(key) is not None and not _is_number(row[key]):
            raise InputError(f"{path}: '{key}' must be a number or null, found {row[key]!r}")
    return {**row, "created": _created(row["created"], path), "file": path.name}


def load_rows(results_dir: str | Path) -> list[dict]:
    """Every results row (*.json) of a folder, checked; `created` becomes a datetime and `file`
    names the row's file. A missing folder, a file that is not JSON, lacks a required key or has
    an unknown schema_version raises InputError naming it. An empty folder gives []."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise InputError(f"{results_dir}: results folder not found")
    rows = []
    for path in sorted(results_dir.glob("*.json")):
        try:
            row = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as error:
            raise InputError(f"{path}: not valid JSON ({error})") from None
        rows.append(_check_row(row, path))
    return rows


def _check_reported(document, name: str) -> list[dict]:
    """The results of one reported-numbers YAML, flattened, or InputError naming the file."""
    if not isinstance(document, dict) or not isinstance(document.get("results"), list):
        raise InputError(f"{name}: expected 'method', 'name', 'title', 'venue' and a list "
                         f"'results'")
    missing = [key for key in ("method", "name", "title", "venue") if not document.get(key)]
    if missing:
        raise InputError(f"{name}: missing {', '.join(missing)}")
    results = []
    for number, result in enumerate(document["results"], start=1):
        where = f"{name}: result {number}"
        if not isinstance(result, dict) or not isinstance(result.get("metrics"), dict):
            raise InputError(f"{where}: expected dataset, split, protocol and metrics")
        missing = [key for key in ("dataset", "split", "protocol") if not result.get(key)]
        if missing:
            raise InputError(f"{where}: missing {', '.join(missing)}")
        if result["protocol"] not in LAYOUTS:
            raise InputError(f"{where}: unknown protocol {result['protocol']!r}")
        unknown = [key for key in result["metrics"] if key not in KNOWN_METRICS]
        if unknown:
            raise InputError(f"{where}: unknown metric name(s) {', '.join(map(str, unknown))}; "
                             f"known: {', '.join(KNOWN_METRICS)}")
        categories = result.get("categories", {})
        if not isinstance(categories, dict):
            raise InputError(f"{where}: 'categories' must map category names to numbers")
        numbers = [*result["metrics"].values(), *categories.values()]
        if not all(_is_number(value) and -100 <= value <= 100 for value in numbers):
            raise InputError(f"{where}: metrics must be numbers in percent (-100 to 100)")
        if result.get("fps") is not None and not _is_number(result["fps"]):
            raise InputError(f"{where}: fps must be a number")
        results.append({"method": document["method"], "name": document["name"],
                        "dataset": result["dataset"], "split": str(result["split"]),
                        "protocol": result["protocol"], "metrics": result["metrics"],
                        "note": result.get("note"), "fps": result.get("fps")})
    return results


def load_reported(folder=None) -> list[dict]:
    """The numbers the papers report, one dict per result (method, name, dataset, split,
    protocol, metrics in percent, note, fps), from every *.yaml in `folder` — by default the
    `reported` folder that ships in the `vosbench.methods` package."""
    if folder is None:
        folder = importlib.resources.files("vosbench.methods") / "reported"
    reported = []
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if entry.name.endswith(".yaml"):
            try:
                document = yaml.safe_load(entry.read_text(encoding="utf-8"))
            except yaml.YAMLError as error:
                raise InputError(f"{entry}: not valid YAML ({error})") from None
            reported += _check_reported(document, str(entry))
    return reported


# ------------------------------------------------------------------------------ tables

def _number(value) -> float:
    return math.nan if value is None else float(value)


def setting_keys(rows: list[dict]) -> list[str]:
    """The config keys that tell the settings of `rows` (runs of one method and preset) apart:
    model and data options and the training length (SETTING_PREFIXES) whose values differ
    between the rows, less SITE_KEYS."""
    configs = [row.get("config") or {} for row in rows]
    keys = set().union(*configs) - SITE_KEYS
    return sorted(key for key in keys if key.startswith(SETTING_PREFIXES) and
                  len({json.dumps(config.get(key), sort_keys=True) for config in configs}) > 1)


def _latest_per_seed(runs: list[dict]) -> list[dict]:
    """The latest run (by `created`, then file name) of each seed among `runs`."""
    latest: dict = {}
    for row in sorted(runs, key=lambda row: (row["created"], row["file"])):
        latest[(row.get("config") or {}).get("seed_everything", row.get("seed"))] = row
    return list(latest.values())


def _over_seeds(runs: list[dict], metric: str) -> tuple[float, float]:
    """(mean, sample standard deviation) of a metric over `runs`, in percent (std NaN for one)."""
    values = [_number(run["metrics"].get(metric)) * 100 for run in runs]
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def _settings(rows: list[dict], all_runs: bool) -> list[tuple[str, str, list[dict]]]:
    """Our entries of one method: (preset, setting name, runs), a setting per preset and values
    of its `setting_keys` (named "key=value, …" by the keys' last parts; "" when all agree).
    The runs of a setting are its latest of each seed, or, with `all_runs`, each run an entry
    of its own (by `created`)."""
    entries = []
    for preset in sorted({row["preset"] for row in rows}):
        runs = sorted((row for row in rows if row["preset"] == preset),
                      key=lambda row: (row["created"], row["file"]))
        keys = setting_keys(runs)
        settings: dict[str, list[dict]] = {}
        for row in runs:
            config = row.get("config") or {}
            name = ", ".join(f"{key.rsplit('.', 1)[-1]}={json.dumps(config.get(key))}"
                             for key in keys)
            settings.setdefault(name, []).append(row)
        for name, group in settings.items():
            entries += ([(preset, name, [row]) for row in group] if all_runs
                        else [(preset, name, _latest_per_seed(group))])
    return entries


def notes_of(runs: list[dict]) -> list[str]:
    """The notes of any of `runs` ("oracle proposals"), in order of appearance."""
    return list(dict.fromkeys(note for run in runs for note in run.get("notes") or ()))


def _table(key: tuple[str, str, str], rows: list[dict], reported: list[dict],
           names: dict[str, str], all_runs: bool) -> pd.DataFrame:
    """One table: per method, its reported rows (in the order of its YAML), then our entries."""
    metrics = LAYOUTS[key[2]]
    headline = headline_metric(get_protocol(key[2]))
    columns = [*TEXT_COLUMNS, *(HEADERS[m] for m in metrics), *EXTRA_COLUMNS,
               *(f"{HEADERS[m]}{STD}" for m in metrics)]
    papers = [entry for entry in reported
              if (entry["dataset"], entry["split"], entry["protocol"]) == key]
    records = []
    for method in sorted({row["method"] for row in rows} | {e["method"] for e in papers}):
        baseline = next((e["metrics"][headline] for e in papers
                         if e["method"] == method and e["metrics"].get(headline) is not None),
                        None)
        for entry in (e for e in papers if e["method"] == method):
            source = f"reported ({entry['note']})" if entry["note"] else "reported"
            records.append({"Method": entry["name"], "Source": source,
                            **{HEADERS[m]: _number(entry["metrics"].get(m)) for m in metrics},
                            "FPS": _number(entry["fps"]), "Params (M)": math.nan,
                            DELTA: math.nan, "n": math.nan})
        ours = [row for row in rows if row["method"] == method]
        for preset, setting, runs in _settings(ours, all_runs):
            summaries = {m: _over_seeds(runs, m) for m in metrics}
            when = f", {runs[0]['created']:%Y-%m-%d %H:%M}" if all_runs else ""
            parameters = runs[-1].get("parameters")
            name = names.get(method, method)
            records.append({
                "Method": f"{name} ({setting})" if setting else name,
                "Source": f"ours ({'; '.join([preset + when, *notes_of(runs)])})",
                **{HEADERS[m]: mean for m, (mean, _) in summaries.items()},
                "FPS": float(np.mean([_number(run.get("fps")) for run in runs])),
                "Params (M)": math.nan if parameters is None else parameters / 1e6,
                DELTA: math.nan if baseline is None else summaries[headline][0] - baseline,
                "n": len(runs),
                **{f"{HEADERS[m]}{STD}": std for m, (_, std) in summaries.items()}})
    return pd.DataFrame.from_records(records, columns=columns)


def build_tables(rows: list[dict], reported: list[dict], dataset: str | None = None,
                 all_runs: bool = False) -> dict[tuple[str, str, str], pd.DataFrame]:
    """One table per (dataset, split, protocol) of `rows` (as `load_rows` gives them), sorted by
    that key; only `dataset`'s if given.

    Each table has a row per setting of ours — method, preset and the config keys that differ
    between its runs (`setting_keys`, named in Method: "AGNN (graph=false)") — averaging the
    latest run of each seed (or a row per run with `all_runs`), and the `reported` rows (as
    `load_reported` gives them) of the same dataset, split and protocol. Columns: Method, Source
    ("ours (<preset>)", with the runs' notes: "ours (tiny; oracle proposals)", or "reported
    (<note>)"), the protocol's metrics in percent (LAYOUTS),
    means over the seeds, FPS, Params (M), Δ (for our rows, our headline metric
    (`headline_metric`) minus that of the method's first reported row on the table, in points),
    n (the seeds), then each metric's sample standard deviation over the seeds ("J Mean std";
    NaN for one seed). Missing values are NaN.
    """
    names = {entry["method"]: entry["name"] for entry in reported}
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for row in rows:
        if dataset is None or row["dataset"] == dataset:
            groups.setdefault((row["dataset"], row["split"], row["protocol"]), []).append(row)
    return {key: _table(key, groups[key], reported, names, all_runs) for key in sorted(groups)}


# ------------------------------------------------------------------------------ rendering

def _shown(value: float, column: str) -> str:
    """A number as the tables show it: one decimal, Δ with its sign."""
    return f"{value:+.1f}" if column.endswith(DELTA) else f"{value:.1f}"


def _best(table: pd.DataFrame) -> pd.DataFrame:
    """True where a metric cell holds its column's best value as shown (one decimal; lowest for
    Decay and T, highest otherwise; ties all best), in columns with at least two values."""
    best = pd.DataFrame(False, index=table.index, columns=table.columns)
    for column in table.columns:
        if column not in HEADERS.values():
            continue
        shown = table[column].dropna().map(lambda value: float(f"{value:.1f}"))
        if len(shown) >= 2:
            target = shown.min() if column in LOWER_IS_BETTER else shown.max()
            best.loc[shown.index[shown == target], column] = True
    return best


def _latex_escape(text: str) -> str:
    replacements = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                    "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                    "^": r"\textasciicircum{}", DELTA: r"$\Delta$"}
    return "".join(replacements.get(char, char) for char in text)


def _shown_columns(table: pd.DataFrame) -> list[str]:
    """The columns md and LaTeX show: all but the standard deviations, shown in the means'."""
    return [column for column in table.columns if not column.endswith(STD)]


def _cells(table: pd.DataFrame, fmt: str) -> list[list[str]]:
    """The shown cells as text for Markdown or LaTeX: best values bold, a mean over several
    seeds followed by "±" and its standard deviation, n as an integer."""
    best = _best(table)
    rows = []
    for index, record in table.iterrows():
        cells = []
        for column in _shown_columns(table):
            value = record[column]
            if column in LABEL_COLUMNS:
                text = _latex_escape(value) if fmt == "latex" else value.replace("|", r"\|")
            elif pd.isna(value):
                text = MISSING[fmt]
            elif column == "n":
                text = f"{value:.0f}"
            else:
                text = _shown(value, column)
                spread = record.get(f"{column}{STD}", math.nan)
                if not pd.isna(spread):
                    text += ("$\\pm$" if fmt == "latex" else "±") + f"{spread:.1f}"
                if fmt == "latex" and text.startswith("-"):
                    text = "$-$" + text[1:]
                if best.at[index, column]:
                    text = rf"\textbf{{{text}}}" if fmt == "latex" else f"**{text}**"
            cells.append(text)
        rows.append(cells)
    return rows


def _markdown(table: pd.DataFrame) -> str:
    columns = _shown_columns(table)
    header = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join(":---" if c in LABEL_COLUMNS else "---:" for c in columns) + "|"
    body = ["| " + " | ".join(cells) + " |" for cells in _cells(table, "md")]
    return "\n".join([header, rule, *body]) + "\n"


def _latex(table: pd.DataFrame) -> str:
    """A booktabs tabular; "J Mean", "J Recall"… are grouped under one $\\mathcal{J}$ header."""
    groups: list[tuple[str, int]] = []  # (group, number of columns); "" for a column alone
    names = []
    columns = _shown_columns(table)
    for column in columns:
        group, name = column.split(" ", 1) if column[:2] in ("J ", "F ", "T ") else ("", column)
        if groups and group and groups[-1][0] == group:
            groups[-1] = (group, groups[-1][1] + 1)
        else:
            groups.append((group, 1))
        names.append(_latex_escape(name))
    spec = "".join("l" if column in LABEL_COLUMNS else "r" for column in columns)
    top, rules, start = [], [], 1
    for group, width in groups:
        if group:
            top.append(rf"\multicolumn{{{width}}}{{c}}{{$\mathcal{{{group}}}$}}")
            rules.append(rf"\cmidrule(lr){{{start}-{start + width - 1}}}")
        else:
            top.append("")
        start += width
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    if rules:
        lines += [" & ".join(top) + r" \\", " ".join(rules)]
    lines += [" & ".join(names) + r" \\", r"\midrule"]
    lines += [" & ".join(cells) + r" \\" for cells in _cells(table, "latex")]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def render(table: pd.DataFrame, format: str) -> str:
    """One table as GitHub Markdown ("md"), a LaTeX booktabs tabular ("latex") or CSV ("csv").

    md and latex show numbers with one decimal, the best value of each metric column in bold and
    a missing value as "–" (LaTeX "--"); csv keeps the numbers (rounded to 6 decimals, to drop
    the noise of ×100), missing values empty, no bold.
    """
    if format == "md":
        return _markdown(table)
    if format == "latex":
        return _latex(table)
    if format == "csv":
        return table.round(6).to_csv(index=False, lineterminator="\n")
    raise ValueError(f"unknown format {format!r}; known: {', '.join(FORMATS)}")


def title(key: tuple[str, str, str]) -> str:
    """A table's title: dataset, split, protocol and what Δ compares."""
    dataset, split, protocol = key
    return (f"{dataset} {split} (protocol {protocol}); Δ = ours − reported "
            f"{HEADERS[headline_metric(get_protocol(protocol))]}")


def render_all(tables: dict[tuple[str, str, str], pd.DataFrame], format: str) -> str:
    """Every table in one document: titled tables (md, latex), or one CSV whose first columns
    (Dataset, Split, Protocol) name each row's table."""
    if format == "csv":
        frames = [table.assign(Dataset=key[0], Split=key[1], Protocol=key[2])
                  for key, table in tables.items()]
        combined = pd.concat(frames, ignore_index=True)
        keys = ["Dataset", "Split", "Protocol"]
        return render(combined[keys + [c for c in combined.columns if c not in keys]], "csv")
    if format == "latex":
        return "\n".join(f"% {title(key)}\n{render(table, 'latex')}"
                         for key, table in tables.items())
    parts = ["# Leaderboard\n",
             "Metrics in percent. **Bold**: the best value of a column (Decay and T: lower is "
             "better). *reported*: the numbers printed in the method's paper; Δ compares our run "
             "with the method's first reported row, in points.\n"]
    parts += [f"## {title(key)}\n\n{render(table, 'md')}" for key, table in tables.items()]
    return "\n".join(parts)


# ------------------------------------------------------------------------------ ablation

def load_ablations(method: str, folder=None) -> list[dict]:
    """The ablation tables of `methods/reported/<method>.yaml` (its `ablations` list; [] when it
    has none)."""
    folder = folder or importlib.resources.files("vosbench.methods") / "reported"
    entry = folder / f"{method}.yaml"
    if not entry.is_file():
        return []
    return yaml.safe_load(entry.read_text(encoding="utf-8")).get("ablations", [])


def preset_values(row: dict) -> dict:
    """The values of the method's preset for the dotted keys: the preset file's model init
    arguments, else the method's defaults (the reference of an ablation)."""
    import inspect

    from vosbench.bench import config_root
    from vosbench.lightning_cli import methods

    preset = yaml.safe_load((config_root() / "methods" / row["method"] /
                             f"{row['preset']}.yaml").read_text())
    given = (preset.get("model") or {}).get("init_args") or {}
    signature = inspect.signature(methods()[row["method"]].__init__).parameters
    defaults = {name: p.default for name, p in signature.items()
                if p.default is not inspect.Parameter.empty}
    return {f"model.init_args.{name}": value for name, value in {**defaults, **given}.items()}


def ablation_table(rows: list[dict], sweep: str, reference: dict | None = None,
                   folder=None) -> tuple[str, pd.DataFrame]:
    """The ablation table of sweep `sweep`'s rows, in the papers' layout: (title, table).

    A row per setting (the values of the keys the trials vary, the seed aside), named by what
    it changes against the reference ("reference" for the reference itself): `reference`
    ({dotted key: value}) or the method's preset values; the metric of the method's first
    reported ablation table (AGNN Table 6: J Mean), else the protocol's headline metric, in
    percent, mean (and std) over the seeds and n; Δ against the reference row; and where one of
    the paper's ablation tables of that metric has the same change, its value and its Δ against
    that table's reference (AMC-Net's Tables 1–3 each have one).
    """
    trials = [row for row in rows if row.get("sweep_id") == sweep]
    if not trials:
        raise InputError(f"no results rows of sweep {sweep!r}")
    methods_ = {row["method"] for row in trials}
    if len(methods_) > 1:
        raise InputError(f"sweep {sweep!r} compares methods ({', '.join(sorted(methods_))}): "
                         f"its rows are in the leaderboard, an ablation is of one method")
    first = trials[0]
    key = (first["dataset"], first["split"], first["protocol"])
    # the paper's ablation table, on its own dataset (the sweep may run on another, e.g. the
    # synthetic default): the comparison is of the changes' direction and size, said in the title
    reported = load_ablations(first["method"], folder)
    paper = reported[0] if reported else None
    headline = headline_metric(get_protocol(first["protocol"]))
    metric = paper["metric"] if paper and paper["metric"] in first["metrics"] else headline
    # a table of a metric the sweep's rows lack (AGSS-VOS's Table 4: YouTube-VOS Overall) is
    # compared by headline metrics: its protocol's against the sweep's
    papers = [table for table in reported if table["metric"] == metric] or [
        table for table in reported
        if table["metric"] == headline_metric(get_protocol(table["protocol"]))]
    varied = sorted({name for row in trials for name in row.get("trial_parameters") or {}
                     if name != "seed_everything" and len({json.dumps(r["config"].get(name))
                                                          for r in trials}) > 1})
    base = reference if reference is not None else preset_values(first)
    names = {name: short for table in papers for name, short in table.get("names", {}).items()}
    groups: dict[str, list[dict]] = {}
    changes: dict[str, dict] = {}
    for row in sorted(trials, key=lambda row: row.get("trial") or 0):
        changed = {name: row["config"].get(name) for name in varied
                   if row["config"].get(name) != base.get(name)}
        label = ", ".join(f"{names.get(name, name.rsplit('.', 1)[-1])} = "
                          f"{json.dumps(value)}" for name, value in changed.items())
        label = label or "reference"
        groups.setdefault(label, []).append(row)
        changes[label] = changed
    header = HEADERS[metric]
    groups = {label: _latest_per_seed(runs) for label, runs in groups.items()}
    summaries = {label: _over_seeds(runs, metric) for label, runs in groups.items()}
    means = {label: mean for label, (mean, _) in summaries.items()}
    records = []
    for label, runs in groups.items():
        table, match = next(((table, row) for table in papers for row in table["rows"]
                             if row["setting"] == changes[label]), (paper, None))
        paper_value = paper["reference"] if paper and label == "reference" else \
            (match["value"] if match else math.nan)
        records.append({"Setting": label, header: means[label],
                        DELTA: means[label] - means["reference"] if "reference" in means
                        else math.nan, "n": len(runs),
                        f"paper {header}": paper_value,
                        f"paper {DELTA}": paper_value - table["reference"] if table
                        else math.nan,
                        f"{header}{STD}": summaries[label][1]})
    tables = ", ".join(table["table"] for table in papers)
    title = (f"sweep {sweep}: {first['method']} "
             f"({'; '.join([first['preset'], *notes_of(trials)])}) on {key[0]} {key[1]}, "
             f"{header}" + (f"; paper: {tables} ({paper['dataset']} {paper['split']}"
                            f"{'' if paper['metric'] == metric else ', ' + paper['metric']})"
                            if paper else ""))
    return title, pd.DataFrame.from_records(records)


# ------------------------------------------------------------------------------ command line

def build_parser(prog: str = "vosbench leaderboard") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Tables of the benchmark's results rows (RESULTS/*.json), one per dataset, "
                    "split and protocol: a row per setting (method, preset and the config keys "
                    "its runs differ in), mean ± std over its seeds (the latest run of each), "
                    "with the numbers the methods' papers report alongside (marked "
                    "'reported').")
    parser.add_argument("--results", type=Path, default=Path("results"),
                        help="folder of results rows (default: results)")
    parser.add_argument("--dataset", help="only the tables of this dataset")
    parser.add_argument("--format", choices=FORMATS, default="md",
                        help="md (GitHub Markdown), latex (booktabs tabulars) or csv "
                             "(one file, raw numbers); default md")
    parser.add_argument("--output", type=Path, help="write to this file (atomically), not stdout")
    parser.add_argument("--all-runs", action="store_true",
                        help="a row per run, not per setting")
    parser.add_argument("--sweep", metavar="ID",
                        help="the ablation table of sweep ID (vosbench sweep), in the papers' "
                             "layout, beside the paper's ablation rows")
    parser.add_argument("--reference", metavar="KEY=VALUE,…",
                        help="with --sweep: the reference setting (default: the method's preset "
                             "values), e.g. model.init_args.num_iterations=3")
    return parser


def parse_reference(text: str | None) -> dict | None:
    """`key=value,…` as {key: value} (values read as YAML: 3, true, null, channel)."""
    if text is None:
        return None
    pairs = [item.split("=", 1) for item in text.split(",") if item]
    if not all(len(pair) == 2 for pair in pairs):
        raise InputError(f"--reference {text!r}: expected key=value,key=value")
    return {key.strip(): yaml.safe_load(value) for key, value in pairs}


def render_ablation(title_text: str, table: pd.DataFrame, format: str) -> str:
    """An ablation table with its title (md heading, LaTeX comment; CSV: the table alone)."""
    if format == "md":
        return f"## {title_text}\n\n{render(table, 'md')}"
    if format == "latex":
        return f"% {title_text}\n{render(table, 'latex')}"
    return render(table, "csv")


def run(args: argparse.Namespace) -> None:
    rows = load_rows(args.results)
    if not rows:
        raise InputError(f"no results rows in {args.results} (a benchmark run writes one "
                         f"<method>-<dataset>-<split>-<timestamp>.json)")
    if args.sweep:
        text = render_ablation(*ablation_table(rows, args.sweep, parse_reference(args.reference)),
                               args.format)
        written = f"the ablation table of sweep {args.sweep}"
    else:
        tables = build_tables(rows, load_reported(), dataset=args.dataset,
                              all_runs=args.all_runs)
        if not tables:
            datasets = sorted({row["dataset"] for row in rows})
            raise InputError(f"no results rows for dataset {args.dataset!r} in {args.results}; "
                             f"datasets there: {', '.join(datasets)}")
        text = render_all(tables, args.format)
        written = f"{len(tables)} table(s)"
    if args.output is None:
        print(text, end="")
    else:
        write_atomic(args.output, text)
        print(f"{written} written to {args.output}")


def main(argv: list[str] | None = None, prog: str = "vosbench leaderboard") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        run(args)
    except (InputError, OSError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    return 0
