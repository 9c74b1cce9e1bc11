"""`stgnet`: spatiotemporal graph mask reconstruction (Liu et al., AAAI 2021; paper §3), the
equations: the motion model (Eq. 2) and the assignment of proposals to objects, the spatial graph
(Eqs. 3–5), the mask selection (Eq. 6), the temporal graph (Eqs. 7–8) and the loss (Eq. 9).

Per object o and frame t: the proposals (boxes b_v and masks M_v pasted into the frame) are given
to the object whose motion-predicted box p they overlap most; its spatial graph reconstructs each
proposal's mask from the others', weighted by feature similarity and box overlap; the node that
agrees best with p and with the previous mask warped by the flow, Q, is chosen; the temporal graph
refines it from the masks chosen in the frames before.

Boxes are those of `vosbench.proposals.boxes`: (x_min, y_min, x_max, y_max) in pixels, covering
a mask's pixels whole.

Choices the paper leaves open:
- Eq. 2 with a short history: the mean velocity over the displacements there are (up to n) and
  the mean size over the boxes there are (up to n); a single box predicts itself;
- a proposal that overlaps no predicted box (IoU 0 with every object) belongs to no object;
- Eqs. 4–5 sum over all nodes u: Eq. 3's W_vv = 0 makes it the sum over the neighbours N(v),
  and (1 − W_vv) = 1;
- Eq. 6 and Eq. 9's scores take the masks as they are: soft states give Σ min / Σ max, which is
  the intersection over union for binary masks and lets Eq. 9's distance pass a gradient to the
  states (through the mask term; the box term B(·) is piecewise constant);
- Eq. 9's cross-entropy is averaged over the pixels (the paper prints it per pixel).
"""

import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from vosbench.proposals.boxes import mask_boxes

MASK_THRESHOLD = 0.2  # thr of §3: M̂ = (h > thr), for the spatial and the temporal graph


# --- the motion model (Eq. 2) and the assignment of proposals ------------------------------------

def predict_box(history: torch.Tensor, steps: int = 10) -> torch.Tensor:
    """Eq. 2, the motion model: (T, 4) boxes of an object in its last frames, oldest first →
    (4,) the box p predicted for the next frame. Its centre is the last centre plus the mean of
    the last `steps` (n) centre displacements, its width and height the mean of the last n
    widths and heights."""
    if history.shape[0] == 0:
        raise ValueError("predict_box needs at least one box of the object, got none")
    centres = (history[:, :2] + history[:, 2:]) / 2
    sizes = history[:, 2:] - history[:, :2]
    displacements = centres[1:] - centres[:-1]
    velocity = displacements[-steps:].mean(0) if len(displacements) else 0
    centre = centres[-1] + velocity
    size = sizes[-steps:].mean(0)
    return torch.cat([centre - size / 2, centre + size / 2])


def assign_proposals(proposals: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
    """Each proposal to the object whose predicted box it overlaps most: (P, 4) proposal boxes,
    (O, 4) predicted boxes → (P,) int64 object index 0 … O − 1, or −1 where the proposal overlaps
    no predicted box."""
    if predicted.shape[0] == 0:
        return torch.full((proposals.shape[0],), -1)  # int64, from the fill value
    best, objects = box_iou(proposals, predicted).max(1)  # over the objects
    return torch.where(best > 0, objects, -1)


# --- the spatial graph (Eqs. 3–5) ----------------------------------------------------------------

def spatial_edge_weights(features: torch.Tensor, boxes: torch.Tensor, alpha: float = 0.7,
                         beta: float = 0.3) -> torch.Tensor:
    """Eq. 3: (N, C) proposal features X_v, (N, 4) boxes b_v → (N, N) W, W_vu = α cos(X_v, X_u)
    + β IoU(b_v, b_u) for v ≠ u and W_vv = 0."""
    unit = F.normalize(features, dim=1)
    weights = alpha * unit @ unit.T + beta * box_iou(boxes, boxes)
    return weights.fill_diagonal_(0.0)


def spatial_update(states: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eqs. 4–5, one iteration: (N, H, W) node states h_v, (N, N) edge weights W of Eq. 3 (zero
    diagonal) → (N, H, W) h_v' = (h_v + m_v) / (1 + Σ_u W_vu), the message m_v = Σ_u W_vu h_u
    (Eq. 5's (1 − W_vv) is 1)."""
    messages = torch.einsum("vu,uhw->vhw", weights, states)
    return (states + messages) / (1 + weights.sum(1))[:, None, None]


def spatial_graph(masks: torch.Tensor, weights: torch.Tensor, iterations: int = 2) -> torch.Tensor:
    """The spatial graph of one object: (N, H, W) proposal masks M_v as the initial states, the
    fixed (N, N) edge weights of Eq. 3, `iterations` (l) updates of Eq. 5 → (N, H, W) states h_v
    (the reconstructed masks are h_v > MASK_THRESHOLD)."""
    states = masks
    for _ in range(iterations):
        states = spatial_update(states, weights)
    return states


# --- the mask selection (Eq. 6) ------------------------------------------------------------------

def mask_iou(masks: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """(N, H, W) masks in [0, 1] against one (H, W) mask → (N,) Σ min / Σ max (the IoU of binary
    masks); 0 where both are empty."""
    intersection = torch.minimum(masks, other).flatten(1).sum(1)
    union = torch.maximum(masks, other).flatten(1).sum(1)
    return intersection / union.clamp(min=torch.finfo(union.dtype).tiny)  # 0 / tiny = 0


def selection_scores(masks: torch.Tensor, box: torch.Tensor, mask: torch.Tensor,
                     box_weight: float = 0.4, mask_weight: float = 0.6) -> torch.Tensor:
    """Eq. 6: (N, H, W) reconstructed masks M̂_v, the box and the (H, W) mask they are held
    against ((p, Q) at inference, the truth (b, M) in training) → (N,) S(M̂_v | (box, mask)) =
    λ1 IoU(B(M̂_v), box) + λ2 IoU(M̂_v, mask), B(·) the box of the pixels above
    MASK_THRESHOLD."""
    boxes = mask_boxes(masks, MASK_THRESHOLD)
    return (box_weight * box_iou(boxes, box[None])[:, 0]
            + mask_weight * mask_iou(masks, mask))


# --- the temporal graph (Eqs. 7–8) ---------------------------------------------------------------

def temporal_message(key: torch.Tensor, memory_keys: torch.Tensor,
                     memory_values: torch.Tensor) -> torch.Tensor:
    """Eq. 7: (C, h, w) key map K_t of the current frame's crop, (R, C, h, w) keys K_r and
    (R, h, w) cropped masks h_r of the R frames in memory → (h, w) m_t, at each position i the sum
    over the frames r of the softmax over positions j of (K_t)_i · (K_r)_j applied to (h_r)_j."""
    query = key.flatten(1).T  # (hw, C)
    affinity = torch.einsum("ic,rcj->rij", query, memory_keys.flatten(2))  # (R, hw, hw)
    retrieved = torch.einsum("rij,rj->ri", affinity.softmax(2), memory_values.flatten(1))
    return retrieved.sum(0).view(key.shape[1:])


def temporal_update(state: torch.Tensor, message: torch.Tensor, frame: int) -> torch.Tensor:
    """Eq. 8: the (h, w) state h_t of frame t (`frame`) and its message m_t from the t frames
    before → (h_t + m_t) / (t + 1)."""
    return (state + message) / (frame + 1)


# --- the loss (Eq. 9) ----------------------------------------------------------------------------

def stgnet_loss(scores_truth: torch.Tensor, scores_predicted: torch.Tensor,
                reconstructed: torch.Tensor, truth: torch.Tensor,
                distance_weight: float = 100.0) -> torch.Tensor:
    """Eq. 9: (N,) S(M̂_v | (b, M)) and S(M̂_v | (p, Q)) of the N nodes, the (H, W) reconstructed
    mask M̂ and the (H, W) ground truth M in {0, 1} → γ Σ_v |S(M̂_v | (b, M)) − S(M̂_v | (p, Q))|
    plus the mean over the pixels of −M log σ(M̂) − (1 − M) log(1 − σ(M̂))."""
    distance = (scores_truth - scores_predicted).abs().sum()
    cross_entropy = F.binary_cross_entropy_with_logits(reconstructed, truth.to(reconstructed))
    return distance_weight * distance + cross_entropy
