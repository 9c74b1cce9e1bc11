"""What follows the model for each video (src/vosbench/outputs.py): binarisation, the CRF, scores
and PNGs, the same in worker processes as in this one; order, back-pressure and errors."""

from pathlib import Path

import numpy as np
import pytest

from vosbench.datamodules.video import Video
from vosbench.io import read_label_png
from vosbench.metrics.datasets import VideoJob
from vosbench.metrics.protocols import SequenceScores, get_protocol, score_sequence
from vosbench.outputs import OutputJob, OutputPool, VideoTiming, binarize, run_output_job
from vosbench.postprocess import get_recipe

HEIGHT, WIDTH, FRAMES = 24, 32, 5


def test_binarize_thresholds_one_object_and_takes_the_best_of_several():
    single = np.array([[[[0.2, 0.7], [0.5, 0.51]]]])
    assert binarize(single).tolist() == [[[0, 1], [0, 1]]]
    assert binarize(single, threshold=0.6).tolist() == [[[0, 1], [0, 0]]]
    assert binarize(single, threshold=0.1).tolist() == [[[1, 1], [1, 1]]]
    multi = np.stack([np.array([[0.9, 0.3], [0.45, 0.6]]), np.array([[0.8, 0.4], [0.2, 0.7]])])
    assert binarize(multi[None]).tolist() == [[[1, 0], [0, 2]]]
    assert binarize(multi[None], threshold=0.75).tolist() == [[[1, 0], [0, 0]]]


def video_job(name: str, seed: int, label_dir: Path | None, crf: str | None = "agnn",
              keep_frame: int | None = None) -> OutputJob:
    """A video of FRAMES noise frames whose truth is a square, and noisy probabilities of it."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((FRAMES, HEIGHT, WIDTH), np.uint8)
    masks[:, 6:18, 8 + seed:20 + seed] = 1
    frames = rng.integers(0, 80, (FRAMES, HEIGHT, WIDTH, 3), dtype=np.uint8)
    frames[masks == 1] += 150
    probabilities = np.clip(masks[:, None] * 0.3 + rng.random((FRAMES, 1, HEIGHT, WIDTH)) * 0.6,
                            0, 1).astype(np.float32)
    names = tuple(f"{i:05d}" for i in range(FRAMES))
    video = Video(name, "synthetic", "val", tuple(Path(f"{n}.jpg") for n in names),
                  tuple(Path(f"{n}.png") for n in names), (HEIGHT, WIDTH))
    truth = VideoJob(get_protocol("davis2016"), name, Path(), True, video, masks)
    return OutputJob(name, probabilities, frames, None if crf is None else get_recipe(crf), 0.5,
                     names, truth, label_dir, keep_frame, VideoTiming(FRAMES, 0.25, 0.125, 0.0),
                     category="square")


def same_scores(first: SequenceScores, second: SequenceScores) -> bool:
    """Equal names, frames, per-frame values and statistics."""
    return (first.name, first.frames, len(first.objects)) == \
        (second.name, second.frames, len(second.objects)) and all(
        a.stats == b.stats and all(np.array_equal(getattr(a, m), getattr(b, m), equal_nan=True)
                                   for m in ("J", "F", "T"))
        for a, b in zip(first.objects, second.objects))


def test_an_output_job_scores_the_binarized_probabilities_and_writes_them(tmp_path):
    job = video_job("a", 0, tmp_path / "a", crf=None, keep_frame=2)
    output = run_output_job(job)
    labels = (job.probabilities[:, 0] > 0.5).astype(np.uint8)
    expected = score_sequence(get_protocol("davis2016"), list(job.truth.masks[1:-1]),
                              list(labels[1:-1]), 1, with_t=True)
    assert output.scores.objects[0].stats == expected.objects[0].stats
    assert output.scores.frames == ["00001", "00002", "00003"]
    assert np.array_equal(output.kept_labels, labels[2])
    assert [read_label_png(tmp_path / "a" / f"{n}.png").tolist() for n in job.frame_names] == \
        labels.tolist()
    assert (output.name, output.category) == ("a", "square")
    assert (output.timing.frames, output.timing.model, output.timing.flow) == (FRAMES, 0.25, 0.125)


def test_workers_give_what_this_process_gives_in_submission_order(tmp_path):
    jobs = {workers: [video_job(f"v{seed}", seed, tmp_path / str(workers) / f"v{seed}")
                      for seed in range(5)] for workers in (0, 2)}
    results = {}
    for workers, videos in jobs.items():
        pool = OutputPool(workers)
        for job in videos:
            pool.submit(job)
            assert len(pool.pending) <= 2 * workers  # back-pressure: the oldest is waited for
        results[workers] = pool.results()
        assert pool.results() == []  # each output is handed over once
        pool.close()
    assert [output.name for output in results[2]] == [f"v{seed}" for seed in range(5)]
    for alone, parallel in zip(results[0], results[2]):
        assert same_scores(alone.scores, parallel.scores)
        assert alone.timing.crf > 0 and parallel.timing.crf > 0  # measured where the CRF ran
    for seed in range(5):
        for frame in jobs[0][0].frame_names:
            assert np.array_equal(read_label_png(tmp_path / "0" / f"v{seed}" / f"{frame}.png"),
                                  read_label_png(tmp_path / "2" / f"v{seed}" / f"{frame}.png"))
    # the CRF changed the masks: the outputs are refined, not the thresholded probabilities
    unrefined = run_output_job(video_job("v0", 0, None, crf=None))
    assert not same_scores(unrefined.scores, results[0][0].scores)


def test_a_failing_job_raises_its_error_when_collected():
    pool = OutputPool(1)
    good = video_job("good", 0, None)
    bad = video_job("bad", 1, None)
    bad.probabilities[2] = 2.0  # not a probability: the CRF refuses it, naming the frame
    pool.submit(good)
    pool.submit(bad)
    with pytest.raises(ValueError, match="frame 2: probabilities: expected values in"):
        pool.results()
    pool.submit(good)  # the pool goes on after an error
    assert [output.name for output in pool.results()] == ["good"]
    pool.close()
    with pytest.raises(ValueError, match="at least 0|0 or more"):
        OutputPool(-1)
