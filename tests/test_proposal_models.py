"""STG-Net's proposal models (src/vosbench/proposals/maskrcnn.py and segmenter.py): the crop
regions, crops and paste on hand-worked numbers; the crop segmenter's output (shape, range, zero
outside the regions), its fourth channel (ignored at initialisation, heard once its weights
move) and its weights file; the detector's class-agnostic merge on hand-made detections, its
output on a randomly initialised Mask R-CNN (2 and 91 classes), its cache key and its errors."""

import hashlib
import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import maskrcnn_resnet50_fpn
from torchvision.ops import box_iou

from vosbench.errors import InputError
from vosbench.methods.backbones import normalize_images
from vosbench.proposals import maskrcnn
from vosbench.proposals.maskrcnn import MaskRCNNDetector, merge_classes
from vosbench.proposals.segmenter import CropSegmenter, crop_inputs, crop_regions, paste

TINY = "deeplabv3_resnet50"  # randomly initialised, the MobileNet gives a constant map


# --- crop regions, crops and paste ---------------------------------------------------------------

def test_the_crop_region_grows_the_box_by_the_margin_on_each_side():
    """(10, 20, 30, 60) is 20 wide and 40 high: 0.15 · 20 = 3 on the left and right, 0.15 · 40 = 6
    on top and at the bottom → (7, 14, 33, 66); a margin of 0 keeps the box."""
    boxes = torch.tensor([[10.0, 20, 30, 60]])
    torch.testing.assert_close(crop_regions(boxes, 100, 100, 0.15),
                               torch.tensor([[7.0, 14, 33, 66]]))
    torch.testing.assert_close(crop_regions(boxes, 100, 100, 0.0), boxes)


def test_the_crop_region_is_cut_to_the_frame():
    """A 80 high, 120 wide frame, margin 0.5. (100, 2, 110, 60): 5 on each side in x → (95, 115),
    inside the width 120; 29 on each side in y → (−27, 89), cut to (0, 80). (2, 70, 118, 78):
    58 in x → (−56, 176) cut to (0, 120); 4 in y → (66, 82) cut to (66, 80)."""
    boxes = torch.tensor([[100.0, 2, 110, 60], [2, 70, 118, 78]])
    torch.testing.assert_close(crop_regions(boxes, 80, 120, 0.5),
                               torch.tensor([[95.0, 0, 115, 80], [0, 66, 120, 80]]))


def test_crops_are_the_normalised_frame_and_each_regions_own_mask():
    """An 8×8 frame; the region (2, 2, 6, 6) at crop size 4 samples the pixel centres of rows and
    columns 2–5 exactly; the whole frame at crop size 4 averages 2×2 pixels (two samples a bin
    each way, at pixel centres); each region gets the Q of its own index."""
    frame = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    previous = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(1))
    regions = torch.tensor([[2.0, 2, 6, 6], [0, 0, 8, 8]])
    crops = crop_inputs(frame, previous, regions, 4)
    assert crops.shape == (2, 4, 4, 4)
    torch.testing.assert_close(crops[0, :3], normalize_images(frame)[:, 2:6, 2:6])
    torch.testing.assert_close(crops[0, 3], previous[0, 2:6, 2:6])
    torch.testing.assert_close(crops[1, 3], F.avg_pool2d(previous[1][None], 2)[0])
    whole = crop_inputs(frame, previous, regions[1:], 8)
    torch.testing.assert_close(whole[0, 3], previous[0])


def test_paste_puts_a_constant_map_on_the_pixels_whose_centres_lie_in_its_region():
    """A 6×8 frame. (2, 1, 5, 4): rows 1–3, columns 2–4. (0.4, 0, 1.6, 2): the centres 0.5 and 1.5
    lie in [0.4, 1.6), columns 0–1, rows 0–1. (2.6, 3, 3.4, 5): no column centre in [2.6, 3.4),
    nothing pasted."""
    maps = torch.tensor([0.7, 0.3, 0.9])[:, None, None].expand(3, 4, 4)
    regions = torch.tensor([[2.0, 1, 5, 4], [0.4, 0, 1.6, 2], [2.6, 3, 3.4, 5]])
    expected = torch.zeros(3, 6, 8)
    expected[0, 1:4, 2:5] = 0.7
    expected[1, 0:2, 0:2] = 0.3
    torch.testing.assert_close(paste(maps, regions, 6, 8), expected)


def test_paste_interpolates_the_map_over_its_region():
    """The 2×2 map [[0, 4], [8, 12]] over the 4×4 pixels of (1, 2, 5, 6) in a 7×8 frame: pixel
    centres at 0.5, 1.5, 2.5, 3.5 of the region are at 0.25, 0.75, 1.25, 1.75 map pixels, i.e.
    the edge value, then 1/4 and 3/4 of the way between the map's centres 0.5 and 1.5, then the
    edge value: a row [0, 1, 3, 4], the rows apart by 8 · (0, 1/4, 3/4, 1)."""
    maps = torch.tensor([[[0.0, 4], [8, 12]]])
    pasted = paste(maps, torch.tensor([[1.0, 2, 5, 6]]), 7, 8)
    row = torch.tensor([0.0, 1, 3, 4])
    expected = torch.zeros(1, 7, 8)
    expected[0, 2:6, 1:5] = row + torch.tensor([0.0, 2, 6, 8])[:, None]
    torch.testing.assert_close(pasted, expected)


# --- the crop segmenter --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def frame_and_boxes():
    """A 40×50 frame, two boxes and their Q: (10, 5, 30, 25) (crop region (7, 2, 33, 28)) and
    (40, 30, 50, 40) (region (38.5, 28.5, 50, 40), the pixels from row 28 and column 38 on)."""
    generator = torch.Generator().manual_seed(0)
    frame = torch.rand(3, 40, 50, generator=generator)
    boxes = torch.tensor([[10.0, 5, 30, 25], [40, 30, 50, 40]])
    return frame, boxes, torch.rand(2, 40, 50, generator=generator)


def tiny_segmenter(seed: int = 0, weights=None) -> CropSegmenter:
    torch.manual_seed(seed)
    return CropSegmenter(TINY, weights, crop_size=32).eval()


def first_convolution(segmenter: CropSegmenter) -> nn.Conv2d:
    return next(module for module in segmenter.modules() if isinstance(module, nn.Conv2d))


@torch.no_grad()
def test_the_segmenter_gives_probabilities_inside_the_crop_regions_only(frame_and_boxes):
    frame, boxes, previous = frame_and_boxes
    masks = tiny_segmenter()(frame, boxes, previous)
    assert masks.shape == (2, 40, 50) and masks.dtype == torch.float32
    assert ((masks >= 0) & (masks <= 1)).all()
    inside = torch.zeros(2, 40, 50, dtype=torch.bool)
    inside[0, 2:28, 7:33] = True
    inside[1, 28:, 38:] = True
    assert (masks[~inside] == 0).all()
    assert (masks[inside] > 0).all()


@torch.no_grad()
def test_a_constant_logit_gives_its_probability_over_each_crop_region(frame_and_boxes):
    """The last convolution's weights zero and its bias ln 3: the logit is ln 3 everywhere, the
    probability 1 / (1 + 1/3) = 0.75 on every pixel of the crop regions, 0 elsewhere."""
    frame, boxes, previous = frame_and_boxes
    segmenter = tiny_segmenter()
    last = [module for module in segmenter.modules() if isinstance(module, nn.Conv2d)][-1]
    nn.init.zeros_(last.weight)
    nn.init.constant_(last.bias, math.log(3))
    expected = torch.zeros(2, 40, 50)
    expected[0, 2:28, 7:33] = 0.75
    expected[1, 28:, 38:] = 0.75
    torch.testing.assert_close(segmenter(frame, boxes, previous), expected)


@torch.no_grad()
def test_no_boxes_give_no_masks(frame_and_boxes):
    frame = frame_and_boxes[0]
    masks = tiny_segmenter()(frame, torch.zeros(0, 4), torch.zeros(0, 40, 50))
    assert masks.shape == (0, 40, 50)


@torch.no_grad()
def test_q_is_ignored_at_initialisation_and_heard_once_its_weights_move(frame_and_boxes):
    """The first convolution takes 4 channels; its fourth channel starts at zero, so Q = 0 and
    Q = 1 give the same masks; with random weights there they differ."""
    frame, boxes, _ = frame_and_boxes
    segmenter = tiny_segmenter()
    convolution = first_convolution(segmenter)
    assert convolution.in_channels == 4
    empty, full = torch.zeros(2, 40, 50), torch.ones(2, 40, 50)
    torch.testing.assert_close(segmenter(frame, boxes, empty), segmenter(frame, boxes, full))
    nn.init.normal_(convolution.weight[:, 3], std=1.0)
    assert (segmenter(frame, boxes, empty) - segmenter(frame, boxes, full)).abs().max() > 1e-3


@torch.no_grad()
def test_segmenter_weights_round_trip_through_a_file(frame_and_boxes, tmp_path):
    frame, boxes, previous = frame_and_boxes
    trained = tiny_segmenter(seed=1)
    nn.init.normal_(first_convolution(trained).weight[:, 3])
    torch.save(trained.state_dict(), tmp_path / "segmenter.pt")
    loaded = tiny_segmenter(seed=2, weights=str(tmp_path / "segmenter.pt"))
    other = tiny_segmenter(seed=2)
    expected = trained(frame, boxes, previous)
    assert torch.equal(loaded(frame, boxes, previous), expected)
    assert not torch.equal(other(frame, boxes, previous), expected)


def test_segmenter_weights_errors_name_the_file(tmp_path):
    missing = tmp_path / "nowhere.pt"
    with pytest.raises(InputError, match=f"{missing}: weights file of the crop segmenter not "):
        CropSegmenter(TINY, str(missing), crop_size=32)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    with pytest.raises(InputError, match=f"{foreign}: does not fit CropSegmenter"):
        CropSegmenter(TINY, str(foreign), crop_size=32)


def test_unknown_architectures_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown segmentation architecture 'unet'"):
        CropSegmenter("unet")
    with pytest.raises(ValueError, match="unknown Mask R-CNN architecture 'yolo'"):
        MaskRCNNDetector(tmp_path / "weights.pt", arch="yolo")


# --- the class-agnostic merge --------------------------------------------------------------------

def test_the_merge_keeps_confident_boxes_and_suppresses_overlaps_whatever_their_class():
    """A (0, 0, 10, 10) 0.9; B (1, 0, 11, 10) 0.8 overlaps A by 90 / 110 = 0.82 > 0.6 and goes;
    D (5, 0, 15, 10) 0.6 overlaps A by 50 / 150 = 0.33 and stays; E 0.04 is below 0.05 and goes,
    F at exactly 0.05 stays. Kept by score descending."""
    boxes = torch.tensor([[30.0, 30, 40, 40], [1, 0, 11, 10], [5, 0, 15, 10], [0, 0, 10, 10],
                          [50, 50, 60, 60]])
    scores = torch.tensor([0.04, 0.8, 0.6, 0.9, 0.05])
    kept_boxes, kept_scores = merge_classes(boxes, scores, 0.05, 0.6)
    assert kept_boxes.tolist() == [[0, 0, 10, 10], [5, 0, 15, 10], [50, 50, 60, 60]]
    torch.testing.assert_close(kept_scores, torch.tensor([0.9, 0.6, 0.05]))
    # at 0.85, B (IoU 0.82 with A) stays; at most 2 kept
    assert merge_classes(boxes, scores, 0.05, 0.85)[1].tolist() == pytest.approx(
        [0.9, 0.8, 0.6, 0.05])
    assert merge_classes(boxes, scores, 0.05, 0.6, 2)[1].tolist() == pytest.approx([0.9, 0.6])


class FakeModel:
    """Stands in for the Mask R-CNN: records the images, returns given detections."""

    def __init__(self, detections: list[dict]):
        self.detections = detections
        self.images = None

    def to(self, device):
        return self

    def __call__(self, images):
        self.images = images
        return self.detections


def test_detect_merges_the_classes_of_the_model(monkeypatch, tmp_path):
    """Frame 1 (20×30): B (class 2, 0.9) suppresses A (class 1, 0.7, IoU 0.82 with B); C (class
    3, 0.3, apart from B) stays, cut to the frame's width 30; D (0.04) goes. Frame 2: no
    detections."""
    detections = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [22, 0, 30.001, 10],
                                          [20, 10, 30, 20]]),
                   "scores": torch.tensor([0.7, 0.9, 0.3, 0.04]),
                   "labels": torch.tensor([1, 2, 3, 1])},
                  {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
                   "labels": torch.zeros(0, dtype=torch.int64)}]
    model = FakeModel(detections)
    monkeypatch.setattr(maskrcnn, "build_model", lambda *args: model)
    images = [np.full((20, 30, 3), 255, np.uint8), np.zeros((5, 3, 3), np.uint8)]
    (boxes, scores), (no_boxes, no_scores) = MaskRCNNDetector(tmp_path / "w.pt").detect(images)
    assert boxes.dtype == scores.dtype == no_boxes.dtype == no_scores.dtype == np.float32
    assert boxes.tolist() == [[1, 0, 11, 10], [22, 0, 30, 10]]
    assert scores.tolist() == pytest.approx([0.9, 0.3])
    assert no_boxes.shape == (0, 4) and no_scores.shape == (0,)
    assert [image.shape for image in model.images] == [(3, 20, 30), (3, 5, 3)]
    assert (model.images[0] == 1).all() and (model.images[1] == 0).all()


def test_detect_takes_uint8_rgb_frames_only(tmp_path):
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8 RGB frames, got float64"):
        MaskRCNNDetector(tmp_path / "w.pt").detect([np.zeros((4, 4, 3))])


# --- the detector on a real (random) Mask R-CNN --------------------------------------------------

def frames() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
            rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)]


@pytest.fixture(scope="module")
def two_class_weights(tmp_path_factory):
    """The state_dict file of a randomly initialised 2-class Mask R-CNN."""
    torch.manual_seed(0)
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2)
    path = tmp_path_factory.mktemp("maskrcnn") / "two_classes.pt"
    torch.save(model.state_dict(), path)
    return path


def check_proposals(proposals: list, images: list[np.ndarray]) -> None:
    """Per frame: float32 (P, 4) boxes inside the frame and (P,) scores ≥ 0.05, by score
    descending, at most 100, no two boxes overlapping by more than 0.6."""
    assert len(proposals) == len(images)
    for (boxes, scores), image in zip(proposals, images):
        height, width = image.shape[:2]
        assert boxes.dtype == scores.dtype == np.float32
        assert boxes.shape == (len(scores), 4) and len(scores) <= 100
        assert (scores >= 0.05).all() and (np.diff(scores) <= 0).all()
        assert (boxes[:, :2] >= 0).all() and (boxes[:, :2] <= boxes[:, 2:]).all()
        assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
        overlaps = box_iou(torch.from_numpy(boxes), torch.from_numpy(boxes)).fill_diagonal_(0)
        assert (overlaps <= 0.6 + 1e-6).all()


def test_a_two_class_mask_rcnn_gives_class_agnostic_proposals(two_class_weights):
    detector = MaskRCNNDetector(two_class_weights, min_size=64, max_size=128)
    assert len(pickle.dumps(detector)) < 2000  # no model before the first use
    images = frames()
    proposals = detector.detect(images)
    check_proposals(proposals, images)
    assert all(len(scores) > 0 for _, scores in proposals)  # random weights score ≈ 0.5 and up
    # torchvision's own filters leave the choice to the merge: they pass a float32 score of
    # exactly 0.05 (not 0.0499), suppress nothing per class, cap nothing; no masks are computed
    heads = detector.model.roi_heads
    assert (torch.tensor([0.05, 0.0499]) > heads.score_thresh).tolist() == [True, False]
    assert heads.nms_thresh >= 1 and heads.detections_per_img >= 10 ** 6
    assert not heads.has_mask()
    assert len(pickle.dumps(detector)) < 2000  # nor after it
    again = pickle.loads(pickle.dumps(detector)).detect(images)
    for (boxes, scores), (boxes_again, scores_again) in zip(proposals, again):
        assert np.array_equal(boxes, boxes_again) and np.array_equal(scores, scores_again)


def test_a_coco_style_91_class_mask_rcnn_loads(tmp_path):
    """COCO's file has 91 classes and, saved from a model with frozen BatchNorm, no
    num_batches_tracked counters."""
    torch.manual_seed(1)
    state = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                  num_classes=91).state_dict()
    path = tmp_path / "coco.pt"
    torch.save({key: value for key, value in state.items()
                if not key.endswith("num_batches_tracked")}, path)
    images = frames()
    check_proposals(MaskRCNNDetector(path, min_size=64, max_size=128).detect(images), images)


def test_the_key_names_the_weights_content_and_the_settings(tmp_path):
    """sha256("abc") begins ba7816bf8f; a copy of the file has the same key, another content,
    threshold or size another."""
    (tmp_path / "a.pt").write_bytes(b"abc")
    (tmp_path / "copy.pt").write_bytes(b"abc")
    (tmp_path / "b.pt").write_bytes(b"abd")
    key = MaskRCNNDetector(tmp_path / "a.pt").key
    assert key == "maskrcnn_resnet50_fpn-ba7816bf8f-s0.05-n0.6-800-1333"
    assert hashlib.sha256(b"abc").hexdigest().startswith("ba7816bf8f")
    assert MaskRCNNDetector(tmp_path / "copy.pt").key == key
    others = [MaskRCNNDetector(tmp_path / "b.pt"),
              MaskRCNNDetector(tmp_path / "a.pt", "maskrcnn_resnet50_fpn_v2"),
              MaskRCNNDetector(tmp_path / "a.pt", score_threshold=0.1),
              MaskRCNNDetector(tmp_path / "a.pt", nms_threshold=0.5),
              MaskRCNNDetector(tmp_path / "a.pt", min_size=600),
              MaskRCNNDetector(tmp_path / "a.pt", max_size=1000)]
    keys = [detector.key for detector in others]
    assert key not in keys and len(set(keys)) == len(keys)


def test_detector_weights_errors_name_the_file(tmp_path, two_class_weights):
    missing = tmp_path / "nowhere.pt"
    with pytest.raises(InputError, match=f"{missing}: Mask R-CNN weights file not found"):
        MaskRCNNDetector(missing).key  # noqa: B018 (the property raises)
    with pytest.raises(InputError, match=f"{missing}: Mask R-CNN weights file not found"):
        MaskRCNNDetector(missing).detect(frames())
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a state dict")
    with pytest.raises(InputError, match=f"{garbage}: not a torch state_dict"):
        MaskRCNNDetector(garbage).detect(frames())
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    with pytest.raises(InputError, match=f"{foreign}: not the state_dict of a Mask R-CNN"):
        MaskRCNNDetector(foreign).detect(frames())
    with pytest.raises(InputError, match=f"{two_class_weights}: does not fit "
                                         f"maskrcnn_resnet50_fpn_v2"):
        MaskRCNNDetector(two_class_weights, "maskrcnn_resnet50_fpn_v2").detect(frames())
