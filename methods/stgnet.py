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
- Eq. 9's cross-entropy is averaged over the pixels (the paper prints it per pixel);
and in the method, `STGNet`:
- Eq. 3's X_v: the ResNet's last stage on the proposal's crop (`feature_size`), globally
  average-pooled; a node without neighbours keeps its mask (Eq. 5 with no u);
- Eq. 7's keys: the ResNet up to `key_stage` and a 1×1 projection (as STM's key embedding),
  resized bilinearly to the (H1, W1) crop, matched with the masks cropped at (H1, W1); the
  values are the chosen masks binarised at thr; the softmax is computed one memory frame at a
  time;
- Eq. 8's η = 1 / (R + 1), R the frames in memory (t without a cap); a capped memory keeps the
  object's first frame and its latest ones; the refined crop is pasted into the chosen mask's
  box (0 outside it, where the chosen mask is below thr);
- an object given no proposal in a frame keeps Q, its previous mask warped to the frame; an
  empty mask extends neither the motion history nor the memory;
- training segments the last frame of each clip from oracle proposals of its ground truth,
  whatever the source at inference, with the ground truth of the frames before as memory and
  motion history.
"""

from dataclasses import dataclass, field

import numpy as np
import timm
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_iou, roi_align

from vosbench.datamodules.clips import Clip, LoadedVideo
from vosbench.errors import InputError
from vosbench.flow.provider import FlowProvider
from vosbench.methods.backbones import StagedResNet, load_weights, normalize_images, resize
from vosbench.methods.base import VOSMethod
from vosbench.methods.optimizers import check_optimizer, make_optimizer
from vosbench.methods.warping import warp_backward
from vosbench.proposals.boxes import mask_boxes
from vosbench.proposals.oracle import frame_rng, oracle_proposals
from vosbench.proposals.provider import ProposalProvider
from vosbench.proposals.segmenter import paste

MASK_THRESHOLD = 0.2  # thr of §3: M̂ = (h > thr), for the spatial and the temporal graph
VOID_LABEL = 255


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
    over the frames r of the softmax over positions j of (K_t)_i · (K_r)_j applied to (h_r)_j.
    One memory frame at a time: (hw)² affinities each."""
    query = key.flatten(1).T  # (hw, C)
    message = key.new_zeros(query.shape[0])
    for keys, values in zip(memory_keys.flatten(2), memory_values.flatten(1)):
        message = message + (query @ keys).softmax(1) @ values
    return message.view(key.shape[1:])


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


# --- crops of frames and masks -------------------------------------------------------------------

def crop(images: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(C, H, W) image or masks, (N, 4) boxes in pixels → (N, C, h, w) each box's content
    resampled bilinearly to `size` (h, w): crop pixel (i, j) samples the box at ((j + 0.5) / w,
    (i + 0.5) / h) of its width and height."""
    return roi_align(images[None], [boxes.to(images.dtype)], size, spatial_scale=1.0,
                     sampling_ratio=2, aligned=True)


# --- the networks --------------------------------------------------------------------------------

class ProposalEncoder(nn.Module):
    """The learnable CNN of Eq. 3: a timm ResNet on each proposal's crop, globally average-pooled:
    (N, 3, h, w) ImageNet-normalised crops → (N, C) features X_v."""

    def __init__(self, backbone: str, weights: str | None):
        super().__init__()
        self.body = timm.create_model(backbone, pretrained=False, num_classes=0)
        if weights is not None:
            load_weights(self.body, weights, f"timm {backbone}")

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.body(crops)


class KeyEncoder(nn.Module):
    """The key CNN of Eq. 7: the first `stage` + 1 stages of a timm ResNet (`StagedResNet`; stage
    3, layer3 at stride 16, is the paper's "stage 4") and a 1×1 convolution to `channels` (as
    STM's key embedding): (N, 3, H1, W1) normalised crops → (N, channels, H1 / s, W1 / s) keys.
    Without the projection the keys are ReLU outputs, all of them non-negative, whose dot
    products favour the memory positions of largest norm whatever the query."""

    def __init__(self, backbone: str, weights: str | None, stage: int, channels: int):
        super().__init__()
        resnet = StagedResNet(backbone, weights)
        self.stages = resnet.stages[:stage + 1]
        self.project = nn.Conv2d(resnet.channels[stage], channels, 1)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            crops = stage(crops)
        return self.project(crops)


# --- the method ----------------------------------------------------------------------------------

@dataclass
class Track:
    """One object at inference: the boxes of its masks, oldest first (the motion history), its
    last (H, W) mask, and its temporal memory, (C, h, w) keys and (h, w) values."""

    boxes: list[torch.Tensor]
    mask: torch.Tensor
    keys: list[torch.Tensor] = field(default_factory=list)
    values: list[torch.Tensor] = field(default_factory=list)


class STGNet(VOSMethod):
    """Semi-supervised multi-object segmentation by spatiotemporal graph mask reconstruction.

    Inference, frame by frame (an object starts at the frame whose given mask it first appears
    in, from that mask): each tracked object's box is predicted from its history (Eq. 2; without
    the motion model its last box) and its last mask warped to the frame by the backward flow
    (Q); the frame's proposals (`proposals`) go to the object whose predicted box they overlap
    most; each object's spatial graph reconstructs its proposals (Eqs. 3–5), the node that agrees
    best with (p, Q) is chosen (Eq. 6), and the temporal graph refines it from the object's memory
    (Eqs. 7–8). The refined mask's box extends the history and its crop the memory. The returned
    channel of an object is its refined state h_t' in [0, 1]; the harness labels each pixel with
    the object of highest state above `threshold` (thr = 0.2 by default).

    Training (Eq. 9) on clips of the `ConsecutiveSampler`: the reference frame and the clip's
    frames before the last one are the memory (their ground truth as the chosen masks) and the
    motion history, the last frame is segmented from oracle proposals of its ground truth (the
    `proposals` jitter settings, whatever the source at inference: the paper trains on its
    detector's proposals), the node is chosen by the ground truth (b, M), and the loss is Eq. 9
    summed over the objects of the clip, averaged over the batch.

    Args:
        proposals: the proposal source (`ProposalProvider`), default oracle proposals with the
            default jitter; results rows name it (`result_notes`).
        flow: the flow that warps the previous mask into Q (`FlowProvider.backward`; on training
            clips `estimate`); default Farnebäck, no cache.
        feature_backbone, feature_weights, feature_size: Eq. 3's CNN (a timm ResNet, a local
            weights file or None, the (h, w) of the proposal crops it sees).
        key_backbone, key_weights, key_stage, key_channels, key_size: Eq. 7's key CNN
            (`KeyEncoder`) and the (H1, W1) of the crops.
        history: n of Eq. 2. motion_model, spatial_graph, temporal_graph: Table 4's parts.
        alpha: α of Eq. 3, β = 1 − α (Table 4). iterations: l. box_weight: λ1 of Eq. 6,
            λ2 = 1 − λ1 (Table 4).
        memory_size: at most this many frames in an object's temporal memory (its first frame
            and the latest ones); None for all, as the paper.
        warp: warp the previous mask with the flow into Q (False: the previous mask itself).
        distance_weight: γ of Eq. 9.
        lr, optimizer, momentum, weight_decay: the optimiser (the paper: Adam, lr 0.1).
        lr_decay, lr_decay_epochs: the learning rate times `lr_decay` every `lr_decay_epochs`
            epochs (the paper: 0.9 every 10).
        threshold: VOSMethod's, the harness's binarisation of the returned h_t': the paper's
            thr, 0.2, by default.
        kwargs: VOSMethod's other arguments (crf, protocol, …).
    """

    name = "stgnet"
    semi_supervised = True
    # Table 4's parts and settings change how a trained model segments: an ablation sweep scores
    # one fit with each (the paper retrains each line of its table)
    inference_only = ("history", "motion_model", "spatial_graph", "alpha", "iterations",
                      "box_weight", "temporal_graph", "memory_size")

    def __init__(self, proposals: ProposalProvider | None = None,
                 flow: FlowProvider | None = None, feature_backbone: str = "resnet101",
                 feature_weights: str | None = None, feature_size: tuple[int, int] = (224, 224),
                 key_backbone: str = "resnet50", key_weights: str | None = None,
                 key_stage: int = 3, key_channels: int = 128,
                 key_size: tuple[int, int] = (256, 256), history: int = 10,
                 motion_model: bool = True, spatial_graph: bool = True, alpha: float = 0.7,
                 iterations: int = 2, box_weight: float = 0.4, temporal_graph: bool = True,
                 memory_size: int | None = None, warp: bool = True,
                 distance_weight: float = 100.0, lr: float = 0.1, optimizer: str = "adam",
                 momentum: float = 0.9, weight_decay: float = 0.0, lr_decay: float = 0.9,
                 lr_decay_epochs: int = 10, threshold: float = MASK_THRESHOLD, **kwargs):
        super().__init__(threshold=threshold, **kwargs)
        check_optimizer(optimizer)
        for name, value in (("alpha", alpha), ("box_weight", box_weight)):
            if not 0 <= value <= 1:
                raise ValueError(f"STGNet: {name} weighs two terms that sum to 1: it lies in "
                                 f"[0, 1], got {value}")
        if history < 1 or iterations < 0 or (memory_size is not None and memory_size < 1):
            raise ValueError(f"STGNet: history ≥ 1, iterations ≥ 0 and memory_size ≥ 1 (or "
                             f"None), got {history}, {iterations}, {memory_size}")
        self.save_hyperparameters(ignore=["proposals", "flow"])
        self.proposals = proposals or ProposalProvider("oracle")
        self.flow = flow or FlowProvider("farneback")
        self.proposal_encoder = ProposalEncoder(feature_backbone, feature_weights)
        self.key_encoder = KeyEncoder(key_backbone, key_weights, key_stage, key_channels)

    def result_notes(self) -> list[str]:
        return [self.proposals.label]

    # --- the steps of one object in one frame ----------------------------------------------------

    def predicted_box(self, history: list[torch.Tensor]) -> torch.Tensor:
        """p: Eq. 2 on the object's last boxes, or without the motion model its last box."""
        if not self.hparams.motion_model:
            return history[-1]
        return predict_box(torch.stack(history), self.hparams.history)

    def reconstruct(self, frame: torch.Tensor, boxes: torch.Tensor,
                    masks: torch.Tensor) -> torch.Tensor:
        """The spatial graph of one object's N proposals: the (3, H, W) normalised frame, (N, 4)
        boxes, (N, H, W) masks → (N, H, W) states h_v after l iterations (Eqs. 3–5); the masks
        themselves without the spatial graph or neighbours (a node without any is unchanged)."""
        if not self.hparams.spatial_graph or len(masks) < 2:
            return masks
        features = self.proposal_encoder(crop(frame, boxes, tuple(self.hparams.feature_size)))
        alpha = self.hparams.alpha
        weights = spatial_edge_weights(features, boxes, alpha, 1 - alpha)
        return spatial_graph(masks, weights, self.hparams.iterations)

    def choose(self, states: torch.Tensor, box: torch.Tensor, mask: torch.Tensor) -> tuple[
            torch.Tensor, torch.Tensor]:
        """Eq. 6: (N, H, W) states against a box and an (H, W) mask → ((N,) scores, the (H, W)
        state of highest score)."""
        box_weight = self.hparams.box_weight
        scores = selection_scores(states, box, mask, box_weight, 1 - box_weight)
        return scores, states[scores.argmax()]

    def keys(self, frame: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
        """K of Eq. 7: the (3, H, W) normalised frame cropped by a (1, 4) box to (H1, W1) →
        (C, H1, W1), the key CNN's features resized bilinearly to the crop's size (the paper's
        K_r ∈ R^{C×H1×W1})."""
        size = tuple(self.hparams.key_size)
        return resize(self.key_encoder(crop(frame, box, size)), size)[0]

    def memory_entry(self, frame: torch.Tensor,
                     mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """A frame as a node of the temporal graph: the (3, H, W) normalised frame and the (H, W)
        mask chosen there → (key (C, H1, W1) of the frame's crop by the mask's box, value
        (H1, W1) the binary mask's crop), or None for an empty mask."""
        box = mask_boxes(mask[None], MASK_THRESHOLD)
        if not box.any():
            return None
        value = crop((mask > MASK_THRESHOLD)[None].float(), box, tuple(self.hparams.key_size))
        return self.keys(frame, box), value[0, 0]

    def refine(self, frame: torch.Tensor, state: torch.Tensor, keys: list[torch.Tensor],
               values: list[torch.Tensor]) -> torch.Tensor:
        """The temporal graph (Eqs. 7–8): the (H, W) chosen state, the R memory entries →
        (H, W) h_t' = (h_t + m_t) / (R + 1) in the box of h_t, computed on its (H1, W1) crop and
        pasted back (`paste`: the pixels whose centres lie in the box; 0 elsewhere). Unchanged
        without the temporal graph, an empty memory or an empty state."""
        box = mask_boxes(state[None], MASK_THRESHOLD)
        if not (self.hparams.temporal_graph and keys and box.any()):
            return state
        message = temporal_message(self.keys(frame, box), torch.stack(keys), torch.stack(values))
        current = crop(state[None], box, tuple(self.hparams.key_size))[0, 0]
        return paste(temporal_update(current, message, len(keys))[None], box, *state.shape)[0]

    def remember(self, keys: list, values: list, entry: tuple | None) -> None:
        """Add a memory entry (unless None), dropping the second-oldest beyond `memory_size`."""
        if entry is None:
            return
        keys.append(entry[0])
        values.append(entry[1])
        cap = self.hparams.memory_size
        if cap is not None and len(keys) > cap:
            index = 1 if cap > 1 else 0  # the first frame stays
            del keys[index], values[index]

    # --- training (Eq. 9) ------------------------------------------------------------------------

    def training_step(self, clip: Clip, batch_index: int) -> torch.Tensor | None:
        """Eq. 9 on the last frame of each clip of the batch (see the class docstring). A batch
        with no object to segment takes no step and is counted in
        `train/clips_without_objects`."""
        if clip.reference_frame is None:
            raise InputError("STG-Net trains on clips with a reference frame: give the "
                             "datamodule the ConsecutiveSampler (data.init_args.sampler)")
        flows = self.last_flows(clip.frames) if self.hparams.warp else None
        losses = []
        for b in range(clip.frames.shape[0]):
            rng = frame_rng(torch.initial_seed() + self.global_step, clip.video[b], b)
            losses += self.clip_losses(
                normalize_images(clip.frames[b]), clip.masks[b],
                normalize_images(clip.reference_frame[b]), clip.reference_mask[b],
                None if flows is None else flows[b], rng)
        if not losses:
            self.log("train/clips_without_objects", float(len(clip.video)))
            return None
        loss = torch.stack(losses).sum() / clip.frames.shape[0]
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def last_flows(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, L, 3, H, W) clip frames in [0, 1] → (B, 2, H, W) the backward flow of each clip's
        last frame to the frame before it, in pixels, estimated on the frames as uint8 images."""
        images = frames[:, -2:].mul(255).round().byte().permute(0, 1, 3, 4, 2).cpu().numpy()
        flows = self.flow.estimate(list(images[:, 1]), list(images[:, 0]))
        return torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2).to(frames.device)

    def clip_losses(self, frames: torch.Tensor, labels: torch.Tensor, reference: torch.Tensor,
                    reference_labels: torch.Tensor, flow: torch.Tensor | None,
                    rng: np.random.Generator) -> list[torch.Tensor]:
        """Eq. 9 for each object of one clip: (L, 3, H, W) normalised frames, (L, H, W) labels,
        the reference's (3, H, W) frame and (H, W) labels, (2, H, W) backward flow of the last
        frame (or None) → one loss per object of the reference present in the last frame and
        given a proposal."""
        hp = self.hparams
        target = labels.shape[0] - 1
        objects = [o for o in reference_labels.unique().tolist() if o not in (0, VOID_LABEL)]
        tracked = [o for o in objects if (labels[:target] == o).any() and
                   (labels[target] == o).any()]
        proposals = oracle_proposals(labels[target].cpu().numpy(), rng,
                                     **self.proposals.jitter)
        if not tracked or not len(proposals):
            return []
        boxes = torch.from_numpy(proposals.boxes).to(frames.device)
        masks = torch.from_numpy(proposals.masks).to(frames.device).float()
        histories = [[box for box in mask_boxes((labels[:target] == o).float()) if box.any()]
                     for o in tracked]
        predicted = torch.stack([self.predicted_box(history) for history in histories])
        assignment = assign_proposals(boxes, predicted)
        previous = (labels[target - 1][None] == torch.tensor(tracked, device=labels.device)[
            :, None, None]).float()
        warped = previous if flow is None else warp_backward(previous[:, None], flow.expand(
            len(tracked), -1, -1, -1))[:, 0]
        losses = []
        for k, o in enumerate(tracked):
            mine = assignment == k
            if not mine.any():
                continue
            states = self.reconstruct(frames[target], boxes[mine], masks[mine])
            truth = (labels[target] == o).float()
            scores_truth, chosen = self.choose(states, mask_boxes(truth[None])[0], truth)
            scores_predicted, _ = self.choose(states, predicted[k], warped[k])
            keys, values = [], []
            for frame, frame_labels in [(reference, reference_labels),
                                        *zip(frames[:target], labels[:target])]:
                self.remember(keys, values, self.memory_entry(frame, (frame_labels == o).float()))
            refined = self.refine(frames[target], chosen, keys, values)
            losses.append(stgnet_loss(scores_truth, scores_predicted, refined, truth,
                                      hp.distance_weight))
        return losses

    # --- inference -------------------------------------------------------------------------------

    @torch.inference_mode()
    def predict_video(self, video: LoadedVideo) -> torch.Tensor:
        """(T, K, H, W): channel k − 1 object k's refined state h_t' at the video's size; its
        given mask at its first frame, 0 before it."""
        given = video.video.reference_masks()
        num_objects = max((int(labels.max()) for labels in given.values()), default=0)
        outputs = torch.zeros(len(video), max(num_objects, 1), *video.video.size,
                              device=self.device)
        frames = normalize_images(video.frames.float() / 255)
        tracks: dict[int, Track] = {}
        for t in range(len(video)):
            if tracks:
                self.segment_frame(video, frames, t, tracks)
                for o, track in tracks.items():
                    outputs[t, o - 1] = track.mask
            if t in given:
                labels = torch.from_numpy(given[t]).to(self.device)
                outputs[t] *= labels == 0
                for o in [o for o in labels.unique().tolist() if o not in (0, VOID_LABEL)]:
                    mask = (labels == o).float()
                    tracks[o] = Track([mask_boxes(mask[None])[0]], mask)
                    self.remember(tracks[o].keys, tracks[o].values,
                                  self.memory_entry(frames[t], mask))
                    outputs[t, o - 1] = mask
        return outputs

    def segment_frame(self, video: LoadedVideo, frames: torch.Tensor, t: int,
                      tracks: dict[int, Track]) -> None:
        """Frame t for every tracked object: each track's mask, history and memory updated. An
        object given no proposal keeps its warped previous mask Q."""
        hp = self.hparams
        objects = list(tracks)
        previous = torch.stack([tracks[o].mask for o in objects])
        warped = self.warped(previous, video, t)
        proposals = self.proposals(video.video, t)
        boxes = torch.from_numpy(proposals.boxes).to(self.device)
        predicted = torch.stack([self.predicted_box(tracks[o].boxes) for o in objects])
        assignment = assign_proposals(boxes, predicted)
        if proposals.masks is not None:
            masks = torch.from_numpy(proposals.masks).to(self.device).float()
        else:  # a detector's boxes: each segmented with the Q of the object it is given to
            masks = self.proposals.segment(video.frames[t].float() / 255, boxes,
                                           warped[assignment.clamp(min=0)])
        for k, o in enumerate(objects):
            track, mine = tracks[o], assignment == k
            if mine.any():
                states = self.reconstruct(frames[t], boxes[mine], masks[mine])
                _, chosen = self.choose(states, predicted[k], warped[k])
                track.mask = self.refine(frames[t], chosen, track.keys, track.values)
            else:
                track.mask = warped[k]
            box = mask_boxes(track.mask[None], MASK_THRESHOLD)[0]
            if box.any():
                track.boxes = (track.boxes + [box])[-(hp.history + 1):]
                if hp.temporal_graph:
                    self.remember(track.keys, track.values,
                                  self.memory_entry(frames[t], track.mask))

    def warped(self, previous: torch.Tensor, video: LoadedVideo, t: int) -> torch.Tensor:
        """(O, H, W) masks of frame t − 1 → Q at frame t: warped with the backward flow t → t − 1
        (unchanged without `warp`)."""
        if not self.hparams.warp:
            return previous
        flow = torch.from_numpy(self.flow.backward(video.video, t)).permute(2, 0, 1)[None]
        return warp_backward(previous[:, None], flow.to(previous).expand(
            len(previous), -1, -1, -1))[:, 0]

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = make_optimizer(hp.optimizer, [{"params": list(self.parameters()),
                                                   "lr": hp.lr}], hp.momentum, hp.weight_decay)
        schedule = torch.optim.lr_scheduler.StepLR(optimizer, hp.lr_decay_epochs, hp.lr_decay)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule,
                                                          "interval": "epoch"}}
