"""Oracle proposals (src/vosbench/proposals/oracle.py) and mask boxes: without jitter they are the
objects; missed objects and spurious proposals at their rates; the same frame gives the same
proposals; jittered masks stay in their boxes and drift further with the strength; the shift and
grow steps on hand-made masks."""

import numpy as np
import pytest
import torch

from vosbench.proposals.boxes import mask_boxes
from vosbench.proposals.oracle import (
    Jitter,
    clip_box,
    draw_jitter,
    ellipse_in,
    frame_rng,
    grow,
    jittered,
    oracle_proposals,
    shift,
    spurious,
)


def two_objects() -> np.ndarray:
    """40×50 labels: object 1 rows 2–5 × columns 3–8, object 2 an L (rows 20–29 of column 30,
    row 29 over columns 30–39), a void band at the bottom."""
    labels = np.zeros((40, 50), np.uint8)
    labels[2:6, 3:9] = 1
    labels[20:30, 30] = 2
    labels[29, 30:40] = 2
    labels[38:, :] = 255
    return labels


def test_mask_boxes_cover_the_pixels_whole():
    """5 rows × 7 columns. A pixel at (x 2, y 1) → (2, 1, 3, 2); a pixel at (x 6, y 0) → (6, 0, 7,
    1); an L over columns 0–3 and rows 2–4 → (0, 2, 4, 5), its pixel of 0.5 at (x 6, y 0) not
    above the threshold 0.5 but above 0.2; an empty mask → zeros."""
    pixel, corner, shape = torch.zeros(3, 5, 7)
    pixel[1, 2] = 1
    corner[0, 6] = 1
    shape[2, 0:4] = 1
    shape[2:5, 0] = 1
    shape[0, 6] = 0.5
    boxes = mask_boxes(torch.stack([pixel, corner, shape, torch.zeros(5, 7)]))
    assert boxes.tolist() == [[2, 1, 3, 2], [6, 0, 7, 1], [0, 2, 4, 5], [0, 0, 0, 0]]
    assert mask_boxes(shape[None], threshold=0.2).tolist() == [[0, 0, 7, 5]]


def test_without_jitter_the_proposals_are_the_objects():
    labels = two_objects()
    proposals = oracle_proposals(labels, frame_rng(0, "video", 0), strength=0.0, miss_rate=0.0,
                                 spurious_rate=0.0, max_per_object=1)
    assert len(proposals) == 2
    assert np.array_equal(proposals.masks, np.stack([labels == 1, labels == 2]))
    assert proposals.boxes.tolist() == [[3, 2, 9, 6], [30, 20, 40, 30]]
    assert proposals.scores.dtype == np.float32
    assert ((proposals.scores >= 0.05) & (proposals.scores <= 1)).all()
    empty = oracle_proposals(np.zeros((4, 6), np.uint8), frame_rng(0, "video", 0))
    assert (empty.boxes.shape, empty.masks.shape, empty.scores.shape) == ((0, 4), (0, 4, 6),
                                                                          (0,))
    assert (empty.boxes.dtype, empty.masks.dtype) == (np.float32, bool)


def test_missed_objects_spurious_proposals_and_scores_come_at_their_rates():
    """Without jitter an object's proposal is its mask exactly, so over 400 frames of two objects
    the missed objects and the spurious proposals can be counted: each object missed at rate 0.1,
    a spurious proposal at rate 0.3 (± 0.045, three binomial standard deviations); 1 … 3
    proposals per object. Scores: an exact box with N(0, 0.1) noise clipped at 1 averages
    1 − 0.1 · φ(0) = 0.960; spurious ones are U(0.05, 0.5), mean 0.275, in boxes of an object's
    size (6×4 or 10×10)."""
    labels = two_objects()
    truths = [labels == 1, labels == 2]
    missed, per_object = [0, 0], set()
    object_scores, spurious_scores, spurious_sizes = [], [], set()
    for index in range(400):
        proposals = oracle_proposals(labels, frame_rng(0, "video", index), strength=0.0)
        for box, mask, score in zip(proposals.boxes, proposals.masks, proposals.scores):
            if any(np.array_equal(mask, truth) for truth in truths):
                object_scores.append(score)
            else:
                spurious_scores.append(score)
                spurious_sizes.add(tuple(np.round(box[2:] - box[:2], 3).tolist()))
        for k, truth in enumerate(truths):
            count = sum(np.array_equal(mask, truth) for mask in proposals.masks)
            missed[k] += count == 0
            per_object.add(count)
    assert [count / 400 for count in missed] == pytest.approx([0.1, 0.1], abs=0.045)
    assert len(spurious_scores) / 400 == pytest.approx(0.3, abs=0.045)
    assert per_object == {0, 1, 2, 3}
    assert np.mean(object_scores) == pytest.approx(1 - 0.1 / np.sqrt(2 * np.pi), abs=0.01)
    assert max(object_scores) == 1
    assert min(spurious_scores) >= 0.05 and max(spurious_scores) <= 0.5
    assert np.mean(spurious_scores) == pytest.approx(0.275, abs=0.03)
    assert spurious_sizes == {(6.0, 4.0), (10.0, 10.0)}


def test_the_default_jitter_gives_proposals_of_about_0_7_iou():
    """A 40×30 object in a 160×120 frame, 300 frames: the mean mask IoU of its proposals with it
    lies in 0.65 … 0.85 (0.74 measured; 0.70 on the synthetic set, see the module)."""
    labels = np.zeros((120, 160), np.uint8)
    labels[45:75, 60:100] = 1
    truth = labels == 1
    ious, centres = [], []
    for index in range(300):
        proposals = oracle_proposals(labels, frame_rng(0, "video", index), spurious_rate=0.0)
        ious += [(mask & truth).sum() / (mask | truth).sum() for mask in proposals.masks]
        centres += [(box[:2] + box[2:]) / 2 for box in proposals.boxes]
    assert 0.65 < np.mean(ious) < 0.85
    # boxes move by N(0, 0.09 · (40, 30)) pixels, rounded: std √(3.6² + 1/12), √(2.7² + 1/12)
    assert np.std(centres, 0) == pytest.approx([3.6, 2.7], rel=0.15)
    scores = np.concatenate([oracle_proposals(labels, frame_rng(0, "video", index),
                                              strength=1.0).scores for index in range(50)])
    assert scores.min() == np.float32(0.05)  # far-off boxes: clipped at the threshold


def test_the_same_frame_gets_the_same_proposals():
    labels = two_objects()
    first, again = (oracle_proposals(labels, frame_rng(3, "video", 7)) for _ in range(2))
    other = oracle_proposals(labels, frame_rng(3, "video", 8))
    assert np.array_equal(first.masks, again.masks) and np.array_equal(first.boxes, again.boxes)
    assert not (first.boxes.shape == other.boxes.shape and np.array_equal(first.boxes,
                                                                          other.boxes))


def test_jittered_masks_stay_in_their_boxes_and_drift_with_the_strength():
    """Over 100 frames: every mask inside its box and every box inside the frame; the mean IoU
    of the proposals of object 1 with it falls as the strength grows (0.05 → 0.3)."""
    labels = two_objects()
    truth = labels == 1
    means = []
    for strength in (0.05, 0.3):
        ious = []
        for index in range(100):
            proposals = oracle_proposals(labels, frame_rng(0, "video", index), strength=strength,
                                         spurious_rate=0.0)
            for box, mask in zip(proposals.boxes, proposals.masks):
                x0, y0 = np.floor(box[:2]).astype(int)
                x1, y1 = np.ceil(box[2:]).astype(int)
                assert 0 <= x0 <= x1 <= 50 and 0 <= y0 <= y1 <= 40
                outside = mask.copy()
                outside[y0:y1, x0:x1] = False
                assert not outside.any()
                if (mask & truth).any():
                    ious.append((mask & truth).sum() / (mask | truth).sum())
        means.append(np.mean(ious))
    assert means[0] > means[1]


def test_shift_and_grow_on_hand_made_masks():
    """A pixel at (row 2, column 3) of a 5×6 mask moved 2 right and 1 up lands at (1, 5); moved
    4 right it leaves the frame. A disc of radius 1 grows it to a plus; a 3×3 square eroded by
    it keeps its centre."""
    mask = np.zeros((5, 6), bool)
    mask[2, 3] = True
    moved = shift(mask, 2, -1)
    assert np.argwhere(moved).tolist() == [[1, 5]]
    assert not shift(mask, 4, 0).any()
    assert np.argwhere(grow(mask, 1)).tolist() == [[1, 3], [2, 2], [2, 3], [2, 4], [3, 3]]
    square = np.zeros((5, 6), bool)
    square[1:4, 2:5] = True
    assert np.argwhere(grow(square, -1)).tolist() == [[2, 3]]
    assert grow(square, 0) is square


def test_jitter_draws_have_the_stated_spreads():
    """strength 0.2, an object of 30×10: over 3000 draws std(dx) ≈ 6, std(dy) ≈ 2, std(radius) ≈
    1 (rounded: √(1 + 1/12)), the log-scales have std 0.2 and are independent."""
    rng = np.random.default_rng(0)
    draws = [draw_jitter(rng, 0.2, np.array([30.0, 10.0])) for _ in range(3000)]
    assert np.std([d.dx for d in draws]) == pytest.approx(6, rel=0.1)
    assert np.std([d.dy for d in draws]) == pytest.approx(np.sqrt(4 + 1 / 12), rel=0.1)
    assert np.std([d.radius for d in draws]) == pytest.approx(np.sqrt(1 + 1 / 12), rel=0.1)
    logs = np.log([d.scales for d in draws])
    assert logs.std(0) == pytest.approx([0.2, 0.2], rel=0.1)
    assert abs(np.corrcoef(logs.T)[0, 1]) < 0.1


def test_a_jitter_moves_the_box_and_the_mask_together_by_hand():
    """Object rows 10–13 × columns 20–29 (box (20, 10, 30, 14)) in 40×50. Moved (2, −1): box (22,
    9, 32, 13) and the mask with it. Width halved as well: box (24.5, 9, 29.5, 13), the moved mask
    cut to the columns 24–29 the box touches. Grown by 1: the moved mask's plus-shaped border,
    still inside the box. A box past the frame is cut to it."""
    mask = np.zeros((40, 50), bool)
    mask[10:14, 20:30] = True
    box, moved = jittered(mask, Jitter(2, -1, 0, np.array([1.0, 1.0])))
    assert box.tolist() == [22, 9, 32, 13] and box.dtype == np.float32
    assert np.array_equal(moved, shift(mask, 2, -1))
    box, cut = jittered(mask, Jitter(2, -1, 0, np.array([0.5, 1.0])))
    assert box.tolist() == [24.5, 9, 29.5, 13]
    expected = np.zeros((40, 50), bool)
    expected[9:13, 24:30] = True
    assert np.array_equal(cut, expected)
    box, grown = jittered(mask, Jitter(0, 0, 1, np.array([2.0, 2.0])))
    assert box.tolist() == [15, 8, 35, 16] and np.array_equal(grown, grow(mask, 1))
    assert clip_box(np.array([-3.0, 2, 60, 45]), 40, 50).tolist() == [0, 2, 50, 40]
    assert clip_box(np.array([-3.0, 2, 60, 45]), 40, 50).dtype == np.float32


def test_spurious_proposals_are_ellipses_anywhere_in_the_frame():
    """An ellipse fills its box (10, 20, 20, 26): its pixels' box is that box, it is symmetric,
    and its area is about π · 5 · 3. Spurious boxes of 10×6 in a 50×40 frame keep that size
    and spread over the frame."""
    box = np.array([10.0, 20, 20, 26])
    ellipse = ellipse_in(box, (40, 50))
    assert mask_boxes(torch.from_numpy(ellipse)[None]).tolist() == [box.tolist()]
    inside = ellipse[20:26, 10:20]
    assert np.array_equal(inside, inside[::-1]) and np.array_equal(inside, inside[:, ::-1])
    assert ellipse.sum() == pytest.approx(np.pi * 15, rel=0.1)
    # pixel centres 0.5, 1.5, 2.5 in the ellipse of (0.5, 0, 2.5, 1): on it, at its centre, on it
    assert ellipse_in(np.array([0.5, 0, 2.5, 1]), (1, 3)).tolist() == [[True, True, True]]
    rng = np.random.default_rng(0)
    corners = []
    for _ in range(300):
        box, mask = spurious((40, 50), np.array([10.0, 6.0]), rng)
        assert (box[2:] - box[:2]).tolist() == pytest.approx([10, 6]) and box.dtype == np.float32
        assert np.array_equal(mask, ellipse_in(box, (40, 50)))
        corners.append(box[:2])
    corners = np.array(corners)
    assert corners.min(0).tolist() == pytest.approx([0, 0], abs=2)
    assert corners.max(0).tolist() == pytest.approx([40, 34], abs=2)
    big, _ = spurious((40, 50), np.array([80.0, 10.0]), rng)  # wider than the frame
    assert big[0] == 0 and big[2] == 50
