"""AGSS-VOS as a vosbench method (methods/agssvos.py, `AGSSVOS`): its arguments reaching the
network, the padded object slots of a batch, the helpers of the recurrent training (targets, the
tolerance IoU), the harness labels being Eq. 6's, the recurrent training through a Lightning
trainer (one optimiser step per frame, the tolerance threshold, the poly decay, frozen encoder
BatchNorm, the flow direction), and inference on a video whose second object appears mid-video."""

import re
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import pytest
import pytorch_lightning as pl
import timm
import torch
from torch.utils.data import DataLoader
from youtube_vos_fixtures import bench_held_out, late_dog_is_predicted_from_its_frame

from tests.test_harness import SMALL
from vosbench.datamodules.clips import Clip, LoadedVideo, load_video
from vosbench.datamodules.sampling import ConsecutiveSampler
from vosbench.datamodules.video import Video
from vosbench.errors import InputError
from vosbench.flow.estimators import FarnebackEstimator
from vosbench.flow.provider import FlowProvider
from vosbench.io import write_label_png
from vosbench.methods.agssvos import (
    AGSSVOS,
    VOID_LABEL,
    against_background,
    instance_iou_loss,
    mean_object_iou,
    normalise_probabilities,
    object_slots,
    one_hot_objects,
    pixel_cross_entropy,
    segmentation_labels,
    void_untracked,
)
from vosbench.methods.warping import warp_backward
from vosbench.outputs import binarize

SIZE = 64


def tiny_agssvos(**overrides) -> AGSSVOS:
    torch.manual_seed(0)
    return AGSSVOS(**{**dict(backbone="resnet18", channels=8, input_size=(SIZE, SIZE),
                             optimizer="adamw", lr=1e-3), **overrides})


# --- the arguments -------------------------------------------------------------------------------

def test_the_weights_file_and_the_switches_reach_the_network(tmp_path):
    """weights: both ResNets start from the file; normalise and the modules' switches are the
    network's; the flow provider is an object, kept out of the checkpoint's hyperparameters."""
    source = timm.create_model("resnet18", pretrained=False, num_classes=0)
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    model = tiny_agssvos(weights=str(tmp_path / "resnet18.pth"), flow=FlowProvider("farneback"))
    assert len(model.encoders()) == 2
    for encoder in model.encoders():
        assert torch.equal(encoder.frame_conv.weight, source.conv1.weight)
    assert model.network.normalise is True and "flow" not in model.hparams
    ablated = tiny_agssvos(normalise=False, instance_specific=False)
    assert ablated.network.normalise is False and ablated.network.specific is None


def test_the_tolerance_must_be_an_iou():
    for tolerance in (-0.1, 1.5):
        with pytest.raises(ValueError, match=re.escape(
                f"AGSSVOS: tolerance is an IoU in [0, 1], got {tolerance}")):
            AGSSVOS(tolerance=tolerance)
    for tolerance in (0.0, 1.0):
        assert tiny_agssvos(tolerance=tolerance).hparams.tolerance == tolerance


# --- padded slots, targets, the tolerance IoU, the harness labels ------------------------------

def test_padded_slots_take_no_part_in_the_normalisation():
    """A slot that holds no object gets P̂ = 0 exactly, and the others are Eqs. 4–5 over the
    objects that are there, whatever the padded slot's P."""
    torch.manual_seed(0)
    objects = torch.rand(2, 3, 4, 5)
    objects[:, 1] = 0.99  # would be the maximum of Eq. 5 and dominate Eq. 4
    valid = torch.tensor([[True, False, True], [True, True, True]])
    normalised = normalise_probabilities(objects, valid)
    assert torch.equal(normalised[0, 2], torch.zeros(4, 5))
    assert torch.allclose(normalised[0, [0, 1, 3]], normalise_probabilities(objects[:1, [0, 2]])[0])
    assert torch.allclose(normalised[1], normalise_probabilities(objects[1:])[0])


def test_the_network_passes_the_padded_slots_to_the_normalisation():
    """AGSSNetwork's forward with slot 2 of sample 0 marked empty: that channel is 0 exactly and
    sample 1's distribution is the one without any slot marked."""
    network = tiny_agssvos().network.eval()
    frame, masks = torch.rand(2, 3, SIZE, SIZE), (torch.rand(2, 2, SIZE, SIZE) > 0.7).float()
    with torch.no_grad():
        reference = network.encode_reference(frame, masks)
        valid = torch.tensor([[True, False], [True, True]])
        padded, plain = network(frame, masks, reference, valid), network(frame, masks, reference)
    assert torch.equal(padded[0, 2], torch.zeros(SIZE, SIZE))
    assert torch.allclose(padded[1], plain[1], atol=1e-6)


def test_object_slots_one_hot_masks_and_untracked_objects():
    """Sample 0's reference holds objects 1 and 3, sample 1's object 2 (K = 3): an object not in
    its sample's reference (it appears later) is void in the targets; void stays void."""
    references = torch.tensor([[[1, 3], [0, 255]], [[2, 0], [0, 0]]], dtype=torch.uint8)
    valid = object_slots(references)
    assert valid.tolist() == [[True, False, True], [False, True, False]]
    labels = torch.tensor([[[[1, 2], [3, 255]]], [[[1, 2], [3, 0]]]], dtype=torch.uint8)
    assert void_untracked(labels, valid).tolist() == [[[[1, 255], [3, 255]]],
                                                      [[[255, 2], [255, 0]]]]
    masks = one_hot_objects(torch.tensor([[[1, 3], [255, 0]]]), 3)
    assert masks.tolist() == [[[[1, 0], [0, 0]], [[0, 0], [0, 0]], [[0, 1], [0, 0]]]]
    assert object_slots(torch.zeros(1, 2, 2, dtype=torch.uint8)).shape == (1, 0)
    assert object_slots(torch.tensor([[[2, 255]]], dtype=torch.uint8)).tolist() == [[False, True]]


def test_mean_object_iou_of_hand_made_labels():
    """Truth [[1, 1, 2, 0], [void, 0, 2, 0]], prediction [[1, 0, 2, 2], [1, 0, 0, 1]]: object 1
    1 / 3 (the void pixel left out), object 2 1 / 3, mean 1 / 3; a frame without objects NaN."""
    truth = torch.tensor([[[1, 1, 2, 0], [VOID_LABEL, 0, 2, 0]], [[0, 0, 0, 0], [0, 0, 0, 0]]])
    predicted = torch.tensor([[[1, 0, 2, 2], [1, 0, 0, 1]], [[1, 0, 0, 0], [0, 0, 0, 0]]])
    iou = mean_object_iou(predicted, truth, 2)
    assert iou[0] == pytest.approx(1 / 3) and torch.isnan(iou[1])
    single = torch.tensor([[[0, 1], [0, 0]]])  # a one-pixel object found exactly: IoU 1
    assert mean_object_iou(single, single, 1).tolist() == [1.0]


def test_the_harness_labels_of_the_returned_channels_are_equation_6s():
    """`binarize` (the object of highest probability if above 0.5) on P̂_k / (P̂_0 + P̂_k) gives
    the argmax over background and objects, also where no object reaches P̂ = 0.5."""
    torch.manual_seed(1)
    distribution = normalise_probabilities(torch.rand(3, 4, 16, 16))
    assert (distribution[:, 1:].amax(1) < 0.5).logical_and(
        segmentation_labels(distribution) > 0).any()  # the case a 0.5 threshold on P̂ misses
    labels = binarize(against_background(distribution).numpy())
    assert np.array_equal(labels, segmentation_labels(distribution).numpy())
    # hand-worked: P̂ = (0.4, 0.35, 0.25) → object 1 against the background 0.35 / 0.75 < 0.5
    pixel = torch.tensor([0.4, 0.35, 0.25]).view(1, 3, 1, 1)
    assert torch.allclose(against_background(pixel).flatten(), torch.tensor([0.35 / 0.75,
                                                                             0.25 / 0.65]))


# --- recurrent training -------------------------------------------------------------------------

def moving_clip(num_frames: int = 4, shift: int = 2) -> Clip:
    """One clip: a smooth texture with two squares (objects 1, 2) moving `shift` pixels right per
    frame; the reference frame is the position before the clip's first."""
    generator = np.random.default_rng(0)
    texture = cv2.GaussianBlur(generator.random((SIZE, SIZE + 40)).astype(np.float32), (0, 0), 2)
    frames, masks = [], []
    for t in range(-1, num_frames):
        offset = 20 + shift * t
        image = np.roll(texture, shift * t, axis=1)[:, 20:20 + SIZE]
        mask = np.zeros((SIZE, SIZE), np.uint8)
        mask[10:26, offset - 10:offset + 6] = 1
        mask[36:54, offset + 14:offset + 30] = 2
        image = (image - image.min()) / (image.max() - image.min())
        frames.append(np.stack([image, image * 0.5 + 0.5 * (mask > 0), 1 - image]))
        masks.append(mask)
    frames = torch.tensor(np.stack(frames), dtype=torch.float32)
    masks = torch.tensor(np.stack(masks))
    return Clip("clip", torch.arange(num_frames), frames[1:], masks[1:],
                reference_frame=frames[0], reference_mask=masks[0])


def batched(clip: Clip) -> Clip:
    return Clip(["clip"], clip.indices[None], clip.frames[None], clip.masks[None],
                reference_frame=clip.reference_frame[None],
                reference_mask=clip.reference_mask[None])


class Recorder(pl.Callback):
    """The masks each forward pass gets, the train mode of an encoder BatchNorm and of the
    decoder at each, and the learning rates after each optimiser step."""

    def __init__(self):
        self.masks, self.modes, self.rates = [], [], []

    def on_fit_start(self, trainer, module):
        def record(network, args):
            self.masks.append(args[1].clone())
            self.modes.append((module.network.agnostic.encoder.stem[0].training,
                               module.network.decoder.training))
        module.network.register_forward_pre_hook(record)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_index):
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])


def fit(model: AGSSVOS, clips: list[Clip], **trainer_args) -> tuple[pl.Trainer, Recorder]:
    recorder = Recorder()
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[recorder], **trainer_args)
    loader = DataLoader([batched(clip) for clip in clips], batch_size=None)
    trainer.fit(model, train_dataloaders=loader)
    return trainer, recorder


def test_each_frame_takes_one_optimiser_step_and_the_tolerance_picks_the_next_input():
    """warp off, so the masks given at frame i are P̂_{i−1} itself. Tolerance 1 (any IoU below 1
    falls back on the truth): frame 1 gets the first frame's truth, every later frame the truth of
    the frame before. Tolerance 0: from frame 2 on the network's own soft masks. The threshold
    is tested on frames 1 and 2 only: the last frame has no next one."""
    clip = moving_clip()
    truth = one_hot_objects(clip.masks.long(), 2)
    for tolerance in (1.0, 0.0):
        model = tiny_agssvos(warp=False, tolerance=tolerance)
        with mock.patch.object(model, "next_masks", wraps=model.next_masks) as threshold:
            trainer, recorder = fit(model, [clip], max_steps=3)
        assert trainer.global_step == 3 and len(recorder.masks) == 3  # L − 1 = 3 frames
        assert threshold.call_count == 2
        assert float(trainer.callback_metrics["train/ground_truth_fraction"]) == tolerance
        assert torch.equal(recorder.masks[0], truth[:1])
        for i in (1, 2):
            given = recorder.masks[i]
            if tolerance == 1.0:
                assert torch.equal(given, truth[i:i + 1])
            else:
                assert not torch.equal(given, truth[i:i + 1])
                assert given.min() >= 0 and given.max() <= 1 and 0 < given.mean() < 1


def test_the_tolerance_takes_the_truth_only_below_the_threshold():
    """Tolerance 0.5, truth [1, 1, 0, 0]: a prediction of object 1 at pixel 0 (IoU 1 / 2) keeps
    P̂, one at pixels 0, 2, 3 (IoU 1 / 4) takes the one-hot truth, and a frame without objects
    (IoU NaN) keeps P̂."""
    labels = torch.tensor([[[1, 1, 0, 0]], [[1, 1, 0, 0]], [[0, 0, 0, 0]]])
    objects = torch.tensor([[[0.7, 0.3, 0.3, 0.3]], [[0.7, 0.3, 0.7, 0.7]],
                            [[0.7, 0.3, 0.3, 0.3]]])[:, None]  # (3, 1, 1, 4)
    distribution = torch.cat([1 - objects, objects], 1)
    masks, truth = tiny_agssvos(tolerance=0.5).next_masks(distribution, labels)
    assert truth.tolist() == [False, True, False]
    assert torch.equal(masks[0], objects[0]) and torch.equal(masks[2], objects[2])
    assert masks[1].flatten().tolist() == [1.0, 1.0, 0.0, 0.0]


def test_each_frame_warps_its_masks_with_its_own_flow():
    """Clip flows zero from frame 1 to 0 and 4 pixels left from frame 2 to 1, tolerance 1 (the
    truth is passed on): frame 1 gets the first frame's truth unchanged, frame 2 the truth of
    frame 1 moved 4 pixels right, zero where it came from outside."""
    clip = moving_clip(num_frames=3)
    model = tiny_agssvos(tolerance=1.0)
    flows = torch.zeros(1, 2, 2, SIZE, SIZE)
    flows[:, 1, 0] = -4.0
    model.clip_flows = lambda frames: flows
    _, recorder = fit(model, [clip], max_steps=2)
    truth = one_hot_objects(clip.masks.long(), 2)
    assert torch.allclose(recorder.masks[0], truth[:1], atol=1e-6)
    assert torch.allclose(recorder.masks[1][..., 4:], truth[1:2, ..., :-4], atol=1e-6)
    assert recorder.masks[1][..., :4].abs().max() < 1e-6


def test_the_poly_decay_steps_with_every_frame_and_encoder_batchnorm_stays_frozen():
    """6 optimiser steps over two 4-frame clips: the lr after clip 1 is lr · (1 − 3/6)^0.9 and 0
    after clip 2; the encoders' BatchNorm layers run in eval mode at every step while the decoder
    trains (Lightning sets train mode at each epoch), and both train without freezing."""
    clip = moving_clip()
    model = tiny_agssvos(warp=False, lr=1e-3, poly_power=0.9, freeze_encoder_bn=True)
    trainer, recorder = fit(model, [clip, clip], max_steps=6)
    assert trainer.global_step == 6
    assert recorder.rates == [pytest.approx(1e-3 * 0.5 ** 0.9), 0.0]
    assert recorder.modes == [(False, True)] * 6
    _, recorder = fit(tiny_agssvos(warp=False, freeze_encoder_bn=False), [clip], max_steps=3)
    assert recorder.modes == [(True, True)] * 3


def test_training_warps_with_the_backward_flow_of_the_augmented_clip():
    """The clip moves 2 pixels right per frame: the flow from each frame to the one before
    points 2 pixels left, and the masks given at frame 1 are the first frame's truth moved right
    by 2 (its rows overlap the warped truth far better than the unwarped)."""
    clip = moving_clip(shift=2)
    flows = tiny_agssvos().clip_flows(clip.frames[None])
    assert flows.shape == (1, 3, 2, SIZE, SIZE)
    inner = flows[..., 16:48, 16:48]
    assert inner[:, :, 0].median() == pytest.approx(-2, abs=0.3)
    assert inner[:, :, 1].median() == pytest.approx(0, abs=0.3)
    _, recorder = fit(tiny_agssvos(), [clip], max_steps=1)
    first, second = (one_hot_objects(clip.masks[i:i + 1].long(), 2) for i in (0, 1))
    given = recorder.masks[0]
    assert (given - second).abs().mean() < 0.5 * (first - second).abs().mean()


def test_training_needs_a_reference_frame():
    clip = batched(moving_clip())
    clip.reference_frame = clip.reference_mask = None
    with pytest.raises(InputError, match="^AGSS-VOS trains on clips with a reference frame: "
                                         "give the datamodule the ConsecutiveSampler"):
        tiny_agssvos().training_step(clip, 0)


def test_a_batch_without_objects_in_its_references_takes_no_step():
    """References with no object (a reversed clip whose objects have left): no optimiser step,
    and the clips are counted."""
    clip = moving_clip()
    clip.reference_mask = torch.zeros_like(clip.reference_mask)
    trainer, recorder = fit(tiny_agssvos(), [clip], max_steps=3, max_epochs=1)
    assert trainer.global_step == 0 and recorder.masks == []
    assert trainer.callback_metrics["train/clips_without_objects"] == 1.0


# --- inference ---------------------------------------------------------------------------------

def video_with_late_object(root: Path, num_frames: int = 6) -> LoadedVideo:
    """40×56 frames on disk; object 1 from frame 0, object 2 from frame 3 (moving right)."""
    generator = np.random.default_rng(0)
    frame_files, mask_files = [], []
    for t in range(num_frames):
        labels = np.zeros((40, 56), np.uint8)
        labels[5:20, 5 + t:20 + t] = 1
        if t >= 3:
            labels[22:36, 25 + t:45 + t] = 2
        image = (generator.random((40, 56, 3)) * 80).astype(np.uint8)
        image[labels == 1] += 120
        image[labels == 2] += 60
        frame_files.append(root / f"{t:05d}.jpg")
        mask_files.append(root / f"{t:05d}.png")
        cv2.imwrite(str(frame_files[-1]), image)
        write_label_png(mask_files[-1], labels)
    video = Video("late", "fake", "val", tuple(frame_files), tuple(mask_files), (40, 56))
    return load_video(video)


def test_an_object_appearing_at_frame_3_is_predicted_from_frame_3_on(tmp_path):
    """Object 2 is background at frames 0–2 and its given mask at frame 3; each group of objects
    gets its reference features once (two groups), and every frame after a group's first runs
    that group's objects through the network: 3 frames of group 1 alone, 2 of both."""
    video = video_with_late_object(tmp_path)
    model = tiny_agssvos().eval()
    network = model.network
    references, passes = [], []
    encode, probabilities = network.encode_reference, network.object_probabilities
    network.encode_reference = lambda frame, masks: references.append(masks.shape[1]) or \
        encode(frame, masks)
    network.object_probabilities = lambda frame, masks, reference: passes.append(
        masks.shape[1]) or probabilities(frame, masks, reference)
    output = model.predict_video(video)
    assert output.shape == (6, 2, 40, 56)
    assert references == [1, 1] and passes == [1, 1, 1, 1, 1, 1, 1]
    truth = video.masks.long()
    assert torch.equal(output[:3, 1], torch.zeros(3, 40, 56))
    assert torch.equal(output[3, 1], (truth[3] == 2).float())
    assert torch.equal(output[0], one_hot_objects(truth[:1], 2)[0])
    assert output[4:, 1].max() > 0 and output.min() >= 0 and output.max() <= 1


def test_bench_on_youtube_vos_scores_seen_and_unseen_and_the_late_dog_from_its_frame(
        tmp_path, monkeypatch, capsys):
    """A few steps of the tiny preset on the YouTube-VOS fixture (one train video's reference
    frame is empty: a clip without objects to learn from), tested on the held-out video whose
    dog (unseen) appears at 00010: a row with J/F seen and unseen, the dog background at 00000
    and 00005 and its given mask at 00010."""
    monkeypatch.chdir(tmp_path)
    row = bench_held_out(tmp_path, "agssvos", "--trainer.max_steps", "6",
                         "--trainer.val_check_interval", "2", *SMALL)
    assert row["protocol"] == "youtube-vos" and row["training_seconds"] > 0
    assert all(0 <= row["metrics"][key] <= 1 for key in ("J-Seen", "F-Seen", "J-Unseen",
                                                         "F-Unseen"))
    assert [(r["object"], r["seen"]) for r in row["sequences"]] == [(1, True), (2, False)]
    assert late_dog_is_predicted_from_its_frame(row, tmp_path)


def test_warping_with_zero_flow_is_the_identity_and_a_constant_flow_shifts():
    """What `AGSSVOS.warped` applies to P̂_{t−1}: zero flow leaves soft masks as they are; a flow
    of (−3, +2) pixels everywhere moves them 3 right and 2 up, zeros entering from outside."""
    torch.manual_seed(0)
    masks = torch.rand(1, 3, 12, 16)
    assert torch.allclose(warp_backward(masks, torch.zeros(1, 2, 12, 16)), masks, atol=1e-6)
    flow = torch.zeros(1, 2, 12, 16)
    flow[:, 0], flow[:, 1] = -3.0, 2.0
    shifted = warp_backward(masks, flow)
    assert torch.allclose(shifted[..., :10, 3:], masks[..., 2:, :13], atol=1e-6)
    assert shifted[..., :3].abs().max() < 1e-6 and shifted[..., 10:, :].abs().max() < 1e-6


# --- the method's plumbing ---------------------------------------------------------------------

def test_clip_flows_are_the_estimators_flows_of_the_clips_uint8_frames():
    """Frames of exact levels k / 255 (black borders included) are the same uint8 images to the
    estimator: each flow is its flow from frame i to frame i − 1 of the clip (of a clip read
    backwards too)."""
    clip = moving_clip()
    frames = (clip.frames * 255).round() / 255
    frames[..., :4] = 0
    flows = tiny_agssvos().clip_flows(torch.stack([frames, frames.flip(0)]))
    images = (frames * 255).round().byte().permute(0, 2, 3, 1).numpy()
    estimator = FarnebackEstimator()
    assert flows.shape == (2, 3, 2, SIZE, SIZE) and flows.dtype == torch.float32
    for i in range(1, 4):
        expected = torch.from_numpy(estimator(images[i], images[i - 1])).permute(2, 0, 1)
        assert torch.equal(flows[0, i - 1], expected)
        backwards = torch.from_numpy(estimator(images[3 - i], images[4 - i])).permute(2, 0, 1)
        assert torch.equal(flows[1, i - 1], backwards)


def test_inference_warps_with_the_backward_flow_resized_to_the_input(tmp_path):
    """A backward flow of −4 pixels in x at the video's 40×56 is −2 at the input's 20×28: P̂ moves
    2 input pixels right; without `warp` P̂ is used as it is and no flow is asked for."""
    video = video_with_late_object(tmp_path)
    model = tiny_agssvos(input_size=(20, 28))
    asked = []
    model.flow.backward = lambda v, t: asked.append((v.name, t)) or np.full(
        (40, 56, 2), [-4.0, 0.0], np.float32)
    previous = torch.rand(1, 2, 20, 28)
    warped = model.warped(previous, video, 3)
    assert asked == [("late", 3)]
    assert torch.allclose(warped[..., 2:], previous[..., :-2], atol=1e-6)
    assert warped[..., :2].abs().max() < 1e-6
    model.hparams.warp = False
    assert model.warped(previous, video, 4) is previous and len(asked) == 1


class FakeTrainer:
    """What configure_optimizers reads of a trainer."""

    def __init__(self, max_steps: int, batches: int, sampler=None):
        self.max_steps, self.estimated_stepping_batches = max_steps, batches
        self.datamodule = None if sampler is None else type("Data", (), {"sampler": sampler})()


def test_the_attention_generator_and_decoder_learn_faster_and_the_decay_counts_frames():
    """head_lr_multiplier 10: the decoder and the attention generator at 10 × lr, the rest at lr
    (the decoder alone without the ISM); SGD keeps its momentum, 0.9 by default. The poly decay
    runs over max_steps, or, by epochs, over the batches × (L − 1) frame steps of 4-frame clips."""
    model = tiny_agssvos(optimizer="sgd", lr=0.1, head_lr_multiplier=10)
    model._trainer = FakeTrainer(-1, 10, ConsecutiveSampler(length=4))
    configured = model.configure_optimizers()
    rest, faster = configured["optimizer"].param_groups
    assert (rest["lr"], faster["lr"], rest["momentum"]) == (0.1, pytest.approx(1.0), 0.9)
    head = [*model.network.decoder.parameters(), *model.network.specific.attention.parameters()]
    assert {id(p) for p in faster["params"]} == {id(p) for p in head}
    assert len(rest["params"]) + len(head) == len(list(model.parameters()))
    decay = configured["lr_scheduler"]["scheduler"].lr_lambdas[0]
    assert decay(15) == pytest.approx(0.5 ** 0.9) and decay(30) == 0  # 10 × 3 steps
    model._trainer = FakeTrainer(-1, 10, ConsecutiveSampler(length=2))
    assert model.total_optimizer_steps() == 10
    model._trainer = FakeTrainer(12, 4)
    assert model.configure_optimizers()["lr_scheduler"]["scheduler"].lr_lambdas[0](6) == \
        pytest.approx(0.5 ** 0.9)
    model._trainer = FakeTrainer(-1, 10)  # no datamodule, so no ConsecutiveSampler
    with pytest.raises(InputError, match="^AGSS-VOS trains on ConsecutiveSampler clips "
                                         r"\(data.init_args.sampler\)$"):
        model.configure_optimizers()
    without_ism = tiny_agssvos(instance_specific=False)
    without_ism._trainer = FakeTrainer(6, 2)
    _, faster = without_ism.configure_optimizers()["optimizer"].param_groups
    assert {id(p) for p in faster["params"]} == {id(p) for p in
                                                 without_ism.network.decoder.parameters()}


def test_each_step_feeds_the_previous_output_and_learns_from_every_object_of_the_batch():
    """Two clips in one batch, the second without object 2 (a padded slot), tolerance 0, warp
    off: each frame's masks are the previous frame's P̂ exactly (objects 1 … K), the padded slot
    is passed as such, and the logged loss is the mean over the frames of Eq. 7 on P̂_1 … P̂_K."""
    one, two = moving_clip(), moving_clip(shift=1)
    two.masks[two.masks == 2] = 0
    two.reference_mask[two.reference_mask == 2] = 0
    batch = Clip(["a", "b"], torch.stack([one.indices, two.indices]),
                 torch.stack([one.frames, two.frames]), torch.stack([one.masks, two.masks]),
                 reference_frame=torch.stack([one.reference_frame, two.reference_frame]),
                 reference_mask=torch.stack([one.reference_mask, two.reference_mask]))
    model = tiny_agssvos(warp=False, tolerance=0.0)
    calls = []
    model.network.register_forward_hook(
        lambda network, args, output: calls.append((args[1].clone(), args[3].clone(),
                                                    output.detach().clone())))
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, max_steps=3)
    trainer.fit(model, train_dataloaders=DataLoader([batch], batch_size=None))
    assert [valid.tolist() for _, valid, _ in calls] == [[[True, True], [True, False]]] * 3
    for i in (1, 2):
        assert torch.equal(calls[i][0], calls[i - 1][2][:, 1:])
    labels = batch.masks.long()
    losses = [instance_iou_loss(output[:, 1:], labels[:, i + 1])
              for i, (_, _, output) in enumerate(calls)]
    assert float(trainer.callback_metrics["train/loss"]) == pytest.approx(
        float(torch.stack(losses).mean()), rel=1e-5)
    assert "train/ground_truth_fraction" in trainer.callback_metrics


# --- the pixel-wise cross-entropy of the tiny preset ----------------------------------------------

def test_pixel_cross_entropy_of_hand_made_probabilities_leaves_void_out():
    """Three pixels, labels 0, 2 and void: (−ln 0.5 − ln 0.25) / 2; one pixel known: −ln 0.25;
    all void: 0."""
    distribution = torch.tensor([[0.5, 0.5, 0.0], [0.25, 0.5, 0.25], [0.1, 0.1, 0.8]]).T
    distribution = distribution.reshape(1, 3, 1, 3).requires_grad_()
    labels = torch.tensor([[[0, 2, VOID_LABEL]]])
    loss = pixel_cross_entropy(distribution, labels)
    assert float(loss.detach()) == pytest.approx((np.log(2) + np.log(4)) / 2)
    one = pixel_cross_entropy(distribution, torch.tensor([[[VOID_LABEL, 2, VOID_LABEL]]]))
    assert float(one.detach()) == pytest.approx(np.log(4))
    empty = pixel_cross_entropy(distribution, torch.full_like(labels, VOID_LABEL))
    empty.backward()
    assert float(empty) == 0 and distribution.grad is not None


def test_the_cross_entropy_weight_adds_the_pixel_loss_to_equation_7():
    """cross_entropy 0.5, warp off, tolerance 0: the logged loss is the mean over the frames of
    Eq. 7 + 0.5 × the mean −log P̂ of each pixel's true channel (torch's NLL)."""
    clip = batched(moving_clip())
    model = tiny_agssvos(warp=False, tolerance=0.0, cross_entropy=0.5)
    outputs = []
    model.network.register_forward_hook(
        lambda network, args, output: outputs.append(output.detach().clone()))
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, max_steps=3)
    trainer.fit(model, train_dataloaders=DataLoader([clip], batch_size=None))
    labels = clip.masks.long()
    losses = [instance_iou_loss(output[:, 1:], labels[:, i + 1])
              + 0.5 * torch.nn.functional.nll_loss(output.log(), labels[:, i + 1])
              for i, output in enumerate(outputs)]
    assert float(trainer.callback_metrics["train/loss"]) == pytest.approx(
        float(torch.stack(losses).mean()), rel=1e-5)
