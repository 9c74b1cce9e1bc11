"""Tests of the DAVIS 2016 T measure (vosbench.metrics.temporal).

The reference cases were computed with the original toolkit (fperazzi/davis); the other tests check
each step against a literal, slow reading of the original's algorithm, or a property of T.
"""

import json
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.spatial.distance as ssd
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vosbench.metrics import temporal

# 14 mask pairs with the polygons and raw cost the original DAVIS 2016 toolkit computes for them
# (a copy of ../shared/reference/t_stability_cases.json, kept here so that a bare clone tests T)
REFERENCE = Path(__file__).resolve().parent / "reference" / "t_stability_cases.json"
HEIGHT, WIDTH = 480, 854
FEW_EXAMPLES = settings(max_examples=20, deadline=None)


# ---------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------

def rect(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[r0:r1, c0:c1] = True
    return mask


def ellipse(cx: int, cy: int, axis1: int, axis2: int, angle: float) -> np.ndarray:
    """Filled OpenCV ellipse; (cx, cy) = (column, row)."""
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.ellipse(mask, (cx, cy), (axis1, axis2), angle, 0, 360, 1, -1)
    return mask.astype(bool)


def circle(cx: int, cy: int, radius: int) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.circle(mask, (cx, cy), radius, 1, -1)
    return mask.astype(bool)


def described_mask(description: str) -> np.ndarray:
    """A mask of the reference file, e.g. "circle(400,240,80) & ~circle(400,240,40)"."""
    names = {"rect": rect, "circle": circle, "ellipse": ellipse, "np": np, "bool": bool,
             "H": HEIGHT, "W": WIDTH}
    return eval(description, {"__builtins__": {}}, names)  # the project's own reference data


def signed_area(polygon: np.ndarray) -> float:
    """Shoelace area of a closed [x, y] polygon: > 0 when clockwise on screen (y down)."""
    x, y = polygon[:-1, 0], polygon[:-1, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


# ---------------------------------------------------------------------------------------------
# The cases computed with the original toolkit
# ---------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def reference_cases() -> dict:
    return json.loads(REFERENCE.read_text())["cases"] if REFERENCE.is_file() else {}


@pytest.mark.parametrize("name", sorted(reference_cases()) or ["reference file missing"])
def test_matches_original_toolkit(name):
    if not REFERENCE.is_file():
        pytest.fail(f"missing {REFERENCE}: the T reference cases computed with the original DAVIS "
                    "2016 toolkit")
    case = reference_cases()[name]
    mask_a, mask_b = described_mask(case["mask_a"]), described_mask(case["mask_b"])
    polygons_a = temporal.mask_polygons(mask_a)
    assert [p.tolist() for p in polygons_a] == case["poly_a"]
    assert [p.tolist() for p in temporal.mask_polygons(mask_b)] == case["poly_b"]
    cost = temporal.pair_cost(mask_a, mask_b)
    if case["T_raw"] is None:
        assert np.isnan(cost)
        return
    longest = temporal.longest_polygon(polygons_a)
    assert longest.tolist() == case["longest_a"]
    assert len(temporal.upsample_contour(longest)) == case["upsampled_a_len"]
    assert abs(cost - case["T_raw"]) <= 1e-6


# ---------------------------------------------------------------------------------------------
# Step 1: polygons
# ---------------------------------------------------------------------------------------------

def test_rectangle_polygon_and_samples():
    polygons = temporal.mask_polygons(rect(100, 200, 300, 450))
    assert [p.tolist() for p in polygons] == [[[300, 100], [450, 100], [450, 200], [300, 200],
                                               [300, 100]]]
    samples = temporal.upsample_contour(polygons[0])
    assert samples.dtype == np.float32 and len(samples) == 169
    assert samples[0].tolist() == samples[-1].tolist() == [300, 100]


def test_hole_runs_counter_clockwise_and_comes_first():
    ring = rect(100, 300, 100, 300) & ~rect(150, 250, 150, 250)
    hole, outer = temporal.mask_polygons(ring)
    assert hole.tolist() == [[150, 150], [150, 250], [250, 250], [250, 150], [150, 150]]
    assert outer.tolist() == [[100, 100], [300, 100], [300, 300], [100, 300], [100, 100]]
    assert signed_area(hole) < 0 < signed_area(outer)


def test_checkerboard_junction_splits_the_outline():
    # Two squares touching at one corner give two clockwise curves, not a figure eight; both start
    # at the junction, where the original starts the outlines that pass through one.
    touching = rect(100, 140, 100, 140) | rect(140, 180, 140, 180)
    assert [p.tolist() for p in temporal.mask_polygons(touching)] == [
        [[140, 140], [100, 140], [100, 100], [140, 100], [140, 140]],
        [[140, 140], [180, 140], [180, 180], [140, 180], [140, 140]]]
    mirrored = rect(100, 140, 140, 180) | rect(140, 180, 100, 140)
    assert [p.tolist() for p in temporal.mask_polygons(mirrored)] == [
        [[140, 140], [140, 100], [180, 100], [180, 140], [140, 140]],
        [[140, 140], [140, 180], [100, 180], [100, 140], [140, 140]]]


def test_specks_and_empty_masks_have_no_polygon():
    assert temporal.mask_polygons(np.zeros((HEIGHT, WIDTH), bool)) == []
    assert temporal.mask_polygons(rect(10, 11, 10, 11)) == []
    assert np.isnan(temporal.pair_cost(rect(10, 11, 10, 11), rect(100, 200, 300, 450)))


def test_a_bar_one_pixel_thick_collapses_to_no_polygon():
    # The 1 × 3 px bar, traced down its left side, doubled: (20,20) (20,22) (26,22) (26,20) back
    # to (20,20) as [x, y]. The radial pass (tolerance 3) drops (20,22) (2 from the start) and
    # (26,20) (2 from (26,22)); Douglas–Peucker keeps the three points left: the start, the far
    # corner, the start. Three points are a segment, not a polygon, and are dropped as a speck.
    bar = rect(10, 11, 10, 13)
    assert temporal.mask_polygons(bar) == []
    assert np.isnan(temporal.pair_cost(bar, rect(100, 200, 300, 450)))


def test_a_staircase_triangle_keeps_its_three_corners():
    # Rows 100..109, row 100 + k filled over columns 200 .. 200 + k: the stairs stay within
    # 1 px of the hypotenuse from (200, 100) to (210, 110), inside the 1.5 px tolerance, so the
    # polygon is the triangle of the three corners (4 points with the closing one), clockwise.
    triangle = np.zeros((HEIGHT, WIDTH), bool)
    for k in range(10):
        triangle[100 + k, 200:201 + k] = True
    assert [p.tolist() for p in temporal.mask_polygons(triangle)] == [
        [[200, 100], [210, 110], [200, 110], [200, 100]]]


def test_a_one_pixel_bump_is_simplified_away():
    # A 1 px bump under the bottom edge, traced (400,200) (400,201) (401,201) (401,200): the
    # last three lie within 1.5 px of (400,200), kept before them, and the radial pass drops
    # them; (400,200), on the bottom edge, is then no key for Douglas–Peucker. The corners of
    # the rectangle, far apart, are kept: the rectangle's polygon.
    bumped = rect(100, 200, 300, 450) | rect(200, 201, 400, 401)
    assert [p.tolist() for p in temporal.mask_polygons(bumped)] == [
        [[300, 100], [450, 100], [450, 200], [300, 200], [300, 100]]]


def test_any_nonzero_label_is_foreground():
    # Labels 1 and 2 side by side make one object, not two touching ones.
    labels = np.zeros((HEIGHT, WIDTH), np.uint8)
    labels[100:200, 300:400], labels[100:200, 400:450] = 1, 2
    assert [p.tolist() for p in temporal.mask_polygons(labels)] == [
        [[300, 100], [450, 100], [450, 200], [300, 200], [300, 100]]]


def polygon_mask(points) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.fillPoly(mask, [np.array(points, np.int32)], 1)
    return mask.astype(bool)


@pytest.mark.parametrize("mirrored", [False, True])
def test_a_concave_outline_runs_clockwise(mirrored):
    # An arrow head with a deep notch; the mirror image turns the other way before reversal.
    arrow = polygon_mask([[340, 100], [410, 130], [400, 180], [220, 410], [340, 150]])
    polygons = temporal.mask_polygons(arrow[:, ::-1] if mirrored else arrow)
    assert len(polygons) == 1 and signed_area(polygons[0]) > 0


def test_orientation_is_summed_in_float32_as_polycont():
    # polycont's is_clockwise adds (Δrow) · (col + next col) to a float. A 2 × 2 square (doubled
    # [row, col] corners) at column 2^25, traced clockwise: the terms are 0, 2 · (2^26 + 4) =
    # 2^27 + 8, 0, −2 · 2^26 = −2^27, 0, exactly +8 in all. In float32 (spacing 16 at 2^27)
    # 2^27 + 8 rounds to even, 2^27, and the total is 0: not clockwise.
    column = 2**25
    square = np.array([[0, column], [0, column + 2], [2, column + 2], [2, column], [0, column]])
    assert not temporal._is_clockwise(square)
    assert temporal._is_clockwise(square - [0, column])  # near the origin the sum is exact: 8 > 0


def even_odd_fill(curves, shape) -> np.ndarray:
    """Pixels whose centre lies inside an odd number of the (axis-parallel) curves."""
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]] + 0.5
    inside = np.zeros(shape, bool)
    for curve in curves:
        for (r0, c0), (r1, c1) in zip(curve.corners[:-1], curve.corners[1:]):
            if c0 == c1:  # a ray to the left crosses the vertical edges only
                inside ^= (rows > min(r0, r1)) & (rows < max(r0, r1)) & (cols > c0)
    return inside


def pixel_beside(start, end, right: bool) -> tuple[int, int]:
    """The pixel on the right (or left) of a unit step between pixel corners, y down."""
    (r0, c0), (r1, c1) = start, end
    side = 1 if right else -1
    return (int(np.floor((r0 + r1) / 2 + side * (c1 - c0) / 2)),
            int(np.floor((c0 + c1) / 2 - side * (r1 - r0) / 2)))


# Grids full of checkerboard junctions, where the walk that joins the pieces into curves chooses
# its way at junctions it reaches from other junctions (the drawn grids seldom have such chains);
# the first: four pixels touching the centre one at its corners.
JUNCTION_GRIDS = ([[0, 0, 1], [0, 1, 0], [1, 0, 1]],
                  [[0, 1, 1, 0, 1], [1, 0, 1, 1, 1], [0, 1, 0, 1, 1], [1, 0, 1, 0, 0],
                   [1, 1, 0, 1, 1]],
                  [[0, 1, 0, 0, 1], [1, 0, 1, 1, 0], [0, 0, 0, 0, 1]])


@FEW_EXAMPLES
@given(arrays(bool, st.tuples(st.integers(1, 9), st.integers(1, 9))))
@example(np.array(JUNCTION_GRIDS[0], bool))
@example(np.array(JUNCTION_GRIDS[1], bool))
@example(np.array(JUNCTION_GRIDS[2], bool))
def test_traced_curves_are_the_exact_outline(grid):
    """Before simplification the curves are simple, use every boundary edge once, rebuild the
    mask, and are holes exactly where they enclose background (checkerboards included): the
    inside of a curve is foreground (background for a hole) along all of its edges, so curves
    turn at junctions instead of crossing each other."""
    mask = np.pad(grid, 1)
    curves = temporal._traced_curves(mask)
    assert np.array_equal(even_odd_fill(curves, mask.shape), mask)
    edges = set()
    for curve in curves:
        corners = [tuple(c) for c in curve.corners.tolist()]
        assert corners[0] == corners[-1] and len(set(corners)) == len(corners) - 1
        assert (np.abs(np.diff(curve.corners, axis=0)).sum(axis=1) == 1).all()
        edges |= {frozenset(edge) for edge in zip(corners[:-1], corners[1:])}
        rows, cols = curve.corners[:, 0], curve.corners[:, 1]
        inside_on_right = np.sum((rows[1:] - rows[:-1]) * (cols[1:] + cols[:-1])) > 0
        for start, end in zip(corners[:-1], corners[1:]):
            assert mask[pixel_beside(start, end, inside_on_right)] != curve.is_hole
    assert len(edges) == sum(len(c.corners) - 1 for c in curves)


def douglas_peucker_reference(points: list, tolerance: float) -> list:
    """psimpl's simplify_douglas_peucker, point by point (radial-distance pass, then DP)."""
    def segment_distance2(start, end, point):
        vx, vy = end[0] - start[0], end[1] - start[1]
        wx, wy = point[0] - start[0], point[1] - start[1]
        along = wx * vx + wy * vy
        if along <= 0:
            return wx * wx + wy * wy
        length2 = vx * vx + vy * vy
        if length2 <= along:
            return (point[0] - end[0]) ** 2 + (point[1] - end[1]) ** 2
        fraction = float(np.float32(along) / np.float32(length2))
        ex, ey = point[0] - (start[0] + fraction * vx), point[1] - (start[1] + fraction * vy)
        return ex * ex + ey * ey

    if len(points) < 3:
        return points
    tol2 = tolerance * tolerance
    reduced = [points[0]]
    for point in points[1:-1]:
        if (reduced[-1][0] - point[0]) ** 2 + (reduced[-1][1] - point[1]) ** 2 >= tol2:
            reduced.append(point)
    reduced.append(points[-1])
    keys = {0, len(reduced) - 1}
    stack = [(0, len(reduced) - 1)]
    while stack:
        first, last = stack.pop()
        key, farthest = 0, 0.0
        for index in range(first + 1, last):
            distance2 = segment_distance2(reduced[first], reduced[last], reduced[index])
            if distance2 >= farthest:
                key, farthest = index, distance2
        if key and farthest > tol2:
            keys.add(key)
            stack += [(key, last), (first, key)]
    return [reduced[index] for index in sorted(keys)]


@FEW_EXAMPLES
@given(st.lists(st.sampled_from([(0, 2), (2, 0), (0, -2), (-2, 0), (2, 2)]), min_size=1,
                max_size=80),
       st.sampled_from([0.1, 3.0, 5.0]))
# three points, the middle one within the tolerance of the first
@example([(0, 2), (2, 0)], 3.0)
# points exactly at the tolerance: kept by the radial pass, not split at by Douglas–Peucker
@example([(0, 2), (2, 0), (0, -2)], 2.0)
@example([(3, 1), (0, 1), (0, 1), (3, -3)], 2.0)
# the radial pass drops a point that Douglas–Peucker alone would keep: the second of two points
# 0.03 apart, 0.09 and 0.12 from the final segment (tolerance 0.1) ...
@example([(5, 0.09), (0, 0.03), (5, -0.12)], 0.1)
# ... and the same at tolerance 3 (2 and 4.5 from the final segment, 2.5 apart)
@example([(10, 2), (0, 2.5), (10, -4.5)], 3.0)
# a point projecting inside a segment of squared length 1: fraction 0.5, distance² 0.25 < 0.52²
@example([(0.5, 0.5), (0.5, -0.5)], 0.52)
# a point projecting exactly onto the end of the segment: distance² 0.125 to the end < 0.4²
@example([(0.75, 0.25), (-0.25, 0.25)], 0.4)
def test_douglas_peucker_matches_psimpl(steps, tolerance):
    points = np.cumsum([(500, 300)] + steps, axis=0).astype(np.float64)
    expected = douglas_peucker_reference(points.tolist(), tolerance)
    assert temporal._douglas_peucker(points, tolerance).tolist() == expected


# ---------------------------------------------------------------------------------------------
# Steps 3–5: samples, shape contexts, cost matrix
# ---------------------------------------------------------------------------------------------

def shape_context_reference(points: np.ndarray) -> np.ndarray:
    """The original's sc_compute, formula for formula."""
    points = points.astype(np.float64)
    distance = ssd.squareform(ssd.pdist(points))
    theta = np.arctan2(points[None, :, 1] - points[:, None, 1],
                       points[None, :, 0] - points[:, None, 0])
    distance = distance / np.mean(distance)
    edges = np.logspace(np.log10(1 / 8), np.log10(2.0), 5)
    ring = sum((distance < edge).astype(int) for edge in edges)
    theta = np.fmod(np.fmod(theta, 2 * np.pi) + 2 * np.pi, 2 * np.pi)
    sector = 1 + np.floor(theta / (2 * np.pi / 12.0))
    counts = np.zeros((len(points), 60), np.int64)
    for n in range(len(points)):
        counted = ring[n] > 0
        bins = (ring[n, counted] - 1) * 12 + (sector[n, counted].astype(int) - 1)
        counts[n] = np.bincount(bins, minlength=60)
    return counts


@FEW_EXAMPLES
@given(arrays(np.float32, st.tuples(st.integers(3, 40), st.just(2)),
              elements=st.integers(0, 6400).map(lambda steps: np.float32(steps / 64))))
# pairs at exactly twice the mean distance (1 / (8 / 16)), the outer edge: not counted
@example(np.array([[0, 0], [0, 0], [1, 0], [1, 0]], np.float32))
def test_shape_context_matches_original_formulas(points):
    # Coordinates on a 1/64-pixel grid, as contour samples lie (vertices on the half-pixel grid,
    # segments cut in equal parts): not values like 1e-16 beside 0.25, for which θ mod 2π
    # rounds into a 13th sector that the original indexes out of range.
    assume(np.ptp(points, axis=0).max() > 0)  # distinct points, so a mean distance to divide by
    assert np.array_equal(temporal.shape_context(points), shape_context_reference(points))


def test_short_segments_are_kept_whole_and_long_ones_cut_in_equal_parts():
    # Lengths 2 (≤ 3: kept whole), 7 (ceil(7/3) = 3 parts) and √53 ≈ 7.28 (3 parts).
    samples = temporal.upsample_contour(np.array([[0, 0], [2, 0], [2, 7], [0, 0]], np.float64))
    expected = [[0, 0], [2, 0], [2, 7 / 3], [2, 14 / 3], [2, 7], [4 / 3, 14 / 3], [2 / 3, 7 / 3],
                [0, 0]]
    np.testing.assert_allclose(samples, expected, atol=1e-5)


def test_longest_polygon_ties_go_to_the_last():
    square = np.array([[0, 0], [2, 0], [2, 2], [0, 2], [0, 0]], np.float64)
    other = square + 10
    assert temporal.longest_polygon([square, other]) is other
    assert temporal.longest_polygon([square, other[:-1]]) is square


@FEW_EXAMPLES
@given(st.integers(1, 30), st.integers(1, 30), st.integers(0, 2**32 - 1))
def test_histogram_cost_equals_original_formula_bit_for_bit(n1, n2, seed):
    rng = np.random.default_rng(seed)
    counts_a = rng.poisson(2.0, (n1, 60)) * (rng.random((n1, 60)) < 0.3)
    counts_b = rng.poisson(2.0, (n2, 60)) * (rng.random((n2, 60)) < 0.3)
    hist_a = counts_a / (counts_a.sum(axis=1, keepdims=True) + temporal.EPS)
    hist_b = counts_b / (counts_b.sum(axis=1, keepdims=True) + temporal.EPS)
    a, b = hist_a[:, None, :], hist_b[None, :, :]
    expected = 0.5 * np.sum((a - b) ** 2 / (a + b + temporal.EPS), axis=2)
    assert np.array_equal(temporal.histogram_cost(hist_a, hist_b), expected)


# ---------------------------------------------------------------------------------------------
# Steps 6–7: matching
# ---------------------------------------------------------------------------------------------

def path_cost(cost: np.ndarray, path: np.ndarray) -> float:
    """Cost of a path (end to start), the start cell excluded, after checking its steps."""
    steps = path[:-1] - path[1:]
    assert path[0].tolist() == [cost.shape[0] - 1, cost.shape[1] - 1]
    assert path[-1].tolist() == [0, 0]
    assert {tuple(step) for step in steps.tolist()} <= {(1, 0), (0, 1), (1, 1)}
    return sum(cost[i, j] for i, j in path[:-1].tolist())


@FEW_EXAMPLES
@given(st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**32 - 1))
def test_shortest_path_is_optimal(n1, n2, seed):
    cost = np.random.default_rng(seed).random((n1, n2))
    best = np.full((n1, n2), np.inf)
    best[0, 0] = 0.0
    for i in range(n1):
        for j in range(n2):
            if i or j:
                before = [best[i - 1, j] if i else np.inf, best[i, j - 1] if j else np.inf,
                          best[i - 1, j - 1] if i and j else np.inf]
                best[i, j] = min(before) + cost[i, j]
    assert path_cost(cost, temporal.shortest_path(cost)) == pytest.approx(best[-1, -1], abs=1e-12)


def test_shortest_path_ties_prefer_the_diagonal_then_the_previous_row():
    path = temporal.shortest_path(np.zeros((4, 6)))
    assert path.tolist() == [[3, 5], [2, 4], [1, 3], [0, 2], [0, 1], [0, 0]]
    # Around the expensive centre: (1, 2) and (2, 1) both lie at distance 0 from the start and
    # the diagonal (1, 1) at 5; the step back goes to the previous row, (1, 2).
    cost = np.array([[0.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 0.0]])
    assert temporal.shortest_path(cost).tolist() == [[2, 2], [1, 2], [0, 1], [0, 0]]


def test_shortest_path_tells_apart_costs_far_below_one():
    # Through (1, 1) the path costs 1e-17, through (0, 1) 2e-17: the start costs nothing, so
    # the distances keep such differences and the cheaper path wins.
    cost = np.array([[0.0, 2e-17, 5.0], [5.0, 1e-17, 0.0]])
    assert temporal.shortest_path(cost).tolist() == [[1, 2], [1, 1], [0, 0]]


def test_one_to_one_keeps_cheapest_per_row_then_per_column():
    cost = np.array([[5.0, 1.0, 7.0],
                     [8.0, 2.0, 9.0],
                     [8.0, 2.0, 3.0]])
    path = np.array([[2, 2], [2, 1], [1, 1], [0, 1], [0, 0]])  # from the end
    # Rows keep (0, 1), (1, 1) and (2, 1); column 1 then keeps (0, 1).
    assert temporal._one_to_one(path, cost).tolist() == [[0, 1]]


def test_one_to_one_ties_go_to_the_first_pair_scanned():
    cost = np.array([[1.0, 0.0, 0.0],
                     [0.0, 4.0, 4.0],
                     [0.0, 0.0, 5.0]])
    # Row 1 ties: the first in path order, (1, 2), is kept (then beats (2, 2) in column 2).
    path = np.array([[2, 2], [1, 2], [1, 1], [0, 0]])
    assert temporal._one_to_one(path, cost).tolist() == [[0, 0], [1, 2]]
    # Column 0 ties between rows 0 and 1: the lower row is kept.
    cost = np.array([[3.0, 9.0], [3.0, 9.0], [9.0, 1.0]])
    path = np.array([[2, 1], [1, 0], [0, 0]])
    assert temporal._one_to_one(path, cost).tolist() == [[0, 0], [2, 1]]


def test_matching_of_two_samples_each_pairs_them_in_order():
    # Histograms all in one bin: χ² is 0 for the same bin, 0.5 · (1 + 1) / (1 + eps) ≈ 1 for
    # different bins. The path is the diagonal, its cheapest cell the end, so the rotation is a
    # whole turn; pairs (0, 0) and (1, 1) cost 0 and 1: the mean is 0.5.
    bins = np.eye(temporal.NUM_BINS)
    assert temporal._matching_cost(bins[[0, 1]], bins[[0, 2]]) == pytest.approx(0.5, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# Pair cost, sequences and properties of T
# ---------------------------------------------------------------------------------------------

def test_sequence_stability_is_five_times_the_pair_costs():
    masks = [circle(400, 240, 50), circle(410, 236, 55), np.zeros((HEIGHT, WIDTH), bool),
             ellipse(400, 240, 80, 45, 0), circle(400, 240, 60)]
    values = temporal.sequence_stability(masks)
    assert values.shape == (4,) and values.dtype == np.float64
    assert values[0] == 5.0 * temporal.pair_cost(masks[0], masks[1])
    assert np.isnan(values[1]) and np.isnan(values[2])
    assert values[3] == 5.0 * temporal.pair_cost(masks[3], masks[4])
    assert temporal.sequence_stability(masks[:1]).shape == (0,)


# (cx, cy, axis1, axis2, angle): every pixel corner stays in x ∈ [256, 512), y ∈ [128, 256).
ellipses = st.tuples(st.integers(285, 485), st.integers(155, 228), st.integers(4, 24),
                     st.integers(4, 24), st.floats(0, 180))


@FEW_EXAMPLES
@given(ellipses, ellipses)
def test_cost_is_symmetric(first, second):
    mask_a, mask_b = ellipse(*first), ellipse(*second)
    assert temporal.pair_cost(mask_a, mask_b) == pytest.approx(
        temporal.pair_cost(mask_b, mask_a), abs=1e-9)


@FEW_EXAMPLES
@given(ellipses, st.integers(285, 485), st.integers(155, 228))
def test_identical_and_shifted_masks_cost_nothing(shape, cx, cy):
    # The samples are placed in float32 (as the original does), so a shift is exactly free when
    # every coordinate keeps its power-of-two range: here x in [256, 512), y in [128, 256).
    mask = ellipse(*shape)
    assert temporal.pair_cost(mask, mask) == 0.0
    assert temporal.pair_cost(mask, ellipse(cx, cy, *shape[2:])) == 0.0


def test_shift_across_powers_of_two_costs_almost_nothing():
    # Float32 rounding of the samples then differs and flips a few histogram bins.
    cost = temporal.pair_cost(ellipse(300, 200, 60, 35, 20), ellipse(600, 300, 60, 35, 20))
    assert 0 <= cost < 1e-3


@FEW_EXAMPLES
@given(ellipses.filter(lambda e: max(e[2], e[3]) >= 1.5 * min(e[2], e[3])))
def test_cost_is_not_rotation_invariant(shape):
    cx, cy, axis1, axis2, angle = shape
    rotated = ellipse(cx, cy, axis1, axis2, angle + 90)
    assert temporal.pair_cost(ellipse(*shape), rotated) > 0.05
