"""The installed layout: one distribution, plug-in folders installed under vosbench."""

import subprocess
import sys
from pathlib import Path

import vosbench

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
