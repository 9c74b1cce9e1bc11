"""Checkpoints in the authors' formats filled with seeded random values: for the tests of the
official variants (the importer, `official_forward` against the reference outputs that the
authors' models computed from the same values).

`tests/reference/official/<name>_keys.txt` lists the keys of an authors' state dict as their
model file builds it, one per line: `<key> <dtype> <shape>` (shape as comma-separated sizes,
`-` for a scalar), in their model's order. `seeded_state` gives each key values that depend on
the seed and the key's name only (not on the order of the keys), of scales that keep the
activations of a deep network with BatchNorm in eval mode finite and its outputs unsaturated.
"""

import json
import re
import zlib
from pathlib import Path

import torch

KEY_TABLES = Path(__file__).parent / "reference" / "official"
DTYPES = {"float32": torch.float32, "int64": torch.int64}


def read_keys(name: str) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    """The key table `<name>_keys.txt`: key → (dtype, shape), in the file's order."""
    keys = {}
    for line in (KEY_TABLES / f"{name}_keys.txt").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, dtype, shape = line.split()
        keys[key] = (DTYPES[dtype], () if shape == "-" else tuple(map(int, shape.split(","))))
    return keys


def write_keys(path: Path, state: dict[str, torch.Tensor], header: str) -> None:
    """Write the key table of a state dict (`read_keys`'s format) with comment lines first."""
    lines = [f"# {line}" for line in header.splitlines()]
    for key, value in state.items():
        shape = ",".join(map(str, value.shape)) or "-"
        lines.append(f"{key} {str(value.dtype).removeprefix('torch.')} {shape}")
    path.write_text("\n".join(lines) + "\n")


def seeded_tensor(key: str, dtype: torch.dtype, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Values for one key: integer buffers (BatchNorm's `num_batches_tracked`) 0; running
    variances in [0.5, 1.5]; running means and biases N(0, 0.1²); other vectors and scalars
    (BatchNorm and PReLU weights, attention scales) in [0.5, 1.5]; weights of two or more
    dimensions N(0, 1 / fan_in), fan_in the product of the sizes after the first."""
    generator = torch.Generator().manual_seed(zlib.crc32(key.encode()) ^ seed)
    if dtype != torch.float32:
        return torch.zeros(shape, dtype=dtype)
    name = key.rsplit(".", 1)[-1]
    if name == "running_var" or (len(shape) <= 1 and name not in ("bias", "running_mean")):
        return torch.rand(shape, generator=generator) + 0.5
    if len(shape) <= 1:
        return torch.randn(shape, generator=generator) * 0.1
    fan_in = int(torch.tensor(shape[1:]).prod())
    return torch.randn(shape, generator=generator) / fan_in ** 0.5


def seeded_state(keys: dict[str, tuple[torch.dtype, tuple[int, ...]]], seed: int,
                 scales: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
    """A state dict with every key of `keys` (`read_keys`) filled by `seeded_tensor`, each tensor
    whose key matches a regular expression of `scales` (re.search) multiplied by its factor (the
    product of the factors of every match): a network's own adjustments, such as a stem
    BatchNorm's running variance at the scale of 0–255 inputs or small last BatchNorm weights in
    residual branches, which keep a deep residual trunk from growing."""
    state = {}
    for key, (dtype, shape) in keys.items():
        value = seeded_tensor(key, dtype, shape, seed)
        for pattern, factor in (scales or {}).items():
            if re.search(pattern, key):
                value = value * factor
        state[key] = value
    return state


def reference_entry(tensor: torch.Tensor, stride: int) -> dict:
    """What a reference file keeps of one output: its shape, its mean and, for tensors of two
    or more dimensions, the values on every `stride`-th row and column of the last two (all of
    a smaller tensor), as float32 decimal strings that read back exactly."""
    tensor = tensor.detach().float()
    sample = tensor[..., ::stride, ::stride] if tensor.dim() >= 2 else tensor
    return {"shape": list(tensor.shape), "mean": float(tensor.double().mean()),
            "sample": [repr(float(value)) for value in sample.flatten().tolist()]}


def write_reference(path: Path, metadata: dict, outputs: dict[str, torch.Tensor],
                    stride: int) -> None:
    """A reference file (JSON): `metadata` (how it was made: the authors' repository and commit,
    the edits their files needed, the seeds of the weights and inputs) and `outputs` by name
    (`reference_entry`)."""
    document = {**metadata, "stride": stride,
                "outputs": {name: reference_entry(value, stride) for name, value in
                            outputs.items()}}
    path.write_text(json.dumps(document, indent=1) + "\n")


def read_reference(path: Path) -> dict:
    """A reference file as `write_reference` wrote it."""
    return json.loads(path.read_text())


def assert_matches_reference(outputs: dict[str, torch.Tensor], reference: dict,
                             atol: float = 1e-5) -> None:
    """Each output equals the reference's within `atol` at every sampled position, its shape is
    the reference's and its mean is within atol / 10 of it; the names are the reference's."""
    assert sorted(outputs) == sorted(reference["outputs"])
    for name, value in outputs.items():
        expected = reference["outputs"][name]
        assert list(value.shape) == expected["shape"], name
        sample = reference_entry(value, reference["stride"])["sample"]
        found = torch.tensor([float(item) for item in sample])
        wanted = torch.tensor([float(item) for item in expected["sample"]])
        difference = (found - wanted).abs().max().item()
        assert difference <= atol, f"{name}: differs from the reference by {difference}"
        assert abs(float(value.double().mean()) - expected["mean"]) <= atol / 10, name


def import_with_command(method: str, authors_file: Path, out: Path) -> Path:
    """`vosbench weights import METHOD authors_file --out out`, which must succeed: `out`."""
    from vosbench.cli import main as vosbench_main

    assert vosbench_main(["weights", "import", method, str(authors_file), "--out",
                          str(out)]) == 0
    return out


def official_model_from(method: str, checkpoint: Path):
    """The official preset's model of `method` with the checkpoint's weights (strict), in eval
    mode."""
    from vosbench.weights import build_model

    model = build_model(method, "official")
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["state_dict"], strict=True)
    return model.eval()
