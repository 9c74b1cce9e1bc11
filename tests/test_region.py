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
    assert overlap.dtype == np.int64  # exact integer counts, as documented
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


def test_overlap_counts_exactly_beyond_2_24_pixels():
    # 4097² = 16_785_409 pixels, more than a float32 histogram (OpenCV's) counts exactly
    gt = np.zeros((4097, 4097), np.uint8)
    pred = np.zeros_like(gt)
    gt[0, 0] = pred[0, 1] = 1  # the objects never overlap: the last pair (1, 1) is absent
    expected = np.array([[gt.size - 2, 1], [1, 0]])  # 16_785_407 is odd: no float32
    np.testing.assert_array_equal(label_overlap(gt, pred, 1, 1), expected)
    void = np.zeros(gt.shape, bool)
    void[0, 2] = True  # a background pixel on both sides
    expected[0, 0] -= 1
    np.testing.assert_array_equal(label_overlap(gt, pred, 1, 1, void), expected)


def test_overlap_matrix_counts_more_label_pairs_than_a_byte_holds():
    # 21 × 21 = 441 (gt, pred) pairs: the pair codes go beyond 255
    rng = np.random.default_rng(0)
    gt, pred = rng.integers(0, 21, (2, 30, 40), dtype=np.uint8)
    expected = np.zeros((21, 21), int)
    for g, p in zip(gt.ravel(), pred.ravel()):
        expected[g, p] += 1
    np.testing.assert_array_equal(label_overlap(gt, pred, 20, 20), expected)
