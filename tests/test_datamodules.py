"""The LightningDataModules: splits per family, loaders, the synthetic cache, and DDP sharding."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from davis_fixtures import write_davis2017
from jsonargparse import ArgumentParser
from other_fixtures import write_saliency
from youtube_vos_fixtures import write_youtube_vos

from vosbench.datamodules import families
from vosbench.datamodules.base import VOSDataModule
from vosbench.datamodules.clip_transform import ClipTransform
from vosbench.datamodules.clips import Clip, LoadedVideo
from vosbench.datamodules.families import (
    DAVIS2017DataModule,
    SyntheticDataModule,
    YouTubeObjectsDataModule,
    YouTubeVOSDataModule,
)
from vosbench.datamodules.sampling import SegmentSampler
from vosbench.datamodules.synthesis import write_synthetic_dataset
from vosbench.errors import InputError
from vosbench.flow.provider import FlowProvider

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "data"
VAL = ["blackswan", "bmx-trees", "breakdance", "camel", "car-roundabout"]


@pytest.fixture
def davis_root(tmp_path):
    root = tmp_path / "DAVIS"
    sequences = {"bear": ("train", 6, 20, 1), "boat": ("train", 5, 20, 2),
                 **{name: ("val", 3 + i, 20, 1 + i % 3) for i, name in enumerate(VAL)}}
    write_davis2017(root, sequences)
    return root


def test_fit_gives_clip_batches_and_whole_validation_videos(davis_root):
    data = DAVIS2017DataModule(davis_root, sampler=SegmentSampler(3),
                               transform=ClipTransform((10, 16)), batch_size=2, num_workers=0,
                               clips_per_epoch=5)
    data.setup("fit")
    batches = list(data.train_dataloader())
    assert [len(batch.video) for batch in batches] == [2, 2, 1]
    assert all(isinstance(b, Clip) and b.frames.shape[1:] == (3, 3, 10, 16) for b in batches)
    videos = list(data.val_dataloader())
    assert all(isinstance(video, LoadedVideo) for video in videos)
    assert [video.name for video in videos] == VAL
    assert [tuple(video.frames.shape) for video in videos][:2] == [(3, 3, 12, 20), (4, 3, 12, 20)]


def test_loaded_video_moves_to_a_device_through_lightning(davis_root):
    data = DAVIS2017DataModule(davis_root, num_workers=0)
    data.setup("test")
    video = next(iter(data.test_dataloader()))
    moved = pl.LightningModule().transfer_batch_to_device(video, torch.device("cpu"), 0)
    assert isinstance(moved, LoadedVideo) and moved.video is video.video
    assert torch.equal(moved.frames, video.frames)


def test_clips_depend_on_seed_and_epoch_not_on_workers(davis_root):
    def epochs(workers, seed=3):
        pl.seed_everything(seed, workers=True)
        data = DAVIS2017DataModule(davis_root, sampler=SegmentSampler(2),
                                   transform=ClipTransform((8, 8), flip_probability=0.5),
                                   batch_size=1, num_workers=workers, clips_per_epoch=6)
        data.setup("fit")
        loader = data.train_dataloader()
        result = []
        for epoch in range(2):
            loader.sampler.set_epoch(epoch)  # as Lightning does before every epoch
            result.append([(b.video[0], b.indices.tolist(), float(b.frames.sum()))
                           for b in loader])
        return result

    first = epochs(workers=0)
    assert epochs(workers=2) == first
    assert first[0] != first[1]  # a new epoch draws new clips
    assert epochs(workers=0, seed=4) != first


def test_flow_reaches_clips_and_videos(davis_root, tmp_path):
    flow = FlowProvider("farneback", cache_dir=tmp_path / "flow")
    data = DAVIS2017DataModule(davis_root, transform=ClipTransform((12, 20)), flow=flow,
                               num_workers=0)
    data.setup("fit")
    clip = next(iter(data.train_dataloader()))
    assert clip.flow.shape == (2, 1, 2, 12, 20) and clip.flow.dtype == torch.float32
    video = next(iter(data.val_dataloader()))
    assert video.flow.shape == (3, 2, 12, 20)
    last = torch.from_numpy(-flow.backward(video.video, 2)).permute(2, 0, 1)
    assert torch.equal(video.flow[2], last)


def test_families_without_a_split_say_which(tmp_path):
    write_youtube_vos(tmp_path / "ytvos")
    data = YouTubeVOSDataModule(tmp_path / "ytvos", num_workers=0)
    data.setup("fit")
    assert data.val_dataloader() == [] and len(data.videos["train"]) > 0
    data.setup("predict")  # valid, predicted for the evaluation server
    assert {video.split for video in data.videos["test"]} == {"valid"}
    with pytest.raises(ValueError, match="youtube-objects has no train split"):
        YouTubeObjectsDataModule(tmp_path).setup("fit")


def test_missing_dataset_folder_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="nowhere: dataset folder not found"):
        DAVIS2017DataModule(tmp_path / "nowhere").setup("test")


def test_synthetic_datamodule_writes_its_cache_once(tmp_path, monkeypatch):
    calls = []

    def small_set(root, seed, progress, variant):
        calls.append(root)
        return write_synthetic_dataset(root, seed, num_train=2, num_val=1, frame_range=(4, 5),
                                       workers=1, variant=variant)

    monkeypatch.setenv("VOSBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(families, "write_synthetic_dataset", small_set)
    data = SyntheticDataModule(seed=5, num_workers=0, transform=ClipTransform((24, 40)))
    assert data.root == tmp_path / "cache" / f"synthetic-v{families.FORMAT_VERSION}-seed5"
    data.prepare_data()
    SyntheticDataModule(seed=5).prepare_data()
    assert calls == [data.root]
    data.setup("fit")
    assert len(data.videos["train"]) == 2 and len(data.videos["val"]) == 1
    assert next(iter(data.train_dataloader())).frames.shape == (2, 1, 3, 24, 40)


def test_synthetic_datamodule_keys_its_cache_and_label_by_variant(tmp_path, monkeypatch):
    written = []
    monkeypatch.setenv("VOSBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(families, "write_synthetic_dataset",
                        lambda root, seed, progress, variant: written.append((root, variant)))
    default = SyntheticDataModule(seed=3)
    camouflage = SyntheticDataModule(seed=3, variant="camouflage")
    assert default.root == tmp_path / f"synthetic-v{families.FORMAT_VERSION}-seed3"
    assert camouflage.root == tmp_path / f"synthetic-camouflage-v{families.FORMAT_VERSION}-seed3"
    camouflage.prepare_data()
    assert written == [(camouflage.root, "camouflage")]
    # results rows and leaderboard tables keep the variants apart
    assert (default.label, camouflage.label) == ("synthetic", "synthetic-camouflage")
    assert default.dataset == camouflage.dataset == "synthetic"  # the reader and protocols
    with pytest.raises(ValueError, match="'mimicry'; known: default, camouflage"):
        SyntheticDataModule(variant="mimicry")
    with pytest.raises(InputError, match="youtube-vos protocol scores YouTube-VOS's held-out "
                                         "train videos .*, not synthetic-camouflage"):
        camouflage.mark_seen([])  # seen and unseen need training videos with categories


def test_synthetic_datamodule_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "mine" / "notes.txt").parent.mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        SyntheticDataModule(tmp_path / "mine").prepare_data()


def test_ddp_ranks_together_see_every_video_once(davis_root, tmp_path):
    """Real DDP: two CPU processes with gloo, through Lightning's launcher."""
    script = Path(__file__).parent / "scripts" / "ddp_video_split.py"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, str(script), str(davis_root), str(tmp_path)],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world_size"] for r in records] == [2, 2]
    for stage in ("val", "test"):
        seen = records[0][stage] + records[1][stage]
        assert sorted(seen) == VAL, stage  # every video once: no padding, no duplicates
        assert records[0][stage] and records[1][stage]
    assert all(len(r["train"]) == 1 for r in records)


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("*.yaml")), ids=lambda path: path.stem)
def test_shipped_data_configs_build_their_datamodule(config):
    parser = ArgumentParser()
    parser.add_subclass_arguments(VOSDataModule, "data")
    data = parser.instantiate(parser.parse_path(config)).data
    assert isinstance(data, VOSDataModule) and data.batch_size == 2
    dataset, _, variant = config.stem.partition("_")  # e.g. synthetic_camouflage
    assert data.dataset == dataset
    if isinstance(data, SyntheticDataModule):
        assert data.variant == (variant or "default")


def test_samplers_transforms_and_flow_are_configurable(tmp_path):
    parser = ArgumentParser()
    parser.add_subclass_arguments(VOSDataModule, "data")
    config = tmp_path / "data.yaml"
    config.write_text(f"""
data:
  class_path: vosbench.datamodules.families.SyntheticDataModule
  init_args:
    root: {tmp_path / "synthetic"}
    sampler: {{class_path: vosbench.datamodules.sampling.ConsecutiveSampler,
              init_args: {{length: 4, reverse_probability: 0.5}}}}
    transform: {{class_path: vosbench.datamodules.clip_transform.ClipTransform,
                init_args: {{size: [64, 96], max_rotation: 10, scale_range: [0.75, 1.25]}}}}
    flow: {{class_path: vosbench.flow.FlowProvider, init_args: {{cache_dir: {tmp_path}}}}}
""")
    data = parser.instantiate(parser.parse_path(config)).data
    assert isinstance(data, SyntheticDataModule) and data.root == tmp_path / "synthetic"
    assert data.sampler.length == 4 and data.transform.size == (64, 96)
    assert data.transform.scale_range == (0.75, 1.25) and data.flow.key == "farneback"


def test_static_images_come_with_every_video_batch(davis_root, tmp_path):
    write_saliency(tmp_path / "saliency", {"msra10k": 5, "duts-tr": 4})
    data = DAVIS2017DataModule(davis_root, sampler=SegmentSampler(2),
                               transform=ClipTransform((8, 8)), batch_size=1, num_workers=0,
                               static_root=tmp_path / "saliency", static_batch_size=3)
    data.setup("fit")
    assert len(data.videos["static"]) == 9
    batches = [batch for batch, _, _ in data.train_dataloader()]  # Lightning's CombinedLoader
    assert len(batches) == 2  # the two training videos set the epoch's length
    for batch in batches:
        assert set(batch) == {"video", "static"}
        assert batch["video"].frames.shape == (1, 2, 3, 8, 8)
        assert batch["static"].frames.shape == (3, 1, 3, 8, 8)
        assert set(batch["static"].masks.unique().tolist()) <= {0, 1, 255}
    data.clips_per_epoch = 4
    for rank in (0, 1):  # under DDP each rank still gets a static batch per video batch
        data.distribution = lambda rank=rank: (2, rank)
        loaders = data.train_dataloader().iterables
        assert len(loaders["video"]) == len(loaders["static"]) == 2


def clip_keys(batches) -> list:
    return [(batch.video, batch.indices.tolist(), float(batch.frames.sum())) for batch in batches]


def test_a_resumed_training_loader_goes_on_with_the_clips_of_the_uninterrupted_one(davis_root):
    def loader(workers):
        data = DAVIS2017DataModule(davis_root, sampler=SegmentSampler(2),
                                   transform=ClipTransform((8, 8), flip_probability=0.5),
                                   batch_size=2, num_workers=workers, clips_per_epoch=7)
        data.setup("fit")
        return data.train_dataloader()

    whole = loader(0)
    epochs = {}
    for epoch in (1, 2):
        whole.sampler.set_epoch(epoch)
        epochs[epoch] = clip_keys(whole)  # 4 batches: 2, 2, 2 and 1 clips
    part = loader(0)
    part.sampler.set_epoch(1)
    batches = iter(part)
    next(batches), next(batches)
    state = part.state_dict()
    assert state == {"epoch": 1, "batches": 2}
    resumed = loader(2)  # worker processes do not change the clips
    resumed.load_state_dict(state)
    assert clip_keys(resumed) == epochs[1][2:]
    assert clip_keys(resumed) == epochs[1]  # only the resumed epoch starts mid-way
    finished = loader(0)
    finished.load_state_dict({"epoch": 1, "batches": 4})  # saved at the end of epoch 1
    assert clip_keys(finished) == epochs[2]


def test_static_images_resume_with_the_video_clips(davis_root, tmp_path):
    write_saliency(tmp_path / "saliency", {"msra10k": 5, "duts-tr": 4})
    data = DAVIS2017DataModule(davis_root, sampler=SegmentSampler(2),
                               transform=ClipTransform((8, 8)), batch_size=1, num_workers=0,
                               clips_per_epoch=4, static_root=tmp_path / "saliency",
                               static_batch_size=2)
    data.setup("fit")

    def static_keys(loader):
        return [(batch["video"].video, batch["static"].video) for batch, _, _ in loader]

    whole = static_keys(data.train_dataloader())
    part = data.train_dataloader()
    batches = iter(part)
    next(batches)
    states = [loader.state_dict() for loader in part.flattened]  # as Lightning saves them
    assert states == [{"epoch": 0, "batches": 1}] * 2
    resumed = data.train_dataloader()
    for loader, state in zip(resumed.flattened, states):
        loader.load_state_dict(state)
    assert static_keys(resumed) == whole[1:]


def test_loaders_leave_the_models_random_generator_alone(davis_root):
    # a resumed run makes its iterators at other moments than the uninterrupted one: drawing
    # the workers' seeds from torch's global generator would shift the model's random stream
    data = DAVIS2017DataModule(davis_root, transform=ClipTransform((8, 8)), num_workers=2)
    data.setup("fit")
    torch.manual_seed(0)
    before = torch.get_rng_state()
    next(iter(data.train_dataloader()))
    next(iter(data.val_dataloader()))
    assert torch.equal(torch.get_rng_state(), before)
