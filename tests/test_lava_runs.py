"""Real Lava runs against the canonical integer semantics (docs/design.md, "Integer
semantics"), sample by sample, and how a difference is named; slow but the naming test.
"""

from __future__ import annotations

import numpy as np
import pytest
from lava_nets import assert_same, conv_net, dense_net, needs_lava, overflow_net, ref_run


@pytest.mark.slow
@needs_lava
@pytest.mark.parametrize("residual", [False, True])
def test_lava_dense_bit_exact(residual):
    from kdsnn.backends.lava import LavaBackend

    rng = np.random.default_rng(10 + residual)
    net = dense_net(rng, residual=residual)
    x = rng.normal(size=(7, 12)).astype(np.float32)
    ref = ref_run(net, x)
    assert all(ref[1][p.name].sum() > 0 for p in net.populations if not p.readout)
    res = LavaBackend().compile(net, period=net.T + 3 if residual else None).run(x, record=True)
    assert_same("dense", ref, res, trains=True)
    assert res.backend == "lava" and res.T == net.T and res.steps == res.extra["steps"]


@pytest.mark.slow
@needs_lava
@pytest.mark.parametrize("residual,conv_model", [(False, "lava"), (True, "im2col")])
def test_lava_conv_bit_exact(residual, conv_model):
    """Lava's own Conv model and ours, on plain and residual conv nets."""
    from kdsnn.backends.lava import LavaBackend

    rng = np.random.default_rng(20 + residual)
    net = conv_net(rng, residual=residual)
    x = rng.normal(size=(7, *net.input.shape)).astype(np.float32)
    ref = ref_run(net, x)
    assert all(ref[1][p.name].sum() > 0 for p in net.populations if not p.readout)
    # several Lava runs per call (3 + 3 + 1 samples) must concatenate in order
    res = LavaBackend().compile(net, max_samples_per_run=3, conv_model=conv_model).run(
        x, record=residual)
    assert res.extra["runs"] == 3 and res.extra["conv_model"] == conv_model
    assert_same("conv", ref, res, trains=residual)


@pytest.mark.slow
@needs_lava
def test_lava_near_overflow_and_intsim():
    from kdsnn.backends.lava import LavaBackend

    rng = np.random.default_rng(30)
    net = overflow_net(rng)
    x = 3 * rng.normal(size=(8, 12))
    diag: dict = {}
    ref = ref_run(net, x, diag)
    assert diag["u_wraps"] > 0 and diag["v_clips"] > 0
    res = LavaBackend().compile(net).run(x)
    assert_same("overflow", ref, res)
    try:
        from kdsnn.backends.intsim import IntSimBackend
    except ImportError:
        return
    res_i = IntSimBackend().compile(net).run(x)
    assert_same("overflow vs intsim", (res_i.logits, res_i.layer_spikes_per_step, None), res)


@pytest.mark.slow
@needs_lava
def test_lava_equals_intsim_on_a_lowered_zoo_student():
    """A zoo cnn student (random weights, narrow) exported to NIR and lowered for Loihi:
    Lava and intsim agree on every sample, layer and step."""
    lower = pytest.importorskip("kdsnn.compiler.lower")
    intsim = pytest.importorskip("kdsnn.backends.intsim")
    import torch
    from kdsnn.backends.lava import LavaBackend
    from kdsnn.compiler.export import student_to_nir

    from kdsnn.zoo import build

    torch.manual_seed(0)
    shape = (1, 12, 12)
    model = build("cnn", True, 5, shape, T=3, width=0.25).eval()
    graph = student_to_nir(model, {"kind": "student", "arch": "cnn", "T": 3, "input_shape": shape,
                                   "num_classes": 5, "mean": (0.0,), "std": (1.0,),
                                   "class_names": [str(i) for i in range(5)]})
    rng = np.random.default_rng(40)
    x = rng.normal(size=(12, *shape)).astype(np.float32)
    net = lower.lower(graph, "loihi", x[:8])
    res_i = intsim.IntSimBackend().compile(net).run(x)
    res = LavaBackend().compile(net).run(x)
    assert sum(int(v.sum()) for v in res_i.spike_counts.values()) > 0
    assert_same("lowered cnn", (res_i.logits, res_i.layer_spikes_per_step, None), res)


def test_first_difference_names_sample_layer_and_step():
    from kdsnn.backends.base import RunResult

    from kdsnn.parity import first_difference

    per = {"act1": np.array([[1, 2, 3], [4, 5, 6]]), "act2": np.array([[0, 1, 0], [2, 2, 2]])}

    def rr(per, logits, backend):
        return RunResult(logits=np.array(logits), spike_counts={k: v.sum(1) for k, v in per.items()},
                         backend=backend, T=3, layer_spikes_per_step=per)

    ref = rr(per, [[1, 2], [3, 4]], "intsim")
    assert first_difference(ref, rr({k: v.copy() for k, v in per.items()}, [[1, 2], [3, 4]], "lava")) is None
    # sample 1 differs at act2 step 0 and act1 step 2: the earliest step wins
    per2 = {k: v.copy() for k, v in per.items()}
    per2["act1"][1, 2] += 1
    per2["act2"][1, 0] -= 1
    d = first_difference(ref, rr(per2, [[1, 2], [3, 5]], "lava"), ["act1", "act2"])
    assert (d["sample"], d["layer"], d["step"], d["ref"], d["got"]) == (1, "act2", 0, 2, 1)
    assert "sample 1, layer act2, step 0" in d["message"]
    d = first_difference(ref, rr({k: v.copy() for k, v in per.items()}, [[1, 2], [3, 5]], "lava"))
    assert (d["sample"], d["layer"]) == (1, "logits")


@pytest.mark.slow
@needs_lava
def test_lava_imports_after_the_start_method_was_fixed():
    """Lava's import calls set_start_method('fork'); a host that already fixed the start
    method (even by asking for it) must still get a working backend."""
    import subprocess
    import sys

    code = ("import multiprocessing as mp; mp.get_start_method()\n"
            "from kdsnn.backends.lava import LavaBackend\n"
            "ok, why = LavaBackend.available(); assert ok, why\n"
            "import lava.proc.lif.process\n"
            "print('OK')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("OK"), out.stderr[-2000:]
