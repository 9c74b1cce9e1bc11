"""Clip samplers, the joint clip transform, and the training / evaluation datasets."""

from pathlib import Path

import numpy as np
import pytest
import torch
from davis_fixtures import write_davis2017

from vosbench.datamodules.base import (
    ClipDataset,
    ClipOrder,
    UnpaddedDistributedSampler,
    VideoDataset,
)
from vosbench.datamodules.clip_transform import ClipTransform, Geometry, affine_matrix, warp
from vosbench.datamodules.clips import Clip, collate_clips
from vosbench.datamodules.davis import davis2017_videos
from vosbench.datamodules.sampling import ConsecutiveSampler, NeighbourSampler, SegmentSampler
from vosbench.datamodules.video import Video
from vosbench.errors import InputError


def fake_video(num_frames: int, annotated: list[int] | None = None) -> Video:
    """A video whose files are never read: samplers look only at its length and annotations."""
    annotated = range(num_frames) if annotated is None else annotated
    frames = tuple(Path(f"{i:05d}.jpg") for i in range(num_frames))
    masks = tuple(Path(f"{i:05d}.png") if i in annotated else None for i in range(num_frames))
    return Video("clip", "fake", "train", frames, masks, (8, 8))


def draws(sampler, video, count=200, seed=0):
    rng = np.random.default_rng(seed)
    return [sampler.sample(video, rng) for _ in range(count)]


# --- samplers -----------------------------------------------------------------------------------

def test_segment_sampler_draws_one_frame_per_segment():
    picks = draws(SegmentSampler(3), fake_video(30))
    for clip in picks:
        assert [frame // 10 for frame in clip.frames] == [0, 1, 2] and clip.reference is None
    assert {frame for clip in picks for frame in clip.frames} == set(range(30))


def test_segment_sampler_uses_annotated_frames_only():
    annotated = [0, 5, 10, 15, 20, 25]
    picks = draws(SegmentSampler(3), fake_video(30, annotated))
    assert all(clip.frames[0] in (0, 5) and clip.frames[1] in (10, 15) and clip.frames[2] in
               (20, 25) for clip in picks)
    short = draws(SegmentSampler(5), fake_video(30, [3, 9]))
    assert all(len(clip.frames) == 5 and set(clip.frames) <= {3, 9}
               and list(clip.frames) == sorted(clip.frames) for clip in short)


def test_sampler_without_annotations_names_the_video():
    with pytest.raises(InputError, match="'clip'.*no annotated frame"):
        SegmentSampler(3).sample(fake_video(5, []), np.random.default_rng(0))


def test_consecutive_sampler_gives_reference_and_consecutive_frames():
    for clip in draws(ConsecutiveSampler(length=4), fake_video(12)):
        assert clip.reference == 0
        start = clip.frames[0]
        assert 1 <= start <= 8 and clip.frames == tuple(range(start, start + 4))


def test_consecutive_sampler_reverses_and_pads_short_videos():
    clips = draws(ConsecutiveSampler(length=3, reverse_probability=1.0), fake_video(10, [2, 4, 6,
                                                                                       8]))
    assert all(clip.reference == 8 and clip.frames == (6, 4, 2) for clip in clips)
    clips = draws(ConsecutiveSampler(length=5), fake_video(3))
    assert all(clip.reference == 0 and clip.frames == (1, 2, 2, 2, 2) for clip in clips)
    mixed = draws(ConsecutiveSampler(length=2, reverse_probability=0.5), fake_video(6))
    assert {clip.reference for clip in mixed} == {0, 5}


def test_consecutive_sampler_draws_a_stride_per_clip():
    """max_stride 3: every clip steps through the annotated frames after the reference by one
    stride r ∈ {1, 2, 3}, starting on the r-th grid (1, 1 + r, …); each r is drawn."""
    strides = set()
    for clip in draws(ConsecutiveSampler(length=3, max_stride=3), fake_video(30)):
        stride = clip.frames[1] - clip.frames[0]
        assert clip.reference == 0 and stride in (1, 2, 3)
        assert clip.frames == tuple(range(clip.frames[0], clip.frames[0] + 3 * stride, stride))
        assert (clip.frames[0] - 1) % stride == 0
        strides.add(stride)
    assert strides == {1, 2, 3}
    with pytest.raises(ValueError, match="max_stride must be at least 1"):
        ConsecutiveSampler(max_stride=0)


def test_neighbour_sampler_pairs_an_annotated_frame_with_the_next():
    for clip in draws(NeighbourSampler(), fake_video(10, [0, 4, 9])):
        frame, neighbour = clip.frames
        assert frame in (0, 4, 9) and neighbour == (frame + 1 if frame < 9 else 8)


# --- transform ----------------------------------------------------------------------------------

def random_clip(num_frames=2, height=20, width=30, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8)
    masks = rng.choice(np.array([0, 1, 2, 255], np.uint8), (num_frames, height, width))
    flow = rng.normal(size=(num_frames, height, width, 2)).astype(np.float32)
    return frames, masks, flow


def test_default_transform_is_the_identity():
    frames, masks, flow = random_clip()
    images, labels, motion = ClipTransform()(frames, masks, flow, np.random.default_rng(0))
    assert images.dtype == torch.float32 and images.shape == (2, 3, 20, 30)
    assert torch.equal(images, torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255)
    assert np.array_equal(labels.numpy(), masks)
    assert np.array_equal(motion.numpy(), flow.transpose(0, 3, 1, 2))


def test_flip_mirrors_frames_and_masks_and_negates_the_flow_x():
    frames, masks, flow = random_clip()
    images, labels, motion = ClipTransform(flip_probability=1.0)(frames, masks, flow,
                                                                 np.random.default_rng(0))
    assert np.array_equal(images.numpy(), frames[:, :, ::-1].transpose(0, 3, 1, 2) / np.float32(
        255))
    assert np.array_equal(labels.numpy(), masks[:, :, ::-1])
    assert np.array_equal(motion[:, 0].numpy(), -flow[:, :, ::-1, 0])
    assert np.array_equal(motion[:, 1].numpy(), flow[:, :, ::-1, 1])


def test_masks_keep_their_labels_under_rotation_and_scale():
    frames, masks, flow = random_clip(height=40, width=40)
    transform = ClipTransform(size=(33, 47), max_rotation=30, scale_range=(0.7, 1.4))
    for seed in range(5):
        images, labels, motion = transform(frames, masks, flow, np.random.default_rng(seed))
        assert labels.dtype == torch.uint8 and labels.shape == (2, 33, 47)
        assert set(np.unique(labels.numpy())) <= {0, 1, 2, 255}
        assert images.shape == (2, 3, 33, 47) and motion.shape == (2, 2, 33, 47)


def square_masks(shift: tuple[float, float]) -> np.ndarray:
    """Two frames of a 12-pixel square, the second moved by `shift` (x, y) pixels."""
    masks = np.zeros((2, 64, 80), np.uint8)
    masks[0, 20:32, 30:42] = 1
    dx, dy = shift
    masks[1, 20 + dy:32 + dy, 30 + dx:42 + dx] = 1
    return masks


def centroid(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    return np.array([cols.mean(), rows.mean()])


@pytest.mark.parametrize("geometry", [
    Geometry(1.0, 0.0, True, (39.5, 31.5)), Geometry(1.3, 30.0, False, (36.0, 26.0)),
    Geometry(0.8, -75.0, True, (40.0, 30.0)), Geometry(1.0, 90.0, False, (39.5, 31.5))])
def test_transformed_flow_moves_objects_as_the_transformed_frames_do(geometry):
    shift = (6, -4)
    masks = square_masks(shift)
    flow = np.broadcast_to(np.array(shift, np.float32), (2, 64, 80, 2)).copy()
    matrix = affine_matrix(geometry, (64, 80), (56, 72))
    out = [warp(mask, matrix, (56, 72), 0, 0) for mask in masks]  # 0: cv2.INTER_NEAREST
    moved = centroid(out[1]) - centroid(out[0])
    transformed = flow[0, 0] @ matrix[:, :2].T
    assert np.allclose(moved, transformed, atol=0.6)
    if geometry.rotation == 90.0:  # counter-clockwise on screen: +x becomes −y (resized ×0.9)
        assert np.allclose(np.array([1.0, 0.0]) @ matrix[:, :2].T, [0.0, -72 / 80], atol=1e-9)


def test_zooming_out_pads_masks_with_void_and_frames_with_black():
    frames, masks, flow = random_clip(height=40, width=40)
    transform = ClipTransform(scale_range=(0.5, 0.5))
    images, labels, motion = transform(frames, masks, flow, np.random.default_rng(0))
    assert (labels[:, :5] == 255).all() and (labels[:, :, -5:] == 255).all()
    assert (images[:, :, :5] == 0).all() and (motion[:, :, :5] == 0).all()


def test_crop_around_objects_keeps_a_small_object_in_view():
    masks = np.zeros((1, 100, 100), np.uint8)
    masks[0, 85:95, 3:13] = 1
    frames = np.zeros((1, 100, 100, 3), np.uint8)
    transform = ClipTransform(scale_range=(3.0, 3.0), crop_around_objects=True)
    for seed in range(20):
        _, labels, _ = transform(frames, masks, None, np.random.default_rng(seed))
        assert (labels == 1).sum() > 100


def test_colour_jitter_is_shared_by_the_frames_of_a_clip_and_spares_the_masks():
    frames, masks, _ = random_clip()
    frames[1] = frames[0]
    transform = ClipTransform(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
    images, labels, motion = transform(frames, masks, None, np.random.default_rng(3))
    assert motion is None and np.array_equal(labels.numpy(), masks)
    assert torch.equal(images[0], images[1])
    assert not torch.allclose(images[0], torch.from_numpy(frames[0]).permute(2, 0, 1) / 255)
    assert images.min() >= 0 and images.max() <= 1


def test_transform_rejects_bad_arguments():
    with pytest.raises(ValueError, match="scale_range"):
        ClipTransform(scale_range=(1.2, 0.8))
    with pytest.raises(ValueError, match="size"):
        ClipTransform(size=(0, 10))


# --- datasets -----------------------------------------------------------------------------------

@pytest.fixture
def davis_videos(tmp_path):
    root = tmp_path / "DAVIS"
    write_davis2017(root, {"bear": ("train", 6, 20, 1), "camel": ("train", 5, 22, 2),
                           "dog": ("train", 7, 20, 2)}, test_dev=("aerobatics",))
    return davis2017_videos(root, "train"), davis2017_videos(root, "test-dev")


def test_clip_dataset_draws_reference_and_frames_jointly(davis_videos):
    train, _ = davis_videos
    dataset = ClipDataset(train, ConsecutiveSampler(length=3), ClipTransform(size=(16, 24)))
    clip = dataset[1]
    assert clip.video == "camel" and clip.frames.shape == (3, 3, 16, 24)
    assert clip.masks.shape == (3, 16, 24) and clip.reference_frame.shape == (3, 16, 24)
    assert clip.reference_mask.shape == (16, 24) and clip.flow is None
    assert clip.indices.tolist() == list(range(clip.indices[0], clip.indices[0] + 3))
    expected = davis2017_videos(train[1].frame_files[0].parents[3], "train")[1].mask(0)
    assert set(np.unique(clip.reference_mask.numpy())) == set(np.unique(expected))


def test_a_clip_is_a_function_of_seed_and_key(davis_videos):
    train, _ = davis_videos

    def dataset(seed):
        return ClipDataset(train, SegmentSampler(2), ClipTransform(flip_probability=0.5,
                                                                  brightness=0.3),
                           length=9, seed=seed)

    assert len(dataset(0)) == 9 and dataset(0)[4].video == "camel"
    assert dataset(0)[13].video == "camel"  # key 13 (epoch 1, position 4): video 13 mod 3
    for key in (2, 11):
        a, b = dataset(0)[key], dataset(0)[key]
        assert torch.equal(a.frames, b.frames) and torch.equal(a.indices, b.indices)
    draws = {(tuple(c.indices.tolist()), float(c.frames.sum()))
             for c in (dataset(0)[2], dataset(0)[11], dataset(0)[20], dataset(1)[2])}
    assert len(draws) > 1


def test_clip_order_shuffles_per_epoch_and_shares_out_between_ranks(davis_videos):
    train, _ = davis_videos
    data = ClipDataset(train, SegmentSampler(1), ClipTransform(), length=7)
    order = ClipOrder(data, seed=3)
    first = list(order)
    order.set_epoch(1)
    second = list(order)
    assert sorted(first) == list(range(7)) and sorted(second) == list(range(7, 14))
    assert [key - 7 for key in second] != first
    ranks = [ClipOrder(data, 2, rank, seed=3) for rank in (0, 1)]
    keys = [list(sampler) for sampler in ranks]
    assert [len(k) for k in keys] == [4, 4] and set(keys[0]) | set(keys[1]) == set(range(7))


def test_unannotated_neighbour_has_a_void_mask(davis_videos):
    _, test_dev = davis_videos
    clip = ClipDataset(test_dev, NeighbourSampler(), ClipTransform())[0]
    assert clip.indices.tolist() == [0, 1]
    assert (clip.masks[1] == 255).all() and (clip.masks[0] != 255).any()
    target, valid = clip.foreground()
    assert not valid[1].any() and target[0].sum() == ((clip.masks[0] > 0) &
                                                      (clip.masks[0] < 255)).sum()


def test_collate_stacks_clips_and_rejects_mixed_sizes(davis_videos):
    train, _ = davis_videos
    dataset = ClipDataset(train, SegmentSampler(2), ClipTransform(size=(16, 24)))
    batch = collate_clips([dataset[0], dataset[1]])
    assert isinstance(batch, Clip) and batch.video == ["bear", "camel"]
    assert batch.frames.shape == (2, 2, 3, 16, 24) and batch.masks.shape == (2, 2, 16, 24)
    assert batch.indices.shape == (2, 2) and batch.reference_frame is None
    native = ClipDataset(train, SegmentSampler(2), ClipTransform())
    with pytest.raises(ValueError, match="fixed `size`"):
        collate_clips([native[0], native[1]])


def test_video_dataset_decodes_whole_videos(davis_videos):
    train, test_dev = davis_videos
    loaded = VideoDataset(train)[2]
    assert loaded.name == "dog" and len(loaded) == 7 and loaded.flow is None
    assert loaded.frames.shape == (7, 3, 12, 20) and loaded.frames.dtype == torch.uint8
    assert np.array_equal(loaded.masks[3].numpy(), train[2].mask(3))
    assert np.array_equal(loaded.frames[5].permute(1, 2, 0).numpy(), train[2].frame(5))
    sparse = VideoDataset(test_dev)[0]
    assert (sparse.masks[1:] == 255).all()
    assert np.array_equal(sparse.masks[0].numpy(), test_dev[0].mask(0))


def test_unpadded_sampler_gives_every_item_once():
    data = list(range(7))
    shards = [list(UnpaddedDistributedSampler(data, 3, rank)) for rank in range(3)]
    assert shards == [[0, 3, 6], [1, 4], [2, 5]]
    assert [len(UnpaddedDistributedSampler(data, 3, rank)) for rank in range(3)] == [3, 2, 2]
