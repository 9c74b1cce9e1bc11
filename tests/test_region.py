import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vosbench.metrics.region import jaccard, jaccard_from_overlap, label_overlap


def masks(*rows):
    return np.array(rows, dtype=bool)


def test_both_empty_is_one():
    empty = np.zeros((4, 5), bool)
    assert jaccard(empty, empty) == 1.0


def test_one_empty_is_zero():
    empty, full = np.zeros((4, 5), bool), np.ones((4, 5), bool)
    assert jaccard(full, empty) == 0.0
    assert jaccard(empty, full) == 0.0


def test_hand_computed_overlap():
    gt = masks([1, 1, 0, 0], [0, 0, 0, 0])
    pred = masks([0, 1, 1, 1], [0, 0, 0, 0])
    assert jaccard(gt, pred) == 1 / 4  # intersection 1, union 4


def test_void_pixels_leave_both_counts():
    gt = masks([1, 1, 0, 0])
    pred = masks([0, 1, 1, 1])
    void = masks([1, 0, 0, 1])  # drops one GT-only and one prediction-only pixel
    assert jaccard(gt, pred, void) == 1 / 2
    assert jaccard(gt & void, pred & void, void) == 1.0  # everything void: union 0


def test_overlap_matrix_counts_every_label_pair():
    gt = np.array([[0, 1, 1, 2, 255, 7]], np.uint8)  # 7 > num_gt counts as background
    pred = np.array([[1, 1, 0, 2, 2, 0]], np.uint8)
    overlap = label_overlap(gt, pred, num_gt=2, num_pred=2)
    expected = np.zeros((3, 3), int)
    expected[0, 1] = 1  # gt 0, pred 1
    expected[1, 1] = 1
    expected[1, 0] = 1
    expected[2, 2] = 1
    expected[0, 2] = 1  # gt 255 -> background
    expected[0, 0] = 1  # gt 7 -> background
    np.testing.assert_array_equal(overlap, expected)
    void = gt == 255
    assert label_overlap(gt, pred, 2, 2, void).sum() == 5


@settings(max_examples=50, deadline=None)
@given(arrays(np.uint8, (6, 7), elements=st.integers(0, 3)),
       arrays(np.uint8, (6, 7), elements=st.integers(0, 3)),
       arrays(bool, (6, 7)))
def test_overlap_matrix_equals_per_object_jaccard(gt, pred, void):
    matrix = jaccard_from_overlap(label_overlap(gt, pred, 3, 3, void))
    for g in range(1, 4):
        for p in range(1, 4):
            assert matrix[g - 1, p - 1] == jaccard(gt == g, pred == p, void)


def test_overlap_beyond_the_exact_histogram_size_uses_exact_counting():
    gt = np.zeros((4097, 4097), np.uint8)  # more than 2**24 pixels
    gt[:3000, :] = 1
    pred = np.zeros_like(gt)
    pred[1000:, :] = 1
    overlap = label_overlap(gt, pred, 1, 1)
    assert overlap[1, 1] == 2000 * 4097 and overlap[0, 0] == 0
    assert overlap.sum() == gt.size
