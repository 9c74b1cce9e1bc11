"""summary.py: the global numbers, the CSV files, results.json and the printed report. The CSV
files are checked against what davis2017-evaluation writes (its statistics from tests/oracle.py,
its writer pandas `to_csv(index=False, float_format="%.3f")`), the printed tables against tables
worked out by hand."""

import csv
import json

import numpy as np
import pandas as pd
import pytest

from vosbench.metrics.protocols import (
    PROTOCOLS,
    ObjectScores,
    SequenceScores,
    get_protocol,
    score_sequence,
)
from vosbench.metrics.summary import (
    format_table,
    global_scores,
    headline_metric,
    report_text,
    results_document,
    write_results,
)

import oracle
from conftest import moving_objects

STATISTICS = ["J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]
OFFICIAL_GLOBAL = ["J&F-Mean", *STATISTICS]  # davis2017-evaluation's global_results columns


def official_csv(columns, rows):
    """A CSV file as davis2017-evaluation writes it (None and NaN become empty cells)."""
    return pd.DataFrame(rows, columns=columns).to_csv(index=False, float_format="%.3f")


def sequence(name, *objects, frames=2):
    """SequenceScores with objects 1, 2, … given as {"J": …, "F": …, "T": …} per-frame values."""
    scored = [ObjectScores(k, **{m: np.array(v, float) for m, v in values.items()}).summarize()
              for k, values in enumerate(objects, start=1)]
    return SequenceScores(name, [f"{i:05d}" for i in range(frames)], scored)


def report_lines(protocol_name, sequences, categories=None):
    protocol = get_protocol(protocol_name)
    document = results_document(protocol, sequences, categories)
    return report_text(document, protocol, sequences).split("\n")


def test_csv_files_are_those_the_official_toolkit_writes(tmp_path):
    protocol = get_protocol("davis2017")
    sequences, global_rows, sequence_rows = [], [], []
    for seed, (name, count) in enumerate([("bear", 2), ("dog", 1)]):
        gt = moving_objects(6, 24, 32, count, seed)
        pred = moving_objects(6, 24, 32, count, seed, shift=1)
        sequences.append(score_sequence(protocol, gt[1:-1], pred[1:-1],
                                        protocol.num_objects(gt[0]), name=name))
        for k, (j, f) in oracle.evaluate_davis2017(gt, pred).items():
            stats = dict(zip(STATISTICS, [*oracle.statistics(j), *oracle.statistics(f)]))
            sequence_rows.append({"Sequence": f"{name}_{k}",
                                  "J&F-Mean": (stats["J-Mean"] + stats["F-Mean"]) / 2, **stats})
            global_rows.append(stats)
    # global: each statistic averaged over all objects, J&F = (J-Mean + F-Mean) / 2
    means = {key: np.mean([row[key] for row in global_rows]) for key in STATISTICS}
    means["J&F-Mean"] = (means["J-Mean"] + means["F-Mean"]) / 2
    write_results(tmp_path, results_document(protocol, sequences), protocol, sequences)
    assert (tmp_path / "global_results.csv").read_bytes().decode() == \
        official_csv(OFFICIAL_GLOBAL, [means])
    assert (tmp_path / "per-sequence_results.csv").read_bytes().decode() == \
        official_csv(["Sequence", *OFFICIAL_GLOBAL], sequence_rows)
    document = json.loads((tmp_path / "results.json").read_text())
    bear = document["sequences"]["bear"]["objects"]["2"]  # full precision, every frame
    j, f = oracle.evaluate_davis2017(moving_objects(6, 24, 32, 2, 0),
                                     moving_objects(6, 24, 32, 2, 0, shift=1))[2]
    assert (bear["J"], bear["F"]) == (list(j), list(f))
    assert [bear[key] for key in STATISTICS] == [*oracle.statistics(j), *oracle.statistics(f)]


def test_a_measure_the_protocol_lacks_leaves_empty_cells(tmp_path):
    protocol = get_protocol("youtube-objects")  # J only: F and J&F are undefined
    sequences = [sequence("a", {"J": [1, 0.5]}), sequence("b", {"J": [0, 0]})]
    write_results(tmp_path, results_document(protocol, sequences), protocol, sequences)
    # J-Decay of [1, 0.5]: decay bins [1], [1, 0.5], [0.5], [0.5] -> 1 - 0.5
    rows = [{"Sequence": "a", "J-Mean": 0.75, "J-Recall": 0.5, "J-Decay": 0.5},
            {"Sequence": "b", "J-Mean": 0.0, "J-Recall": 0.0, "J-Decay": 0.0}]
    assert (tmp_path / "per-sequence_results.csv").read_bytes().decode() == \
        official_csv(["Sequence", *OFFICIAL_GLOBAL], rows)
    assert (tmp_path / "global_results.csv").read_bytes().decode() == official_csv(
        OFFICIAL_GLOBAL, [{"J-Mean": 0.375, "J-Recall": 0.25, "J-Decay": 0.25}])


def test_table_is_right_aligned_with_two_spaces_between_columns():
    # widths: max(len("Name"), len("x"), len("long")) = 4 and max(len("Bc"), len("0.500000"),
    # len("-")) = 8; floats with 6 decimals (as pandas prints them), undefined values as "-"
    table = format_table(["Name", "Bc"], [{"Name": "x", "Bc": 0.5},
                                          {"Name": "long", "Bc": None},
                                          {"Name": "nan", "Bc": float("nan")}])
    assert table == ("Name        Bc\n"
                     "   x  0.500000\n"
                     "long         -\n"
                     " nan         -")


def test_report_has_the_official_headings_and_columns():
    sequences = [sequence("bear", {"J": [1, 1], "F": [1, 0]}, {"J": [0, 0], "F": [0, 0]}),
                 sequence("dog", {"J": [0.5, 0.5], "F": [1, 1]})]
    lines = report_lines("davis2017", sequences)
    # davis2017-evaluation prints the same two headings, a blank line before the second
    assert lines[0] == ("--------------------------- Global results for davis2017 "
                        "---------------------------")
    assert lines[1].split() == OFFICIAL_GLOBAL  # no T-Mean column: T was not computed
    # J-Mean (1 + 0 + 0.5) / 3 = 0.5, F-Mean (0.5 + 0 + 1) / 3 = 0.5
    assert lines[2].split()[:2] == ["0.500000", "0.500000"]
    assert lines[3:5] == ["", "---------- Per sequence results for davis2017 ----------"]
    assert lines[5].split() == ["Sequence", *OFFICIAL_GLOBAL]
    assert [line.split()[:3] for line in lines[6:]] == [["bear_1", "0.750000", "1.000000"],
                                                        ["bear_2", "0.000000", "0.000000"],
                                                        ["dog_1", "0.750000", "0.500000"]]


def test_t_is_reported_per_sequence_for_one_object_and_per_object_for_several(tmp_path):
    nan = float("nan")
    # davis2016: one object, its T is the sequence's (T-Mean: nanmean of the pairs)
    single = [sequence("bear", {"J": [1, 1], "F": [1, 1], "T": [0.2, nan, 0.4]})]
    protocol = get_protocol("davis2016")
    document = results_document(protocol, single)
    bear = document["sequences"]["bear"]
    np.testing.assert_array_equal(bear["T"], [0.2, nan, 0.4])
    assert bear["T-Mean"] == pytest.approx(0.3)
    assert "T" not in bear["objects"]["1"] and "T-Mean" not in bear["objects"]["1"]
    write_results(tmp_path, document, protocol, single)
    with open(tmp_path / "per-sequence_results.csv") as stream:
        assert [(row["Sequence"], row["T-Mean"]) for row in csv.DictReader(stream)] == \
            [("bear", "0.300")]
    lines = report_lines("davis2016", single)
    assert lines[1].split() == [*OFFICIAL_GLOBAL, "T-Mean"]
    assert lines[5].split() == ["Sequence", *OFFICIAL_GLOBAL, "T-Mean"]
    assert lines[6].split()[0] == "bear" and lines[6].split()[-1] == "0.300000"
    # davis2017 with T: each object has its T; the sequence's T-Mean is the mean of theirs
    several = [sequence("dog", {"J": [1, 1], "F": [1, 1], "T": [0.2]},
                        {"J": [1, 1], "F": [1, 1], "T": [0.6, nan]})]
    dog = results_document(get_protocol("davis2017"), several)["sequences"]["dog"]
    assert dog["T"] is None and dog["T-Mean"] == pytest.approx(0.4)
    assert list(dog["objects"]["2"]["T"])[0] == 0.6 and dog["objects"]["2"]["T-Mean"] == 0.6


def test_categories_report_their_table_and_the_mean_over_sequences():
    sequences = [sequence("s0", {"J": [1, 1]}), sequence("s1", {"J": [0, 0]}),
                 sequence("s2", {"J": [1, 0.5]})]
    categories = {"s0": "cat", "s1": "cat", "s2": "dog"}
    document = results_document(get_protocol("youtube-objects"), sequences, categories)
    assert document["categories"] == {"cat": {"J-Mean": 0.5, "sequences": ["s0", "s1"]},
                                      "dog": {"J-Mean": 0.75, "sequences": ["s2"]}}
    lines = report_lines("youtube-objects", sequences, categories)
    assert lines[1].split() == [*OFFICIAL_GLOBAL, "J-Mean-Sequences"]
    # J-Mean: mean of the category means (0.5 + 0.75) / 2; over sequences (1 + 0 + 0.75) / 3
    assert lines[2].split() == ["-", "0.625000", "0.500000", "0.250000", "-", "-", "-",
                                "0.583333"]
    assert lines[-5:] == ["",
                          "---------- Per category results ----------",
                          "Category    J-Mean  Sequences",
                          "     cat  0.500000          2",
                          "     dog  0.750000          1"]


def test_categories_change_nothing_under_other_protocols():
    sequences = [sequence(name, {"J": values, "F": values})
                 for name, values in (("s0", [1, 1]), ("s1", [0, 0]), ("s2", [1, 0.5]))]
    # J-Mean over the objects (1 + 0 + 0.75) / 3, not over categories (0.5 + 0.75) / 2
    protocol = get_protocol("davis2017")
    scores = global_scores(protocol, sequences, {"s0": "a", "s1": "a", "s2": "b"})
    assert scores == global_scores(protocol, sequences)
    assert scores["J-Mean"] == pytest.approx(1.75 / 3)


def test_youtube_vos_notes_an_empty_group_under_the_global_table(tmp_path):
    heading = ("--------------------------- Global results for youtube-vos "
               "---------------------------")
    lines = report_lines("youtube-vos", [sequence("v")])
    assert lines[:4] == [heading, "Overall  J-Seen  F-Seen  J-Unseen  F-Unseen",
                         "      -       -       -         -         -",
                         "No object was scored: every value is undefined (null)."]
    assert lines[4:] == ["", "---------- Per object results for youtube-vos ----------",
                         "Video  Object  Category  Seen  J-Mean  F-Mean"]
    seen = sequence("v", {"J": [1, 1], "F": [0, 0]})
    seen.objects[0].category, seen.objects[0].seen = "penguin", True
    lines = report_lines("youtube-vos", [seen])
    assert lines[0] == heading and lines[3:5] == [
        "No unseen object: J-Unseen and F-Unseen are undefined (null); Overall is the mean of "
        "the other two.", ""]
    # an object the dataset gave no category (not youtube-vos's own readers) has an empty cell
    protocol = get_protocol("youtube-vos")
    unsorted = [sequence("w", {"J": [1, 1], "F": [1, 1]})]
    write_results(tmp_path, results_document(protocol, unsorted), protocol, unsorted)
    with open(tmp_path / "per-sequence_results.csv") as stream:
        assert next(csv.DictReader(stream))["Category"] == ""


@pytest.mark.parametrize("name, metric", [
    ("davis2016", "J&F-Mean"), ("davis2017", "J&F-Mean"), ("davis2017-unsupervised", "J&F-Mean"),
    ("fbms", "J&F-Mean"), ("youtube-objects", "J-Mean"), ("segtrackv2", "J-Mean"),
    ("youtube-vos", "Overall")])
def test_headline_metric_is_the_one_each_benchmark_ranks_by(name, metric):
    # DAVIS ranks by J&F, the J-only benchmarks by mIoU, the YouTube-VOS server by Overall
    assert headline_metric(PROTOCOLS[name]) == metric
