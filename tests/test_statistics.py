import warnings

import numpy as np
import pytest

from vosbench.metrics.statistics import decay_bin_edges, nanmean, statistics

from oracle import statistics as oracle_statistics


@pytest.mark.parametrize("length, edges", [
    (48, [0, 12, 24, 35, 47]),  # 24.5 rounds up (half up, not NumPy's half-even)
    (10, [0, 2, 5, 7, 9]),
    (1, [0, 0, 0, 0, 0]),
    (5, [0, 1, 2, 3, 4]),
    (300, [0, 75, 150, 224, 299]),  # beyond 255: the official uint8 indices would wrap
])
def test_decay_bin_edges(length, edges):
    assert decay_bin_edges(length).tolist() == edges


def test_decay_of_a_ramp():
    _, _, decay = statistics(np.arange(10.0))
    assert decay == 1.0 - 8.0  # bins [0:3] and [7:10], neighbours share a frame


def test_decay_beyond_255_frames_is_right_where_the_official_code_is_not():
    values = np.arange(300.0)
    _, _, decay = statistics(values)
    assert decay == np.mean(values[0:76]) - np.mean(values[224:300])
    assert np.isnan(oracle_statistics(values, uint8_ids=True)[2])  # the official result


@pytest.mark.parametrize("length", [1, 2, 3, 7, 48, 100, 255])
def test_identical_to_the_official_statistics_up_to_255_frames(length):
    values = np.random.default_rng(length).random(length)
    values[::7] = np.nan
    got, expected = statistics(values), oracle_statistics(values)
    np.testing.assert_array_equal(got, expected)


def test_recall_is_strictly_greater_and_counts_nan_as_a_miss():
    _, recall, _ = statistics(np.array([0.5, 0.5000001, 0.2, np.nan]))
    assert recall == 0.25


def test_mean_ignores_nan():
    mean, _, _ = statistics(np.array([1.0, np.nan, 0.0]))
    assert mean == 0.5


def test_statistics_of_single_precision_values_are_computed_in_double_precision():
    values = np.random.default_rng(0).random(50).astype(np.float32)
    values[::9] = np.nan
    got, expected = statistics(values), oracle_statistics(values.astype(np.float64))
    np.testing.assert_array_equal(got, expected)


def test_nanmean_ignores_nan_in_double_precision():
    values = np.array([0.1, 0.2, np.nan], np.float32)
    # the float32 values are exact in float64 and so is their sum there: (0.1f + 0.2f) / 2 in
    # float32 arithmetic would give 0.15000000596046448
    assert nanmean(values) == (float(values[0]) + float(values[1])) / 2


def test_nanmean_of_no_values_is_nan_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(nanmean([np.nan, np.nan]))
        assert np.isnan(nanmean([]))
