"""Every shipped method preset composes with the trainer and data configs into its method."""

from pathlib import Path

import pytest

from vosbench.lightning_cli import VOSCLI

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("preset", sorted((CONFIGS / "methods").glob("*/*.yaml")),
                         ids=lambda path: f"{path.parent.name}-{path.stem}")
@pytest.mark.parametrize("trainer", ["cpu", "cpu_ddp"])
def test_method_presets_build(preset, trainer, tmp_path):
    cli = VOSCLI(["--config", str(CONFIGS / "trainer" / f"{trainer}.yaml"),
                  "--config", str(CONFIGS / "data" / "synthetic.yaml"), "--config", str(preset),
                  "--data.init_args.root", str(tmp_path / "data"), "--wandb_mode", "disabled",
                  "--trainer.default_root_dir", str(tmp_path / "run")], run=False)
    assert cli.model.name == preset.parent.name
    assert cli.datamodule.dataset == "synthetic" and cli.trainer.world_size == (
        2 if trainer == "cpu_ddp" else 1)
    if preset.stem == "paper" and cli.model.trainable:
        assert cli.datamodule.transform.size is not None
