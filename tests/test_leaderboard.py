"""`vosbench leaderboard`: results rows to tables, with the papers' reported numbers beside them."""

import fnmatch
import importlib.resources
import io
import json
import math
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
import yaml

from vosbench.cli import main as vosbench_main
from vosbench.errors import InputError
from vosbench.leaderboard import (
    ablation_table,
    build_tables,
    load_reported,
    load_rows,
    render,
    render_all,
    setting_keys,
)
from vosbench.metrics.summary import COLUMNS, SEEN_UNSEEN

ROOT = Path(__file__).resolve().parents[1]
DAVIS16 = ("davis2016", "val", "davis2016")
# what the metrics engine can name: its global columns, T, and the per-sequence/frame means
ENGINE_METRICS = {*COLUMNS, *SEEN_UNSEEN, "T-Mean", "J-Mean-Sequences", "J-Mean-Frames",
                  "F-Mean-Frames"}


def davis_metrics(j_mean, f_mean, j_decay=0.02, t_mean=0.3):
    return {"J&F-Mean": (j_mean + f_mean) / 2, "J-Mean": j_mean, "J-Recall": 0.8,
            "J-Decay": j_decay, "F-Mean": f_mean, "F-Recall": 0.79, "F-Decay": 0.04,
            "T-Mean": t_mean}


def write_row(folder: Path, method: str, preset: str, dataset: str, split: str, protocol: str,
              metrics: dict, created: str, **extra) -> Path:
    """One results row (schema version 1) as a benchmark run writes it."""
    stamp = created.replace("-", "").replace(":", "")[:15]
    row = {"schema_version": 1, "method": method, "preset": preset, "dataset": dataset,
           "split": split, "protocol": protocol, "metrics": metrics, "sequences": [],
           "fps": 12.5, "fps_with_flow": None, "fps_with_crf": 3.1, "peak_memory_mb": 812.0,
           "parameters": 11_234_567, "training_seconds": 301.2, "seed": 0,
           "config": {"trainer.max_steps": 300}, "git_commit": "0123abc", "wandb_run_id": None,
           "created": created, "run_dir": f"runs/{method}-{stamp}", **extra}
    path = folder / f"{method}-{dataset}-{split}-{stamp}.json"
    path.write_text(json.dumps(row))
    return path


@pytest.fixture
def results(tmp_path):
    """Rows of agnn (tiny: an old and a new run; paper), amcnet and fcn (no paper numbers) on
    DAVIS 2016 val, and agssvos on held-out YouTube-VOS train videos."""
    folder = tmp_path / "results"
    folder.mkdir()
    old = write_row(folder, "agnn", "tiny", *DAVIS16, davis_metrics(0.50, 0.48),
                    "2026-11-20T09:00:00+00:00")
    old.rename(folder / "zz-renamed.json")  # `created` decides which run is latest, not the name
    write_row(folder, "agnn", "tiny", *DAVIS16,
              davis_metrics(0.72345, 0.70, j_decay=0.01, t_mean=0.2), "2026-11-21T07:40:00+00:00")
    write_row(folder, "agnn", "paper", *DAVIS16, davis_metrics(0.854, 0.80, j_decay=0.05),
              "2026-11-19T12:00:00+00:00", parameters=82_000_000, fps=None)
    write_row(folder, "amcnet", "tiny", *DAVIS16, {**davis_metrics(0.60, 0.62), "T-Mean": None},
              "2026-11-21T08:00:00Z")
    write_row(folder, "fcn", "tiny", *DAVIS16, davis_metrics(0.55, 0.50),
              "2026-11-21T08:30:00+00:00")
    write_row(folder, "agssvos", "tiny", "youtube-vos", "train", "youtube-vos",
              {"Overall": 0.6, "J-Seen": 0.7, "F-Seen": 0.72, "J-Unseen": 0.45, "F-Unseen": 0.53,
               "T-Mean": None}, "2026-11-21T09:00:00+00:00")
    return folder


def tables_of(folder, **options):
    return build_tables(load_rows(folder), load_reported(), **options)


def row_of(table, source, method=None):
    """The one table row with this Source (and Method)."""
    match = table[(table["Source"] == source)
                  & ((table["Method"] == method) if method else True)]
    assert len(match) == 1, f"{len(match)} rows with Source {source!r}"
    return match.iloc[0]


def markdown_rows(text: str) -> tuple[list[str], list[list[str]]]:
    """(header, body rows) of the Markdown table in `text`."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]
    assert set(lines[1].strip("|").split("|")) <= {":---", "---:"}
    return cells[0], cells[2:]


# --------------------------------------------------------------------- tables

def test_one_table_per_dataset_split_protocol_with_the_protocols_columns(results):
    tables = tables_of(results)
    assert list(tables) == [DAVIS16, ("youtube-vos", "train", "youtube-vos")]
    davis = ["J Mean", "J Recall", "J Decay", "F Mean", "F Recall", "F Decay", "T Mean", "J&F"]
    assert list(tables[DAVIS16].columns) == [
        "Method", "Source", *davis, "FPS", "Params (M)", "Δ", "n", *(f"{m} std" for m in davis)]
    youtube = ["Overall", "J seen", "J unseen", "F seen", "F unseen"]
    assert list(tables["youtube-vos", "train", "youtube-vos"].columns) == [
        "Method", "Source", *youtube, "FPS", "Params (M)", "Δ", "n",
        *(f"{m} std" for m in youtube)]


def test_the_latest_run_of_each_method_and_preset_is_kept(results):
    table = tables_of(results)[DAVIS16]
    agnn_ours = table[(table["Method"] == "AGNN") & table["Source"].str.startswith("ours")]
    assert list(agnn_ours["Source"]) == ["ours (paper)", "ours (tiny)"]
    assert row_of(table, "ours (tiny)", "AGNN")["J Mean"] == pytest.approx(72.345)


def test_all_runs_keeps_every_run(results):
    table = tables_of(results, all_runs=True)[DAVIS16]
    tiny = table[(table["Method"] == "AGNN") & table["Source"].str.startswith("ours (tiny")]
    assert list(tiny["Source"]) == ["ours (tiny, 2026-11-20 09:00)",
                                    "ours (tiny, 2026-11-21 07:40)"]
    assert list(tiny["J Mean"]) == pytest.approx([50.0, 72.345])


def test_reported_rows_sit_beside_ours_with_delta_ours_minus_reported(results):
    table = tables_of(results)[DAVIS16]
    assert list(table["Method"]) == ["AGNN", "AGNN", "AGNN", "AMC-Net", "AMC-Net", "AMC-Net",
                                     "fcn", "STG-Net"]  # by method id, reported rows first
    reported = row_of(table, "reported (with CRF)", "AGNN")
    assert dict(reported.iloc[2:10]) == {"J Mean": 80.7, "J Recall": 94.0, "J Decay": 3.0,
                                         "F Mean": 79.1, "F Recall": 90.5, "F Decay": 3.0,
                                         "T Mean": 33.7, "J&F": 79.9}
    assert reported["FPS"] == 3.6 and math.isnan(reported["Δ"])
    ours = row_of(table, "ours (tiny)", "AGNN")
    assert ours["Δ"] == pytest.approx(ours["J&F"] - 79.9)
    assert ours["Δ"] == pytest.approx((72.345 + 70.0) / 2 - 79.9)
    # AMC-Net reports two rows (PWC-Net, RAFT flow): Δ is against the first, the paper's main one
    assert row_of(table, "ours (tiny)", "AMC-Net")["Δ"] == pytest.approx(61.0 - 84.4)
    assert math.isnan(row_of(table, "ours (tiny)", "fcn")["Δ"])  # no paper numbers for fcn
    assert row_of(table, "ours (paper)", "AGNN")["Params (M)"] == pytest.approx(82.0)


def test_reported_rows_need_the_same_split():
    rows = [{"schema_version": 1, "method": "agssvos", "preset": "tiny", "dataset": "youtube-vos",
             "split": split, "protocol": "youtube-vos", "file": f"{split}.json",
             "metrics": {"Overall": 0.65}, "created": datetime(2026, 11, 21, tzinfo=timezone.utc)}
            for split in ("valid", "train")]
    tables = build_tables(rows, load_reported())
    valid = tables["youtube-vos", "valid", "youtube-vos"]
    assert list(valid["Source"]) == ["reported (evaluation server)", "ours (tiny)",
                                     "reported (evaluation server)"]
    assert list(valid["Method"]) == ["AGSS-VOS", "AGSS-VOS", "STG-Net"]
    assert dict(valid.iloc[2, 2:7]) == {"Overall": 73.0, "J seen": 72.7, "J unseen": 69.1,
                                        "F seen": 75.2, "F unseen": 74.9}
    assert valid.iloc[1]["Δ"] == pytest.approx(65.0 - 71.3)
    assert list(tables["youtube-vos", "train", "youtube-vos"]["Source"]) == ["ours (tiny)"]


def test_dataset_filter(results):
    assert list(tables_of(results, dataset="youtube-vos")) == [
        ("youtube-vos", "train", "youtube-vos")]


# --------------------------------------------------------------------- rendering

def test_markdown_shows_percent_with_one_decimal_and_bolds_the_best(results):
    table = tables_of(results)[DAVIS16]
    header, body = markdown_rows(render(table, "md"))
    assert header == [column for column in table.columns if not column.endswith(" std")]
    cells = {(row[0], row[1]): dict(zip(header, row)) for row in body}
    tiny = cells["AGNN", "ours (tiny)"]
    assert (tiny["J Mean"], tiny["F Mean"], tiny["J&F"]) == ("72.3", "70.0", "71.2")
    assert (tiny["FPS"], tiny["Params (M)"], tiny["Δ"], tiny["n"]) == ("12.5", "11.2", "-8.7", "1")
    assert cells["AGNN", "ours (paper)"]["FPS"] == "–"
    bold = {(row[0], row[1], column) for row in body for column, cell in zip(header, row)
            if cell.startswith("**") and cell.endswith("**")}
    assert bold == {
        ("AGNN", "ours (paper)", "J Mean"), ("STG-Net", "reported", "J Mean"),  # tie at 85.4
        ("AMC-Net", "reported (RAFT flow, CRF)", "J Recall"),
        ("AGNN", "ours (tiny)", "J Decay"),  # 1.0: lower is better
        ("STG-Net", "reported", "F Mean"),
        ("AMC-Net", "reported (PWC-Net flow, CRF)", "F Recall"),
        ("AMC-Net", "reported (PWC-Net flow, CRF)", "F Decay"),  # 2.2 < ours 4.0
        ("AGNN", "ours (tiny)", "T Mean"),  # 20.0 < 33.7: lower is better
        ("STG-Net", "reported", "J&F")}
    assert cells["AMC-Net", "ours (tiny)"]["T Mean"] == "–"


def test_no_bold_in_a_column_with_a_single_value(results):
    text = render(tables_of(results)["youtube-vos", "train", "youtube-vos"], "md")
    assert "| AGSS-VOS | ours (tiny) | 60.0 | 70.0 | 45.0 | 72.0 | 53.0 | 12.5 | 11.2 | – | 1 |" \
        in text
    assert "**" not in text


def test_latex_is_a_booktabs_tabular(results):
    table = tables_of(results)[DAVIS16]
    text = render(table, "latex")
    lines = text.splitlines()
    assert lines[0] == r"\begin{tabular}{" + "ll" + "r" * 12 + "}"
    assert lines[1] == r"\toprule" and lines[-2:] == [r"\bottomrule", r"\end{tabular}"]
    assert r"\multicolumn{3}{c}{$\mathcal{J}$}" in lines[2]
    assert lines[4].startswith("Method & Source & Mean & Recall & Decay") and r"J\&F" in lines[4]
    body = lines[lines.index(r"\midrule") + 1:-2]
    assert len(body) == len(table)
    assert all(line.endswith(r" \\") and line.count(" & ") == 13 for line in body)
    tiny = next(line for line in body if line.startswith("AGNN & ours (tiny)"))
    assert tiny.split(" & ")[4] == r"\textbf{1.0}" and tiny.split(" & ")[-2:] == [r"$-$8.7",
                                                                                  r"1 \\"]
    assert "--" in next(line for line in body if line.startswith("STG-Net")).split(" & ")


def test_csv_round_trips_through_pandas_with_raw_numbers(results):
    tables = tables_of(results)
    text = render_all(tables, "csv")
    assert "**" not in text and "textbf" not in text
    back = pd.read_csv(io.StringIO(text))
    assert list(back.columns[:5]) == ["Dataset", "Split", "Protocol", "Method", "Source"]
    assert len(back) == sum(len(table) for table in tables.values())
    davis = back[back["Dataset"] == "davis2016"].reset_index(drop=True)
    for column in tables[DAVIS16].columns[2:]:
        assert list(davis[column]) == pytest.approx(list(tables[DAVIS16][column]), nan_ok=True)
    youtube = back[back["Dataset"] == "youtube-vos"].iloc[0]
    assert youtube["Overall"] == 60.0 and math.isnan(youtube["J Mean"])


def seeded_rows(folder: Path) -> None:
    """agnn tiny: seeds 0, 1, 2 (J 70, 74, 78; seed 1 run twice, the later counts) with the
    graph, one seed without it (another setting), on two dataset folders (no other setting)."""
    for seed, j_mean, created, root in ((0, 0.70, "2026-11-21T07:00:00Z", "a"),
                                        (1, 0.10, "2026-11-21T07:10:00Z", "a"),
                                        (1, 0.74, "2026-11-21T07:20:00Z", "b"),
                                        (2, 0.78, "2026-11-21T07:30:00Z", "b")):
        write_row(folder, "agnn", "tiny", *DAVIS16, davis_metrics(j_mean, 0.60), created,
                  seed=seed, config={"seed_everything": seed, "data.init_args.root": root,
                                     "model.init_args.graph": True})
    write_row(folder, "agnn", "tiny", *DAVIS16, davis_metrics(0.65, 0.60),
              "2026-11-21T07:40:00Z", config={"seed_everything": 0,
                                              "model.init_args.graph": False})


def test_runs_that_differ_only_in_the_seed_are_one_entry_with_mean_std_and_n(tmp_path):
    seeded_rows(tmp_path)
    table = tables_of(tmp_path)[DAVIS16]
    graph = row_of(table, "ours (tiny)", "AGNN (graph=true)")
    assert graph["J Mean"] == pytest.approx(74.0) and graph["n"] == 3
    assert graph["J Mean std"] == pytest.approx(4.0)  # sample std of 70, 74, 78
    assert graph["J&F"] == pytest.approx(67.0) and graph["F Mean std"] == pytest.approx(0.0)
    single = row_of(table, "ours (tiny)", "AGNN (graph=false)")
    assert single["n"] == 1 and math.isnan(single["J Mean std"])
    header, body = markdown_rows(render(table, "md"))
    cells = {(row[0], row[1]): dict(zip(header, row)) for row in body}
    assert cells["AGNN (graph=true)", "ours (tiny)"]["J Mean"] == "74.0±4.0"
    assert cells["AGNN (graph=false)", "ours (tiny)"]["J Mean"] == "65.0"  # one run: no ±
    latex = render(table, "latex")
    assert r"AGNN (graph=true) & ours (tiny) & 74.0$\pm$4.0 &" in latex
    back = pd.read_csv(io.StringIO(render(table, "csv")))
    entry = back[back["Method"] == "AGNN (graph=true)"].iloc[0]
    assert (entry["J Mean"], entry["J Mean std"], entry["n"]) == (74.0, 4.0, 3)
    everything = tables_of(tmp_path, all_runs=True)[DAVIS16]
    assert (everything["Method"] == "AGNN (graph=true)").sum() == 4


def test_rows_of_schema_2_with_sweep_fields_are_read_beside_schema_1(tmp_path):
    write_row(tmp_path, "fcn", "tiny", *DAVIS16, davis_metrics(0.5, 0.5), "2026-11-21T07:00:00Z")
    write_row(tmp_path, "fcn", "tiny", *DAVIS16, davis_metrics(0.7, 0.5), "2026-11-21T08:00:00Z",
              schema_version=2, sweep_id="ab12cd34", trial=3, seed=1,
              trial_parameters={"seed_everything": 1},
              config={"seed_everything": 1, "trainer.max_steps": 300})
    assert [row["schema_version"] for row in load_rows(tmp_path)] == [1, 2]
    assert row_of(tables_of(tmp_path)[DAVIS16], "ours (tiny)", "fcn")["n"] == 2


def test_setting_keys_leave_out_the_seed_and_where_a_run_was_made():
    rows = [{"config": {"seed_everything": seed, "run_name": f"r{seed}", "data.init_args.root": r,
                        "model.init_args.num_iterations": k, "trainer.max_steps": 800,
                        "trainer.devices": devices}}
            for seed, r, k, devices in ((0, "a", 1, 1), (1, "b", 2, 2), (2, "a", 2, 1))]
    assert setting_keys(rows) == ["model.init_args.num_iterations"]


# --------------------------------------------------------------------- command line

def test_command_prints_titled_tables(results, capsys):
    assert vosbench_main(["leaderboard", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    titles = [line for line in out.splitlines() if line.startswith("## ")]
    assert titles == ["## davis2016 val (protocol davis2016); Δ = ours − reported J&F",
                      "## youtube-vos train (protocol youtube-vos); Δ = ours − reported Overall"]
    assert "| AGNN | reported (with CRF) | 80.7 | 94.0 | 3.0 | 79.1 | 90.5 | 3.0 | 33.7 |" in out


def test_command_filters_by_dataset_and_writes_atomically(results, tmp_path, capsys):
    output = tmp_path / "board" / "LEADERBOARD.tex"
    assert vosbench_main(["leaderboard", "--results", str(results), "--dataset", "youtube-vos",
                          "--format", "latex", "--output", str(output)]) == 0
    text = output.read_text()
    assert text.startswith("% youtube-vos train") and "davis2016" not in text
    assert text.count(r"\begin{tabular}") == 1
    assert not list(output.parent.glob("*.tmp")) and "written to" in capsys.readouterr().out
    assert vosbench_main(["leaderboard", "--results", str(results), "--dataset", "fbms"]) == 2
    assert "datasets there: davis2016, youtube-vos" in capsys.readouterr().err


def test_all_runs_option(results, capsys):
    assert vosbench_main(["leaderboard", "--results", str(results), "--all-runs"]) == 0
    assert "ours (tiny, 2026-11-20 09:00)" in capsys.readouterr().out


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"schema_version": 1, "method": "agnn"}', "missing preset, dataset, split, protocol"),
    (json.dumps({"schema_version": 4, "method": "a", "preset": "tiny", "dataset": "d",
                 "split": "val", "protocol": "davis2016", "metrics": {},
                 "created": "2026-11-21T07:40:00+00:00"}), "unknown schema_version 4"),
    (json.dumps({"schema_version": 1, "method": "a", "preset": "tiny", "dataset": "d",
                 "split": "val", "protocol": "davis2018", "metrics": {},
                 "created": "2026-11-21T07:40:00+00:00"}), "unknown protocol 'davis2018'"),
    (json.dumps({"schema_version": 1, "method": "a", "preset": "tiny", "dataset": "d",
                 "split": "val", "protocol": "davis2016", "metrics": {"J-Mean": "high"},
                 "created": "2026-11-21T07:40:00+00:00"}), "'metrics' must map"),
    (json.dumps({"schema_version": 1, "method": "a", "preset": "tiny", "dataset": "d",
                 "split": "val", "protocol": "davis2016", "metrics": {},
                 "created": "yesterday"}), "not an ISO 8601 timestamp"),
])
def test_a_bad_results_file_stops_with_its_name(results, capsys, content, message):
    (results / "broken.json").write_text(content)
    assert vosbench_main(["leaderboard", "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "broken.json" in err and message in err


def test_missing_or_empty_results_folder(tmp_path, capsys):
    assert vosbench_main(["leaderboard", "--results", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: results folder not found" in capsys.readouterr().err
    assert vosbench_main(["leaderboard", "--results", str(tmp_path)]) == 2
    assert f"no results rows in {tmp_path}" in capsys.readouterr().err


# --------------------------------------------------------------------- reported numbers

def test_reported_yamls_ship_with_the_package():
    folder = importlib.resources.files("vosbench.methods") / "reported"
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".yaml"))
    assert names == ["agnn.yaml", "agssvos.yaml", "amcnet.yaml", "stgnet.yaml"]
    package_data = (ROOT / "pyproject.toml").read_text().split(
        "[tool.setuptools.package-data]\n", 1)[1].split("\n[", 1)[0]
    assert '"vosbench.methods" = ["reported/*.yaml"]' in package_data.splitlines()
    assert all(fnmatch.fnmatch(f"reported/{name}", "reported/*.yaml") for name in names)
    code = "from vosbench.leaderboard import load_reported; print(len(load_reported()))"
    count = subprocess.run([sys.executable, "-c", code], cwd=Path("/"), capture_output=True,
                           text=True, check=True).stdout
    assert int(count) == len(load_reported()) == 18


def test_reported_metric_names_are_the_engines_and_values_are_percent():
    folder = importlib.resources.files("vosbench.methods") / "reported"
    for entry in folder.iterdir():
        if not entry.name.endswith(".yaml"):
            continue
        document = yaml.safe_load(entry.read_text())
        assert document["method"] == entry.name.removesuffix(".yaml")
        for result in document["results"]:
            metrics = result["metrics"]
            assert set(metrics) <= ENGINE_METRICS, entry.name
            # no fraction left unconverted: every printed value is above 1 % (decays included)
            assert all(1 < value <= 100 for value in metrics.values()), (entry.name, metrics)
            if {"J&F-Mean", "J-Mean", "F-Mean"} <= set(metrics):
                assert metrics["J&F-Mean"] == pytest.approx(
                    (metrics["J-Mean"] + metrics["F-Mean"]) / 2, abs=0.051)
            if "Overall" in metrics:
                assert metrics["Overall"] == pytest.approx(
                    sum(metrics[k] for k in SEEN_UNSEEN[1:]) / 4, abs=0.051)


def test_reported_numbers_as_the_papers_print_them():
    reported = {(e["method"], e["dataset"], e["split"], e["note"]): e["metrics"]
                for e in load_reported()}
    assert reported["amcnet", "davis2016", "val", "PWC-Net flow, CRF"]["J-Decay"] == 3.5
    assert reported["agnn", "davis2016", "val", "with CRF"]["J-Decay"] == 3.0  # printed 0.03
    assert reported["agnn", "davis2017", "test-dev", "instance-level, Mask R-CNN proposals"] == {
        "J&F-Mean": 61.1, "J-Mean": 58.9, "J-Recall": 65.7, "J-Decay": 11.7, "F-Mean": 63.2,
        "F-Recall": 67.1, "F-Decay": 14.3}
    assert reported["agnn", "youtube-objects", "all", "mean J as printed"] == {"J-Mean": 70.8}
    assert reported["stgnet", "segtrackv2", "all", None] == {"J-Mean": 79.5}
    assert reported["agssvos", "davis2017", "val", "YouTube-VOS pre-training"]["J&F-Mean"] == 67.4


def test_a_bad_reported_yaml_is_named(tmp_path):
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({
        "method": "mine", "name": "Mine", "title": "T", "venue": "V",
        "results": [{"dataset": "davis2016", "split": "val", "protocol": "davis2016",
                     "metrics": {"J-mean": 80.0}}]}))
    with pytest.raises(InputError, match=r"mine.yaml: result 1: unknown metric name\(s\) J-mean"):
        load_reported(tmp_path)
    (tmp_path / "mine.yaml").write_text("method: mine\nresults: [")
    with pytest.raises(InputError, match="mine.yaml: not valid YAML"):
        load_reported(tmp_path)


def test_agnn_table6_is_transcribed_with_its_printed_deltas():
    document = yaml.safe_load((importlib.resources.files("vosbench.methods") / "reported" /
                               "agnn.yaml").read_text())
    (table,) = document["ablations"]
    assert (table["table"], table["metric"], table["reference"]) == ("Table 6", "J-Mean", 80.7)
    # each J minus the reference's is the ΔJ the paper prints (one printed without its minus)
    assert all(round(row["value"] - table["reference"], 1) == row["delta"]
               for row in table["rows"])
    assert [row["value"] for row in table["rows"]] == [72.2, 80.1, 78.7, 79.1, 80.7, 79.6, 80.7,
                                                       80.7, 78.9]


def test_an_ablation_row_finds_its_paper_value_in_any_table_of_the_metric(tmp_path):
    """AMC-Net reports its ablations in Tables 1–3 (J&F, each against the full model, 83.7):
    the number of MCMs comes from Table 1, that of supervised maps from Table 3."""
    trials = [(5, 5, "amcnet", 0.80), (3, 5, "amcnet", 0.79), (5, 0, "amcnet", 0.78),
              (3, 0, "amcnet", 0.70), (5, 5, None, 0.77)]
    for number, (mcms, supervised, crf, j_and_f) in enumerate(trials, start=1):
        parameters = {"model.init_args.num_mcm": mcms,
                      "model.init_args.num_supervised": supervised, "model.init_args.crf": crf}
        write_row(tmp_path, "amcnet", "tiny", *DAVIS16, davis_metrics(j_and_f, j_and_f),
                  f"2026-11-21T07:0{number}:00Z", schema_version=2, sweep_id="s2",
                  trial=number, trial_parameters=parameters, config=parameters)
    title, table = ablation_table(load_rows(tmp_path), "s2")
    assert title == ("sweep s2: amcnet (tiny) on davis2016 val, J&F; paper: Table 1, Table 2, "
                     "Table 3, Table 1 (with CRF) (davis2016 val)")
    assert list(table["Setting"]) == ["reference", "MCMs = 3", "supervised maps = 0",
                                      "MCMs = 3, supervised maps = 0", "crf = null"]
    # without the CRF: Table 1's last rows, whose reference is the model with the CRF (84.4)
    assert list(table["paper J&F"]) == pytest.approx([83.7, 82.9, 81.5, math.nan, 83.7],
                                                     nan_ok=True)
    assert list(table["paper Δ"]) == pytest.approx([0.0, -0.8, -2.2, math.nan, -0.7],
                                                   nan_ok=True)


def test_an_ablation_on_another_protocol_compares_the_headline_metrics(tmp_path):
    """AGSS-VOS's Table 4 is on YouTube-VOS (Overall, full model 71.3); its sweep on the
    synthetic default (davis2017) has no Overall: J&F against the paper's Overall, said in the
    title, each line found by the keys it sets (w/o ISM 67.0, w/o OF 67.8)."""
    trials = [({}, 0.70), ({"model.init_args.instance_specific": False}, 0.66),
              ({"model.init_args.warp": False}, 0.64)]
    for number, (parameters, j_and_f) in enumerate(trials, start=1):
        config = {"model.init_args.instance_specific": True, "model.init_args.warp": True,
                  **parameters}
        write_row(tmp_path, "agssvos", "tiny", "synthetic", "val", "davis2017",
                  davis_metrics(j_and_f, j_and_f), f"2026-12-03T07:0{number}:00Z",
                  schema_version=2, sweep_id="s3", trial=number,
                  trial_parameters={"seed_everything": 0, **parameters}, config=config)
    title, table = ablation_table(load_rows(tmp_path), "s3")
    assert title == ("sweep s3: agssvos (tiny) on synthetic val, J&F; paper: Table 4 "
                     "(youtube-vos valid, Overall)")
    assert list(table["Setting"]) == ["reference", "ISM = false", "OF = false"]
    assert list(table["Δ"]) == pytest.approx([0.0, -4.0, -6.0])
    assert list(table["paper J&F"]) == pytest.approx([71.3, 67.0, 67.8])
    assert list(table["paper Δ"]) == pytest.approx([0.0, -4.3, -3.5])


def test_the_ablation_table_of_a_sweep_names_each_change_against_the_preset(tmp_path, capsys):
    # K × N′ on AGNN tiny (preset K = 3, N′ = 5), the reference with two seeds
    trials = [(3, 5, 0, 0.80), (3, 5, 1, 0.82), (2, 5, 0, 0.78), (3, 7, 0, 0.81), (2, 7, 0, 0.77)]
    for number, (k, nodes, seed, j_mean) in enumerate(trials, start=1):
        parameters = {"model.init_args.num_iterations": k, "model.init_args.num_nodes_test": nodes,
                      "seed_everything": seed}
        write_row(tmp_path, "agnn", "tiny", *DAVIS16, davis_metrics(j_mean, 0.5),
                  f"2026-11-21T07:0{number}:00Z", schema_version=2, sweep_id="s1",
                  trial=number, trial_parameters=parameters, config=parameters)
    write_row(tmp_path, "fcn", "tiny", *DAVIS16, davis_metrics(0.5, 0.5), "2026-11-21T08:00:00Z")
    title, table = ablation_table(load_rows(tmp_path), "s1")
    assert title == ("sweep s1: agnn (tiny) on davis2016 val, J Mean; paper: Table 6 "
                     "(davis2016 val)")
    assert list(table["Setting"]) == ["reference", "K = 2", "N′ = 7", "K = 2, N′ = 7"]
    reference = table.iloc[0]
    assert reference["J Mean"] == pytest.approx(81.0) and reference["n"] == 2
    assert reference["J Mean std"] == pytest.approx(math.sqrt(2))  # of 80 and 82
    assert list(table["Δ"]) == pytest.approx([0.0, -3.0, 0.0, -4.0])
    assert list(table["paper J Mean"]) == pytest.approx([80.7, 79.1, 80.7, math.nan],
                                                        nan_ok=True)
    assert list(table["paper Δ"]) == pytest.approx([0.0, -1.6, 0.0, math.nan], nan_ok=True)
    assert vosbench_main(["leaderboard", "--results", str(tmp_path), "--sweep", "s1"]) == 0
    out = capsys.readouterr().out
    assert "| reference | **81.0±1.4** | +0.0 | 2 | 80.7 | +0.0 |" in out  # best, tied
    assert "| K = 2 | 78.0 | -3.0 | 1 | 79.1 | -1.6 |" in out
    other = ablation_table(load_rows(tmp_path), "s1",
                           reference={"model.init_args.num_iterations": 2,
                                      "model.init_args.num_nodes_test": 5})[1]
    assert list(other["Setting"]) == ["K = 3", "reference", "K = 3, N′ = 7", "N′ = 7"]
    assert vosbench_main(["leaderboard", "--results", str(tmp_path), "--sweep", "nope"]) == 2


def test_the_notes_of_a_setting_are_in_its_source(tmp_path):
    """Rows that say how their numbers were made ("oracle proposals") say it in the Source of
    their entry, after the preset; rows without notes (older schema, or none) are unchanged."""
    metrics = davis_metrics(0.7, 0.6)
    for seed, created in ((0, "2026-12-04T03:00:00+00:00"), (1, "2026-12-04T03:10:00+00:00")):
        write_row(tmp_path, "stgnet", "tiny", "synthetic", "val", "davis2017", metrics, created,
                  notes=["oracle proposals"], config={"seed_everything": seed})
    write_row(tmp_path, "agssvos", "tiny", "synthetic", "val", "davis2017", metrics,
              "2026-12-04T03:20:00+00:00")
    (table,) = tables_of(tmp_path).values()
    assert row_of(table, "ours (tiny; oracle proposals)", "STG-Net")["n"] == 2
    assert row_of(table, "ours (tiny)", "AGSS-VOS")["n"] == 1


def test_rows_written_in_the_same_second_do_not_replace_each_other(tmp_path, monkeypatch):
    """Two runs that end in one second (a fast scoring run after its fit) keep both rows: the
    second and third take -2 and -3 after the timestamp."""
    from vosbench import results

    monkeypatch.setattr(results.time, "strftime", lambda pattern: "20261204-050000")
    row = {"method": "fcn", "dataset": "synthetic", "split": "val"}
    paths = [results.write_row(tmp_path, {**row, "run": run}) for run in range(3)]
    assert [path.name for path in paths] == ["fcn-synthetic-val-20261204-050000.json",
                                             "fcn-synthetic-val-20261204-050000-2.json",
                                             "fcn-synthetic-val-20261204-050000-3.json"]
    assert [json.loads(path.read_text())["run"] for path in paths] == [0, 1, 2]
