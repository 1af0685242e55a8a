"""Backend registry over the `kdsnn.backends` entry points, with a pip-installed plugin."""

from __future__ import annotations

import collections
import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from kdsnn.backends import registry
from kdsnn.backends.reference import ReferenceBackend

from kdsnn.errors import KdsnnError

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "tests" / "plugins" / "kdsnn_dummy_backend"


def test_builtins_are_registered_through_entry_points():
    infos = {i.name: i for i in registry.list_backends()}
    assert {"reference", "intsim", "lava"} <= set(infos)
    ref = infos["reference"]
    assert ref.available and ref.accepts == "nir" and ref.entry_point == "kdsnn.backends.reference:ReferenceBackend"
    assert isinstance(registry.get_backend("reference"), ReferenceBackend)
    for i in infos.values():  # every entry is either usable or says why not
        assert i.available or i.reason


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(KdsnnError, match="unknown backend 'nope'.*reference"):
        registry.get_backend("nope")


def test_lava_needs_python_310(monkeypatch):
    V = collections.namedtuple("V", "major minor micro releaselevel serial")
    monkeypatch.setattr(sys, "version_info", V(3, 12, 0, "final", 0))
    info = next(i for i in registry.list_backends() if i.name == "lava")
    assert not info.available and "Python 3.10" in info.reason and "3.12" in info.reason
    with pytest.raises(KdsnnError, match="lava.*not available.*Python 3.10"):
        registry.get_backend("lava")


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """pip-install the test plugin (a package of its own) into a private folder."""
    tmp = tmp_path_factory.mktemp("plugin")
    src = tmp / "src"
    shutil.copytree(PLUGIN, src)  # build in a copy: no build/ or egg-info in the repo
    site = tmp / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                        "--no-build-isolation", "--no-index", "--disable-pip-version-check",
                        "--target", str(site), str(src)], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    assert list(site.glob("kdsnn_dummy_backend-*.dist-info"))
    return site


@pytest.mark.slow
def test_installed_plugin_is_discovered(plugin_site, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_site))
    importlib.invalidate_caches()
    try:
        infos = {i.name: i for i in registry.list_backends()}
        assert infos["dummy"].available and infos["dummy"].accepts == "nir"
        assert not infos["dummy_off"].available and "DummyChip" in infos["dummy_off"].reason
        assert not infos["dummy_broken"].available and "cannot be imported" in infos["dummy_broken"].reason
        assert infos["reference"].available  # a broken plugin does not break the others
    finally:
        sys.modules.pop("kdsnn_dummy_backend", None)


@pytest.mark.slow
def test_plugin_runs_through_get_backend(plugin_site, monkeypatch):
    import nir

    monkeypatch.syspath_prepend(str(plugin_site))
    importlib.invalidate_caches()
    try:
        g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([3])}),
                                "fc": nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)),
                                "output": nir.Output(output_type={"output": np.array([2])})},
                         edges=[("input", "fc"), ("fc", "output")], metadata={"T": 2}, type_check=False)
        res = registry.get_backend("dummy").compile(g, T=2).run(np.zeros((4, 3)))
        assert res.logits.shape == (4, 2) and res.backend == "dummy"
        with pytest.raises(KdsnnError, match="dummy_off.*not available.*DummyChip"):
            registry.get_backend("dummy_off")
    finally:
        sys.modules.pop("kdsnn_dummy_backend", None)


@pytest.mark.slow
def test_kdsnn_targets_lists_the_plugin(plugin_site):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_site), str(ROOT)])}
    exe = [sys.executable, "-c", "import cli; cli.main()"]
    r = subprocess.run([*exe, "targets", "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    rows = {d["name"]: d for d in doc["backends"]}
    assert {"loihi", "loihi2"} <= {h["name"] for h in doc["hardware"]}
    assert rows["dummy"]["available"] and rows["dummy"]["accepts"] == "nir"
    assert rows["dummy_broken"]["available"] is False
    r = subprocess.run([*exe, "targets"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "hardware spec (--hw)" in r.stdout and "loihi" in r.stdout
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("dummy "))
    assert "available" in line and "NIR graph" in line and "always predicts class 0" in line
    off = next(ln for ln in r.stdout.splitlines() if ln.startswith("dummy_off"))
    assert "unavailable" in off and "DummyChip" in off


@pytest.mark.slow
def test_plugins_run_through_export_run_and_evaluate(plugin_site, tmp_path):
    """Any registered backend deploys: a NIR plugin and an integer plugin, via the CLI."""
    from test_flow_nir import make_checkpoint

    ckpt = make_checkpoint(tmp_path / "student.pt", T=2)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_site), str(ROOT), str(ROOT / "tests")]),
           "OMP_NUM_THREADS": "1"}

    def kdsnn(*args):
        r = subprocess.run([sys.executable, "-m", "kdsnn", *args], capture_output=True, text=True,
                           env=env, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        return r.stdout

    out = tmp_path / "dummy"
    printed = kdsnn("export", str(ckpt), "--target", "dummy", "--samples", "20", "--eval-samples", "30",
                    "-q", "-o", str(out))
    assert "graph.nir on dummy (float, not gated)" in printed and "rung 2" in printed
    par = json.loads((out / "parity.json").read_text())
    assert par["passed"] and par["target"] == "dummy" and par["samples"] == 30
    plug = par["rungs"][-1]
    assert plug["backend"] == "dummy" and plug["passed"] is None and plug["samples"] == 20
    with np.load(out / "predictions.npz") as z:
        assert (z["dummy/predictions"] == 0).all() and len(z["reference/logits"]) == 30
    printed = kdsnn("run", str(out), "--target", "dummy", "--samples", "12", "-q")
    assert printed.startswith("dummy on digits (first 12 test samples, T=2): accuracy")

    out = tmp_path / "int"
    printed = kdsnn("export", str(ckpt), "--target", "dummy_int", "--eval-samples", "30", "--calibration",
                    "16", "-q", "-o", str(out))
    rungs = {r["rung"]: r for r in json.loads((out / "parity.json").read_text())["rungs"]}
    assert set(rungs) == {1, 2, 3, 4} and rungs[4]["backend"] == "dummy_int"
    assert rungs[4]["passed"] and rungs[4]["identical_to_rung3"] and rungs[4]["samples_compared"] == 16
    assert json.loads((out / "report.json").read_text())["meta"]["backend"] == "dummy_int"
    printed = kdsnn("run", str(out), "--target", "dummy_int", "-q")
    assert "dummy_int on digits (first 16 test samples, T=2)" in printed

    printed = kdsnn("evaluate", str(ckpt), "--target", "dummy", "--samples", "20", "--json")
    models = json.loads(printed)["models"]
    assert [m["label"].rsplit(" ", 1)[-1] for m in models] == ["(float)", "(dummy)"]
    assert models[1]["accuracy"]["clean"] == pytest.approx(0.1, abs=0.1)
