"""The built wheel installs `kdsnn` and nothing else at the top level (docs/design.md, "Layout
and import direction"), and its console script, `python -m kdsnn` and backend entry points resolve.

The wheel is built from a copy of the sources (setuptools writes build/ and *.egg-info next to
what it builds), without build isolation so that no package index is needed.
"""

from __future__ import annotations

import configparser
import importlib.metadata as md
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "kdsnn", "compiler", "backends", "cli.py")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(p, src / name)
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    (whl,) = out.glob("kdsnn-*.whl")
    return whl


def _dist_file(z: zipfile.ZipFile, name: str) -> str:
    (path,) = [n for n in z.namelist() if n.endswith(f".dist-info/{name}")]
    return z.read(path).decode()


@pytest.mark.slow
def test_wheel_holds_only_kdsnn(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        top_level = _dist_file(z, "top_level.txt").split()
        names = z.namelist()
    assert top_level == ["kdsnn"]
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"kdsnn"}, tops
    # the repository's folders arrive under kdsnn/, the root cli.py as kdsnn/cli.py (a file)
    for f in ("kdsnn/__init__.py", "kdsnn/__main__.py", "kdsnn/cli.py", "kdsnn/compiler/__init__.py",
              "kdsnn/compiler/nir/__init__.py", "kdsnn/backends/base.py",
              "kdsnn/backends/intsim/__init__.py", "kdsnn/backends/lava/procs/__init__.py"):
        assert f in names, f
    # test oracles stay with the tests
    assert not [n for n in names if "oracles" in n or "intsim_ref" in n]


@pytest.mark.slow
def test_wheel_entry_points_resolve(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        ini = configparser.ConfigParser()
        ini.read_string(_dist_file(z, "entry_points.txt"))
        names = set(z.namelist())
    assert dict(ini["console_scripts"]) == {"kdsnn": "kdsnn.cli:main"}
    backends = dict(ini["kdsnn.backends"])
    assert set(backends) >= {"reference", "intsim", "lava"}
    for value in [*backends.values(), ini["console_scripts"]["kdsnn"]]:
        mod = value.partition(":")[0].replace(".", "/")
        assert f"{mod}.py" in names or f"{mod}/__init__.py" in names, value  # shipped in the wheel
        # and it loads (the backend modules import without Lava: it is imported on compile only)
        assert callable(md.EntryPoint(name="x", value=value, group="g").load()), value


def test_python_dash_m_kdsnn_runs() -> None:
    r = subprocess.run([sys.executable, "-m", "kdsnn", "--help"], capture_output=True, text=True,
                       timeout=120, cwd=ROOT / "tests")
    assert r.returncode == 0, r.stderr
    assert "distill" in r.stdout and "export" in r.stdout
