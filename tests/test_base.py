"""The base class of the methods (methods/base.py): the poly schedule's values, the evaluation
options a checkpoint leaves out, the threshold, the videos scored with T, the gathered results
(categories, frame rates, peak memory), overlays, and the errors that guard the evaluation loops
(a wrong `predict_video` shape, a video scored on two ranks)."""

import math
import os
import resource
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.loggers import WandbLogger
from torch import nn
from torch.utils.data import DataLoader

from vosbench import outputs
from vosbench.datamodules.clips import LoadedVideo
from vosbench.datamodules.families import SyntheticDataModule
from vosbench.datamodules.video import Video
from vosbench.io import read_label_png
from vosbench.methods.agnn import AGNN
from vosbench.methods.base import EVALUATION_OPTIONS, VOSMethod, frame_rates, peak_memory_mb
from vosbench.methods.fcn import FCN
from vosbench.metrics.protocols import SequenceScores
from vosbench.outputs import VideoTiming


class Constant(VOSMethod):
    """Predicts `probability` everywhere (or a tensor of `shape`, to provoke the shape check);
    one parameter, trained towards 1 by a constant loss."""

    def __init__(self, probability: float = 0.6, shape: tuple[int, ...] | None = None,
                 lr: float = 0.1, power: float = 0.9, **kwargs):
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.weight = nn.Parameter(torch.zeros(1))

    def predict_video(self, video):
        shape = self.hparams.shape or (len(video), 1, *video.video.size)
        return torch.full(shape, self.hparams.probability)

    def training_step(self, batch, batch_index):
        return (self.weight - 1).pow(2).sum()

    def configure_optimizers(self):
        optimizer = torch.optim.SGD([self.weight], lr=self.hparams.lr)
        return self.poly_schedule(optimizer, self.hparams.power)


def trainer(root, **options) -> pl.Trainer:
    """A quiet one-process trainer whose files (predictions, scores) go under `root`."""
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=root, **options)


def in_memory_video(name: str, frames: int = 4, size: tuple[int, int] = (6, 8),
                    annotated: bool = True, object_shape: tuple[int, int] = (3, 4),
                    category: str | None = None) -> LoadedVideo:
    """A LoadedVideo held in memory: black frames, an object of `object_shape` in the corner of
    every frame (no annotation file and masks of 255 when not `annotated`, as in a test-dev
    split)."""
    names = [f"{index:05d}" for index in range(frames)]
    video = Video(name, "synthetic", "val", tuple(Path(f"{n}.jpg") for n in names),
                  tuple(Path(f"{n}.png") if annotated else None for n in names), size,
                  category=category)
    masks = torch.zeros(frames, *size, dtype=torch.uint8)
    masks[:, :object_shape[0], :object_shape[1]] = 1
    return LoadedVideo(video, torch.zeros(frames, 3, *size, dtype=torch.uint8),
                       masks if annotated else torch.full_like(masks, 255))


def attach(model: VOSMethod, root: Path, dataset: str = "synthetic",
           videos: tuple[LoadedVideo, ...] = ()) -> VOSMethod:
    """`model` given what it reads from its trainer, without a Trainer's loops: the datamodule's
    dataset, root and test videos, the run folder, one device, rank 0."""
    model.trainer = SimpleNamespace(
        datamodule=SimpleNamespace(dataset=dataset, root=root,
                                   videos={"test": [video.video for video in videos]}),
        default_root_dir=str(root), num_devices=1, global_rank=0)
    return model


def test_poly_schedule_decays_as_one_minus_step_over_total_to_the_power(tmp_path):
    rates = []

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_index):
            rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    model = Constant(lr=0.1, power=0.9)
    trainer(tmp_path, max_steps=10, callbacks=[Record()]).fit(model, DataLoader(range(10)))
    # hand-worked: 0.1 · (1 − s/10)^0.9, e.g. s = 5: 0.1 · 0.5^0.9 = 0.1 · 0.535887
    expected = [0.1, 0.0909533, 0.0818052, 0.0725418, 0.0631446, 0.0535887, 0.0438383,
                0.0338383, 0.0234924, 0.0125893]
    assert rates == pytest.approx(expected, rel=1e-5)
    rates.clear()
    trainer(tmp_path, max_steps=4, callbacks=[Record()]).fit(Constant(lr=1.0, power=2.0),
                                                  DataLoader(range(4)))
    assert rates == pytest.approx([1.0, 0.5625, 0.25, 0.0625])  # (1 − s/4)²
    rates.clear()
    one_step = trainer(tmp_path, max_steps=1, callbacks=[Record()])
    one_step.fit(Constant(lr=1.0, power=2.0), DataLoader(range(1)))
    # a one-step run starts at the full rate and ends at (1 − 1/1)² = 0
    assert rates == [1.0] and one_step.optimizers[0].param_groups[0]["lr"] == 0.0


def test_checkpoints_keep_what_was_learned_and_leave_out_how_to_evaluate():
    model = Constant(probability=0.3, crf="agnn", threshold=0.7, protocol="davis2016",
                     num_overlays=1, prediction_dir="elsewhere", output_workers=1,
                     crf_in_validation=True, save_probabilities=True, probability_dir="maps")
    checkpoint = {"hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    # LightningCLI applies a checkpoint's hyperparameters over the command line, so an evaluation
    # option saved there would override `vosbench test --model.init_args.crf …`
    assert not set(EVALUATION_OPTIONS) & set(checkpoint["hyper_parameters"])
    assert checkpoint["hyper_parameters"] == {"probability": 0.3, "shape": None, "lr": 0.1,
                                              "power": 0.9}
    assert set(EVALUATION_OPTIONS) == {"crf", "crf_in_validation", "threshold", "protocol",
                                       "num_overlays", "prediction_dir", "output_workers",
                                       "save_probabilities", "probability_dir"}
    # a method that saves only some options, or no hyperparameters at all
    checkpoint = {"hyper_parameters": {"lr": 0.1, "threshold": 0.7}}
    model.on_save_checkpoint(checkpoint)
    assert checkpoint == {"hyper_parameters": {"lr": 0.1}}
    checkpoint = {"state_dict": {}}
    model.on_save_checkpoint(checkpoint)
    assert checkpoint == {"state_dict": {}}


def test_defaults_are_the_even_odds_threshold_and_no_crf():
    model = Constant()
    assert model.threshold == 0.5 and model.crf is None and not model.crf_in_validation
    assert model.num_overlays == 3 and model.protocol_name is None
    assert model.test_results is None  # not tested yet
    with pytest.raises(ValueError, match="output_workers"):
        Constant(output_workers=-1)


@pytest.fixture(scope="module")
def tiny_synthetic(synthetic_root):
    return SyntheticDataModule(synthetic_root, num_workers=0)


@pytest.mark.parametrize("workers", [0, 2])
def test_the_threshold_decides_the_masks_that_are_scored(tiny_synthetic, workers, tmp_path):
    """A constant 0.6 is all foreground at threshold 0.5 — J of a frame is then its foreground
    share — and nothing at 0.7, where J is 0 on every frame that holds an object."""
    tiny_synthetic.setup("test")
    truth = {video.name: np.stack([video.mask(i) for i in video.annotated[1:-1]])
             for video in tiny_synthetic.videos["test"]}
    for threshold, expected in ((0.5, {name: (masks > 0).mean(axis=(1, 2))
                                       for name, masks in truth.items()}),
                                (0.7, {name: np.where((masks > 0).any(axis=(1, 2)), 0.0, 1.0)
                                       for name, masks in truth.items()})):
        model = Constant(0.6, threshold=threshold, output_workers=workers)
        trainer(tmp_path).test(model, datamodule=tiny_synthetic)
        scores = {seq.name: seq.objects[0].J for seq in model.test_results["sequence_scores"]}
        assert scores.keys() == expected.keys()
        for name, values in scores.items():
            assert values == pytest.approx(expected[name])


def test_a_wrong_predict_video_shape_names_the_method_and_the_video(tiny_synthetic, tmp_path):
    model = Constant(shape=(2, 1, 8, 8), output_workers=0)
    with pytest.raises(RuntimeError, match=r"Constant.predict_video returned \(2, 1, 8, 8\) for "
                                           r"'synth-val-000'; expected \(\d+, K, 240, 432\)"):
        trainer(tmp_path).test(model, datamodule=tiny_synthetic)


@pytest.mark.parametrize("shape", [(3, 1, 6, 8), (4, 1, 5, 8), (4, 1, 6, 9)],
                         ids=["frames", "height", "width"])
def test_a_prediction_of_the_wrong_length_or_size_is_refused(shape):
    video = in_memory_video("bear")  # 4 frames of 6×8
    with pytest.raises(RuntimeError, match=rf"Constant.predict_video returned "
                                           rf"\({', '.join(map(str, shape))}\) for 'bear'; "
                                           rf"expected \(4, K, 6, 8\)"):
        Constant(shape=shape).run_model(video)


def test_the_model_time_is_the_time_predict_video_took():
    start = time.perf_counter()
    probabilities, seconds = Constant(0.25).run_model(in_memory_video("bear"))
    assert 0 < seconds <= time.perf_counter() - start
    assert probabilities.dtype == np.float32 and (probabilities == 0.25).all()


def test_db_info_selects_the_test_videos_scored_with_t(tmp_path):
    """DAVIS layouts compute T only for the sequences Annotations/db_info.yml marks eval_t (the
    DAVIS 2016 toolkit leaves out those with occlusions); a protocol without T, for none."""
    videos = (in_memory_video("shaky"), in_memory_video("steady"))
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "db_info.yml").write_text(
        "sequences:\n- {name: shaky, eval_t: false}\n- {name: steady, eval_t: true}\n")
    for protocol, expected in (("davis2016", {"shaky": False, "steady": True}),
                               ("davis2017", {"shaky": False, "steady": False})):
        model = attach(Constant(0.6, protocol=protocol, output_workers=0), tmp_path,
                       videos=videos)
        for video in videos:
            model.test_step(video, 0)
        model.collect_outputs()
        assert {seq.name: seq.t_mean is not None for seq, _ in model.scores} == expected


def test_predict_writes_videos_without_annotations_and_again_after_teardown(tmp_path):
    """Prediction needs no ground truth (a test-dev split); the default folder is
    <run>/predictions; teardown closes the output workers and the next run starts new ones."""
    video = in_memory_video("test-dev", annotated=False)
    model = attach(Constant(0.6, output_workers=0), tmp_path, videos=(video,))
    folder = tmp_path / "predictions" / "test-dev"
    for _ in range(2):
        model.on_predict_epoch_start()
        assert model.predict_step(video, 0) == "test-dev"
        model.on_predict_epoch_end()
        assert [path.stem for path in sorted(folder.glob("*.png"))] == \
            list(video.video.frame_names)
        model.teardown("predict")
        shutil.rmtree(folder)


def test_youtube_objects_results_average_the_categories_in_name_order(tmp_path):
    """youtube-objects ranks by the mean over categories of the mean J of their videos; the
    per-sequence results are in name order whatever order the videos were scored in."""
    # all foreground (0.6 > 0.5) on 6×8 frames: J = object area / 48
    videos = (in_memory_video("c", object_shape=(3, 4), category="dog"),  # J = 12 / 48 = 0.25
              in_memory_video("a", object_shape=(6, 8), category="cat"),  # J = 1
              in_memory_video("b", object_shape=(3, 8), category="cat"))  # J = 0.5
    model = attach(Constant(0.6, output_workers=0), tmp_path, dataset="youtube-objects",
                   videos=videos)
    for video in videos:
        model.test_step(video, 0)
    model.collect_outputs()
    results = model.gather_results()
    assert set(results) == {"protocol", "metrics", "document", "sequence_scores", "categories",
                            "fps", "fps_with_flow", "fps_with_crf", "peak_memory_mb",
                            "parameters"}
    assert results["protocol"] == "youtube-objects"
    assert [seq.name for seq in results["sequence_scores"]] == ["a", "b", "c"]
    assert results["categories"] == {"a": "cat", "b": "cat", "c": "dog"}
    # cat: (1 + 0.5) / 2 = 0.75, dog: 0.25 → 0.5 (the plain mean over videos: 0.583)
    assert results["metrics"]["J-Mean"] == pytest.approx(0.5)
    assert results["document"]["global"] == results["metrics"]
    assert results["document"]["categories"] == {
        "cat": {"J-Mean": 0.75, "sequences": ["a", "b"]},
        "dog": {"J-Mean": 0.25, "sequences": ["c"]}}
    assert results["fps"] > 0 and results["fps_with_flow"] is results["fps_with_crf"] is None
    assert results["parameters"] == 1  # Constant's one scalar weight
    assert results["peak_memory_mb"] > 0


def test_results_name_categories_only_under_the_youtube_objects_protocol(tmp_path):
    video = in_memory_video("bear", category="animal")
    model = attach(Constant(0.6, output_workers=0), tmp_path, videos=(video,))
    model.test_step(video, 0)
    model.collect_outputs()
    results = model.gather_results()  # davis2016: no categories, in the results or results.json
    assert results["categories"] is None and "categories" not in results["document"]


def test_an_epoch_without_videos_has_no_results(tmp_path):
    model = attach(Constant(), tmp_path)
    model.on_test_epoch_start()
    model.on_test_epoch_end()
    assert model.test_results is None and not (tmp_path / "scores").exists()


def test_validation_keeps_the_middle_annotated_frame_for_an_overlay(tmp_path):
    """The overlay row of a video: its middle annotated frame | ground truth | prediction."""
    video = in_memory_video("bear", frames=5)
    video.frames[2] = 200  # frame 2 = annotated[5 // 2]
    model = attach(Constant(0.6, output_workers=0), tmp_path)
    model.validation_step(video, 0)
    model.collect_outputs()
    (row,) = model.overlays
    assert row.shape == (6, 3 * 8, 3) and (row[:, :8] == 200).all()
    assert not (tmp_path / "predictions").exists()


def test_results_gathered_over_a_process_group_are_those_of_one_process(tiny_synthetic, tmp_path):
    """Under DDP every rank gathers all ranks' scores (`all_gather_object`); with one rank in a
    gloo group the gathered results are this process's own."""
    alone = Constant(0.6, output_workers=0)
    trainer(tmp_path).test(alone, datamodule=tiny_synthetic)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        grouped = Constant(0.6, output_workers=0)
        trainer(tmp_path).test(grouped, datamodule=tiny_synthetic)
    finally:
        dist.destroy_process_group()
    assert grouped.test_results["metrics"] == alone.test_results["metrics"]
    assert [seq.name for seq in grouped.test_results["sequence_scores"]] == \
        [seq.name for seq in alone.test_results["sequence_scores"]]


def test_a_video_scored_twice_is_an_error():
    model = Constant()
    scores = SequenceScores("bear", ["00001"], [])
    model.scores = [(scores, None), (SequenceScores("camel", ["00001"], []), None), (scores, None)]
    with pytest.raises(RuntimeError, match="^a video was scored on more than one rank$"):
        model.gather_results()


def test_frame_rates_divide_all_frames_by_all_seconds():
    timings = [VideoTiming(frames=10, model=2.0, flow=0.0, crf=0.0),
               VideoTiming(frames=20, model=4.0, flow=1.0, crf=3.0)]
    rates = frame_rates(timings)
    assert rates["fps"] == 5.0  # 30 frames in 6 s
    assert rates["fps_with_flow"] == pytest.approx(30 / 7)
    assert rates["fps_with_crf"] == pytest.approx(10 / 3)  # 30 frames in 6 + 3 s
    assert frame_rates([VideoTiming(4, 1.0, 0.0, 0.0)]) == {
        "fps": 4.0, "fps_with_flow": None, "fps_with_crf": None}
    assert frame_rates([])["fps"] is None
    assert math.isclose(frame_rates([VideoTiming(3, 0.5, 0.25, 0.0)])["fps_with_flow"], 4.0)


def test_peak_memory_is_cuda_memory_on_a_gpu_else_the_resident_set_in_mib(monkeypatch):
    kib = int(next(line for line in Path("/proc/self/status").read_text().splitlines()
                   if line.startswith("VmHWM:")).split()[1])  # the kernel's high-water mark
    assert peak_memory_mb() == pytest.approx(kib / 1024, rel=0.05)
    monkeypatch.setattr(resource, "getrusage",
                        lambda who: SimpleNamespace(ru_maxrss=3 * 1024))  # Linux: KiB
    assert peak_memory_mb() == 3.0
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: 5 * 2**20 + 2**19)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert peak_memory_mb() == 3.0  # a GPU this process never used: its own memory
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    assert peak_memory_mb() == 5.5  # 5.5 MiB allocated


class RecordingWandb(WandbLogger):
    """A W&B logger that keeps the images it is given and starts no W&B run (a run left open
    would be reused by every later W&B logger of the process)."""

    def __init__(self):
        super().__init__(offline=True)
        self.images = []

    @property
    def experiment(self):
        return None

    def log_image(self, key, images, step=None, **kwargs):
        self.images.append((key, images, step, kwargs))

    def log_metrics(self, metrics, step=None):
        pass

    def log_hyperparams(self, params):
        pass


def count_crf_calls(monkeypatch) -> list[int]:
    """Replace the CRF (run in this process: output_workers 0) by the identity; the list gets
    the frame count of every video it refines."""
    refined = []

    def refine_video(frames, probabilities, recipe):
        refined.append(len(frames))
        return probabilities

    monkeypatch.setattr(outputs, "refine_video", refine_video)
    return refined


def test_validation_scores_the_raw_masks_without_t_and_writes_nothing(tiny_synthetic, tmp_path,
                                                                     monkeypatch):
    """Model selection scores the model's own masks (the CRF only with crf_in_validation), skips
    T (its cost) and writes no PNG; the first `num_overlays` videos become overlay rows."""
    refined = count_crf_calls(monkeypatch)
    logger = RecordingWandb()
    model = Constant(0.6, crf="agnn", num_overlays=2, output_workers=0)
    validation = pl.Trainer(accelerator="cpu", devices=1, logger=logger,
                            default_root_dir=tmp_path, enable_progress_bar=False,
                            enable_model_summary=False)
    metrics = validation.validate(model, datamodule=tiny_synthetic)[0]
    assert refined == [] and "val/T-Mean" not in metrics and "val/J-Mean" in metrics
    assert metrics["val/score"] == metrics["val/J&F-Mean"]  # davis2016 ranks by J&F
    assert not (tmp_path / "predictions").exists()
    ((key, images, step, options),) = logger.images
    assert (key, step, options) == ("val/overlays", 0,
                                    {"caption": ["frame | ground truth | prediction"]})
    (image,) = images
    videos = tiny_synthetic.videos["val"][:2]
    assert image.shape == (2 * 240, 3 * 432, 3)  # one row per video: frame | truth | prediction
    for row, video in zip(np.split(image, 2, axis=0), videos):
        middle = video.annotated[len(video.annotated) // 2]
        assert np.array_equal(row[:, :432], video.frame(middle))

    model = Constant(0.6, crf="agnn", crf_in_validation=True, output_workers=0)
    trainer(tmp_path).validate(model, datamodule=tiny_synthetic)
    assert refined == [len(video) for video in tiny_synthetic.videos["val"]]


def test_predict_writes_every_frame_refined_by_the_crf(tiny_synthetic, tmp_path, monkeypatch):
    refined = count_crf_calls(monkeypatch)
    model = Constant(0.6, crf="agnn", prediction_dir=str(tmp_path / "out"), output_workers=0)
    names = trainer(tmp_path).predict(model, datamodule=tiny_synthetic)
    videos = tiny_synthetic.videos["test"]
    assert names == [video.name for video in videos]
    assert refined == [len(video) for video in videos]
    for video in videos:
        for frame in video.frame_names:  # every frame, all foreground (0.6 > 0.5)
            assert (read_label_png(tmp_path / "out" / video.name / f"{frame}.png") == 1).all()


@pytest.mark.parametrize(("cpus", "devices", "workers"), [(8, 1, 8), (8, 2, 4), (8, 3, 2),
                                                           (2, 4, 1)])
def test_output_workers_share_the_process_cpus_among_the_devices(monkeypatch, cpus, devices,
                                                                 workers):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)))
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the machine's, not this process's
    model = Constant()
    model.trainer = pl.Trainer(accelerator="cpu", devices=devices, logger=False)
    assert model.default_output_workers() == workers


def test_output_workers_without_cpu_affinity_count_the_machine(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity")
    model = Constant()
    model.trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert model.default_output_workers() == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown: one worker
    assert model.default_output_workers() == 1


def test_a_method_declares_its_inference_options_which_checkpoints_leave_out():
    class Sized(Constant):
        inference_only = ("shape",)

    assert Constant.inference_options() == EVALUATION_OPTIONS
    assert Sized.inference_options() == (*EVALUATION_OPTIONS, "shape")
    checkpoint = {"hyper_parameters": dict(Sized(shape=(1, 2), threshold=0.3).hparams)}
    Sized(shape=(1, 2)).on_save_checkpoint(checkpoint)
    assert checkpoint["hyper_parameters"] == {"probability": 0.6, "lr": 0.1, "power": 0.9}
    assert AGNN.inference_options()[len(EVALUATION_OPTIONS):] == (
        "num_nodes_test", "input_size", "graphs_per_batch", "test_graphs", "test_scales",
        "test_resize", "test_seed")
    assert FCN.inference_options()[-1:] == ("frames_per_batch",)
