"""Reading authors' checkpoints (methods/official.py) and `vosbench weights import`
(src/vosbench/weights.py), on the fcn baseline given a made-up authors' format: the key table's
renaming (longest prefix), the strict errors naming the key, nothing written on an error, and a
checkpoint that `vosbench bench --ckpt_path` scores with the file's weights."""

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vosbench.cli import main as vosbench_main
from vosbench.errors import InputError
from vosbench.methods.fcn import FCN
from vosbench.methods.official import (
    CheckpointEntry,
    CheckpointError,
    CheckpointFormat,
    read_official_state,
)
from vosbench.weights import build_model, import_weights

# a made-up authors' layout of fcn: {"model": {"module.encoder.…", "module.head.…"}}
FCN_FORMAT = CheckpointFormat((CheckpointEntry("model", "module.", (
    ("encoder.", "embedding.encoder.body."), ("encoder.aspp.", "embedding.aspp."),
    ("head.", "readout."))),))


def their_name(key: str) -> str:
    """The made-up authors' name of an fcn key (the inverse of FCN_FORMAT's table, written out)."""
    for ours, theirs in (("embedding.encoder.body.", "encoder."), ("embedding.aspp.",
                                                                    "encoder.aspp."),
                         ("readout.", "head.")):
        if key.startswith(ours):
            return "module." + theirs + key[len(ours):]
    raise AssertionError(key)


@pytest.fixture
def fcn_official(monkeypatch):
    """fcn given the made-up format; the tiny preset's model is its "official variant"."""
    monkeypatch.setattr(FCN, "official_checkpoint", FCN_FORMAT)
    monkeypatch.setattr(FCN, "official_settings", {"channels": 64, "backbone": "resnet18"})
    return build_model("fcn", "tiny")


def their_file(path: Path, model, change=None) -> dict:
    """Save `model`'s state plus seeded noise (0.01 N(0, 1): every tensor its own values, the
    network still sane) in the made-up authors' format; `change` edits their state dict first.
    Returns their state dict."""
    generator = torch.Generator().manual_seed(0)
    state = OrderedDict((their_name(key), value + 0.01 * torch.randn(value.shape,
                                                                      generator=generator)
                         if value.is_floating_point() else value.clone())
                        for key, value in model.state_dict().items())
    if change is not None:
        change(state)
    torch.save({"model": state, "epoch": 51}, path)
    return state


def test_the_longest_prefix_of_the_table_renames_a_key():
    entry = CheckpointEntry(None, "", (("encoder.", "a."), ("encoder.aspp.", "b."),
                                       ("encoder.aspp.pooling.1.weight", "c.weight")))
    assert entry.rename("encoder.conv1.weight") == "a.conv1.weight"
    assert entry.rename("encoder.aspp.fuse.0.weight") == "b.fuse.0.weight"
    assert entry.rename("encoder.aspp.pooling.1.weight") == "c.weight"
    assert entry.rename("decoder.weight") is None
    assert entry.original("b.fuse.0.weight") == "encoder.aspp.fuse.0.weight"
    assert entry.original("a.aspp.fuse.0.weight") is None  # renamed elsewhere by the longer row


def test_weights_import_writes_every_tensor_of_the_file_under_its_table_name(fcn_official,
                                                                             tmp_path, capsys):
    theirs = their_file(tmp_path / "theirs.pth", fcn_official)
    code = vosbench_main(["weights", "import", "fcn", str(tmp_path / "theirs.pth"), "--out",
                          str(tmp_path / "fcn.ckpt"), "--preset", "tiny"])
    assert code == 0 and "fcn.ckpt" in capsys.readouterr().out
    checkpoint = torch.load(tmp_path / "fcn.ckpt", weights_only=True)
    state = checkpoint["state_dict"]
    assert len(state) == len(theirs)
    for key, value in state.items():
        assert torch.equal(value, theirs[their_name(key)]), key
    # the training settings of the preset, without its inference options
    assert checkpoint["hyper_parameters"]["channels"] == 64
    assert "frames_per_batch" not in checkpoint["hyper_parameters"]
    assert "crf" not in checkpoint["hyper_parameters"]


@pytest.mark.parametrize("change, message", [
    (lambda state: state.pop("module.head.bias"),
     "the official variant's 'readout.bias' (the file's 'module.head.bias') is not filled"),
    (lambda state: state.update({"module.decoder.weight": torch.zeros(1)}),
     "key 'module.decoder.weight' is not used by the official variant"),
    (lambda state: state.update({"module.head.weight": torch.zeros(1, 64, 3, 3)}),
     "'readout.weight' has shape (1, 64, 3, 3) in the file, (1, 64, 1, 1) in the official"),
    (lambda state: state.update({"head.weight": state.pop("module.head.weight")}),
     "key 'head.weight' lacks the prefix 'module.'"),
    (lambda state: state.update({"module.encoder.aspp.extra": torch.zeros(1)}),
     "the key table maps a key onto 'embedding.aspp.extra', which the official variant does "
     "not have"),
])
def test_a_key_that_does_not_fit_is_an_error_naming_it_and_nothing_is_written(
        fcn_official, tmp_path, capsys, change, message):
    their_file(tmp_path / "theirs.pth", fcn_official, change)
    code = vosbench_main(["weights", "import", "fcn", str(tmp_path / "theirs.pth"), "--out",
                          str(tmp_path / "fcn.ckpt"), "--preset", "tiny"])
    error = capsys.readouterr().err
    assert code == 2 and message in error and "theirs.pth" in error
    assert list(tmp_path.iterdir()) == [tmp_path / "theirs.pth"]


def test_files_of_other_shapes_are_errors_naming_the_file(fcn_official, tmp_path):
    expected = fcn_official.state_dict()
    torch.save({"optimizer": {}}, tmp_path / "no_model.pth")
    with pytest.raises(CheckpointError, match=r"no_model.pth: expected an entry 'model' .*"
                                              r"found \['optimizer'\]"):
        read_official_state(tmp_path / "no_model.pth", FCN_FORMAT, expected)
    torch.save({"model": {"module.head.bias": [1, 2]}}, tmp_path / "lists.pth")
    with pytest.raises(CheckpointError, match=r"lists.pth\['model'\]: expected a state dict"):
        read_official_state(tmp_path / "lists.pth", FCN_FORMAT, expected)
    with pytest.raises(CheckpointError, match="missing.pth: no such checkpoint file"):
        read_official_state(tmp_path / "missing.pth", FCN_FORMAT, expected)
    torch.save({"model": {"module.head.bias": Path("pickled")}}, tmp_path / "unsafe.pth")
    with pytest.raises(CheckpointError, match=r"unsafe.pth: cannot be read .*weights_only=True"):
        read_official_state(tmp_path / "unsafe.pth", FCN_FORMAT, expected)


def test_optional_buffers_take_the_variants_values_and_others_are_required(fcn_official,
                                                                           tmp_path):
    def drop_counts(state):
        for key in [key for key in state if key.endswith("num_batches_tracked")]:
            del state[key]

    their_file(tmp_path / "torch04.pth", fcn_official, drop_counts)
    expected = fcn_official.state_dict()
    with pytest.raises(CheckpointError, match="num_batches_tracked.* is not filled"):
        read_official_state(tmp_path / "torch04.pth", FCN_FORMAT, expected)
    lenient = CheckpointFormat(FCN_FORMAT.entries, optional_buffers=("num_batches_tracked",))
    state = read_official_state(tmp_path / "torch04.pth", lenient, expected)
    assert state.keys() == expected.keys()
    counts = [key for key in state if key.endswith("num_batches_tracked")]
    assert counts and all(torch.equal(state[key], expected[key]) for key in counts)


def test_two_entries_of_a_file_fill_one_state_dict(fcn_official, tmp_path):
    their_file(tmp_path / "theirs.pth", fcn_official)
    saved = torch.load(tmp_path / "theirs.pth", weights_only=True)["model"]
    seg = {key: value for key, value in saved.items() if not key.startswith("module.head.")}
    head = {key.removeprefix("module."): value for key, value in saved.items()
            if key.startswith("module.head.")}
    torch.save({"seg": seg, "head": head}, tmp_path / "two.pth")
    two = CheckpointFormat((CheckpointEntry("seg", "module.", FCN_FORMAT.entries[0].table[:2]),
                            CheckpointEntry("head", "", (("head.", "readout."),))))
    state = read_official_state(tmp_path / "two.pth", two, fcn_official.state_dict())
    assert torch.equal(state["readout.weight"], saved["module.head.weight"])
    assert torch.equal(state["embedding.aspp.fuse.0.weight"],
                       saved["module.encoder.aspp.fuse.0.weight"])


def test_a_preset_that_departs_from_the_official_settings_is_refused(fcn_official, tmp_path,
                                                                    monkeypatch):
    their_file(tmp_path / "theirs.pth", fcn_official)
    monkeypatch.setattr(FCN, "official_settings", {"channels": 256, "input_size": [128, 224]})
    with pytest.raises(InputError, match=r"the 'tiny' preset of fcn is not the official variant:"
                                         r" channels: 64 here, 256 in the authors' network$"):
        import_weights("fcn", tmp_path / "theirs.pth", tmp_path / "fcn.ckpt", "tiny")
    assert not (tmp_path / "fcn.ckpt").exists()
    # a list in a YAML and a tuple in a signature are the same setting
    assert FCN(channels=256, input_size=(128, 224), backbone="resnet18").official_departures() \
        == []
    monkeypatch.setattr(FCN, "official_checkpoint", None)
    with pytest.raises(InputError, match="fcn: no official variant"):
        import_weights("fcn", tmp_path / "theirs.pth", tmp_path / "fcn.ckpt", "tiny")
    with pytest.raises(InputError, match=r"official.yaml: no such preset of 'fcn'; known: paper, "
                                         r"tiny"):
        import_weights("fcn", tmp_path / "theirs.pth", tmp_path / "fcn.ckpt")


def test_bench_scores_the_imported_weights(fcn_official, synthetic_root, tmp_path, monkeypatch):
    """A readout that says background everywhere scores J 0; one that says foreground
    everywhere scores the objects' share of each frame: the checkpoint's weights decide. The
    probability maps written beside the masks say the same."""
    monkeypatch.chdir(tmp_path)
    j_means = {}
    for bias in (-20.0, 20.0):
        def readout(state, bias=bias):
            state["module.head.weight"].zero_()
            state["module.head.bias"].fill_(bias)

        their_file(tmp_path / "theirs.pth", fcn_official, readout)
        assert import_weights("fcn", tmp_path / "theirs.pth", tmp_path / "fcn.ckpt",
                              "tiny").is_file()
        assert vosbench_main([
            "bench", "--method", "fcn", "--ckpt_path", str(tmp_path / "fcn.ckpt"),
            "--results", f"results{bias:+.0f}", "--data.init_args.root", str(synthetic_root),
            "--model.init_args.crf", "null", "--model.init_args.output_workers", "0",
            "--model.init_args.save_probabilities", "true", "--data.init_args.num_workers", "0",
            "--wandb_mode", "disabled"]) == 0
        (row,) = Path(f"results{bias:+.0f}").glob("*.json")
        row = json.loads(row.read_text())
        assert row["checkpoint"] == str(tmp_path / "fcn.ckpt")
        j_means[bias] = row["metrics"]["J-Mean"]
        maps = sorted(Path(row["probability_dir"]).glob("*/1/*.png"))
        frames = sorted(Path(row["run_dir"], "predictions").glob("*/*.png"))
        assert [p.parent.parent.name + p.name for p in maps] == \
            [p.parent.name + p.name for p in frames]
        assert {int(np.asarray(Image.open(path)).max()) for path in maps} == \
            {0 if bias < 0 else 65535}
    assert j_means[-20.0] == 0 and 0.01 < j_means[20.0] < 0.5
