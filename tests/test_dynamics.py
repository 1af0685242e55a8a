"""compiler.dynamics: the one discretisation every backend reads (forward Euler)."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from kdsnn.compiler.dynamics import (
    closing_edges,
    cycle_through,
    discretise,
    discretise_delay,
    needs_dt,
    parse_version,
    resolve_reset,
)

from kdsnn.errors import KdsnnError

DT = 1e-4


def _step(d, u, v, a):
    """One step of the float executors' implementation (`TensorNeuron`, float64) on numpy arrays."""
    def t(x):
        return torch.as_tensor(np.asarray(x, np.float64))

    u, v, s = d.tensors(t).step(t(u), t(v), t(a))
    return u.numpy(), v.numpy(), None if s is None else s.numpy()


def _lif(beta: float, thr: float = 1.0, n: int = 3) -> nir.LIF:
    """What snnTorch's export_nir writes for Leaky(beta) (tau = dt/(1-beta), r = tau/dt)."""
    tau = np.full(n, DT / (1 - beta)) if beta < 1 else np.full(n, np.inf)
    return nir.LIF(tau=tau, r=tau / DT, v_leak=np.zeros(n), v_threshold=np.full(n, thr), v_reset=np.zeros(n))


def test_forward_euler_of_nir_lif() -> None:
    """One step of the common form is forward Euler of tau dv/dt = v_leak - v + r I."""
    node = nir.LIF(tau=np.array([2e-3]), r=np.array([3.0]), v_leak=np.array([0.5]), v_threshold=np.array([9.0]))
    d = discretise(node, 1e-4)
    v0, i = 0.2, 1.5
    _, v, _ = _step(d, np.zeros(1), np.array([v0]), np.array([i]))
    assert v[0] == pytest.approx(v0 + 1e-4 / 2e-3 * (0.5 - v0 + 3.0 * i), rel=1e-12)


@settings(max_examples=25, deadline=None)
@given(beta=st.floats(0.5, 1.0), thr=st.floats(0.2, 2.0), seed=st.integers(0, 2**31 - 1))
def test_snntorch_leaky_zero_reset_equals_common_form(beta: float, thr: float, seed: int) -> None:
    """snnTorch's Leaky (reset 'zero') on random input equals the discretised export, step by step."""
    import snntorch as snn

    x = np.random.default_rng(seed).normal(0.4, 0.8, (20, 3))
    lk = snn.Leaky(beta=beta, threshold=thr, reset_mechanism="zero")
    mem = lk.init_leaky()
    d = discretise(_lif(beta, thr), DT)
    u = v = np.zeros(3)
    for t in range(len(x)):
        spk, mem = lk(torch.tensor(x[t], dtype=torch.float64), mem)
        u, v, s = _step(d, u, v, x[t])
        np.testing.assert_array_equal(s, spk.numpy() > 0)


def test_cuba_snntorch_convention_unit_gain() -> None:
    alpha, beta = 0.8, 0.9
    ts, tm = DT / (1 - alpha), DT / (1 - beta)
    node = nir.CubaLIF(tau_syn=np.array([ts]), tau_mem=np.array([tm]), r=np.array([tm / DT]),
                       v_leak=np.zeros(1), v_threshold=np.ones(1), w_in=np.array([ts / DT]))
    d = discretise(node, DT)
    assert d.alpha[0] == pytest.approx(1 - alpha) and d.beta[0] == pytest.approx(1 - beta)
    assert d.gain[0] == pytest.approx(1.0)


def test_if_r_conventions() -> None:
    one = discretise(nir.IF(r=np.ones(2), v_threshold=np.ones(2)), None)
    assert np.all(one.gain == 1) and one.reset == "zero"
    sj = discretise(nir.IF(r=np.full(2, 1e4), v_threshold=np.ones(2)), 1e-4)   # SpikingJelly: r = 1/dt
    assert sj.gain == pytest.approx(1.0)
    with pytest.raises(KdsnnError, match=r"node 'if1'.*--dt.*1e-4"):
        discretise(nir.IF(r=np.full(2, 1e4), v_threshold=np.ones(2)), None, name="if1")


def test_non_firing_and_infinite_tau() -> None:
    li = discretise(nir.LI(tau=np.full(2, np.inf), r=np.full(2, np.inf), v_leak=np.zeros(2)), None)
    assert li.reset == "none" and not li.spiking and np.all(li.gain == 1) and np.all(li.beta == 0)
    with pytest.raises(KdsnnError, match="never integrates"):
        discretise(nir.LIF(tau=np.full(2, np.inf), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2)),
                   None, name="x")
    with pytest.raises(KdsnnError, match="smaller --dt"):
        discretise(nir.LIF(tau=np.full(2, 1e-4), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2)), 1e-3)


def test_resets_and_versions() -> None:
    node = nir.IF(r=np.ones(1), v_threshold=np.ones(1))
    assert parse_version(b"0.2.0") == (0, 2, 0) and parse_version("1.0.8") == (1, 0, 8)
    with pytest.raises(KdsnnError, match=r"node 'n'.*nir 0\.2\.0.*--reset"):
        resolve_reset("n", node, None, False, (0, 2, 0))
    assert resolve_reset("n", node, "subtract", False, (0, 2, 0)) == ("subtract", None)
    assert resolve_reset("n", node, None, False, (1, 0, 8)) == ("zero", None)
    mode, note = resolve_reset("n", node, "subtract", True, (1, 0, 8))
    assert mode == "subtract" and "overrides the stated v_reset=0" in note
    d = discretise(node, None, "subtract")
    _, v, s = _step(d, np.zeros(1), np.array([0.0]), np.array([2.5]))
    assert s[0] and v[0] == pytest.approx(1.5)


def test_delays_and_cycles() -> None:
    assert discretise_delay(nir.Delay(delay=np.array([2e-3, 0.0])), 1e-3).steps.tolist() == [2, 0]
    with pytest.raises(KdsnnError, match="whole number of steps"):
        discretise_delay(nir.Delay(delay=np.array([1.5e-3])), 1e-3, name="d")
    assert needs_dt(nir.Delay(delay=np.array([1.0]))) is not None
    nodes = ["input", "fc", "lif", "w_rec", "out"]
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "out"), ("lif", "w_rec"), ("w_rec", "lif")]
    assert closing_edges(nodes, edges, ["input"]) == [("w_rec", "lif")]
    assert cycle_through("lif", "w_rec", edges) == ["lif", "w_rec"]


def test_non_numeric_parameters_name_the_node() -> None:
    """A graph built in Python (lower() takes one without the reader's checks) with a
    non-numeric parameter is refused naming the node and the parameter, not a bare value."""
    text = np.array(["fast", "slow"])
    lif = nir.LIF(tau=text, r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2), v_reset=np.zeros(2))
    with pytest.raises(KdsnnError, match=r"^node 'lif9': tau array\(\['fast', 'slow'\].* is not numeric"):
        discretise(lif, DT, name="lif9")
    if_ = nir.IF(r=np.ones(2), v_threshold=text, v_reset=np.zeros(2))
    with pytest.raises(KdsnnError, match=r"^node 'if3': v_threshold .* is not numeric"):
        discretise(if_, None, name="if3")
    with pytest.raises(KdsnnError, match=r"^node 'if3': v_reset .* is not numeric"):
        resolve_reset("if3", nir.IF(r=np.ones(2), v_threshold=np.ones(2), v_reset=text), "subtract", True, (1, 0, 8))
    with pytest.raises(KdsnnError, match=r"^src: node 'd1': delay .* is not numeric"):
        discretise_delay(nir.Delay(delay=text), 1e-3, name="d1", source="src")
