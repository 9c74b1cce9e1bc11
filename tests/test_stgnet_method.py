"""STG-Net as a vosbench method (methods/stgnet.py, `STGNet`): the temporal graph on crops with
identical keys, memory entries and the memory cap, the motion model switch, inference with exact
proposals (which must give back the truth, objects appearing mid-video from their given mask, an
object without proposals keeping its warped mask), training (Eq. 9 reaching both CNNs; clips
without objects), the Mask R-CNN path end to end with its proposal cache, and the bench row that
says "oracle proposals"."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.test_agssvos_method import video_with_late_object
from tests.test_harness import SMALL
from vosbench.cli import main as vosbench_main
from vosbench.datamodules.clips import Clip, LoadedVideo
from vosbench.datamodules.video import Video
from vosbench.errors import InputError
from vosbench.methods import stgnet
from vosbench.methods.stgnet import STGNet
from vosbench.proposals.oracle import Proposals
from vosbench.proposals.provider import ProposalProvider


def tiny_stgnet(proposals: ProposalProvider | None = None, **overrides) -> STGNet:
    torch.manual_seed(0)
    settings = dict(feature_backbone="resnet18", feature_size=(16, 16), key_backbone="resnet18",
                    key_stage=0, key_channels=8, key_size=(8, 8), warp=False, optimizer="adamw",
                    lr=1e-3)
    return STGNet(proposals or exact_proposals(), **{**settings, **overrides})


def exact_proposals(**overrides) -> ProposalProvider:
    """Oracle proposals without jitter: one per object, its true mask and box, none missed."""
    settings = dict(strength=0.0, miss_rate=0.0, spurious_rate=0.0, max_per_object=1,
                    cache=False)
    return ProposalProvider("oracle", **{**settings, **overrides})


class ZeroKeys(nn.Module):
    """A key CNN whose keys are all zero (C = 2, at the crop's size over 2): identical keys."""

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return crops.new_zeros(len(crops), 2, crops.shape[2] // 2, crops.shape[3] // 2)


class RecordedZeroKeys(ZeroKeys):
    """ZeroKeys that keeps the crops it is given."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        self.seen.append(crops)
        return super().forward(crops)


# --- the temporal graph on crops -----------------------------------------------------------------

def test_identical_keys_average_the_memory_into_the_box_of_the_state():
    """Zero keys: every position draws the mean of each memory mask, 0.6 and 0.3, so m = 0.9 and
    h' = (h + 0.9) / 3 on the box of the state (rows 2–5, columns 3–10 of a 12×16 frame, cropped
    at its own size), 0 outside it. The bilinear crop (two samples per pixel and axis, at 1/4
    and 3/4) of the box's edge pixels draws 1/4 of a sample from the 0 beyond: 0.875 along the
    edges, 0.875² at the corners, 1 inside."""
    model = tiny_stgnet(key_size=(4, 8))
    model.key_encoder = ZeroKeys()
    state = torch.zeros(12, 16)
    state[2:6, 3:11] = 1
    second = torch.zeros(4, 8)
    second[:, :4] = 0.6  # mean 0.3
    refined = model.refine(torch.rand(3, 12, 16), state, [torch.zeros(2, 4, 8)] * 2,
                           [torch.full((4, 8), 0.6), second])
    edges = torch.ones(4, 8)
    edges[[0, -1]] *= 0.875
    edges[:, [0, -1]] *= 0.875
    expected = torch.zeros(12, 16)
    expected[2:6, 3:11] = (edges + 0.9) / 3
    assert torch.allclose(refined, expected, atol=1e-6)
    assert torch.equal(model.refine(torch.rand(3, 12, 16), state, [], []), state)
    faint = state.clone()
    faint[8, 12] = 0.3  # above thr = 0.2: the box grows to rows 2–8, columns 3–12
    wider = model.refine(torch.rand(3, 12, 16), faint, [torch.zeros(2, 4, 8)], [second])
    inside = torch.zeros(12, 16, dtype=torch.bool)
    inside[2:9, 3:13] = True
    assert (wider[inside] > 0).all() and (wider[~inside] == 0).all()
    model.hparams.temporal_graph = False
    assert torch.equal(model.refine(torch.rand(3, 12, 16), state, [torch.zeros(2, 4, 8)],
                                    [second]), state)


def test_a_memory_entry_is_the_crop_of_the_frame_and_of_the_binary_mask_by_its_box():
    """The mask's box (rows 1–4, columns 2–9; a pixel of 0.1 lies below thr = 0.2 and out of it)
    is cropped from the frame to key_size for the key CNN (a linear ramp: exact), and from the
    mask (binarised at 0.2) for the value. An empty mask makes no entry."""
    model = tiny_stgnet(key_size=(4, 8))
    model.key_encoder = RecordedZeroKeys()
    frame = torch.arange(3 * 10 * 12, dtype=torch.float32).view(3, 10, 12)
    mask = torch.zeros(10, 12)
    mask[1:5, 2:10] = 0.7
    mask[8, 0] = 0.1
    key, value = model.memory_entry(frame, mask)
    assert torch.allclose(model.key_encoder.seen[0][0], frame[:, 1:5, 2:10], atol=1e-4)
    edges = torch.ones(4, 8)  # as in the test above: the crop's edge pixels draw 1/4 of 0
    edges[[0, -1]] *= 0.875
    edges[:, [0, -1]] *= 0.875
    assert key.shape == (2, 4, 8) and torch.allclose(value, edges)
    assert model.memory_entry(frame, torch.full((10, 12), 0.2)) is None
    at_thr = mask.clone()
    at_thr[2, 5] = 0.2  # not above thr: a hole in the value, which the crop's samples weigh
    _, value = model.memory_entry(frame, at_thr)  # 0.75 · 0.75 in each of their 4 samples
    assert float(value[1, 3]) == pytest.approx(1 - 0.5625)
    faint = mask.clone()
    faint[6, 11] = 0.3  # above thr: the box is rows 1–6, columns 2–11, bins of 1.5 × 1.25
    model.memory_entry(frame, faint)  # the first bin's centre: (1 + 0.75, 2 + 0.625)
    assert float(model.key_encoder.seen[-1][0, 0, 0, 0]) == pytest.approx(
        (1.75 - 0.5) * 12 + 2.625 - 0.5)


def test_the_memory_keeps_its_first_frame_and_the_latest_ones():
    model = tiny_stgnet(memory_size=3)
    keys, values = [], []
    for index in range(5):
        model.remember(keys, values, (torch.tensor(index), torch.tensor(10 + index)))
    model.remember(keys, values, None)
    assert [int(k) for k in keys] == [0, 3, 4] and [int(v) for v in values] == [10, 13, 14]
    pair = tiny_stgnet(memory_size=2)
    keys, values = [], []
    for index in range(4):
        pair.remember(keys, values, (torch.tensor(index), torch.tensor(index)))
    assert [int(k) for k in keys] == [0, 3]
    single = tiny_stgnet(memory_size=1)
    keys, values = [], []
    for index in range(3):
        single.remember(keys, values, (torch.tensor(index), torch.tensor(index)))
    assert [int(k) for k in keys] == [2]
    unlimited = tiny_stgnet()
    keys, values = [], []
    for index in range(12):
        unlimited.remember(keys, values, (torch.tensor(index), torch.tensor(index)))
    assert len(keys) == 12


def test_without_the_motion_model_the_predicted_box_is_the_last_one():
    """Centres 1, 2, 4: the mean displacement of the last n = 10 is 1.5, of the last n = 1 is 2;
    without the motion model, the last box."""
    history = [torch.tensor([0.0, 0, 2, 2]), torch.tensor([1.0, 0, 3, 2]),
               torch.tensor([3.0, 0, 5, 2])]
    assert tiny_stgnet().predicted_box(history).tolist() == [4.5, 0, 6.5, 2]
    assert tiny_stgnet(history=1).predicted_box(history).tolist() == [5, 0, 7, 2]
    assert tiny_stgnet(motion_model=False).predicted_box(history).tolist() == [3, 0, 5, 2]


class FixedFeatures(nn.Module):
    """A proposal CNN giving every crop the same feature: cos = 1 on every edge."""

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return crops.new_ones(len(crops), 4)


def test_the_spatial_graph_runs_l_updates_with_eq_3s_weights():
    """Two proposals whose boxes overlap with IoU 1/2 and whose features agree (cos 1): with
    α = 0.5, W = 0.5 + 0.5 · 1/2 = 0.75. Node 1's pixel a (its mask alone) after l = 1: 1 / 1.75;
    after l = 2: (1 / 1.75 + 0.75 · 0.75 / 1.75) / 1.75."""
    boxes = torch.tensor([[0.0, 0, 4, 2], [0.0, 0, 2, 2]])  # areas 8 and 4, overlap 4
    masks = torch.zeros(2, 6, 8)
    masks[0, 1, 3] = 1
    for iterations, expected in ((1, 1 / 1.75), (2, (1 / 1.75 + 0.75 ** 2 / 1.75) / 1.75)):
        model = tiny_stgnet(alpha=0.5, iterations=iterations)
        model.proposal_encoder = FixedFeatures()
        states = model.reconstruct(torch.rand(3, 6, 8), boxes, masks)
        assert float(states[0, 1, 3]) == pytest.approx(expected)


def test_the_settings_are_checked():
    for name in ("alpha", "box_weight"):
        with pytest.raises(ValueError, match=f"STGNet: {name} weighs two terms"):
            STGNet(**{name: 1.5})
    for bad in (dict(history=0), dict(iterations=-1), dict(memory_size=0)):
        with pytest.raises(ValueError, match="history ≥ 1, iterations ≥ 0"):
            STGNet(**bad)
    with torch.device("meta"):  # the bounds themselves are accepted
        for edge in (dict(alpha=0.0, box_weight=1.0, history=1, iterations=0, memory_size=1),
                     dict(alpha=1.0, box_weight=0.0)):
            assert STGNet(**edge).hparams.alpha == edge["alpha"]
        assert STGNet(num_overlays=1, protocol="davis2016").num_overlays == 1  # VOSMethod's


# --- inference -----------------------------------------------------------------------------------

@pytest.mark.parametrize("spatial_graph", [True, False])
def test_exact_proposals_give_back_the_truth_and_a_late_object_starts_at_its_mask(
        tmp_path, spatial_graph):
    """One exact proposal per object, no temporal graph: each proposal reaches its own object
    (object 1's box is predicted from its history, object 2's from its given mask at frame 3), so
    every frame is the truth; object 2 is 0 before frame 3."""
    video = video_with_late_object(tmp_path)
    model = tiny_stgnet(temporal_graph=False, spatial_graph=spatial_graph).eval()
    output = model.predict_video(video)
    truth = video.masks.long()
    assert output.shape == (6, 2, 40, 56)
    for k in (0, 1):
        assert torch.equal(output[:, k], (truth == k + 1).float())


def test_with_the_temporal_graph_the_masks_stay_in_their_objects_boxes(tmp_path):
    """Exact proposals and the temporal graph: h' is the chosen mask averaged with what the
    memory gives, inside the chosen mask's box; above 0.5 it covers the object's pixels there."""
    video = video_with_late_object(tmp_path)
    model = tiny_stgnet().eval()
    output = model.predict_video(video)
    truth = video.masks.long()
    for t in range(1, 6):
        inside = truth[t] == 1
        assert output[t, 0][~inside].max() == 0 and output[t, 0][inside].min() > 0
    assert output.min() >= 0 and output.max() <= 1


def test_an_object_without_proposals_keeps_its_warped_mask(tmp_path):
    """Every object missed: without warping, each frame repeats object 1's given mask."""
    video = video_with_late_object(tmp_path)
    model = tiny_stgnet(exact_proposals(miss_rate=1.0)).eval()
    output = model.predict_video(video)
    given = (video.masks[0] == 1).float()
    assert all(torch.equal(output[t, 0], given) for t in range(6))


def test_oracle_proposals_need_the_ground_truth_of_every_frame(tmp_path):
    video = video_with_late_object(tmp_path)
    unannotated = Video("late", "fake", "val", video.video.frame_files,
                        (*video.video.mask_files[:2], None, *video.video.mask_files[3:]),
                        (40, 56))
    with pytest.raises(InputError, match="oracle proposals need the ground truth of every "
                                         "frame, and frame 00002 has none"):
        tiny_stgnet().eval().predict_video(LoadedVideo(unannotated, video.frames, video.masks))


def test_the_mask_rcnn_path_runs_end_to_end_and_reuses_its_cached_detections(
        tmp_path, monkeypatch):
    """A randomly initialised class-agnostic Mask R-CNN (a local weights file) gives the boxes,
    the crop segmenter their masks from RGB + Q; the detections are cached per frame (boxes and
    scores, no masks) and read back by a second run, which never calls the detector and gives
    the same output."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    from vosbench.proposals import maskrcnn
    from vosbench.proposals.segmenter import CropSegmenter

    monkeypatch.setenv("VOSBENCH_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    detector = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2)
    torch.save(detector.state_dict(), tmp_path / "maskrcnn.pth")
    segmenter = CropSegmenter("deeplabv3_mobilenet_v3_large", crop_size=32)
    torch.save(segmenter.state_dict(), tmp_path / "segmenter.pth")
    video = video_with_late_object(tmp_path)

    def provider() -> ProposalProvider:
        return ProposalProvider("maskrcnn", weights=str(tmp_path / "maskrcnn.pth"), min_size=64,
                                max_size=96, score_threshold=0.0,
                                segmenter_arch="deeplabv3_mobilenet_v3_large",
                                segmenter_weights=str(tmp_path / "segmenter.pth"), crop_size=32)

    segment, given = ProposalProvider.segment, []

    def recorded(self, frame, boxes, previous):
        given.append((frame, len(boxes), previous.shape))
        return segment(self, frame, boxes, previous)

    monkeypatch.setattr(ProposalProvider, "segment", recorded)
    first = tiny_stgnet(provider()).eval().predict_video(video)
    frame, count, shape = given[0]  # frame 1: RGB in [0, 1], a Q per box
    assert torch.equal(frame, video.frames[1].float() / 255) and shape == (count, 40, 56)
    files = sorted((tmp_path / "cache" / "proposals" / "fake").glob("*/*/late/*.npz"))
    assert [path.stem for path in files] == [f"{t:05d}" for t in range(1, 6)]
    with np.load(files[0]) as cached:
        assert set(cached.files) == {"boxes", "scores"} and len(cached["scores"]) > 0
    monkeypatch.setattr(maskrcnn.MaskRCNNDetector, "detect", lambda *args: pytest.fail(
        "the detector ran again"))
    again = tiny_stgnet(provider()).eval().predict_video(video)
    assert torch.equal(first, again) and first.shape == (6, 2, 40, 56)


# --- training ------------------------------------------------------------------------------------

def two_object_clip(batch: int = 2) -> Clip:
    """Clips of 3 frames of 48×64, two rectangles moving right, the first frame as reference."""
    labels = torch.zeros(batch, 3, 48, 64, dtype=torch.uint8)
    for t in range(3):
        labels[:, t, 4:20, 4 + 3 * t:24 + 3 * t] = 1
        labels[:, t, 26:44, 30 + 2 * t:58 + 2 * t] = 2
    frames = torch.rand(batch, 3, 3, 48, 64) * 0.3 + labels[:, :, None].float() * 0.3
    return Clip([f"clip{b}" for b in range(batch)], torch.arange(3).repeat(batch, 1), frames,
                labels, None, frames[:, 0], labels[:, 0])


def test_a_training_step_of_equation_9_reaches_both_networks():
    """Jittered proposals (two for one object of each clip): the loss is finite, positive, and
    its gradient reaches the proposal CNN (through Eq. 3's weights and the states) and the key
    CNN (through Eq. 7's softmax). Crops of 64×64 leave the ResNet's last BatchNorm 2×2 values
    per crop (at 1×1, two crops normalise to ±1 whatever they hold: no gradient)."""
    model = tiny_stgnet(ProposalProvider("oracle", strength=0.05, miss_rate=0.0,
                                         spurious_rate=0.0, cache=False), feature_size=(64, 64))
    logged = {}
    model.log = lambda name, value, **kwargs: logged.setdefault(name, value)
    loss = model.training_step(two_object_clip(), 0)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0 and logged["train/loss"] is loss
    for encoder in (model.proposal_encoder, model.key_encoder):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())


def test_the_loss_of_a_batch_is_the_mean_over_its_clips_and_warping_changes_it():
    """A batch of the clip and a clip without objects gives half the clip's own loss (each clip
    draws its proposals from its name and place in the batch: the same here); with `warp` Q is
    the previous mask moved by the flow, which changes Eq. 9's distance term."""
    losses = {}
    for warp in (False, True):
        model = tiny_stgnet(ProposalProvider("oracle", strength=0.05, miss_rate=0.0,
                                             spurious_rate=0.0, cache=False), warp=warp)
        model.log = lambda *args, **kwargs: None
        pair = two_object_clip(batch=2)
        alone = Clip(pair.video[:1], pair.indices[:1], pair.frames[:1], pair.masks[:1], None,
                     pair.reference_frame[:1], pair.reference_mask[:1].clone())
        pair.reference_mask[1] = 0
        losses[warp] = model.training_step(alone, 0)
        assert torch.equal(model.training_step(pair, 0), losses[warp] / 2)
    assert not torch.isclose(losses[False], losses[True])


def test_equation_9_on_a_hand_made_clip(monkeypatch):
    """One clip of three 64×96 frames, the reference holding objects 1–4. Object 1 (rows 4–19,
    moving 3 columns a frame) gets no proposal; object 2 (rows 40–57, columns 30 + 2t … 57 + 2t)
    gets its exact mask; object 3 is in frames 0–1 only (gone at the target frame: not segmented,
    so the spurious proposal at its predicted box goes to nobody), object 4 in the target frame
    only (no history: not segmented). Object 2 alone: its box is predicted exactly (IoU 1) and
    its previous mask (columns 32–59) overlaps the truth (columns 34–61) with IoU 26 / 30, so
    S(·|(b, M)) = 0.4 + 0.6 = 1, S(·|(p, Q)) = 0.4 + 0.6 · 26 / 30 and γ|ΔS| = 100 · 0.6 · 4 / 30
    = 8; its cross-entropy on σ(M) is ln(1 + e⁻¹) on its 504 pixels and ln 2 on the other 5640."""
    labels = torch.zeros(1, 3, 64, 96, dtype=torch.uint8)
    for t in range(3):
        labels[0, t, 4:20, 4 + 3 * t:24 + 3 * t] = 1
        labels[0, t, 40:58, 30 + 2 * t:58 + 2 * t] = 2
    for t in range(2):
        labels[0, t, 4:14, 60 + 2 * t:80 + 2 * t] = 3
    labels[0, 2, 24:34, 80:92] = 4
    reference = labels[:, 0].clone()
    reference[0, 24:34, 80:92] = 4
    frames = torch.rand(1, 3, 3, 64, 96)
    clip = Clip(["hand"], torch.arange(3)[None], frames, labels, None, frames[:, 0], reference)
    spurious = torch.zeros(64, 96, dtype=torch.bool)
    spurious[4:14, 64:84] = True  # object 3's predicted box at the target frame
    calls = []

    def proposals(target, rng, **jitter):
        calls.append((target, jitter))
        masks = np.stack([target == 2, target == 4, spurious.numpy()])
        boxes = np.array([[34, 40, 62, 58], [80, 24, 92, 34], [64, 4, 84, 14]], np.float32)
        return Proposals(boxes, masks, np.ones(3, np.float32))

    monkeypatch.setattr(stgnet, "oracle_proposals", proposals)
    provider = ProposalProvider("oracle", strength=0.07, cache=False)
    model = tiny_stgnet(provider, temporal_graph=False)
    model.log = lambda *args, **kwargs: None
    loss = model.training_step(clip, 0)
    fraction = (504 * math.log1p(math.exp(-1)) + 5640 * math.log(2)) / 6144
    assert float(loss) == pytest.approx(100 * 0.6 * 4 / 30 + fraction, rel=1e-5)
    ((target, jitter),) = calls
    assert np.array_equal(target, labels[0, 2].numpy()) and jitter == provider.jitter
    weighted = tiny_stgnet(provider, temporal_graph=False, distance_weight=10.0)
    weighted.log = model.log
    assert float(weighted.training_step(clip, 0)) == pytest.approx(10 * 0.6 * 4 / 30 + fraction,
                                                                   rel=1e-5)


def test_the_training_memory_holds_the_reference_and_the_frames_before_the_last():
    """Each object's memory in training: its mask in the reference, then in each clip frame
    before the last, in that order."""
    model = tiny_stgnet(ProposalProvider("oracle", strength=0.05, miss_rate=0.0,
                                         spurious_rate=0.0, cache=False))
    model.log = lambda *args, **kwargs: None
    entries, memory_entry = [], model.memory_entry
    model.memory_entry = lambda frame, mask: entries.append(mask) or memory_entry(frame, mask)
    clip = two_object_clip(batch=1)
    model.training_step(clip, 0)
    labels = clip.masks[0]
    expected = [(truth == o).float() for o in (1, 2)
                for truth in (clip.reference_mask[0], labels[0], labels[1])]
    assert len(entries) == 6 and all(torch.equal(a, b) for a, b in zip(entries, expected))


def test_training_needs_a_reference_and_skips_clips_without_objects():
    model = tiny_stgnet()
    logged = {}
    model.log = lambda name, value, **kwargs: logged.setdefault(name, value)
    clip = two_object_clip()
    clip.reference_frame = None
    with pytest.raises(InputError, match=re.escape(
            "STG-Net trains on clips with a reference frame: give the datamodule the "
            "ConsecutiveSampler (data.init_args.sampler)")):
        model.training_step(clip, 0)
    clip = two_object_clip()
    clip.reference_mask = torch.zeros_like(clip.reference_mask)
    assert model.training_step(clip, 0) is None
    assert logged == {"train/clips_without_objects": 2.0}


# --- the bench row -------------------------------------------------------------------------------

def test_bench_says_the_proposals_were_oracle_ones(synthetic_root, tmp_path, monkeypatch):
    """Two training steps of the tiny preset and the test: the results row's notes and the
    leaderboard's Source say "oracle proposals"."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VOSBENCH_CACHE", str(tmp_path / "cache"))
    assert vosbench_main(["bench", "--method", "stgnet", "--results", "results",
                          "--data.init_args.root", str(synthetic_root),
                          "--model.init_args.output_workers", "0",
                          "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
                          *SMALL[2:]]) == 0
    (path,) = Path("results").glob("stgnet-synthetic-val-*.json")
    row = json.loads(path.read_text())
    assert row["notes"] == ["oracle proposals"] and 0 <= row["metrics"]["J&F-Mean"] <= 1
    assert vosbench_main(["leaderboard", "--results", "results", "--format", "md",
                          "--output", "board.md"]) == 0
    assert "ours (tiny; oracle proposals)" in Path("board.md").read_text()


def test_training_warps_with_the_flow_from_each_clips_last_frame_to_the_one_before():
    """Frames of exact levels k / 255 (black included) are the same uint8 images to the
    estimator; each clip's flow is the estimator's from its last frame (2) to frame 1."""
    from vosbench.flow.estimators import FarnebackEstimator

    frames = (two_object_clip().frames * 255).round() / 255
    frames[..., :4] = 0
    flows = tiny_stgnet().last_flows(frames)
    images = (frames * 255).round().byte().permute(0, 1, 3, 4, 2).numpy()
    assert flows.shape == (2, 2, 48, 64) and flows.dtype == torch.float32
    for b in range(2):
        expected = FarnebackEstimator()(images[b, 2], images[b, 1])
        assert torch.equal(flows[b], torch.from_numpy(expected).permute(2, 0, 1))


def test_the_optimiser_and_its_step_decay_per_epoch():
    """Adam (or SGD with its momentum) at lr over every parameter, the learning rate times
    lr_decay every lr_decay_epochs epochs."""
    model = tiny_stgnet(optimizer="adam", lr=0.1, weight_decay=1e-4, lr_decay=0.5,
                        lr_decay_epochs=2)
    configured = model.configure_optimizers()
    optimizer, schedule = configured["optimizer"], configured["lr_scheduler"]
    assert type(optimizer) is torch.optim.Adam and schedule["interval"] == "epoch"
    (group,) = optimizer.param_groups
    assert (group["lr"], group["weight_decay"]) == (0.1, 1e-4)
    assert len(group["params"]) == len(list(model.parameters()))
    rates = []
    for _ in range(5):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule["scheduler"].step()
    assert rates == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    sgd = tiny_stgnet(optimizer="sgd", momentum=0.8).configure_optimizers()["optimizer"]
    assert type(sgd) is torch.optim.SGD and sgd.param_groups[0]["momentum"] == 0.8


def test_each_frame_extends_the_history_at_thr_and_the_memory_with_the_refined_mask(tmp_path):
    """segment_frame with a temporal graph that adds a pixel of 0.3 two rows below object 1 (row
    21, column 10): the box of each refined mask, at thr = 0.2, takes the pixel in and joins the
    history, kept to its last n + 1 = 3 boxes; the refined mask joins the memory, which the
    next frame's temporal graph receives."""
    from vosbench.methods.backbones import normalize_images
    from vosbench.methods.stgnet import Track

    video = video_with_late_object(tmp_path)
    model = tiny_stgnet(history=2).eval()
    received = []

    def refine(frame, state, keys, values):
        received.append(len(keys))
        refined = state.clone()
        refined[21, 10] = 0.3
        return refined

    model.refine = refine
    frames = normalize_images(video.frames.float() / 255)
    first = (video.masks[0] == 1).float()
    track = Track([torch.tensor([5.0, 5, 20, 20])], first)
    model.remember(track.keys, track.values, model.memory_entry(frames[0], first))
    with torch.inference_mode():
        for t in range(1, 6):
            model.segment_frame(video, frames, t, {1: track})
    assert received == [1, 2, 3, 4, 5] and len(track.keys) == len(track.values) == 6
    assert [box.tolist() for box in track.boxes] == [[8, 5, 23, 22], [9, 5, 24, 22],
                                                     [10, 5, 25, 22]]


def test_two_proposals_of_one_box_average_whatever_alpha():
    """Two proposals with the same box and crop: cos = 1 and IoU = 1, so W = α + (1 − α) = 1 for
    any α and one update gives both nodes (h1 + h2) / 2; without the spatial graph the masks come
    back as they are."""
    frame = torch.rand(3, 20, 30)
    boxes = torch.tensor([[2.0, 3, 12, 15], [2.0, 3, 12, 15]])
    masks = torch.zeros(2, 20, 30)
    masks[0, 3:15, 2:12] = 1
    masks[1, 3:9, 2:12] = 1
    for alpha in (0.25, 0.9):
        model = tiny_stgnet(alpha=alpha, iterations=1).eval()
        states = model.reconstruct(frame, boxes, masks)
        assert torch.allclose(states, masks.mean(0).expand(2, -1, -1), atol=1e-6)
    assert tiny_stgnet(spatial_graph=False).reconstruct(frame, boxes, masks) is masks


def test_choose_weighs_box_and_mask_by_lambda1_and_one_minus_it():
    """λ1 = 0.25: an L of 7 pixels with the box of Q (IoU 1) and 7 of Q's 16 pixels scores
    0.25 · 1 + 0.75 · 7 / 16; Q itself scores 1 and is chosen."""
    q = torch.zeros(10, 10)
    q[0:4, 0:4] = 1
    ell = torch.zeros(10, 10)
    ell[0:4, 0] = 1
    ell[3, 0:4] = 1
    scores, chosen = tiny_stgnet(box_weight=0.25).choose(torch.stack([ell, q]),
                                                         torch.tensor([0.0, 0, 4, 4]), q)
    assert scores.tolist() == pytest.approx([0.25 + 0.75 * 7 / 16, 1.0])
    assert torch.equal(chosen, q)


def test_the_weights_files_reach_both_cnns_and_features_are_pooled(tmp_path):
    """feature_weights and key_weights (timm state dicts) start the two ResNets; a file of
    another ResNet does not fit and says which network it was meant for; the proposal CNN gives
    one pooled 512-vector per crop (ResNet-18), no classifier; the key CNN stops at key_stage."""
    import timm

    source = timm.create_model("resnet18", pretrained=False, num_classes=0)
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    model = tiny_stgnet(feature_weights=str(tmp_path / "resnet18.pth"),
                        key_weights=str(tmp_path / "resnet18.pth"))
    assert torch.equal(model.proposal_encoder.body.conv1.weight, source.conv1.weight)
    assert torch.equal(model.key_encoder.stages[0][0].weight, source.conv1.weight)
    assert model.proposal_encoder(torch.rand(3, 3, 32, 32)).shape == (3, 512)
    # key_stage 0, the stem at stride 2, projected to key_channels = 8
    assert model.key_encoder(torch.rand(2, 3, 32, 32)).shape == (2, 8, 16, 16)
    deeper = tiny_stgnet(key_stage=2, key_channels=5)  # layer2, stride 8
    assert deeper.key_encoder(torch.rand(2, 3, 32, 32)).shape == (2, 5, 4, 4)
    torch.save(timm.create_model("resnet50", pretrained=False).state_dict(),
               tmp_path / "resnet50.pth")
    with pytest.raises(InputError, match="does not fit timm resnet18"):
        tiny_stgnet(feature_weights=str(tmp_path / "resnet50.pth"))
