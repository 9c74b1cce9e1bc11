"""Reading authors' checkpoints (methods/official.py) and `vosbench weights import`
(src/vosbench/weights.py), on the fcn baseline given a made-up authors' format: the key table's
renaming (longest prefix), the strict errors naming the key, nothing written on an error, and a
checkpoint that `vosbench bench --ckpt_path` scores with the file's weights."""

import json
import zipfile
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
from vosbench.weights import build_model, import_weights, lightning_checkpoint
from vosbench.weights import main as weights_main

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


# --- the reader on toy state dicts: each message names the file, the entry and the key ---------

TOY = {"x.w": torch.zeros(2), "y.w": torch.zeros(3)}
BARE = CheckpointFormat((CheckpointEntry(None, "", (("a.", "x."), ("c.", "y."))),))
KEYED = CheckpointFormat((CheckpointEntry("model", "", BARE.entries[0].table),))


def read_error(path: Path, document, checkpoint: CheckpointFormat) -> str:
    """The message of the CheckpointError that reading `document`, saved at `path`, raises."""
    torch.save(document, path)
    with pytest.raises(CheckpointError) as error:
        read_official_state(path, checkpoint, TOY)
    return str(error.value)


def test_each_error_names_the_file_and_its_entry_exactly(tmp_path):
    path = tmp_path / "theirs.pth"
    assert read_error(path, [1, 2], BARE) == f"{path}: expected a state dict (names → tensors)"
    assert read_error(path, {"a.w": torch.ones(2), "b.w": torch.ones(3)}, BARE).startswith(
        f"{path}: key 'b.w' is not used by the official variant")
    assert read_error(path, {"model": {"b.w": torch.ones(3)}}, KEYED).startswith(
        f"{path}['model']: key 'b.w' is not used by the official variant")
    assert read_error(path, torch.ones(2), KEYED).endswith(", found Tensor")
    assert read_error(path, {"a.w": torch.ones(2)}, BARE) == (
        f"{path}: the official variant's 'y.w' (the file's 'c.w') is not filled by any key of "
        f"the file")
    unknown = {**TOY, "z.w": torch.zeros(1)}  # a name that no row of the table leads to
    torch.save({"a.w": torch.ones(2), "c.w": torch.ones(3)}, path)
    with pytest.raises(CheckpointError) as error:
        read_official_state(path, BARE, unknown)
    assert str(error.value) == (f"{path}: the official variant's 'z.w' is not filled by any key "
                                f"of the file")


def test_two_keys_for_one_tensor_are_an_error_naming_both_places(tmp_path):
    path = tmp_path / "theirs.pth"
    twice = CheckpointFormat((CheckpointEntry(None, "", (("a.", "x."), ("b.", "x."))),))
    assert read_error(path, {"a.w": torch.ones(2), "b.w": torch.ones(2)}, twice) == (
        f"{path}: key 'b.w' maps onto 'x.w', which another key of the file fills already")
    two = CheckpointFormat((CheckpointEntry("seg", "", (("a.", "x."),)),
                            CheckpointEntry("flow", "", (("a.", "x."), ("c.", "y.")))))
    document = {"seg": {"a.w": torch.ones(2)}, "flow": {"a.w": torch.ones(2)}}
    assert read_error(path, document, two) == (
        f"{path}['flow']: 'x.w' is filled by two entries of the file")


def test_the_file_named_for_a_missing_tensor_comes_from_the_most_specific_row():
    """Both rows lead back to 'x.y.w' (a.y.w and b.w would each be renamed to it): the
    longer vosbench prefix, the row written for it, names the file's key."""
    entry = CheckpointEntry(None, "module.", (("a.", "x."), ("b.", "x.y.")))
    assert entry.rename("a.y.w") == entry.rename("b.w") == "x.y.w"
    assert entry.original("x.y.w") == "module.b.w"
    assert entry.original("x.z") == "module.a.z"


def test_tensors_take_the_variants_dtypes(tmp_path):
    torch.save({"a.w": torch.ones(2, dtype=torch.float64), "c.w": torch.ones(3)},
               tmp_path / "theirs.pth")
    state = read_official_state(tmp_path / "theirs.pth", BARE, TOY)
    assert state["x.w"].dtype == torch.float32 and torch.equal(state["x.w"], torch.ones(2))


def saved_on_gpu(path: Path, document) -> None:
    """`torch.save(document, path)` as a GPU machine writes it, where the authors saved their
    checkpoints: every storage tagged for "cuda:0", which torch.load restores there unless told
    otherwise (written on the CPU: the tag rewritten in the archive's pickle)."""
    torch.save(document, path.with_suffix(".cpu"))
    with zipfile.ZipFile(path.with_suffix(".cpu")) as cpu, zipfile.ZipFile(path, "w") as gpu:
        for info in cpu.infolist():
            data = cpu.read(info.filename)
            if info.filename.endswith("/data.pkl"):
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
            gpu.writestr(info, data)


def test_a_checkpoint_saved_on_a_gpu_loads_on_the_cpu(tmp_path):
    saved_on_gpu(tmp_path / "theirs.pth", {"a.w": torch.ones(2), "c.w": torch.full((3,), 2.0)})
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):  # what torch.load alone does here
            torch.load(tmp_path / "theirs.pth", weights_only=True)
    state = read_official_state(tmp_path / "theirs.pth", BARE, TOY)
    assert state["y.w"].device.type == "cpu" and torch.equal(state["y.w"], torch.full((3,), 2.0))


def test_an_unreadable_file_is_reported_with_the_first_line_of_torchs_error(tmp_path):
    (tmp_path / "theirs.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(Exception) as raised:  # torch's own words, to be quoted
        torch.load(tmp_path / "theirs.pth", weights_only=True)
    first_line = str(raised.value).splitlines()[0]
    assert len(first_line) > 200  # cut to 200 characters in the message
    with pytest.raises(CheckpointError) as error:
        read_official_state(tmp_path / "theirs.pth", BARE, TOY)
    assert str(error.value) == (
        f"{tmp_path / 'theirs.pth'}: cannot be read as a checkpoint of tensors by "
        f"torch.load(weights_only=True) ({type(raised.value).__name__}: {first_line[:200]})")


# --- vosbench weights: presets, the checkpoint it writes, its command line ---------------------

def write_preset(root: Path, method: str, preset: str, text: str) -> Path:
    """A preset file configs/methods/<method>/<preset>.yaml under a config root of its own."""
    path = root / "methods" / method / f"{preset}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_presets_that_build_no_model_are_errors_naming_the_file(tmp_path):
    with pytest.raises(InputError, match=r"official.yaml: no such preset of 'nothing' \(unknown "
                                         r"method\)$"):
        build_model("nothing", "official", tmp_path)
    path = write_preset(tmp_path, "fcn", "empty", "# no model\n")
    with pytest.raises(InputError) as error:
        build_model("fcn", "empty", tmp_path)
    assert str(error.value) == f"{path}: no 'model' section"
    path = write_preset(tmp_path, "fcn", "null", "model: null\n")
    with pytest.raises(InputError, match=r"null.yaml: .*required: model"):
        build_model("fcn", "null", tmp_path)
    path = write_preset(tmp_path, "fcn", "typo", "model:\n  class_path: vosbench.methods.fcn.FCN\n"
                                                 "  init_args: {chanels: 64}\n")
    with pytest.raises(InputError) as error:
        build_model("fcn", "typo", tmp_path)
    assert str(error.value).startswith(f"{path}: ") and "chanels" in str(error.value)


def test_the_model_records_its_settings_as_lightning_cli_does(tmp_path):
    """Every init argument, those left at null too, and the class path with Lightning's
    instantiator, which load_from_checkpoint needs to read them back."""
    model = build_model("fcn", "tiny")
    assert model.hparams["weights"] is None and model.hparams["channels"] == 64
    assert model.hparams["_class_path"] == "vosbench.methods.fcn.FCN"
    torch.save(lightning_checkpoint(model, model.state_dict()), tmp_path / "fcn.ckpt")
    loaded = FCN.load_from_checkpoint(tmp_path / "fcn.ckpt", map_location="cpu")
    assert loaded.hparams["channels"] == 64 and torch.equal(loaded.readout.weight,
                                                            model.readout.weight)


def test_the_checkpoint_has_taken_no_training_step(fcn_official, tmp_path):
    their_file(tmp_path / "theirs.pth", fcn_official)
    out = tmp_path / "new" / "folder" / "fcn.ckpt"
    import_weights("fcn", tmp_path / "theirs.pth", out, "tiny")
    checkpoint = torch.load(out, weights_only=True)
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (0, 0)


def test_the_command_reads_the_official_preset_of_a_config_root(fcn_official, tmp_path, capsys):
    """Without --preset the official one; with --config-root that folder's."""
    tiny = (Path(__file__).parents[1] / "configs" / "methods" / "fcn" / "tiny.yaml").read_text()
    write_preset(tmp_path / "configs", "fcn", "official", tiny)
    their_file(tmp_path / "theirs.pth", fcn_official)
    assert weights_main(["import", "fcn", str(tmp_path / "theirs.pth"), "--out",
                         str(tmp_path / "fcn.ckpt"), "--config-root",
                         str(tmp_path / "configs")]) == 0
    assert capsys.readouterr().out == (f"{tmp_path / 'theirs.pth'} → {tmp_path / 'fcn.ckpt'} "
                                       f"(fcn, preset official)\n")
    assert (tmp_path / "fcn.ckpt").is_file()


def test_all_departures_from_the_official_settings_are_listed(fcn_official, tmp_path,
                                                              monkeypatch):
    their_file(tmp_path / "theirs.pth", fcn_official)
    monkeypatch.setattr(FCN, "official_settings", {"channels": 256, "output_stride": 8})
    with pytest.raises(InputError, match=r"variant: channels: 64 here, 256 in the authors' "
                                         r"network; output_stride: 16 here, 8 in the authors' "
                                         r"network$"):
        import_weights("fcn", tmp_path / "theirs.pth", tmp_path / "fcn.ckpt", "tiny")


def help_text(argv: list[str], capsys) -> str:
    """What `vosbench weights ARGV` prints and exits 0 with, its white space collapsed."""
    with pytest.raises(SystemExit) as exit_:
        weights_main(argv)
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_the_command_line_describes_itself(capsys):
    text = help_text(["--help"], capsys)
    assert text.startswith("usage: vosbench weights [-h] {import} ...")
    assert ("`vosbench weights import METHOD FILE --out CKPT`: an authors' released checkpoint "
            "as a Lightning checkpoint of vosbench's official variant of the method.") in text
    assert "The official variant is" not in text  # the first paragraph of the docstring only
    assert "import an authors' checkpoint → a Lightning checkpoint of the official variant" in text
    text = help_text(["import", "--help"], capsys)
    assert text.startswith("usage: vosbench weights import [-h] --out CKPT [--preset PRESET] "
                           "[--config-root DIR] method file")
    for described in (
            "Read an authors' released checkpoint (the format their test script loads) into "
            "vosbench's official variant of the method and write a Lightning checkpoint for "
            "`vosbench test|predict|bench --ckpt_path`. Strict: every key of the file must map "
            "onto the variant and fill it.",
            "method agnn, amcnet or agssvos", "file the authors' checkpoint file",
            "--out CKPT the Lightning checkpoint to write",
            "--preset PRESET the preset whose model is the official variant (default official)",
            "--config-root DIR a folder of configs in the layout of configs/"):
        assert described in text


def test_the_command_line_requires_a_command_and_the_output(capsys):
    for argv, missing in (([], "command"), (["import", "fcn", "theirs.pth"], "--out")):
        with pytest.raises(SystemExit) as exit_:
            weights_main(argv)
        assert exit_.value.code == 2
        assert f"error: the following arguments are required: {missing}" in \
            capsys.readouterr().err
