"""Rung 0 against Sinabs itself: the NIR paper's N-MNIST CNN (written by Sinabs) simulated
by Sinabs 3.1.3's own `from_nir` on the same N-MNIST-format events as kdsnn.

Sinabs pins nir 1.0.4 / nirtorch 2.0.2 against kdsnn's nir 1.0.8, so it is installed on
its own (`make peers`, or this module's fixture: pip --no-deps --target .peers/sinabs,
reusing this venv's torch) and run in a subprocess (tests/peers/sinabs_cnn.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nmnist_files
import numpy as np
import pytest

import kdsnn.deploy as flow
from kdsnn import nmnist

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT / ".peers" / "sinabs"
PINS = ["sinabs==3.1.3", "nir==1.0.4", "nirtorch==2.0.2", "pbr"]   # pbr: sinabs' version lookup
CNN = Path("/work/shared/nir-paper/02_cnn/cnn_sinabs.nir")
SCRIPT = ROOT / "tests" / "peers" / "sinabs_cnn.py"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(PEER), *sys.path])}


@pytest.fixture(scope="session")
def sinabs_peer() -> Path:
    """.peers/sinabs with Sinabs and its own nir; installed once from the registry."""
    probe = [sys.executable, "-c", f"import sinabs, nir; assert nir.__file__.startswith({str(PEER)!r})"]
    if subprocess.run(probe, env=_env(), capture_output=True).returncode != 0:
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--upgrade", "--target",
                            str(PEER), *PINS], capture_output=True, text=True)
        if r.returncode != 0 or subprocess.run(probe, env=_env(), capture_output=True).returncode != 0:
            pytest.skip(f"could not install {' '.join(PINS)} into {PEER}: {(r.stderr or r.stdout)[-300:]}")
    return PEER


def _sinabs(x_npz: Path, out: Path, mode: str) -> dict[str, np.ndarray]:
    r = subprocess.run([sys.executable, str(SCRIPT), str(CNN), str(x_npz), str(out), mode], env=_env(),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.slow
@pytest.mark.skipif(not CNN.is_file(), reason=f"the NIR paper's CNN is not at {CNN}")
def test_cnn_sinabs_reference_equals_sinabs(tmp_path, sinabs_peer, capsys):
    """One spike per step and subtractive reset, no floor on v (NIR's IF): kdsnn's reference
    equals Sinabs spike for spike in every layer (`--expect`, rung 0). Sinabs' defaults
    (several spikes per step, v >= -threshold) differ: measured and printed, not hidden."""
    root = nmnist_files.make(tmp_path / "data", events=4000)
    x, y = nmnist.load(root, "test", 6, 12)
    np.savez(tmp_path / "x.npz", x=x, y=y)
    peer = _sinabs(tmp_path / "x.npz", tmp_path / "sinabs_nir.npz", "nir")
    d = flow.export_command(source=str(CNN), target="reference", output=str(tmp_path / "out"), reset="subtract",
                            input=str(tmp_path / "x.npz"), expect=str(tmp_path / "sinabs_nir.npz"), quiet=True)
    r0 = d.rung(0).details
    assert d.rung(0).passed and r0["argmax_agreement"] == 1.0
    assert r0["output_spikes"]["equal_fraction"] == 1.0 and r0["output_spikes"]["peer_spikes"] > 0
    assert len(r0["layers"]) == 5
    for k, v in r0["layers"].items():
        assert v["kdsnn_mean"] == v["peer_mean"] > 0, k

    default = _sinabs(tmp_path / "x.npz", tmp_path / "sinabs_default.npz", "default")
    ours = peer["output_spikes"]
    agree = float((default["output_spikes"].sum(1).argmax(1) == ours.sum(1).argmax(1)).mean())
    layers = ", ".join(f"{k.split('/')[1]}: {default[k].mean():.0f} vs {peer[k].mean():.0f}"
                       for k in sorted(peer) if k.startswith("spike_counts/"))
    with capsys.disabled():
        print(f"\ncnn_sinabs on {len(x)} N-MNIST-format samples, T=12: Sinabs defaults (MultiSpike, "
              f"min_v_mem=-thr) vs NIR's IF (= kdsnn): output spikes {int(default['output_spikes'].sum())} vs "
              f"{int(ours.sum())}, argmax agreement {100 * agree:.0f} %; spikes/sample per layer {layers}")
    assert default["output_spikes"].sum() != ours.sum()   # the difference is real, and reported above
