"""`vosbench weights import METHOD FILE --out CKPT`: an authors' released checkpoint as a Lightning
checkpoint of vosbench's official variant of the method.

    vosbench weights import agnn attention_agnn_51.pth --out agnn-official.ckpt
    vosbench bench --method agnn --preset official --ckpt_path agnn-official.ckpt --data davis2016

The official variant is the model of the method's `official` preset
(configs/methods/<method>/official.yaml, or `--preset`). The file is read as the authors' test
script reads it (the method's `official_checkpoint`), every key renamed by the method's key table
(`vosbench.methods.official`); a key of the file the variant does not use, a parameter of the
variant the file does not fill or a tensor of another shape is an error (exit status 2) that names
the key, and then nothing is written. The checkpoint holds the variant's state dict and its
training settings, as `vosbench test|predict|bench --ckpt_path` expect.
"""

import argparse
import sys
from pathlib import Path

from vosbench.errors import InputError


def build_model(method: str, preset: str, config_root: Path | None = None):
    """The model of configs/methods/<method>/<preset>.yaml (its `model` section: class_path and
    init_args), built as LightningCLI builds it: its hyperparameters are the config's values, as
    LightningCLI records them, so that `bench --ckpt_path` finds the checkpoint's equal to its
    own."""
    import yaml
    from jsonargparse import ArgumentParser
    from pytorch_lightning.core.mixins.hparams_mixin import _given_hyperparameters_context

    from vosbench.bench import config_root as default_root
    from vosbench.lightning_cli import import_plugins
    from vosbench.methods.base import VOSMethod

    import_plugins()
    folder = (config_root or default_root()) / "methods" / method
    path = folder / f"{preset}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
        raise InputError(f"{path}: no such preset of {method!r}" +
                         (f"; known: {', '.join(known)}" if known else " (unknown method)"))
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if "model" not in config:
        raise InputError(f"{path}: no 'model' section")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(VOSMethod, "model", required=True)
    try:
        namespace = parser.parse_object({"model": config["model"]})
    except Exception as error:  # jsonargparse reports bad configs as several types
        raise InputError(f"{path}: {error}") from None
    dumped = yaml.safe_load(parser.dump(namespace, skip_none=False))["model"]
    hyperparameters = {"_class_path": dumped["class_path"], **dumped.get("init_args", {})}
    with _given_hyperparameters_context(hparams=hyperparameters,
                                        instantiator="pytorch_lightning.cli.instantiate_module"):
        return parser.instantiate_classes(namespace).model


def lightning_checkpoint(model, state: dict) -> dict:
    """A checkpoint that Lightning's test, validate and predict loops restore: the state dict,
    the hyperparameters without the inference options (as `VOSMethod.on_save_checkpoint` leaves
    them) and the version fields its loader reads."""
    import pytorch_lightning as pl

    hyperparameters = {key: value for key, value in dict(model.hparams).items()
                       if key not in type(model).inference_options()}
    return {"state_dict": state, "hyper_parameters": hyperparameters,
            "pytorch-lightning_version": pl.__version__, "epoch": 0, "global_step": 0}


def import_weights(method: str, file: Path, out: Path, preset: str = "official",
                   config_root: Path | None = None) -> Path:
    """Read the authors' checkpoint `file` of `method` into the official variant of its preset
    and write `out` atomically; returns `out`. InputError (nothing written) when the method has
    no official variant, the preset's model is not the official variant, or the file does not
    fit it key for key."""
    import io

    import torch

    from vosbench.io import write_atomic
    from vosbench.methods.official import read_official_state

    model = build_model(method, preset, config_root)
    checkpoint = type(model).official_checkpoint
    if checkpoint is None:
        raise InputError(f"{method}: no official variant (no authors' checkpoint format)")
    departures = model.official_departures()
    if departures:
        raise InputError(f"the {preset!r} preset of {method} is not the official variant: "
                         f"{'; '.join(departures)}")
    state = read_official_state(file, checkpoint, model.state_dict())
    model.load_state_dict(state, strict=True)
    buffer = io.BytesIO()
    torch.save(lightning_checkpoint(model, model.state_dict()), buffer)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, buffer.getvalue())
    return out


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser(
        "import", help="an authors' checkpoint → a Lightning checkpoint of the official variant",
        description="Read an authors' released checkpoint (the format their test script loads) "
                    "into vosbench's official variant of the method and write a Lightning "
                    "checkpoint for `vosbench test|predict|bench --ckpt_path`. Strict: every "
                    "key of the file must map onto the variant and fill it.")
    command.add_argument("method", help="agnn, amcnet or agssvos")
    command.add_argument("file", type=Path, help="the authors' checkpoint file")
    command.add_argument("--out", type=Path, required=True, metavar="CKPT",
                         help="the Lightning checkpoint to write")
    command.add_argument("--preset", default="official",
                         help="the preset whose model is the official variant (default official)")
    command.add_argument("--config-root", type=Path, metavar="DIR",
                         help="a folder of configs in the layout of configs/")
    return parser


def main(argv: list[str] | None = None, prog: str = "vosbench weights") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        out = import_weights(args.method, args.file, args.out, args.preset, args.config_root)
    except InputError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    print(f"{args.file} → {out} ({args.method}, preset {args.preset})")
    return 0
