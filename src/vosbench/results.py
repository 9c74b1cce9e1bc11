"""Results rows: one JSON file per benchmark run, the only input of the leaderboard.

`results/<method>-<dataset>-<split>-<timestamp>.json` holds (schema version 1): method, preset,
dataset, split (the test split; `train-heldout` for YouTube-VOS train videos held out of
training), protocol, every global metric (fractions in [0, 1], null where not computed),
per-sequence metrics, frame rates (model alone, with flow, with CRF), peak memory in MiB,
parameter count, training time in seconds (in the fit loop, validations included, summed over
the parts of a resumed run), seed, the flattened config (dotted keys), git commit, W&B run id,
creation time, the run folder and where the model's probability PNGs are (null when not
written). Written atomically.
"""

import json
import os
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml
from jsonargparse import Namespace

from vosbench.io import to_json, write_atomic
from vosbench.metrics.protocols import get_protocol
from vosbench.metrics.summary import write_results

# 2 added sweep_id, trial and trial_parameters (null outside a sweep); 3 added probability_dir
# (null unless the model's probabilities were written); the leaderboard reads all three
SCHEMA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)


def flatten(config: Namespace | dict, prefix: str = "") -> dict:
    """A nested config (jsonargparse Namespaces, dicts) → one level with dotted keys
    (`model.init_args.lr`); values that are not plain JSON (paths, classes) become strings."""
    flat = {}
    items = vars(config).items() if isinstance(config, Namespace) else config.items()
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, dict | Namespace):
            flat.update(flatten(value, f"{name}."))
        elif value is None or isinstance(value, bool | int | float | str):
            flat[name] = value
        elif isinstance(value, list | tuple) and all(
                isinstance(item, bool | int | float | str) for item in value):
            flat[name] = list(value)
        else:
            flat[name] = str(value)
    return flat


def git_commit(folder: Path = Path(__file__).parent) -> str | None:
    """The commit of the source tree vosbench runs from (None outside a git checkout)."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True,
                                text=True, timeout=10)
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def sequence_rows(document: dict) -> list[dict]:
    """One row per scored object: sequence, object id, its J/F statistics and T-Mean."""
    rows = []
    for name, sequence in document["sequences"].items():
        for object_id, scores in sequence["objects"].items():
            row = {"sequence": name, "object": int(object_id)}
            row.update({key: value for key, value in scores.items()
                        if key not in ("J", "F", "T", "frames")})
            row.setdefault("T-Mean", sequence.get("T-Mean"))
            rows.append(row)
    return rows


def results_row(cli, preset: str, results: dict, training_seconds: float,
                checkpoint: str | None) -> dict:
    """The row of a bench run from its LightningCLI and the model's gathered test results."""
    model, data, trainer = cli.model, cli.datamodule, cli.trainer
    wandb_ids = [logger.version for logger in trainer.loggers
                 if type(logger).__name__ == "WandbLogger"]
    return {
        "schema_version": SCHEMA_VERSION,
        "method": model.name or type(model).__name__,
        "preset": preset,
        "notes": model.result_notes(),
        "dataset": data.label,
        "split": data.test_label,
        "protocol": results["protocol"],
        "metrics": results["metrics"],
        "sequences": sequence_rows(results["document"]),
        "fps": results["fps"],
        "fps_with_flow": results["fps_with_flow"],
        "fps_with_crf": results["fps_with_crf"],
        "peak_memory_mb": results["peak_memory_mb"],
        "parameters": results["parameters"],
        "training_seconds": training_seconds,
        "seed": cli.config["seed_everything"],
        "checkpoint": checkpoint,
        "config": flatten(cli.config),
        "git_commit": git_commit(),
        "wandb_run_id": wandb_ids[0] if wandb_ids else None,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run_dir": str(trainer.default_root_dir),
        "probability_dir": probability_dir(model, trainer),
        **sweep_fields(),
    }


def probability_dir(model, trainer) -> str | None:
    """Where the test wrote the model's probability PNGs (`save_probabilities`), else None."""
    if not getattr(model, "save_probabilities", False):
        return None
    return str(model.probability_dir or Path(trainer.default_root_dir) / "probabilities")


def sweep_fields() -> dict:
    """The sweep trial a bench run is, or nulls: `vosbench sweep` sets it in the environment;
    a W&B agent's trial (online) has its sweep id there and its parameters in a file it names
    ({key: {"value": value}}), and no trial number."""
    from vosbench.sweep import PARAMETERS_VARIABLE, SWEEP_ID_VARIABLE, TRIAL_VARIABLE

    trial = os.environ.get(TRIAL_VARIABLE)
    parameters = os.environ.get(PARAMETERS_VARIABLE)
    if parameters is not None:
        parameters = json.loads(parameters)
    elif os.environ.get("WANDB_SWEEP_PARAM_PATH"):
        given = yaml.safe_load(Path(os.environ["WANDB_SWEEP_PARAM_PATH"]).read_text())
        parameters = {key: spec["value"] for key, spec in given.items()
                      if key != "wandb_version"}
    return {"sweep_id": os.environ.get(SWEEP_ID_VARIABLE) or os.environ.get("WANDB_SWEEP_ID"),
            "trial": trial and int(trial), "trial_parameters": parameters}


def write_row(results_dir: Path, row: dict) -> Path:
    """Write the row atomically as <method>-<dataset>-<split>-<timestamp>.json (-2, -3, … after
    the timestamp when rows of the same second are there already); returns the path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{row['method']}-{row['dataset']}-{row['split']}-{stamp}"
    path, count = Path(results_dir) / f"{name}.json", 1
    while path.exists():
        count += 1
        path = path.with_name(f"{name}-{count}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, to_json(row))
    return path


def write_scores(folder: Path, results: dict) -> None:
    """The metrics engine's files (global and per-sequence CSV, results.json) for the run."""
    write_results(folder, results["document"], get_protocol(results["protocol"]),
                  results["sequence_scores"])
