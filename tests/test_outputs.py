"""What follows the model for each video (src/vosbench/outputs.py): binarisation, the CRF, scores
and PNGs, the same in worker processes as in this one; order, back-pressure and errors."""

import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vosbench import outputs
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
              keep_frame: int | None = None, scored: bool = True) -> OutputJob:
    """A video of FRAMES noise frames whose truth is a square (not given unless `scored`), and
    noisy probabilities of it."""
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
    truth = VideoJob(get_protocol("davis2016"), name, Path(), True, video, masks) if scored \
        else None
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


def test_probability_pngs_hold_the_models_probabilities_before_the_crf_in_16_bits(tmp_path,
                                                                                 monkeypatch):
    job = replace(video_job("a", 0, tmp_path / "labels", crf="agnn", scored=False),
                  probability_dir=tmp_path / "probabilities")
    two = np.concatenate([job.probabilities, 1 - job.probabilities], 1)  # objects 1 and 2
    two[0, 0, 0, :3] = [0.0, 1.0, 0.5]
    monkeypatch.setattr(outputs, "refine_video",
                        lambda frames, probabilities, recipe: np.zeros_like(probabilities))
    run_output_job(replace(job, probabilities=two))
    for object_id in (1, 2):
        names = sorted(p.name for p in (tmp_path / "probabilities" / str(object_id)).iterdir())
        assert names == [f"{i:05d}.png" for i in range(FRAMES)]
    with Image.open(tmp_path / "probabilities" / "1" / "00000.png") as image:
        assert image.mode == "I;16" and image.size == (WIDTH, HEIGHT)
        stored = np.asarray(image)
    # 0, 1 and ½ (32767.5, rounded half to even) at the top left, every pixel round(p · 65535)
    assert stored[0, :3].tolist() == [0, 65535, 32768]
    assert np.array_equal(stored, np.rint(two[0, 0] * 65535))
    with Image.open(tmp_path / "probabilities" / "2" / "00004.png") as image:
        # half a step, and the float32 rounding of 1 − p
        assert np.abs(np.asarray(image) / 65535 - two[4, 1]).max() <= 0.5 / 65535 + 1e-7
    # the CRF (here: all background) decides the labels, not the probabilities written
    assert read_label_png(tmp_path / "labels" / "00000.png").max() == 0


def test_a_job_without_truth_is_written_and_not_scored(tmp_path):
    output = run_output_job(video_job("a", 0, tmp_path, crf=None, scored=False))
    assert output.scores is None and output.kept_labels is None
    assert sorted(path.stem for path in tmp_path.glob("*.png")) == [f"{i:05d}" for i in range(5)]


def test_the_crf_time_is_the_time_the_crf_took_and_zero_without_one():
    start = time.perf_counter()
    output = run_output_job(video_job("a", 0, None))
    assert 0 < output.timing.crf <= time.perf_counter() - start
    # zero: the frame rates then give no fps_with_crf for a run without a CRF
    assert run_output_job(video_job("a", 0, None, crf=None)).timing.crf == 0.0


def test_workers_give_what_this_process_gives_in_submission_order(tmp_path):
    jobs = {workers: [video_job(f"v{seed}", seed, tmp_path / str(workers) / f"v{seed}")
                      for seed in range(5)] for workers in (0, 2)}
    results = {}
    for workers, videos in jobs.items():
        pool = OutputPool(workers)
        for index, job in enumerate(videos):
            pool.submit(job)
            # back-pressure: the oldest is waited for once 2 × workers wait, not before
            assert len(pool.pending) == min(index + 1, 2 * workers)
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
    pool.submit(video_job("after", 2, None, crf=None, scored=False))
    with pytest.raises(ValueError, match="frame 2: probabilities: expected values in"):
        pool.results()
    pool.submit(good)  # the pool goes on after an error, without the outputs of that call
    assert [output.name for output in pool.results()] == ["good"]
    pool.close()
    with pytest.raises(ValueError, match="^output workers must be 0 or more, got -1$"):
        OutputPool(-1)


def test_workers_start_from_the_fork_server_at_a_lower_priority():
    """Workers are children of the fork server, not forks of this process (whose threads'
    locks a fork would copy), and yield to it (niceness + 10, at most 19), so that the model
    runs as fast as it would alone."""
    pool = OutputPool(1)
    pool.submit(video_job("a", 0, None, crf=None, scored=False))  # starts the worker
    assert [output.name for output in pool.results()] == ["a"]
    parent = pool.executor.submit(os.getppid).result()
    niceness = pool.executor.submit(os.nice, 0).result()  # os.nice(0): the current niceness
    pool.close()
    assert parent != os.getpid() and niceness == min(os.nice(0) + 10, 19)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_pool_runs_as_many_processes_as_it_was_given(workers):
    """Three jobs that each hold a process for a while start `workers` processes, no more (the
    executor starts one per job waiting while it has fewer than its maximum)."""
    pool = OutputPool(workers)
    pool.submit(video_job("a", 0, None, crf=None, scored=False))  # starts the executor
    sleeping = [pool.executor.submit(time.sleep, 0.5) for _ in range(3)]
    processes = len(pool.executor._processes)
    for future in sleeping:
        future.result()
    pool.close()
    assert processes == workers


@pytest.mark.parametrize("workers", [0, 1])
def test_a_closed_pool_drops_what_it_held_and_starts_again(workers):
    """After `close` (a run that stopped before collecting, e.g. on an error), the next
    `results` holds only what was submitted since."""
    pool = OutputPool(workers)
    for _ in range(3):  # with one worker, the third waits for the first (back-pressure)
        pool.submit(video_job("old", 0, None, crf=None, scored=False))
    pool.close()
    pool.submit(video_job("new", 0, None, crf=None, scored=False))
    assert [output.name for output in pool.results()] == ["new"]
    pool.close()
