"""STG-Net's equations (methods/stgnet.py) on hand-worked numbers: the motion model
(Eq. 2) on a constant-velocity track and on an accelerating one, the assignment of proposals to
objects, the spatial graph's edge weights and updates (Eqs. 3–5) on a 3-node graph, the mask
selection (Eq. 6), the temporal retrieval (Eqs. 7–8) with identical and with one-hot keys, and
the loss (Eq. 9)."""

import math

import pytest
import torch

from vosbench.methods.stgnet import (
    assign_proposals,
    mask_iou,
    predict_box,
    selection_scores,
    spatial_edge_weights,
    spatial_graph,
    spatial_update,
    stgnet_loss,
    temporal_message,
    temporal_update,
)


def square(size: int, top: int, left: int, height: int, width: int,
           value: float = 1.0) -> torch.Tensor:
    mask = torch.zeros(size, size)
    mask[top:top + height, left:left + width] = value
    return mask


# --- boxes and the motion model ------------------------------------------------------------------

def test_the_motion_model_predicts_a_constant_velocity_track_exactly():
    """Boxes (10 + 2t, 20 + 3t, 30 + 2t, 50 + 3t) for t = 0 … 11: at t = 12 (34, 56, 54, 86)."""
    track = torch.tensor([[10 + 2 * t, 20 + 3 * t, 30 + 2 * t, 50 + 3 * t] for t in range(12)],
                         dtype=torch.float32)
    assert predict_box(track).tolist() == [34, 56, 54, 86]


def test_the_motion_model_averages_the_last_n_velocities_and_sizes():
    """x centres 0, 1, 3, 6 (displacements 1, 2, 3), widths 2, 4, 6, 8, height 2 at y centre 5:
    with n = 2 the centre moves by (2 + 3) / 2 to 8.5 and the width is (6 + 8) / 2 = 7, so
    (5, 4, 12, 6); with n = 10 (all three displacements, all four widths) the centre is 8 and
    the width 5: (5.5, 4, 10.5, 6). One box predicts itself."""
    centres, widths = [0, 1, 3, 6], [2, 4, 6, 8]
    track = torch.tensor([[c - w / 2, 4, c + w / 2, 6] for c, w in zip(centres, widths)])
    assert predict_box(track, steps=2).tolist() == [5, 4, 12, 6]
    assert predict_box(track).tolist() == [5.5, 4, 10.5, 6]
    assert predict_box(track[:1]).tolist() == track[0].tolist()
    # the paper's n = 10 by default: on 12 boxes of growing speed and width, n = 11 differs
    growing = torch.tensor([[t * t, 0, t * t + t + 1, 2] for t in range(12)], dtype=torch.float32)
    assert torch.equal(predict_box(growing), predict_box(growing, steps=10))
    assert not torch.equal(predict_box(growing), predict_box(growing, steps=11))
    with pytest.raises(ValueError, match="^predict_box needs at least one box of the object, "
                                         "got none$"):
        predict_box(torch.zeros(0, 4))


def test_each_proposal_goes_to_the_object_it_overlaps_most():
    """Predicted boxes of objects 0 (0, 0, 4, 4) and 1 (3, 0, 7, 4). Proposal (0, 0, 4, 4): IoU
    1 with object 0. Proposal (2, 0, 6, 4): 8 / 24 with object 0, 12 / 20 with object 1 → 1.
    Proposal (10, 10, 12, 12): overlaps neither → −1."""
    predicted = torch.tensor([[0.0, 0, 4, 4], [3, 0, 7, 4]])
    proposals = torch.tensor([[0.0, 0, 4, 4], [2, 0, 6, 4], [10, 10, 12, 12]])
    assert assign_proposals(proposals, predicted).tolist() == [0, 1, -1]
    assert assign_proposals(proposals, predicted[:1]).tolist() == [0, 0, -1]
    assert assign_proposals(proposals, torch.zeros(0, 4)).tolist() == [-1, -1, -1]
    assert assign_proposals(torch.zeros(0, 4), predicted).tolist() == []


# --- the spatial graph ---------------------------------------------------------------------------

def three_node_weights() -> torch.Tensor:
    """Features (1, 0), (1, 0), (3, 4): cos 1 between nodes 0 and 1, 0.6 with node 2. Boxes (0, 0,
    2, 2) and (1, 0, 3, 2) overlap by 2 of 6 (IoU 1/3), (10, 10, 11, 11) by nothing. α 0.7, β 0.3:
    W_01 = 0.7 + 0.1 = 0.8, W_02 = W_12 = 0.42. (α and β: the defaults, the paper's for DAVIS.)"""
    features = torch.tensor([[1.0, 0.0], [1.0, 0.0], [3.0, 4.0]])
    boxes = torch.tensor([[0.0, 0, 2, 2], [1, 0, 3, 2], [10, 10, 11, 11]])
    return spatial_edge_weights(features, boxes)


def test_edge_weights_mix_cosine_and_box_overlap_with_no_self_loop():
    expected = torch.tensor([[0.0, 0.8, 0.42], [0.8, 0.0, 0.42], [0.42, 0.42, 0.0]])
    assert torch.allclose(three_node_weights(), expected)
    features, boxes = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[0.0, 0, 2, 2]] * 2)
    assert torch.allclose(spatial_edge_weights(features, boxes, alpha=0.1, beta=0.9),
                          torch.tensor([[0.0, 0.9], [0.9, 0.0]]))


def test_the_spatial_update_of_a_three_node_graph_by_hand():
    """h = (1, 0, 0.5) on one pixel, W above. Eq. 5: h_0' = (1 + 0.42 · 0.5) / (1 + 1.22) =
    1.21 / 2.22, h_1' = (0 + 0.8 + 0.21) / 2.22 = 1.01 / 2.22, h_2' = (0.5 + 0.42) / 1.84 = 0.5.
    Second iteration: h_0'' = (1.21 + 0.8 · 1.01 + 0.21 · 2.22) / 2.22² = 0.504058…"""
    weights = three_node_weights()
    states = torch.tensor([1.0, 0.0, 0.5]).view(3, 1, 1)
    once = spatial_update(states, weights).flatten()
    assert once.tolist() == pytest.approx([1.21 / 2.22, 1.01 / 2.22, 0.5])
    twice = spatial_graph(states, weights).flatten()  # the paper's l = 2 by default
    assert twice.tolist() == pytest.approx([0.5040581, 0.4959419, 0.5])
    assert torch.equal(spatial_graph(states, weights, iterations=0), states)


def test_each_pixel_is_updated_on_its_own():
    """Two pixels of a 1×2 map: the update is Eq. 5 applied to each pixel's node values."""
    weights = three_node_weights()
    states = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]).view(3, 1, 2)
    updated = spatial_update(states, weights)
    for pixel in range(2):
        alone = spatial_update(states[:, :, pixel:pixel + 1], weights)
        assert torch.allclose(updated[:, :, pixel:pixel + 1], alone)


# --- the mask selection --------------------------------------------------------------------------

def test_selection_picks_the_node_that_agrees_with_the_box_and_the_warped_mask():
    """8×8 frame, p = (1, 1, 3, 3) and Q the 2×2 square there. Node A is that square at 0.5 (box
    IoU 1, soft mask IoU 2 / 4): S = 0.4 + 0.6 · 0.5 = 0.7. Node B is the square moved one column
    right at 1 (box IoU 2 / 6, mask IoU 2 / 6): S = 1 / 3. Node C is empty: S = 0."""
    box, warped = torch.tensor([1.0, 1, 3, 3]), square(8, 1, 1, 2, 2)
    nodes = torch.stack([square(8, 1, 1, 2, 2, 0.5), square(8, 1, 2, 2, 2), torch.zeros(8, 8)])
    scores = selection_scores(nodes, box, warped)
    assert scores.tolist() == pytest.approx([0.7, 1 / 3, 0.0])
    assert int(scores.argmax()) == 0
    assert mask_iou(torch.zeros(1, 8, 8), torch.zeros(8, 8)).tolist() == [0.0]
    faint = torch.zeros(8, 8)
    faint[0, 0] = 0.3  # a union below one pixel: 0.3 / 0.3
    assert mask_iou(faint[None], faint).tolist() == pytest.approx([1.0])


def test_the_weights_decide_between_the_box_and_the_warped_mask():
    """Node A matches p only, node B matches Q only: λ1 = 0.4, λ2 = 0.6 picks B; 0.6, 0.4 A."""
    box, warped = torch.tensor([0.0, 0, 2, 2]), square(8, 5, 5, 2, 2)
    nodes = torch.stack([square(8, 0, 0, 2, 2), square(8, 5, 5, 2, 2)])
    assert selection_scores(nodes, box, warped).tolist() == pytest.approx([0.4, 0.6])
    assert selection_scores(nodes, box, warped, 0.6, 0.4).tolist() == pytest.approx([0.6, 0.4])


# --- the temporal graph --------------------------------------------------------------------------

def test_identical_keys_retrieve_each_memory_masks_mean():
    """Every key the same: the softmax over positions is uniform, so frame r sends its mask's
    mean everywhere: masks with means 1/4 and 1 give m = 1.25; Eq. 8 at t = 2 with h_t = 0.5
    averages the three: (0.5 + 0.25 + 1) / 3."""
    key = torch.ones(3, 2, 2)
    memory_keys = torch.ones(2, 3, 2, 2)
    memory_values = torch.stack([torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.ones(2, 2)])
    message = temporal_message(key, memory_keys, memory_values)
    assert torch.allclose(message, torch.full((2, 2), 1.25))
    updated = temporal_update(torch.full((2, 2), 0.5), message, frame=2)
    assert torch.allclose(updated, torch.full((2, 2), (0.5 + 0.25 + 1) / 3))


def test_one_hot_keys_retrieve_the_matching_position():
    """Positions 0 … 3 of a 2×2 crop; K_t one-hot, K_r = 50 × one-hot of a permutation π: each
    position i of the current frame draws (almost all of) its value from the memory position j
    with π(j) = i, so the message is the memory mask permuted."""
    key = torch.eye(4).view(4, 2, 2)
    permutation = [2, 0, 3, 1]  # memory position j answers to current position π(j)
    memory_key = 50 * torch.eye(4)[permutation].T.reshape(1, 4, 2, 2)
    value = torch.tensor([0.1, 0.2, 0.3, 0.4])
    message = temporal_message(key, memory_key, value.view(1, 2, 2)).flatten()
    expected = torch.zeros(4)
    for j, i in enumerate(permutation):
        expected[i] = value[j]
    assert torch.allclose(message, expected, atol=1e-6)


def test_every_position_draws_from_the_memory_position_that_matches_it():
    """The softmax runs over the memory's positions j: when only memory position 0 matches the
    current keys, every position i retrieves that position's value (0.1), not the mean."""
    key = torch.zeros(2, 2, 2)
    key[0] = 1  # every current position: e_0
    memory_key = torch.zeros(1, 2, 2, 2)
    memory_key[0, 0, 0, 0] = 50  # memory position 0: 50 e_0, the others 0
    value = torch.tensor([[[0.1, 0.9], [0.9, 0.9]]])
    message = temporal_message(key, memory_key, value)
    assert torch.allclose(message, torch.full((2, 2), 0.1), atol=1e-6)


# --- the loss ------------------------------------------------------------------------------------

def test_the_loss_of_equation_9_by_hand():
    """S against the truth (0.5, 0.2), against (p, Q) (0.3, 0.4): γ (0.2 + 0.2) = 40 with γ = 100.
    Cross-entropy of M̂ = (0, 0.2) against M = (1, 0): (ln 2 + ln(1 + e^0.2)) / 2."""
    loss = stgnet_loss(torch.tensor([0.5, 0.2]), torch.tensor([0.3, 0.4]),
                       torch.tensor([[0.0, 0.2]]), torch.tensor([[1, 0]]))
    cross_entropy = (math.log(2) + math.log(1 + math.exp(0.2))) / 2
    assert float(loss) == pytest.approx(40 + cross_entropy)
    unweighted = stgnet_loss(torch.tensor([0.5, 0.2]), torch.tensor([0.3, 0.4]),
                             torch.tensor([[0.0, 0.2]]), torch.tensor([[1, 0]]),
                             distance_weight=1.0)
    assert float(unweighted) == pytest.approx(0.4 + cross_entropy)
