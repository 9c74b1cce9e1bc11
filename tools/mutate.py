"""`make mutate [MODULE=methods/agnn.py]`: mutation testing with mutmut 3, module by module.

mutmut 3 copies the sources into `mutants/`, rewrites every function of a mutated module as a
trampoline to its mutants, and names each mutant after the path of its file with `src.` stripped
(`methods/agnn.py` → `methods.agnn.x_frame_subsets__mutmut_3`). A trampoline runs a mutant only
when that name starts with the module's runtime name. vosbench installs `methods/` and
`datamodules/` as `vosbench.methods` and `vosbench.datamodules` (a setuptools package-dir
mapping): run in the repository, mutmut would import the real `methods/` (the editable install
maps `vosbench.methods` there; `mutants/src/vosbench` has no `methods/`) and, even with the copy
imported, `methods.agnn` would never match `vosbench.methods.agnn`. Every mutant of the mapped
modules would be "no tests".

So this script stages the tree in the installed layout: `src/vosbench/` with `methods/` and
`datamodules/` copied to `src/vosbench/methods` and `src/vosbench/datamodules`, beside `tests/`
and `configs/`, and runs mutmut in that copy (`.mutation/<module>/`). Every path then names its
runtime module (`src/vosbench/methods/agnn.py` → `vosbench.methods.agnn`), and mutmut's own
sys.path setup puts `mutants/src` before the editable install. PYTHONPATH carries it to the
processes that tests start (the CLI run as a subprocess, DDP ranks, scoring workers).

Each module runs against the tests that cover it, `[tool.vosbench.mutation]` in pyproject.toml;
mutmut then runs, for every mutant, the tests that called its function. The report gives per
module the mutants, killed, survived, timed out and the diffs of the survivors. Survivors listed
in tests/MUTANTS.md as equivalent (no result can change) are counted apart; any other survivor
makes the exit status 1.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutation"
EQUIVALENT_FILE = ROOT / "tests" / "MUTANTS.md"
# repository folder → its place in the installed package
PACKAGE_DIRS = {"src/vosbench": "src/vosbench", "methods": "src/vosbench/methods",
                "datamodules": "src/vosbench/datamodules"}
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")
PROGRESS_SECONDS = 30
# sitecustomize.py of the processes that tests start (the CLI, DDP ranks, scoring workers): they
# import the mutants, but mutmut's "stats" pass (which tests call which function) is recorded in
# the test process only, and its hook would look for mutmut's settings in the test's working
# folder and fail; there they run the unmutated functions.
SUBPROCESS_HOOK = """import os

if os.environ.get("MUTANT_UNDER_TEST") == "stats":
    os.environ["MUTANT_UNDER_TEST"] = ""
"""
# A pytest plugin of the stage (-p mutation_plugin). Lightning's save_hyperparameters reads the
# constructor's arguments from the frame of a function named `__init__`; mutmut runs a mutated
# constructor as `xǁAGNNǁ__init____mutmut_orig` (or `…_3`), so every hyperparameter would be lost
# and each test of a model with a mutated constructor fail, killing its mutants for no reason.
# The plugin shows Lightning such a frame under the name `__init__`.
PYTEST_PLUGIN = """import re
import sys
from types import SimpleNamespace

MUTATED_CONSTRUCTOR = re.compile(r"ǁ__init____mutmut_(orig|[0-9]+)$")


def pytest_collection_finish(session):
    parsing = sys.modules.get("pytorch_lightning.utilities.parsing")
    if parsing is None or hasattr(parsing._get_init_args, "for_mutants"):
        return
    original = parsing._get_init_args

    def _get_init_args(frame):
        if MUTATED_CONSTRUCTOR.search(frame.f_code.co_name):
            frame = SimpleNamespace(f_code=frame.f_code.replace(co_name="__init__"),
                                    f_locals=frame.f_locals, f_back=frame.f_back)
        return original(frame)

    _get_init_args.for_mutants = True
    parsing._get_init_args = _get_init_args
"""
# mutmut's exit-code statuses, grouped as the report counts them
KILLED = {"killed", "segfault", "caught by type check"}
SURVIVED = {"survived", "no tests"}


@dataclass(frozen=True)
class Mutant:
    """One mutant of a module: mutmut's name, its status, and the lines it changes."""

    name: str
    status: str
    function: str  # e.g. "frame_subsets" or "MessageGate.forward"
    removed: str  # the original line(s), stripped, joined by " "
    added: str  # the mutated line(s)
    diff: str


def staged_path(module: str) -> str:
    """The path of a repository module in the staged, installed layout:
    methods/agnn.py → src/vosbench/methods/agnn.py."""
    for folder, target in sorted(PACKAGE_DIRS.items(), key=lambda item: -len(item[0])):
        if module == folder or module.startswith(folder + "/"):
            return target + module[len(folder):]
    raise SystemExit(f"mutate: {module} is not in {', '.join(PACKAGE_DIRS)}")


def toml_value(value) -> str:
    """A TOML literal of a string, bool, number or list of those."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "[" + ", ".join(toml_value(item) for item in value) + "]"


def write_settings(module: str, tests: list[str], folder: Path) -> None:
    """The stage's pyproject.toml (also in its mutants/ once mutmut made that): mutmut's
    settings of this repository, told to mutate `module` only and to run `tests`, and pytest's
    with the stage's plugin; the hooks the stage puts on PYTHONPATH."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mutmut = {**project["tool"]["mutmut"], "source_paths": ["src"],
              "only_mutate": [staged_path(module)], "also_copy": ["configs/"],
              "pytest_add_cli_args_test_selection": tests}
    pytest = dict(project["tool"]["pytest"]["ini_options"])
    pytest["addopts"] = (pytest.get("addopts", "") + " -p mutation_plugin").strip()
    sections = {"tool.mutmut": mutmut, "tool.pytest.ini_options": pytest}
    text = "".join(f"[{name}]\n" + "".join(f"{key} = {toml_value(value)}\n"
                                            for key, value in table.items()) + "\n"
                   for name, table in sections.items())
    for base in (folder, folder / "mutants"):
        if base.is_dir():
            (base / "pyproject.toml").write_text(text)
    (folder / "hooks").mkdir(exist_ok=True)
    (folder / "hooks" / "sitecustomize.py").write_text(SUBPROCESS_HOOK)
    (folder / "hooks" / "mutation_plugin.py").write_text(PYTEST_PLUGIN)


def stage(module: str, tests: list[str], folder: Path) -> None:
    """Copy the tree into `folder` in the installed layout, with a pyproject.toml that tells
    mutmut to mutate `module` only and run `tests`."""
    if folder.exists():
        shutil.rmtree(folder)
    for source, target in PACKAGE_DIRS.items():
        shutil.copytree(ROOT / source, folder / target, ignore=IGNORED, dirs_exist_ok=True)
    for name in ("tests", "configs"):
        shutil.copytree(ROOT / name, folder / name, ignore=IGNORED)
    write_settings(module, tests, folder)
    # the processes that tests start find the mutants through PYTHONPATH: the folder must exist
    # when they start, or the import system remembers it as missing
    (folder / "mutants" / "src").mkdir(parents=True)


@contextmanager
def working_directory(folder: Path):
    previous = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def function_name(mutant_name: str) -> str:
    """`vosbench.methods.agnn.xǁMessageGateǁforward__mutmut_2` → `MessageGate.forward`."""
    key = mutant_name.rpartition(".")[2].partition("__mutmut_")[0]
    return key[2:] if key.startswith("x_") else ".".join(key.split("ǁ")[1:])


def read_mutants(folder: Path, module: str) -> list[Mutant]:
    """The mutants of `module` with their status and diff, from mutmut's files in `folder`."""
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code

    path = staged_path(module)
    with working_directory(folder):
        data = SourceFileMutationData(path=path)
        data.load()
        mutants = []
        for name, exit_code in sorted(data.exit_code_by_key.items()):
            status = status_by_exit_code[exit_code]
            diff = get_diff_for_mutant(name, path=path) if status not in KILLED else ""
            lines = diff.splitlines()[2:]  # the ---/+++ header off
            removed = " ".join(line[1:].strip() for line in lines if line.startswith("-"))
            added = " ".join(line[1:].strip() for line in lines if line.startswith("+"))
            mutants.append(Mutant(name, status, function_name(name), removed, added, diff))
    return mutants


EQUIVALENT_ITEM = re.compile(r"^- `(?P<function>[^`]+)`: `(?P<removed>.*?)` → `(?P<added>.*?)`"
                             r" — (?P<reason>.+)$")


def read_equivalent(path: Path = EQUIVALENT_FILE) -> dict[str, set[tuple[str, str, str]]]:
    """module → {(function, original, mutated)} of the equivalent mutants listed in `path`:
    under a heading `## <module path>`, items
    "- `function`: `original line` → `mutated line` — reason"."""
    listed: dict[str, set[tuple[str, str, str]]] = {}
    module = None
    for number, line in enumerate(path.read_text().splitlines() if path.exists() else [], 1):
        if line.startswith("## "):
            module = line[3:].strip().strip("`")
        elif line.startswith("- `"):
            match = EQUIVALENT_ITEM.match(line)
            if match is None or module is None:
                raise SystemExit(f"{path}:{number}: expected \"- `function`: `original` → "
                                 f"`mutated` — reason\" under a \"## module\" heading")
            listed.setdefault(module, set()).add(match.group("function", "removed", "added"))
    return listed


def report(module: str, mutants: list[Mutant], equivalent: set[tuple[str, str, str]],
           seconds: float) -> bool:
    """Print the module's counts and its unexplained survivors' diffs; True if none."""
    counts = Counter("killed" if m.status in KILLED else m.status for m in mutants)
    survivors = [m for m in mutants if m.status in SURVIVED]
    explained = [m for m in survivors if (m.function, m.removed, m.added) in equivalent]
    unexplained = [m for m in survivors if m not in explained]
    matched = {(m.function, m.removed, m.added) for m in explained}
    other = {status: n for status, n in counts.items()
             if status not in ("killed", "survived", "no tests", "timeout")}
    print(f"\n{module}: {len(mutants)} mutants, {counts['killed']} killed, "
          f"{counts['survived'] + counts['no tests']} survived ({len(explained)} listed as "
          f"equivalent; {counts['no tests']} run by no test), "
          f"{counts['timeout']} timed out"
          + "".join(f", {n} {status}" for status, n in sorted(other.items()))
          + f" — {seconds / 60:.1f} min")
    for mutant in unexplained:
        print(f"\n  SURVIVED {mutant.name}" + (" (no test runs it)" if mutant.status ==
                                                  "no tests" else ""))
        print("\n".join("    " + line for line in mutant.diff.splitlines()))
        print(f"    if no result can change, list it in tests/MUTANTS.md under ## {module}:\n"
              f"    - `{mutant.function}`: `{mutant.removed}` → `{mutant.added}` — <why>")
    for function, removed, added in sorted(equivalent - matched):
        print(f"  note: tests/MUTANTS.md lists `{function}`: `{removed}` → `{added}`, which is "
              f"not a survivor of this run (killed now, or the code changed): remove it")
    return not unexplained


def refresh(folder: Path, module: str, tests: list[str]) -> None:
    """Copy the tests, configs and sources again into the stage in `folder` and its mutants/,
    select `tests`, and mark the survivors of the last run unchecked. mutmut then mutates
    `module` again if it changed, keeps the results of the functions whose code did not
    change, and runs every unchecked mutant (new tests get their stats collected)."""
    write_settings(module, tests, folder)
    for source, target in PACKAGE_DIRS.items():
        for path in (ROOT / source).rglob("*.py"):
            copy = Path(target) / path.relative_to(ROOT / source)
            if copy == Path(staged_path(module)):  # mutmut mutates it from the stage's copy
                if (folder / copy).read_bytes() != path.read_bytes():
                    shutil.copy(path, folder / copy)  # a new time: newer than its mutants
                continue
            for base in (folder, folder / "mutants"):
                (base / copy).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, base / copy)
    # (mutmut copies the stage's tests/ and configs/ over those of mutants/ when it starts)
    for name in ("tests", "configs"):
        for base in (folder, folder / "mutants"):
            shutil.copytree(ROOT / name, base / name, ignore=IGNORED, dirs_exist_ok=True)
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.stats import status_by_exit_code

    with working_directory(folder):
        data = SourceFileMutationData(path=staged_path(module))
        data.load()
        for name, exit_code in data.exit_code_by_key.items():
            if exit_code is not None and status_by_exit_code[exit_code] in SURVIVED:
                data.exit_code_by_key[name] = None
        data.save()


def progress(log: Path) -> str:
    """The last status line mutmut wrote to `log` (it redraws one line with carriage returns)."""
    text = log.read_text(errors="replace").replace("\n", "\r")
    lines = [line.strip() for line in text.split("\r") if line.strip()]
    return lines[-1] if lines else "starting"


def run_module(module: str, tests: list[str], workers: int, rerun_survivors: bool,
               equivalent: set[tuple[str, str, str]]) -> bool:
    """Stage, run mutmut on one module, report; True if every survivor is listed equivalent.
    With `rerun_survivors`, the previous stage is refreshed (`refresh`) and mutmut runs its
    survivors again, with the mutants of the functions changed since."""
    folder = WORK / module.replace("/", "_").removesuffix(".py")
    if rerun_survivors and (folder / "mutants").is_dir():
        refresh(folder, module, tests)
    else:
        stage(module, tests, folder)
    paths = [str(folder / "mutants" / "src"), str(folder / "hooks"), os.environ.get("PYTHONPATH")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    start = time.perf_counter()
    command = [sys.executable, "-m", "mutmut", "run", "--max-children", str(workers)]
    print(f"\n=== {module}: mutmut in {folder.relative_to(ROOT)}, tests: {' '.join(tests)}",
          flush=True)
    log = folder / "mutmut.log"
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=output,
                                   stderr=subprocess.STDOUT)
        while process.poll() is None:
            time.sleep(PROGRESS_SECONDS)
            print(f"  {(time.perf_counter() - start) / 60:5.1f} min  {progress(log)}", flush=True)
    if process.returncode != 0:
        tail = log.read_text(errors="replace").replace("\r", "\n").splitlines()[-40:]
        raise SystemExit("\n".join(tail) + f"\nmutate: mutmut failed on {module} (exit "
                                           f"{process.returncode}); its output is in {log}")
    return report(module, read_mutants(folder, module), equivalent, time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["vosbench"]
    targets: dict[str, list[str]] = settings["mutation"]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE",
                        help=f"repository paths (default: {', '.join(targets)})")
    parser.add_argument("--tests", nargs="+", help="the tests to run (default: the module's, "
                                                   "[tool.vosbench.mutation] in pyproject.toml)")
    parser.add_argument("--workers", type=int, default=2, help="mutants tested at once")
    parser.add_argument("--rerun-survivors", action="store_true",
                        help="run the previous survivors (and the mutants of functions changed "
                             "since) again against the current tests")
    parser.add_argument("--equivalent", type=Path, default=EQUIVALENT_FILE,
                        help="the list of equivalent mutants (default tests/MUTANTS.md)")
    args = parser.parse_args(argv)
    modules = args.modules or list(targets)
    unknown = [m for m in modules if m not in targets and not args.tests]
    if unknown:
        parser.error(f"no tests known for {', '.join(unknown)}: add them to "
                     f"[tool.vosbench.mutation] in pyproject.toml or give --tests")
    equivalent = read_equivalent(args.equivalent)
    passed = [run_module(module, args.tests or targets[module], args.workers,
                         args.rerun_survivors, equivalent.get(module, set()))
              for module in modules]
    return 0 if all(passed) else 1


if __name__ == "__main__":
    sys.exit(main())
