"""The installed layout: one distribution, plug-in folders installed under vosbench."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vosbench
from vosbench.bench import config_files, config_root
from vosbench.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def find_spec_elsewhere(name: str, cwd: Path) -> str:
    """Where `name` is found by an interpreter started outside the repository ('None' if not)."""
    code = f"import importlib.util; s = importlib.util.find_spec({name!r}); print(s and s.origin)"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_plugin_folders_install_under_vosbench(tmp_path):
    for name, folder in (("vosbench.methods", "methods"), ("vosbench.datamodules", "datamodules")):
        assert Path(find_spec_elsewhere(name, tmp_path)).parent == ROOT / folder


def test_no_top_level_methods_or_datamodules_package(tmp_path):
    assert find_spec_elsewhere("methods", tmp_path) == "None"
    assert find_spec_elsewhere("datamodules", tmp_path) == "None"


def test_version():
    assert vosbench.__version__


def test_configs_are_package_data_and_a_folder_can_replace_them(tmp_path, monkeypatch):
    assert config_root() == ROOT / "configs"  # the editable install maps vosbench.configs there
    mine = tmp_path / "mine"
    (mine / "methods" / "fcn").mkdir(parents=True)
    for part in ("trainer/cpu.yaml", "data/synthetic.yaml", "methods/fcn/tiny.yaml"):
        (mine / part).parent.mkdir(parents=True, exist_ok=True)
        (mine / part).write_text("{}\n")
    assert config_files("fcn", "synthetic", "tiny", "cpu", config_root(mine))[0] == \
        mine / "trainer/cpu.yaml"
    monkeypatch.setenv("VOSBENCH_CONFIGS", str(mine))
    assert config_root() == mine
    with pytest.raises(InputError, match="no such config folder"):
        config_root(tmp_path / "nowhere")


@pytest.mark.slow
def test_a_wheel_install_without_the_source_tree_runs_bench(tmp_path):
    """`pip install` of the built wheel (not editable) into a fresh environment whose only other
    packages are the dependencies, then `vosbench list` and a 5-step bench from an empty folder."""
    source = tmp_path / "source"  # a copy of the tracked files: the build writes build/ there
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, check=True, capture_output=True,
                             text=True).stdout.split()
    for name in tracked:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    tmp_path / "dist", source], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("vosbench-*.whl")
    subprocess.run([sys.executable, "-m", "venv", tmp_path / "env"], check=True)
    python = tmp_path / "env" / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # the dependencies from this environment's site-packages, whose .pth files (among them the
    # editable vosbench's) a path in a .pth file does not run
    deps = Path(torch.__file__).parents[1]
    Path(site, "dependencies.pth").write_text(f"{deps}\n")
    subprocess.run([python, "-m", "pip", "install", "--no-deps", "-q", wheel], check=True,
                   capture_output=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    vosbench_command = [tmp_path / "env" / "bin" / "vosbench"]
    found = subprocess.run([python, "-c", "import vosbench; print(vosbench.__file__)"],
                           cwd=empty, check=True, capture_output=True, text=True).stdout
    assert found.startswith(site)
    listed = subprocess.run([*vosbench_command, "list"], cwd=empty, check=True,
                            capture_output=True, text=True).stdout
    assert "fcn" in listed and "synthetic" in listed
    env = {**os.environ, "VOSBENCH_CACHE": str(tmp_path / "cache"), "PYTHONWARNINGS": "ignore"}
    env.pop("VOSBENCH_CONFIGS", None)
    bench = subprocess.run([*vosbench_command, "bench", "--method", "fcn", "--trainer.max_steps",
                            "5", "--model.init_args.input_size", "[48, 80]",
                            "--data.init_args.transform.init_args.size", "[48, 80]",
                            "--model.init_args.crf", "null", "--wandb_mode", "disabled"],
                           cwd=empty, env=env, capture_output=True, text=True, timeout=1800)
    assert bench.returncode == 0, bench.stderr[-3000:]
    assert list((empty / "results").glob("fcn-synthetic-val-*.json"))
