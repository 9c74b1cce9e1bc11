"""T, the temporal stability measure of DAVIS 2016, as the original toolkit computes it.

The original (fperazzi/davis: `davis/measures/t_stability.py` and its C++ extension `tstab`, built
on the polycont and psimpl libraries) takes the outline of two consecutive predicted masks, samples
each every 3 px, describes every sample by its shape context, matches the two sample sequences with
a shortest path through their cost matrix and averages the cost of the matched pairs. See
../../shared/METRICS.md, "T — temporal stability", for the definition step by step; the functions
below follow those steps in order and name the details of the original they reproduce, down to the
float32 arithmetic, the summation order and the tie-breaking that decide which samples are paired.

Coordinates are [x = column, y = row] in pixels, at pixel corners: pixel (r, c) is the square
[c, c+1] × [r, r+1]. The outline is traced on the lattice of pixel corners and, as in polycont,
simplified on doubled coordinates.

Where the original leaves a choice to its libraries, this module assumes what they do on Linux
(libstdc++, Boost): the curves of a mask come in the order of libstdc++'s `std::unordered_map`, and
among neighbours with exactly equal path distances the shortest path prefers the diagonal step (see
`shortest_path`).

Speed: a mask's shape contexts are computed once for the two pairs it belongs to; the outline is
followed edge by edge in plain Python, everything per sample pair (shape contexts, the cost matrix
bin by bin, the shortest path by anti-diagonals) is vectorised.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

T_SCALE = 5.0  # the per-pair T is 5 × the raw matching cost
CONTOUR_SPACING = 3.0  # px: contour segments longer than this are subdivided
SIMPLIFY_TOLERANCES = (0.1, 3.0)  # Douglas–Peucker passes on doubled coordinates (0.05 and 1.5 px)
NUM_ANGLE_BINS = 12
NUM_RADIAL_BINS = 5
INNER_RADIUS = 1.0 / 8.0  # radial bin edges, relative to the mean distance between samples
OUTER_RADIUS = 2.0
EPS = 2.2204e-16  # the original's constant, added to histogram sums and χ² denominators
NUM_BINS = NUM_ANGLE_BINS * NUM_RADIAL_BINS
RADIAL_EDGES = np.logspace(np.log10(INNER_RADIUS), np.log10(OUTER_RADIUS), NUM_RADIAL_BINS)
PAIRWISE_LANES = 8  # numpy sums a row of NUM_BINS values in 8 interleaved partial sums


# ---------------------------------------------------------------------------------------------
# Step 1: the polygons of a mask (polycont's mask2polycont)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Outline:
    """The boundary edges of a mask as oriented edges on its lattice of pixel corners.

    The lattice covers the mask's bounding box grown by one pixel; corner id = row · `width` + col,
    and corner (0, 0) is the image corner (`origin` row, `origin` col). Every boundary edge is
    oriented with the foreground on its right (x right, y down), so around a corner with two edges
    one comes in and one goes out; 4-way (checkerboard) junctions have two of each.

    Edge ids: the vertical edges in raster order first, then the horizontal ones.
    """

    width: int
    origin: tuple[int, int]
    tail: list[int]  # corner each edge starts at
    head: list[int]  # corner each edge ends at
    next_edge: list[int]  # edge leaving `head`, -1 where `head` is a junction
    prev_edge: list[int]  # edge entering `tail`, -1 where `tail` is a junction
    num_vertical: int
    junctions: list[int]  # corner ids of the 4-way junctions, in raster order
    junction_edges: list[tuple[int, int, int, int]]  # their (up, left, down, right) edges


def _outline(mask: np.ndarray) -> _Outline | None:
    """The oriented boundary edges of a (H, W) bool mask; None when the mask is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    padded = np.pad(mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1], 1)
    pixel_rows, pixel_cols = padded.shape
    width = pixel_cols + 1  # corners per row

    # Vertical edge between pixels (r, c) and (r, c+1): corners (r, c+1) and (r+1, c+1),
    # pointing down when the left pixel is foreground.
    vertical = np.flatnonzero(padded[:, :-1] != padded[:, 1:])
    v_row, v_col = np.divmod(vertical, pixel_cols - 1)
    top = v_row * width + v_col + 1
    left_is_fg = padded[v_row, v_col]
    v_tail = np.where(left_is_fg, top, top + width)
    v_head = np.where(left_is_fg, top + width, top)
    # Horizontal edge between pixels (r, c) and (r+1, c): corners (r+1, c) and (r+1, c+1),
    # pointing right when the pixel below is foreground.
    horizontal = np.flatnonzero(padded[:-1, :] != padded[1:, :])
    h_row, h_col = np.divmod(horizontal, pixel_cols)
    start = (h_row + 1) * width + h_col
    below_is_fg = padded[h_row + 1, h_col]
    h_tail = np.where(below_is_fg, start, start + 1)
    h_head = np.where(below_is_fg, start + 1, start)
    tail = np.concatenate([v_tail, h_tail])
    head = np.concatenate([v_head, h_head])

    # 4-way junction: the four pixels around corner (r, c) form a checkerboard.
    top_left, top_right = padded[:-1, :-1], padded[:-1, 1:]
    bottom_left, bottom_right = padded[1:, :-1], padded[1:, 1:]
    checkerboard = (top_left == bottom_right) & (top_right == bottom_left) & (top_left != top_right)
    j_row, j_col = np.divmod(np.flatnonzero(checkerboard), pixel_cols - 1)
    j_row, j_col = j_row + 1, j_col + 1
    junctions = j_row * width + j_col
    is_junction = np.zeros((pixel_rows + 1) * width, bool)
    is_junction[junctions] = True

    edge_ids = np.arange(tail.size)
    leaving, entering = np.full(is_junction.size, -1), np.full(is_junction.size, -1)
    leaving[tail], entering[head] = edge_ids, edge_ids
    next_edge = np.where(is_junction[head], -1, leaving[head])
    prev_edge = np.where(is_junction[tail], -1, entering[tail])

    # The up, left, down and right edges of each junction, found among the sorted edge positions.
    up = np.searchsorted(vertical, (j_row - 1) * (pixel_cols - 1) + j_col - 1)
    down = np.searchsorted(vertical, j_row * (pixel_cols - 1) + j_col - 1)
    left = np.searchsorted(horizontal, (j_row - 1) * pixel_cols + j_col - 1) + vertical.size
    right = np.searchsorted(horizontal, (j_row - 1) * pixel_cols + j_col) + vertical.size
    junction_edges = np.stack([up, left, down, right], axis=1)
    return _Outline(width, (rows[0] - 1, cols[0] - 1), tail.tolist(), head.tolist(),
                    next_edge.tolist(), prev_edge.tolist(), vertical.size, junctions.tolist(),
                    [tuple(edges) for edges in junction_edges.tolist()])


@dataclass(frozen=True)
class _Piece:
    """A stretch of outline between two junctions (the same one for a closed outline).

    `corners` are corner ids from the `start` junction to the `end` junction; `along` says whether
    it runs in the direction of the edge orientation (foreground on its right).
    """

    start: int
    end: int
    corners: list[int]
    along: bool

    def other_end(self, junction: int) -> int:
        """The junction at the far end when leaving from `junction`."""
        return self.end if junction == self.start else self.start

    def is_vertical_at(self, junction: int, width: int) -> bool:
        """Whether the piece's edge at `junction` is vertical.

        As polycont, a piece starting at `junction` answers for its first edge, even a closed
        piece that also ends there.
        """
        a, b = self.corners[:2] if junction == self.start else self.corners[-2:]
        return abs(a - b) == width


def _walk(outline: _Outline, corner: int, edge: int) -> tuple[list[int], list[int]]:
    """Follow the outline from `corner` through `edge` up to the next junction or back to `edge`.

    Returns the corners passed (from `corner`, inclusive) and the edges used.
    """
    along = outline.tail[edge] == corner
    step, ends = (outline.next_edge, outline.head) if along else (outline.prev_edge, outline.tail)
    edges = [edge]
    following = step[edge]
    while following >= 0 and following != edge:
        edges.append(following)
        following = step[following]
    return [corner] + [ends[e] for e in edges], edges


def _pieces(outline: _Outline) -> tuple[list[_Piece], list[int]]:
    """Cut the outline into pieces at its junctions, in polycont's order.

    As polycont's mask2poly: the edges around each 4-way junction are explored last junction first,
    up, left, down, right; then every closed outline without a junction gets an artificial
    junction at the top of its first vertical edge in raster order and is followed downwards from
    there. Returns the pieces and the corner of every junction (4-way ones first).
    """
    visited = np.zeros(len(outline.tail), bool)
    junction_ids = {corner: index for index, corner in enumerate(outline.junctions)}
    pieces = []
    for junction in reversed(range(len(outline.junctions))):
        for edge in outline.junction_edges[junction]:
            if visited[edge]:
                continue
            corners, edges = _walk(outline, outline.junctions[junction], edge)
            visited[edges] = True
            pieces.append(_Piece(junction, junction_ids[corners[-1]], corners,
                                 outline.tail[edge] == corners[0]))
    junction_corners = list(outline.junctions)
    for edge in np.flatnonzero(~visited[:outline.num_vertical]).tolist():
        if visited[edge]:
            continue
        top = min(outline.tail[edge], outline.head[edge])
        corners, edges = _walk(outline, top, edge)
        visited[edges] = True
        junction = len(junction_corners)
        junction_corners.append(top)
        pieces.append(_Piece(junction, junction, corners, outline.tail[edge] == top))
    return pieces, junction_corners


def _jordan_curves(pieces: list[_Piece], width: int) -> list[list[tuple[int, int]]]:
    """Join the pieces into closed curves that never cross themselves, as polycont's lines2jordan.

    A walk starts at the junction with the highest id that still has pieces (the first key of the
    original's `std::unordered_map` with libstdc++), takes its lowest piece, and at every junction
    it reaches turns onto the lowest remaining piece that does not go straight on. When the walk
    comes back to a junction it already passed, the loop from there is one curve.

    Returns every curve as its (departure junction, piece index) steps.
    """
    remaining: dict[int, set[int]] = {}
    for index, piece in enumerate(pieces):
        remaining.setdefault(piece.start, set()).add(index)
        remaining.setdefault(piece.end, set()).add(index)

    def take(index: int, junction: int) -> None:
        for end in (junction, pieces[index].other_end(junction)):
            if end in remaining:
                remaining[end].discard(index)
                if not remaining[end]:
                    del remaining[end]

    curves = []
    while remaining:
        junction = max(remaining)
        index = min(remaining[junction])
        walk: list[tuple[int, int]] = []
        while True:
            take(index, junction)
            walk.append((junction, index))
            junction = pieces[index].other_end(junction)
            passed = [step[0] for step in walk]
            if junction in passed:
                start = passed.index(junction)
                curves.append(walk[start:])
                del walk[start:]
                if not walk:
                    break
                index = walk[-1][1]  # go on from here as if arriving by the previous piece
            candidates = sorted(remaining[junction])
            arriving_vertical = pieces[index].is_vertical_at(junction, width)
            straight = pieces[candidates[0]].is_vertical_at(junction, width) == arriving_vertical
            index = candidates[1] if straight else candidates[0]
    return curves


def _radial_distance(points: np.ndarray, tolerance: float) -> np.ndarray:
    """psimpl's radial-distance pass: drop the points closer than `tolerance` to the last kept one.

    The first and last points are always kept. `points` is (n, 2) float64.
    """
    tol2 = tolerance * tolerance
    if len(points) < 3 or (np.diff(points, axis=0) ** 2).sum(axis=1).min() >= tol2:
        return points  # every point is far enough from its predecessor: all are kept
    coords = points.tolist()
    kept = [0]
    last_x, last_y = coords[0]
    for index in range(1, len(coords) - 1):
        x, y = coords[index]
        if (last_x - x) * (last_x - x) + (last_y - y) * (last_y - y) >= tol2:
            kept.append(index)
            last_x, last_y = x, y
    kept.append(len(coords) - 1)
    return points[kept]


def _douglas_peucker(points: np.ndarray, tolerance: float) -> np.ndarray:
    """psimpl's Douglas–Peucker: radial-distance pass, then recursive splitting.

    A sub-polyline is split at its point farthest from the segment joining its ends (ties: the
    last such point) while that distance exceeds `tolerance`. The sub-polylines of one recursion
    depth are processed together. As psimpl, the point-to-segment distance rounds the projection
    fraction to float32.

    Args:
        points: (n, 2) float64 polyline (a closed curve repeats its start).

    Returns:
        (m, 2) float64, the kept points in order.
    """
    if len(points) < 3:
        return points
    points = _radial_distance(points, tolerance)
    xs, ys = points[:, 0].copy(), points[:, 1].copy()
    keep = np.zeros(len(points), bool)
    keep[[0, -1]] = True
    firsts, lasts = np.array([0]), np.array([len(points) - 1])
    while True:
        sizes = lasts - firsts - 1
        firsts, lasts, sizes = firsts[sizes > 0], lasts[sizes > 0], sizes[sizes > 0]
        if not firsts.size:
            return points[keep]
        # One entry per inner point: its sub-polyline, index and distance to the segment.
        group = np.repeat(np.arange(firsts.size), sizes)
        group_starts = np.cumsum(sizes) - sizes
        inner = np.arange(group.size) + (firsts + 1 - group_starts)[group]
        x0, y0 = xs[firsts], ys[firsts]
        dx, dy = xs[lasts] - x0, ys[lasts] - y0
        x0, y0, dx, dy = x0[group], y0[group], dx[group], dy[group]
        along = (xs[inner] - x0) * dx + (ys[inner] - y0) * dy
        length2 = dx * dx + dy * dy
        fraction = (along.astype(np.float32)
                    / np.maximum(length2, 1).astype(np.float32)).astype(np.float64)
        fraction[along >= length2] = 1.0  # beyond the end: the end point
        fraction[along <= 0] = 0.0  # before the start (or no segment): the start point
        off_x = xs[inner] - (x0 + fraction * dx)
        off_y = ys[inner] - (y0 + fraction * dy)
        distance2 = off_x * off_x + off_y * off_y

        farthest = np.maximum.reduceat(distance2, group_starts)
        is_farthest = distance2 == farthest[group]
        last_farthest = np.maximum.reduceat(np.where(is_farthest, np.arange(group.size), -1),
                                            group_starts)
        split = farthest > tolerance * tolerance
        key = inner[last_farthest[split]]
        keep[key] = True
        firsts = np.concatenate([firsts[split], key])
        lasts = np.concatenate([key, lasts[split]])


def _is_clockwise(doubled: np.ndarray) -> bool:
    """polycont's orientation test on a closed (n, 2) [row, col] int polygon.

    The terms are summed in float32, one after the other, as the original does.
    """
    rows, cols = doubled[:, 0], doubled[:, 1]
    terms = (np.roll(rows, -1) - rows) * (np.roll(cols, -1) + cols)
    return np.add.accumulate(terms.astype(np.float32))[-1] > 0


@dataclass(frozen=True)
class _Curve:
    """One closed outline, exactly on the pixel corners, as polycont traces it.

    `corners` is (m + 1, 2) int64 [row, col], starting at the curve's junction and ending there
    again, in the direction polycont traced it; `is_hole` says whether the curve bounds a hole.
    """

    corners: np.ndarray
    is_hole: bool


def _traced_curves(mask: np.ndarray) -> list[_Curve]:
    """The outlines of a (H, W) bool mask as closed, non-self-intersecting curves, in polycont's
    order, each from the junction and in the direction polycont starts it (before simplification).
    """
    outline = _outline(mask)
    if outline is None:
        return []
    pieces, junction_corners = _pieces(outline)
    curves = []
    for steps in _jordan_curves(pieces, outline.width):
        corners = [junction_corners[steps[0][0]]]
        for junction, index in steps:
            piece = pieces[index]
            corners += piece.corners[1:] if piece.start == junction else piece.corners[-2::-1]
        corners = np.array(corners)
        corners = np.stack([corners // outline.width + outline.origin[0],
                            corners % outline.width + outline.origin[1]], axis=1)
        # The foreground is on the right of the traced direction when it runs along the edge
        # orientation, the inside of the curve when the curve turns clockwise: a hole when they
        # differ. (polycont finds holes by nesting; on exact outlines that is the same.)
        first_junction, first_index = steps[0]
        along = pieces[first_index].along == (pieces[first_index].start == first_junction)
        rows, cols = corners[:, 0], corners[:, 1]
        turns_clockwise = np.sum((rows[1:] - rows[:-1]) * (cols[1:] + cols[:-1])) > 0
        curves.append(_Curve(corners, along != turns_clockwise))
    return curves


def _simplified_polygon(curve: _Curve) -> np.ndarray:
    """The polygon polycont makes of a traced curve, as a closed (n, 2) int64 [x, y] array.

    The curve is simplified on doubled coordinates in the direction it was traced, then reversed
    where needed so that outer outlines run clockwise and holes counter-clockwise (on screen,
    y down), the orientation judged on the simplified polygon as polycont does.
    """
    doubled = 2 * curve.corners.astype(np.float64)
    for tolerance in SIMPLIFY_TOLERANCES:
        doubled = _douglas_peucker(doubled, tolerance)
    doubled = doubled.astype(np.int64)
    if _is_clockwise(doubled) == curve.is_hole:
        doubled = doubled[::-1]
    return doubled[:, ::-1] // 2


def mask_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """The simplified closed outlines of a mask, as the original's `mask2poly(mask, 3)`.

    Args:
        mask: (H, W) bool (any nonzero value is foreground).

    Returns:
        The curves in the original's order, each an (n, 2) float64 array of [x, y] pixel-corner
        coordinates with the first point repeated at the end: outer outlines clockwise, holes
        counter-clockwise (on screen, y down), split into separate curves at checkerboard
        junctions; curves of ≤ 3 points are dropped. Empty list for an empty mask.
    """
    polygons = [_simplified_polygon(curve) for curve in _traced_curves(np.asarray(mask, bool))]
    return [polygon.astype(np.float64) for polygon in polygons if len(polygon) > 3]


# ---------------------------------------------------------------------------------------------
# Steps 2–4: the longest curve, its samples and their shape contexts
# ---------------------------------------------------------------------------------------------

def longest_polygon(polygons: Sequence[np.ndarray]) -> np.ndarray:
    """The polygon with the most vertices; as the original, ties go to the last one."""
    longest = polygons[0]
    for polygon in polygons[1:]:
        if len(polygon) >= len(longest):
            longest = polygon
    return longest


def upsample_contour(polygon: np.ndarray, spacing: float = CONTOUR_SPACING) -> np.ndarray:
    """Subdivide the segments of a closed polygon longer than `spacing`, in float32 as `tstab`.

    Every vertex is kept; a segment of length L > spacing gets ceil(L / spacing) − 1 equally
    spaced points in between, placed by adding segment / ceil(L / spacing) repeatedly.

    Args:
        polygon: (n, 2) [x, y] vertices, first repeated at the end.

    Returns:
        (m, 2) float32 [x, y] points, the last one equal to the first.
    """
    vertices = np.asarray(polygon, np.float32)
    steps = vertices[1:] - vertices[:-1]
    lengths = np.sqrt(steps[:, 0] * steps[:, 0] + steps[:, 1] * steps[:, 1])
    num_parts = np.where(lengths > np.float32(spacing),
                         np.ceil(lengths / np.float32(spacing)), 1).astype(np.int64)
    increment = steps / num_parts[:, None].astype(np.float32)
    # Row s: the segment's start vertex, then its increments; the running sums (float32, in
    # order) are the inserted points.
    running = np.zeros((len(steps), num_parts.max(), 2), np.float32)
    running[:, 0] = vertices[:-1]
    running[:, 1:] = increment[:, None]
    running = np.add.accumulate(running, axis=1)
    used = np.arange(num_parts.max()) < num_parts[:, None]
    return np.concatenate([running[used], vertices[-1:]])


def shape_context(points: np.ndarray) -> np.ndarray:
    """Log-polar histograms of the samples around each sample, as the original's `sc_compute`.

    Distances are divided by their mean over all ordered pairs (the zero self-distances included).
    A neighbour at normalised distance r is counted when r < 2, in ring (number of edges of
    [1/8, 1/4, 1/2, 1, 2] above r) − 1, so ring 4 is the innermost and a sample counts itself
    there. Angles are absolute (not rotation invariant): sector floor(θ / 30°) of
    θ = atan2(Δy, Δx) brought to [0, 2π).

    Args:
        points: (n, 2) [x, y] samples (float32 as `upsample_contour` gives them).

    Returns:
        (n, 60) int64 counts, bin = ring · 12 + sector.
    """
    xy = np.asarray(points, np.float64)
    num_points = len(xy)
    dx = xy[None, :, 0] - xy[:, None, 0]  # [i, j]: from sample i to sample j
    dy = xy[None, :, 1] - xy[:, None, 1]
    distance = dx * dx
    angle = np.multiply(dy, dy)
    distance += angle
    np.sqrt(distance, out=distance)
    distance /= distance.mean()
    edges_above = np.zeros(distance.shape, np.int64)  # 0 (r ≥ 2, not counted) … 5 (innermost)
    for edge in RADIAL_EDGES:
        edges_above += distance < edge
    # The original brings θ to [0, 2π) with fmod(fmod(θ, 2π) + 2π, 2π); for θ = atan2(…) in
    # [-π, π] that is t = θ + 2π, minus 2π where t ≥ 2π (exactly, as fmod).
    np.arctan2(dy, dx, out=angle)
    angle += 2 * np.pi
    np.subtract(angle, 2 * np.pi, out=angle, where=angle >= 2 * np.pi)
    angle /= 2 * np.pi / NUM_ANGLE_BINS
    # bin = (edges_above − 1) · 12 + sector (angle ≥ 0: truncation floors), computed in place;
    # the neighbours not counted come out negative and go to an extra bin, dropped at the end.
    bins = edges_above
    bins -= 1
    bins *= NUM_ANGLE_BINS
    bins += angle.astype(np.int64)
    bins[bins < 0] = NUM_BINS
    bins += np.arange(num_points)[:, None] * (NUM_BINS + 1)
    counts = np.bincount(bins.ravel(), minlength=num_points * (NUM_BINS + 1))
    return counts.reshape(num_points, NUM_BINS + 1)[:, :NUM_BINS]


def _describe(mask: np.ndarray) -> np.ndarray | None:
    """A mask's normalised shape contexts (steps 1–4, and the row normalisation of step 5).

    Returns:
        (n, 60) float64 histograms h = counts / (row sum + eps) of the samples of the mask's longest
        curve, or None when the mask has no polygon.
    """
    polygons = mask_polygons(mask)
    if not polygons:
        return None
    counts = shape_context(upsample_contour(longest_polygon(polygons)))
    return counts / (counts.sum(axis=1, keepdims=True) + EPS)


# ---------------------------------------------------------------------------------------------
# Steps 5–8: cost matrix, matching and the pair cost
# ---------------------------------------------------------------------------------------------

def histogram_cost(hist_a: np.ndarray, hist_b: np.ndarray) -> np.ndarray:
    """χ² distances between two sets of normalised histograms, as the original's `hist_cost_2`.

    C[i, j] = 0.5 · Σ_k (a_ik − b_jk)² / (a_ik + b_jk + eps), with the bins summed in the order of
    the original's `np.sum(axis=2)` (numpy's pairwise sum: 8 interleaved partial sums, combined
    pairwise, then the last 4 bins), so that the values are equal bit for bit: exact ties between
    cells decide the matching path.

    Args:
        hist_a: (n1, 60) float64; hist_b: (n2, 60) float64.

    Returns:
        (n1, n2) float64 costs.
    """
    bins_a, bins_b = np.ascontiguousarray(hist_a.T), np.ascontiguousarray(hist_b.T)
    empty_a_terms = bins_b * bins_b / (bins_b + EPS)  # (60, n2): the terms where a_ik = 0

    def add_term(k: int, total: np.ndarray) -> None:
        # Rows with a_ik = 0 (about three quarters on DAVIS-like shapes) all get the same row of
        # terms, the formula's exact value there; only the others need the formula computed.
        rows = np.flatnonzero(bins_a[k])
        a = bins_a[k, rows, None]
        term = np.subtract(a, bins_b[k])
        np.multiply(term, term, out=term)
        term /= (a + bins_b[k]) + EPS
        term += total[rows]
        total += empty_a_terms[k]
        total[rows] = term

    def lane_sum(first: int, count: int) -> np.ndarray:
        """The sum of lanes first … first + count − 1, combined pairwise as numpy does:
        ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)). Lane l holds bins l, l + 8, … in
        order, one of numpy's 8 partial sums."""
        if count > 1:
            total = lane_sum(first, count // 2)
            total += lane_sum(first + count // 2, count // 2)
            return total
        lane = np.zeros((len(hist_a), len(hist_b)))
        for k in range(first, NUM_BINS - NUM_BINS % PAIRWISE_LANES, PAIRWISE_LANES):
            add_term(k, lane)
        return lane

    total = lane_sum(0, PAIRWISE_LANES)
    for k in range(NUM_BINS - NUM_BINS % PAIRWISE_LANES, NUM_BINS):
        add_term(k, total)
    return 0.5 * total


def shortest_path(cost: np.ndarray) -> np.ndarray:
    """The cheapest monotone path through a cost grid, as the original's `match_dijkstra`.

    The path runs from (0, 0) to (n1 − 1, n2 − 1) by steps (i+1, j), (i, j+1) and (i+1, j+1);
    each step costs the cell it enters (the start costs nothing). Distances are swept over
    anti-diagonals, every cell from the two previous ones, with the same float64 additions as the
    original's Dijkstra. A cell's predecessor is the neighbour with the smallest distance, which
    is the one the original's Dijkstra settles first; among exactly equal distances (which the
    original breaks by the order of its heap) the diagonal, then (i−1, j), then (i, j−1) wins.

    Args:
        cost: (n1, n2) float64 ≥ 0.

    Returns:
        (L, 2) int64 (i, j) cells of the path from the end back to the start, both included.
    """
    n1, n2 = cost.shape
    # distance[s, i + 1] is the distance of cell (i, s − i) on anti-diagonal s; column 0 and the
    # cells off the grid stay +inf. It is first filled with the costs: in its flat buffer, cell
    # (i, j) sits at (i + j)(n1 + 1) + i + 1, a view of strides (n1 + 2, n1 + 1) elements.
    distance = np.full((n1 + n2 - 1, n1 + 1), np.inf)
    item = distance.itemsize
    cells = np.lib.stride_tricks.as_strided(distance[:, 1:], shape=(n1, n2),
                                            strides=((n1 + 2) * item, (n1 + 1) * item))
    cells[...] = cost
    distance[0, 1] = 0.0
    # On anti-diagonal s, cell i's neighbours (i−1, j), (i, j−1) and (i−1, j−1) are
    # lower[s−1, i], upper[s−1, i] and lower[s−2, i] (row −1 is still all +inf at s = 1).
    lower, upper = distance[:, :-1], distance[:, 1:]
    best = np.empty(n1)
    for s in range(1, n1 + n2 - 1):
        np.minimum(lower[s - 1], upper[s - 1], out=best)
        np.minimum(best, lower[s - 2], out=best)
        row = upper[s]  # holds the costs, becomes the distances
        np.add(row, best, out=row)

    path = [(n1 - 1, n2 - 1)]
    i, j = n1 - 1, n2 - 1
    while i or j:
        s = i + j
        diagonal = distance.item(s - 2, i) if s >= 2 else np.inf
        up, left = distance.item(s - 1, i), distance.item(s - 1, i + 1)
        if diagonal <= up and diagonal <= left:
            i, j = i - 1, j - 1
        elif up <= left:
            i -= 1
        else:
            j -= 1
        path.append((i, j))
    return np.array(path)


def _one_to_one(pairs: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Keep each row's cheapest pair, then each column's cheapest among those (the original's
    `get_bijective_pairs`).

    Ties go to the first pair in the order the original scans them: path order (from the end) for
    rows, then increasing row for columns.

    Args:
        pairs: (L, 2) int (i, j) cells in path order; cost: the (n1, n2) matrix.

    Returns:
        (m, 2) int pairs ordered by column.
    """
    for axis in (0, 1):
        ids, costs = pairs[:, axis], cost[pairs[:, 0], pairs[:, 1]]
        order = np.lexsort((np.arange(len(pairs)), costs, ids))
        first_of_id = np.r_[True, ids[order][1:] != ids[order][:-1]]
        pairs = pairs[order[first_of_id]]
    return pairs


def _matching_cost(hist_a: np.ndarray, hist_b: np.ndarray) -> float:
    """Steps 5–8: the mean cost of the one-to-one pairs of the matching path."""
    cost = histogram_cost(hist_a, hist_b)
    n1, n2 = cost.shape
    # First pass from the (0, 0) alignment; its cheapest cell (the first found from the end,
    # start excluded) becomes the last cell of the second pass.
    path = shortest_path(cost)[:-1]
    row, col = path[np.argmin(cost[path[:, 0], path[:, 1]])]
    shift_row, shift_col = row + 1, col + 1
    path = shortest_path(np.roll(cost, (-shift_row, -shift_col), axis=(0, 1)))
    pairs = (path + (shift_row, shift_col)) % (n1, n2)
    pairs = _one_to_one(pairs, cost)
    return float(np.mean(cost[pairs[:, 0], pairs[:, 1]]))


def pair_cost(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """The raw DAVIS 2016 temporal-stability cost of two consecutive masks (before the × 5).

    Args:
        mask_a, mask_b: (H, W) bool masks of frames t and t + 1.

    Returns:
        The mean χ² shape-context cost of the matched contour samples (dimensionless, ≥ 0);
        NaN when either mask yields no polygon (empty, or only specks of ≤ 2 vertices).
    """
    hist_a, hist_b = _describe(mask_a), _describe(mask_b)
    if hist_a is None or hist_b is None:
        return float("nan")
    return _matching_cost(hist_a, hist_b)


def sequence_stability(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Per-pair T of a sequence of predicted masks: 5 × `pair_cost(masks[t], masks[t+1])`.

    Each mask's shape contexts are computed once, though it takes part in two pairs.

    Args:
        masks: the (H, W) bool predicted masks of the evaluated frames, in order.

    Returns:
        (len(masks) − 1,) float64 T values (lower is more stable); NaN where either mask of the
        pair has no polygon.
    """
    descriptors = [_describe(mask) for mask in masks]
    values = np.full(max(len(descriptors) - 1, 0), np.nan)
    for t, (hist_a, hist_b) in enumerate(zip(descriptors[:-1], descriptors[1:])):
        if hist_a is not None and hist_b is not None:
            values[t] = T_SCALE * _matching_cost(hist_a, hist_b)
    return values
