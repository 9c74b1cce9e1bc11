import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vosbench.metrics.boundary import (
    boundary_f,
    boundary_map,
    boundary_radius,
    disk,
    f_measure,
    mask_boundary,
)

from oracle import f_measure as oracle_f_measure


@pytest.mark.parametrize("height, width, radius", [
    (480, 854, 8), (480, 910, 9), (720, 1280, 12), (1080, 1920, 18), (10, 10, 1), (240, 432, 4)])
def test_radius_is_ceil_of_0008_diagonal(height, width, radius):
    assert boundary_radius(height, width) == radius


def test_disk_holds_offsets_within_the_radius():
    np.testing.assert_array_equal(disk(1), [[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    element = disk(8)
    assert element.shape == (17, 17)
    assert element[8, 0] and element[0, 8] and not element[0, 0]
    offsets = range(-8, 9)
    assert element.sum() == sum(dx * dx + dy * dy <= 64 for dx in offsets for dy in offsets)


def test_boundary_map_of_an_inner_square():
    mask = np.array([[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]], bool)
    expected = [[1, 1, 1, 0], [1, 0, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]]
    np.testing.assert_array_equal(boundary_map(mask), expected)


def test_boundary_map_border_rules():
    # last row: only the right neighbour; last column: only the lower one; corner never set
    mask = np.array([[0, 0, 0], [0, 1, 1], [0, 1, 1]], bool)
    np.testing.assert_array_equal(boundary_map(mask), [[1, 1, 1], [1, 0, 0], [1, 0, 0]])


def test_full_mask_has_no_boundary():
    assert not boundary_map(np.ones((5, 6), bool)).any()


def single_pixel(row, col, shape=(10, 10)):
    mask = np.zeros(shape, bool)
    mask[row, col] = True
    return mask


def test_hand_computed_f():
    # 10×10 → radius 1 (a plus-shaped disk). A pixel's boundary is the 2×2 block above-left of
    # its lower-right corner; two pixels two columns apart: half of each boundary matches.
    assert boundary_f(single_pixel(4, 4), single_pixel(4, 6)) == 0.5
    assert boundary_f(single_pixel(4, 4), single_pixel(4, 7)) == 0.0  # P = R = 0
    assert boundary_f(single_pixel(4, 4), single_pixel(4, 4)) == 1.0


@pytest.mark.parametrize("gt_pixel, pred_pixel", [((9, 4), (9, 5)), ((4, 9), (5, 9))])
def test_radius_zero_matches_only_shared_boundary_pixels_up_to_the_last_row_and_column(
        gt_pixel, pred_pixel):
    # A pixel's boundary is the 2×2 block above-left of its lower-right corner, here on the last
    # row (or column): (9, 4) → (8, 3), (8, 4), (9, 3), (9, 4); (9, 5) → (8, 4), (8, 5), (9, 4),
    # (9, 5). Without tolerance 2 of the 4 pixels match on each side: P = R = F = 1/2.
    def boundary(pixel):
        return mask_boundary(single_pixel(*pixel), radius=0)

    assert f_measure(boundary(gt_pixel), boundary(pred_pixel)) == 0.5
    assert f_measure(boundary(gt_pixel), boundary(gt_pixel)) == 1.0


def test_empty_masks():
    empty = np.zeros((10, 10), bool)
    assert boundary_f(empty, empty) == 1.0  # P = R = 1
    assert boundary_f(single_pixel(3, 3), empty) == 0.0  # P = 1, R = 0
    assert boundary_f(empty, single_pixel(3, 3)) == 0.0  # P = 0, R = 1


def test_void_removes_pixels_before_the_boundary():
    gt, pred = single_pixel(4, 4), single_pixel(4, 4) | single_pixel(8, 8)
    assert boundary_f(gt, pred) < 1.0
    assert boundary_f(gt, pred, void=single_pixel(8, 8)) == 1.0


shapes = st.tuples(st.integers(1, 40), st.integers(1, 40))


@settings(max_examples=150, deadline=None)
@given(shapes.flatmap(lambda s: st.tuples(arrays(bool, s), arrays(bool, s))), st.data())
def test_cropped_f_equals_whole_frame_f(pair, data):
    gt, pred = pair
    # sparse masks too, so that the crops are much smaller than the frame
    if data.draw(st.booleans()):
        gt = gt & np.roll(gt, 1, axis=0) & np.roll(gt, 1, axis=1)
        pred = pred & np.roll(pred, 1, axis=0)
    assert boundary_f(gt, pred) == oracle_f_measure(pred, gt)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 400), st.integers(0, 800), st.integers(1, 60), st.integers(1, 60),
       st.integers(-20, 20), st.integers(-20, 20))
def test_cropped_f_equals_whole_frame_f_at_davis_size(y, x, h, w, dy, dx):
    gt = np.zeros((480, 854), bool)
    gt[y:y + h, x:x + w] = True
    pred = np.roll(gt, (dy, dx), axis=(0, 1))
    pred[y:y + h // 2, x:x + w // 3] = False
    assert boundary_f(gt, pred) == oracle_f_measure(pred, gt)
