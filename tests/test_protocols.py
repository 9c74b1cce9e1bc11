import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vosbench.errors import InputError
from vosbench.metrics.protocols import ObjectScores, Protocol, get_protocol, score_sequence
from vosbench.metrics.summary import global_scores

import oracle


def score_video(protocol_name, gt, pred, **kwargs):
    """Score all frames of a video the way `vosbench eval` does."""
    protocol = get_protocol(protocol_name)
    frames = protocol.evaluated_frames(len(gt))
    return score_sequence(protocol, [gt[i] for i in frames], [pred[i] for i in frames],
                          protocol.num_objects(gt[0]), **kwargs)


@st.composite
def videos(draw, max_objects=3, max_pred=4):
    """(gt, pred) label videos with rectangles, void bands, empty frames and border objects."""
    num_frames = draw(st.integers(3, 7))
    height, width = draw(st.integers(4, 24)), draw(st.integers(4, 24))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)

    def labels(count):
        frames = np.zeros((num_frames, height, width), np.uint8)
        for obj in range(1, count + 1):
            for t in range(num_frames):
                if rng.random() < 0.15:
                    continue  # object absent from this frame
                y0, x0 = rng.integers(0, height), rng.integers(0, width)
                y1, x1 = rng.integers(y0, height + 1), rng.integers(x0, width + 1)
                frames[t, y0:y1 + 1, x0:x1 + 1] = obj
        return frames

    gt = labels(draw(st.integers(0, max_objects)))
    gt[:, rng.integers(0, height), :] = np.where(rng.random(width) < 0.3, 255,
                                                 gt[:, rng.integers(0, height), :])
    pred = labels(draw(st.integers(0, max_pred)))
    return gt, pred


def assert_same_as_oracle(scores, expected):
    assert [obj.object_id for obj in scores.objects] == list(expected)
    for obj in scores.objects:
        j, f = expected[obj.object_id]
        np.testing.assert_array_equal(obj.J, j)
        np.testing.assert_array_equal(obj.F, f)
        for measure, values in (("J", j), ("F", f)):
            got = [obj.stats[f"{measure}-{s}"] for s in ("Mean", "Recall", "Decay")]
            np.testing.assert_array_equal(got, oracle.statistics(values))


@settings(max_examples=60, deadline=None)
@given(videos(max_pred=3))
def test_davis2017_identical_to_the_official_flow(video):
    gt, pred = video
    num_gt = int(np.where(gt[0] == 255, 0, gt[0]).max())
    pred = np.where(pred > num_gt, 0, pred).astype(np.uint8)  # ids above K are an error there
    assert_same_as_oracle(score_video("davis2017", gt, pred),
                          oracle.evaluate_davis2017(gt, pred))


@settings(max_examples=60, deadline=None)
@given(videos())
def test_unsupervised_identical_to_the_official_flow(video):
    gt, pred = video
    assert_same_as_oracle(score_video("davis2017-unsupervised", gt, pred),
                          oracle.evaluate_davis2017(gt, pred, unsupervised=True))


@settings(max_examples=40, deadline=None)
@given(videos())
def test_davis2016_identical_to_the_official_flow(video):
    gt, pred = video
    scores = score_video("davis2016", gt, pred, with_t=False)
    assert_same_as_oracle(scores, oracle.evaluate_davis2016(gt, pred))


def two_objects():
    """5 frames, object 1 on the left, object 2 on the right; 255 between them."""
    gt = np.zeros((5, 20, 30), np.uint8)
    gt[:, 2:10, 2:10] = 1
    gt[:, 5:15, 18:28] = 2
    gt[:, :, 14] = 255
    return gt


def test_davis2017_scores_frames_1_to_n_minus_2_and_pads_missing_objects():
    gt = two_objects()
    pred = np.where(gt == 1, 1, 0).astype(np.uint8)  # object 2 never predicted
    scores = score_video("davis2017", gt, pred)
    assert scores.frames == ["00000", "00001", "00002"]  # names of the 3 scored frames
    assert [o.object_id for o in scores.objects] == [1, 2]
    np.testing.assert_array_equal(scores.objects[0].J, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(scores.objects[1].J, [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(scores.objects[1].F, [0.0, 0.0, 0.0])


def test_davis2017_rejects_a_predicted_id_the_ground_truth_lacks():
    gt = two_objects()
    pred = np.where(gt == 255, 0, gt).astype(np.uint8)
    pred[3, 0, 0] = 3
    message = ("sequence 'bear': prediction 00002 has object id 3, but the ground truth has "
               "objects 1..2 (read from its first frame)")
    with pytest.raises(InputError, match=re.escape(message) + "$"):
        score_video("davis2017", gt, pred, name="bear")


def test_unsupervised_matches_swapped_ids_and_excludes_void():
    gt = two_objects()
    pred = np.zeros_like(gt)
    pred[gt == 1] = 2
    pred[gt == 2] = 1
    pred[:, :, 14] = 3  # a third proposal, entirely on void pixels
    scores = score_video("davis2017-unsupervised", gt, pred)
    assert {o.object_id for o in scores.objects} == {1, 2}
    for obj in scores.objects:
        np.testing.assert_array_equal(obj.J, np.ones(5))
        np.testing.assert_array_equal(obj.F, np.ones(5))


def test_unsupervised_matches_by_the_mean_of_j_and_f_not_by_j_alone():
    gt = np.zeros((1, 20, 30), np.uint8)
    gt[0, 2:12, 2:12], gt[0, 6:16, 17:27] = 1, 2  # two 10x10 squares
    pred = np.zeros_like(gt)
    pred[0, 4:14, 4:14] = 1  # object 1 shifted by (2, 2): its edges 2 px off (tolerance 1 px)
    pred[0, 6:16, 17:27], pred[0, 7:15, 18:26] = 1, 0  # and the 1 px wide outline of object 2
    # J with object 1: 64 / (100 + 136 - 64) = 0.372 > J with object 2: 36 / (100 + 100) = 0.18,
    # but the outline gives object 2 the higher (J + F) / 2: the proposal goes to object 2
    scores = score_video("davis2017-unsupervised", gt, pred)
    assert {o.object_id: o.J[0] for o in scores.objects} == {1: 0.0, 2: 0.18}
    assert_same_as_oracle(scores, oracle.evaluate_davis2017(gt, pred, unsupervised=True))


def test_proposals_scored_by_j_alone_are_matched_by_j():
    protocol = Protocol("proposals-j", "proposals", skip_ends=False, measures=("J",),
                        aggregate="objects")
    gt = two_objects()
    pred = np.select([gt == 1, gt == 2], [2, 1]).astype(np.uint8)  # ids swapped
    scores = score_sequence(protocol, gt, pred, 2)
    assert {o.object_id: list(o.J) for o in scores.objects} == {1: [1.0] * 5, 2: [1.0] * 5}
    assert [o.F for o in scores.objects] == [None, None]


def test_unsupervised_unmatched_gt_objects_score_zero():
    gt = two_objects()
    pred = np.where(gt == 2, 1, 0).astype(np.uint8)  # one proposal, on object 2
    scores = {o.object_id: o for o in score_video("davis2017-unsupervised", gt, pred).objects}
    np.testing.assert_array_equal(scores[2].J, np.ones(5))
    np.testing.assert_array_equal(scores[1].J, np.zeros(5))


def test_unsupervised_rejects_more_than_20_proposals_naming_the_frame():
    gt = two_objects()
    pred = np.zeros_like(gt)
    pred[1, 0, :20] = np.arange(1, 21)
    assert len(score_video("davis2017-unsupervised", gt, pred).objects) == 2  # 20 are allowed
    pred[2, 0, :21] = np.arange(1, 22)
    message = ("sequence 'bear': prediction 00002 has id 21; at most 20 proposals (ids 1..20) "
               "are allowed")
    with pytest.raises(InputError, match=re.escape(message)):
        score_video("davis2017-unsupervised", gt, pred, name="bear")


def test_davis2016_counts_every_nonzero_gt_pixel_as_foreground():
    gt = two_objects()
    pred = (gt != 0).astype(np.uint8) * 7
    scores = score_video("davis2016", gt, pred, with_t=False)
    assert [o.object_id for o in scores.objects] == [1]
    np.testing.assert_array_equal(scores.objects[0].J, [1.0, 1.0, 1.0])


def test_size_mismatch_names_the_sequence_and_the_frame():
    gt = two_objects()
    protocol = get_protocol("davis2017")
    names = {"name": "bear", "frame_names": ["00001", "00002"]}
    with pytest.raises(InputError, match="sequence 'bear': prediction 00002 is 29x20 but the "
                                         "ground truth is 30x20"):
        score_sequence(protocol, [gt[1], gt[2]], [gt[1], gt[2][:, :-1]], 2, **names)
    colour = np.stack([gt[2]] * 3, axis=-1)  # a label map must have two dimensions
    with pytest.raises(InputError, match=re.escape("prediction 00002 is (20, 30, 3) but the "
                                                   "ground truth is 30x20")):
        score_sequence(protocol, [gt[1], gt[2]], [gt[1], colour], 2, **names)
    with pytest.raises(InputError, match="sequence 'bear': 2 ground-truth frames but 1 predicted "
                                         "frames"):
        score_sequence(protocol, [gt[1], gt[2]], [gt[1]], 2, **names)


def test_a_sequence_without_frames_is_an_error_naming_it():
    # without a name, a sequence is called "sequence" (in messages and in its scores)
    with pytest.raises(InputError, match="sequence 'sequence': no frame to evaluate"):
        score_sequence(get_protocol("davis2017"), [], [], 0)


def test_t_by_default_for_davis2016_only_and_on_request_per_object():
    gt = two_objects()
    pred = np.where(gt == 1, 1, 0).astype(np.uint8)  # object 1 does not move
    for t in range(5):
        pred[t, 5:15, 18:20 + 2 * t] = 2  # object 2 widens from frame to frame
    assert score_video("davis2016", gt, pred).objects[0].T is not None
    assert [o.T for o in score_video("davis2017", gt, pred).objects] == [None, None]
    # T of each object compares its own consecutive predicted masks (frames 1..3: two pairs):
    # 0 for the unchanged object 1, above 0 for object 2, which changes its shape
    first, second = score_video("davis2017", gt, pred, with_t=True).objects
    assert list(first.T) == [0, 0] and len(second.T) == 2 and all(second.T > 0)
    assert score_video("davis2016", gt, pred, with_t=False).objects[0].T is None


def test_object_statistics_and_the_mean_of_t_over_its_pairs():
    nan = float("nan")
    obj = ObjectScores(1, J=np.array([1.0, 0.5]), T=np.array([0.2, nan, 0.4])).summarize()
    # Mean 0.75; Recall: 1 of 2 frames above 0.5; Decay: bins [1], [1, .5], [.5], [.5] -> 0.5
    # T-Mean: the mean over the pairs that have a value (0.2 + 0.4) / 2; no F, no F statistics
    assert obj.stats == {"J-Mean": 0.75, "J-Recall": 0.5, "J-Decay": 0.5,
                         "T-Mean": pytest.approx(0.3)}


def test_number_of_objects_is_the_largest_id_of_the_first_frame_void_aside():
    frame = np.zeros((4, 4), np.uint8)
    davis2017 = get_protocol("davis2017")
    assert davis2017.num_objects(frame) == 0
    frame[0, :2], frame[1] = (1, 3), 255
    assert davis2017.num_objects(frame) == 3
    assert davis2017.num_objects(np.full((4, 4), 255, np.uint8)) == 0  # only void
    assert get_protocol("davis2016").num_objects(frame) == 1


def scored(protocol_name, objects_per_sequence):
    """SequenceScores with given per-object J (and F = J / 2) values."""
    sequences = []
    for index, objects in enumerate(objects_per_sequence):
        num = len(objects)
        gt = np.zeros((3, 8, 8 * num), np.uint8)
        pred = np.zeros_like(gt)
        for k, frames in enumerate(objects, start=1):
            gt[:, :, 8 * (k - 1):8 * k] = k
            for t, keep in enumerate(frames):
                pred[t, :, 8 * (k - 1):8 * (k - 1) + keep] = k
        protocol = get_protocol(protocol_name)
        scores = score_sequence(protocol, list(gt), list(pred), protocol.num_objects(gt[0]),
                                name=f"s{index}", with_t=False)
        sequences.append(scores)
    return sequences


def test_davis2017_global_is_the_mean_over_all_objects():
    # sequence 0: one object with J 1; sequence 1: three objects with J 0, 0.5, 0.5
    sequences = scored("davis2017", [[[8, 8, 8]], [[0, 0, 0], [4, 4, 4], [4, 4, 4]]])
    result = global_scores(get_protocol("davis2017"), sequences)
    assert result["J-Mean"] == pytest.approx((1 + 0 + 0.5 + 0.5) / 4)
    assert result["J&F-Mean"] == (result["J-Mean"] + result["F-Mean"]) / 2
    assert result["T-Mean"] is None


def test_fbms_global_is_the_mean_over_sequences_and_offers_the_mean_over_frames():
    sequences = scored("fbms", [[[8, 8, 8]], [[0, 0, 4]]])
    result = global_scores(get_protocol("fbms"), sequences)
    assert result["J-Mean"] == pytest.approx((1 + 0.5 / 3) / 2)
    assert result["J-Mean-Frames"] == pytest.approx((3 + 0.5) / 6)


def test_youtube_objects_averages_categories_then_sequences():
    sequences = scored("youtube-objects", [[[8, 8, 8]], [[0, 0, 0]], [[4, 4, 4]]])
    categories = {"s0": "cat", "s1": "cat", "s2": "dog"}
    result = global_scores(get_protocol("youtube-objects"), sequences, categories)
    assert result["J-Mean"] == pytest.approx(((1 + 0) / 2 + 0.5) / 2)
    assert result["J-Mean-Sequences"] == pytest.approx(0.5)
    assert result["F-Mean"] is None and result["J&F-Mean"] is None


def test_segtrackv2_scores_j_only():
    sequences = scored("segtrackv2", [[[8, 4, 8]]])
    assert sequences[0].objects[0].F is None
    assert global_scores(get_protocol("segtrackv2"), sequences)["J-Mean"] == pytest.approx(5 / 6)


def test_unknown_protocol_lists_the_known_ones():
    with pytest.raises(InputError, match="davis2016, davis2017"):
        get_protocol("davis")


def test_library_accepts_any_integer_labels_within_0_to_255():
    gt = two_objects()
    pred = np.where(gt == 255, 0, gt)
    as_uint8 = score_video("davis2017", gt, pred)
    as_int64 = score_video("davis2017", gt.astype(np.int64), pred.astype(np.int64))
    np.testing.assert_array_equal(as_uint8.objects[1].F, as_int64.objects[1].F)
    above, below = gt.astype(np.int64), pred.astype(np.int64)
    above[2, 0, 0], below[2, 0, 0] = 256, -1
    with pytest.raises(InputError, match="sequence 'bear': ground-truth labels must lie in 0..255"):
        score_video("davis2017", above, pred, name="bear")
    with pytest.raises(InputError, match="sequence 'bear': predicted labels must lie in 0..255"):
        score_video("davis2017", gt, below, name="bear")
