"""The base class of every method: what all methods share around their one inference hook.

A method subclasses `VOSMethod`, builds its network, implements `training_step` on `Clip` batches
and `predict_video(video) -> (T, K, H, W)` probabilities. The base class owns the rest: the
validation and test loops over whole videos; what follows the model for each video — CRF
post-processing, binarization, scoring with the metrics engine (the same code as `vosbench eval
--dataset`), writing label PNGs — in worker processes while the model predicts the next
(`vosbench.outputs`); gathering the per-video scores of every DDP rank (each video is scored on
exactly one rank), timing, peak memory, parameter count, and qualitative overlays.
"""

import os
import resource
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist

from vosbench.datamodules.clips import LoadedVideo
from vosbench.errors import InputError
from vosbench.methods.official import CheckpointFormat
from vosbench.methods.overlays import overlay_row
from vosbench.metrics.datasets import (
    DATASET_PROTOCOLS,
    DAVIS_LAYOUT,
    VideoJob,
    dataset_protocol,
)
from vosbench.metrics.jobs import temporal_sequences
from vosbench.metrics.protocols import Protocol, SequenceScores, get_protocol
from vosbench.metrics.summary import global_scores, headline_metric, results_document
from vosbench.outputs import OutputJob, OutputPool, VideoTiming
from vosbench.postprocess import CRFRecipe, get_recipe
from vosbench.results import write_scores

# Options of how a trained model is evaluated, not of what it learned. They are left out of the
# checkpoint's hyperparameters: LightningCLI applies those over the command line when a command
# gets --ckpt_path, which would make `vosbench test --model.init_args.crf agnn` silently ignored.
EVALUATION_OPTIONS = ("crf", "crf_in_validation", "threshold", "protocol", "num_overlays",
                      "prediction_dir", "output_workers", "save_probabilities",
                      "probability_dir")


class VOSMethod(pl.LightningModule):
    """Base class of the methods.

    Class attributes: `name`, the short name (configs/methods/<name>/, results rows);
    `semi_supervised`, whether the method is given the first-appearance masks; `trainable`,
    False for methods without learning (bench then only tests).

    Args:
        crf: a dense CRF recipe name (see `vosbench.postprocess.RECIPES`), or None for none;
            applied by test and predict (post-processing of the final predictions).
        crf_in_validation: apply the CRF in validation too (during fit and `vosbench
            validate`); off by default: model selection scores the model's own masks, and the
            CRF would multiply the cost of every validation.
        threshold: probability above which a pixel is foreground.
        protocol: the evaluation protocol; default: the dataset's, for zero-shot methods the
            union of the objects (davis2016 on DAVIS layouts).
        num_overlays: validation videos drawn as overlays (frame | ground truth | prediction).
        prediction_dir: where test/predict write label PNGs (<video>/<frame>.png); default
            <trainer root>/predictions.
        output_workers: processes that refine (CRF), score and write each video while the model
            predicts the next (`vosbench.outputs`); None: the CPUs of this process divided by
            the devices of this node; 0: all in this process, after each video.
        save_probabilities: test and predict also write the model's probabilities (before any
            CRF) as 16-bit grey PNGs, <probability_dir>/<video>/<object id>/<frame>.png, value
            round(p · 65535) (zero-shot methods: object 1, the foreground).
        probability_dir: where they go; default <trainer root>/probabilities.
    """

    name: ClassVar[str] = ""
    semi_supervised: ClassVar[bool] = False
    trainable: ClassVar[bool] = True  # False: nothing to fit, `bench` only tests
    # the method's own options that only matter at inference (AGNN: N′ at test), which, like
    # EVALUATION_OPTIONS, a checkpoint leaves out (see `inference_options`)
    inference_only: ClassVar[tuple[str, ...]] = ()
    # methods with an official variant (a port of the authors' released network): how the
    # authors' test script reads their checkpoint (`vosbench weights import`), and each setting
    # of the official variant that the paper variant sets otherwise (`official_departures`)
    official_checkpoint: ClassVar[CheckpointFormat | None] = None
    official_settings: ClassVar[dict[str, object]] = {}

    @classmethod
    def inference_options(cls) -> tuple[str, ...]:
        """The init arguments that do not change what the method learns: settings that differ
        only in these can share one fit, and `--model.init_args.<option>` given with a
        checkpoint reaches the model (the checkpoint does not hold them)."""
        return EVALUATION_OPTIONS + cls.inference_only

    def __init__(self, crf: str | None = None, crf_in_validation: bool = False,
                 threshold: float = 0.5, protocol: str | None = None, num_overlays: int = 3,
                 prediction_dir: str | None = None, output_workers: int | None = None,
                 save_probabilities: bool = False, probability_dir: str | None = None):
        super().__init__()
        if output_workers is not None and output_workers < 0:
            raise ValueError(f"output_workers must be None or at least 0, got {output_workers}")
        self.crf = None if crf is None else get_recipe(crf)
        self.crf_in_validation = crf_in_validation
        self.threshold = threshold
        self.protocol_name = protocol
        self.num_overlays = num_overlays
        self.prediction_dir = prediction_dir
        self.output_workers = output_workers
        self.save_probabilities = save_probabilities
        self.probability_dir = probability_dir
        self.outputs: OutputPool | None = None
        self.scores: list[tuple[SequenceScores, str | None]] = []
        self.timings: list[VideoTiming] = []
        self.overlays: list[np.ndarray] = []
        self.overlay_inputs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.test_results: dict | None = None

    # --- the method's part -----------------------------------------------------------------------

    def predict_video(self, video: LoadedVideo) -> torch.Tensor:
        """(T, K, H, W) float probabilities of the K objects in every frame, at the video's
        original size. Zero-shot methods: K = 1 (the union of the objects). Semi-supervised:
        object k is channel k − 1, for the objects of `video.video.reference_masks()`."""
        raise NotImplementedError

    def official_departures(self) -> list[str]:
        """The settings in which this model is not the official variant (`official_settings`),
        each as "key: value here, the authors' value"; empty for the official variant."""
        def plain(value):
            return tuple(map(plain, value)) if isinstance(value, list | tuple) else value

        return [f"{key}: {self.hparams.get(key)!r} here, {value!r} in the authors' network"
                for key, value in self.official_settings.items()
                if plain(self.hparams.get(key)) != plain(value)]

    def result_notes(self) -> list[str]:
        """What every results row and leaderboard entry of this model must say of how its
        numbers were made (STG-Net: "oracle proposals"); none by default."""
        return []

    # --- evaluation ------------------------------------------------------------------------------

    @property
    def protocol(self) -> Protocol:
        """`protocol` if given, else the dataset's: its default for semi-supervised methods, its
        first single-object reading (the union of the objects: davis2016 on DAVIS layouts) for
        zero-shot ones."""
        dataset = self.trainer.datamodule.dataset
        if self.protocol_name is not None or self.semi_supervised:
            return dataset_protocol(dataset, self.protocol_name)
        applicable = [get_protocol(name) for name in DATASET_PROTOCOLS.get(dataset, ())]
        single = [protocol for protocol in applicable if protocol.reading == "single"]
        if not single:
            raise InputError(f"no zero-shot protocol for {dataset}; name one with "
                             f"model.init_args.protocol (known: "
                             f"{', '.join(p.name for p in applicable) or 'none'})")
        return single[0]

    def run_model(self, video: LoadedVideo) -> tuple[np.ndarray, float]:
        """`predict_video`'s (T, K, H, W) float32 probabilities, checked, and its seconds."""
        start = time.perf_counter()
        probabilities = self.predict_video(video)
        if probabilities.shape[0] != len(video) or tuple(probabilities.shape[2:]) != \
                tuple(video.video.size):
            raise RuntimeError(f"{type(self).__name__}.predict_video returned "
                               f"{tuple(probabilities.shape)} for {video.name!r}; expected "
                               f"({len(video)}, K, {video.video.size[0]}, {video.video.size[1]})")
        probabilities = probabilities.float().cpu().numpy()  # waits for the device to finish
        return probabilities, time.perf_counter() - start

    def ground_truth(self, video: LoadedVideo, with_t: bool) -> VideoJob:
        """The video's ground truth to score against, as `vosbench eval --dataset` reads it (the
        loaded masks, not decoded again)."""
        return VideoJob(self.protocol, video.name, Path(), with_t, video.video,
                        video.masks.cpu().numpy())

    def submit(self, video: LoadedVideo, crf: CRFRecipe | None, truth: VideoJob | None,
               write: bool, overlay: bool = False) -> None:
        """Run the model on `video`, then hand its probabilities to the output workers: the CRF
        (unless None), labels, scores against `truth` (unless None), PNGs (if `write`), the
        labels of the middle annotated frame for an overlay (if `overlay`). `collect_outputs`
        gathers what they give."""
        probabilities, model_seconds = self.run_model(video)
        keep = None
        if overlay:
            keep = video.video.annotated[len(video.video.annotated) // 2]
            self.overlay_inputs[video.name] = (video.frames[keep], video.masks[keep])
        frames = None if crf is None else video.frames.permute(0, 2, 3, 1).cpu().numpy()
        root = Path(self.trainer.default_root_dir)
        label_dir = (Path(self.prediction_dir or root / "predictions") / video.name) \
            if write else None
        probability_dir = (Path(self.probability_dir or root / "probabilities") / video.name) \
            if write and self.save_probabilities else None
        if self.outputs is None:
            self.outputs = OutputPool(self.default_output_workers() if self.output_workers is None
                                      else self.output_workers)
        self.outputs.submit(OutputJob(
            video.name, probabilities, frames, crf, self.threshold, video.video.frame_names,
            truth, label_dir, keep, VideoTiming(len(video), model_seconds, video.flow_seconds, 0.0),
            video.video.category, probability_dir))

    def default_output_workers(self) -> int:
        """The CPUs this process may run on, shared among the devices of this node."""
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
            os.cpu_count() or 1
        return max(1, cpus // max(self.trainer.num_devices, 1))

    def collect_outputs(self) -> None:
        """Wait for the submitted videos; add their scores, timings and overlays."""
        for output in ([] if self.outputs is None else self.outputs.results()):
            self.timings.append(output.timing)
            if output.scores is not None:
                self.scores.append((output.scores, output.category))
            if output.kept_labels is not None:
                frame, truth = self.overlay_inputs.pop(output.name)
                self.overlays.append(overlay_row(frame, truth, output.kept_labels))

    def validation_step(self, video: LoadedVideo, batch_index: int) -> None:
        # the overlays of the first videos (their labels come back with the epoch's outputs)
        overlay = self.global_rank == 0 and len(self.overlay_inputs) < self.num_overlays
        self.submit(video, self.crf if self.crf_in_validation else None,
                    self.ground_truth(video, False), write=False, overlay=overlay)

    def test_step(self, video: LoadedVideo, batch_index: int) -> None:
        with_t = self.protocol.temporal and self.temporal_videos().get(video.name, True)
        self.submit(video, self.crf, self.ground_truth(video, with_t), write=True)

    def predict_step(self, video: LoadedVideo, batch_index: int) -> str:
        self.submit(video, self.crf, None, write=True)
        return video.name

    def on_validation_epoch_start(self) -> None:
        self.scores, self.timings, self.overlays, self.overlay_inputs = [], [], [], {}

    on_test_epoch_start = on_predict_epoch_start = on_validation_epoch_start

    def on_predict_epoch_end(self) -> None:
        self.collect_outputs()

    def teardown(self, stage: str) -> None:
        if self.outputs is not None:
            self.outputs.close()
            self.outputs = None

    def on_validation_epoch_end(self) -> None:
        self.collect_outputs()
        results = self.gather_results()
        if results is None:
            return
        protocol = self.protocol
        metrics = {f"val/{key}": value for key, value in results["metrics"].items()
                   if value is not None}
        metrics["val/score"] = results["metrics"][headline_metric(protocol)]
        self.log_dict(metrics)
        if self.overlays:
            self.log_overlays()

    def on_test_epoch_end(self) -> None:
        """Gather the scores; rank 0 writes the metrics engine's files to <run>/scores."""
        self.collect_outputs()
        self.test_results = self.gather_results()
        if self.test_results is None:
            return
        self.log_dict({f"test/{key}": value for key, value in
                       self.test_results["metrics"].items() if value is not None})
        if self.global_rank == 0:
            write_scores(Path(self.trainer.default_root_dir) / "scores", self.test_results)

    def gather_results(self) -> dict | None:
        """Scores, timings and memory of every rank, combined identically on each rank: global
        metrics, per-sequence results, frame rates. None if no video was scored."""
        local = {"scores": self.scores, "timings": self.timings, "memory": peak_memory_mb()}
        parts = [local]
        if dist.is_available() and dist.is_initialized():
            parts = [None] * dist.get_world_size()
            dist.all_gather_object(parts, local)
        scored = sorted((pair for part in parts for pair in part["scores"]),
                        key=lambda pair: pair[0].name)
        if not scored:
            return None
        names = [seq.name for seq, _ in scored]
        if len(set(names)) != len(names):
            raise RuntimeError("a video was scored on more than one rank")
        protocol = self.protocol
        sequences = [seq for seq, _ in scored]
        if protocol.aggregate == "seen-unseen":  # youtube-vos: the datamodule knows the training
            self.trainer.datamodule.mark_seen(sequences)  # videos, whose categories are seen
        categories = ({seq.name: category for seq, category in scored}
                      if protocol.aggregate == "categories" else None)
        timings = [timing for part in parts for timing in part["timings"]]
        return {"protocol": protocol.name,
                "metrics": global_scores(protocol, sequences, categories),
                "document": results_document(protocol, sequences, categories),
                "sequence_scores": sequences, "categories": categories,
                **frame_rates(timings), "peak_memory_mb": max(p["memory"] for p in parts),
                "parameters": self.num_parameters()}

    def temporal_videos(self) -> dict[str, bool]:
        """Which test videos get T: DAVIS layouts list them in Annotations/db_info.yml."""
        data = self.trainer.datamodule
        names = [video.name for video in data.videos["test"]]
        db_info = data.root / "Annotations" / "db_info.yml" if data.dataset in DAVIS_LAYOUT \
            else None
        return temporal_sequences(names, True, db_info)

    def log_overlays(self) -> None:
        """The validation overlays as one image to the W&B logger, if there is one."""
        for logger in self.loggers:
            if isinstance(logger, pl.loggers.WandbLogger):
                logger.log_image("val/overlays", [np.concatenate(self.overlays, axis=0)],
                                 step=self.global_step,
                                 caption=["frame | ground truth | prediction"])

    def poly_schedule(self, optimizer: torch.optim.Optimizer, power: float,
                      total: int | None = None) -> dict:
        """The optimizer with a poly learning-rate decay, (1 − step / total)^power per step over
        the run's `total` optimizer steps (default: Lightning's estimate, one per batch), as
        `configure_optimizers` returns it."""
        total = max(self.trainer.estimated_stepping_batches if total is None else total, 1)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: max(1 - step / total, 0) ** power)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule,
                                                          "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        for key in self.inference_options():
            checkpoint.get("hyper_parameters", {}).pop(key, None)

    def num_parameters(self) -> int:
        return sum(parameter.numel() for parameter in self.parameters())


def frame_rates(timings: list[VideoTiming]) -> dict[str, float | None]:
    """Frames per second of the model alone, with the flow it was given, and with the CRF (None
    where there was no flow or no CRF)."""
    frames = sum(t.frames for t in timings)
    model = sum(t.model for t in timings)
    flow, crf = sum(t.flow for t in timings), sum(t.crf for t in timings)
    return {"fps": frames / model if model > 0 else None,
            "fps_with_flow": frames / (model + flow) if flow > 0 else None,
            "fps_with_crf": frames / (model + crf) if crf > 0 else None}


def peak_memory_mb() -> float:
    """Peak memory of this process in MiB: CUDA memory allocated by torch when on a GPU, else the
    resident set size."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
