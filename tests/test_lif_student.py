"""Leaky students (kdsnn.lif) and the rate encoding (kdsnn.encoding)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kdsnn.encoding import encode_dataset, rate_encode
from kdsnn.layers import GraphNet, make_neuron
from kdsnn.lif import DECAY_UNIT, LIFNeuron, beta_from_tau, beta_on_grid
from kdsnn.neurons import IFNeuron
from kdsnn.zoo import build


def _scalar_lif(y: np.ndarray, beta: float, theta: float, reset: str) -> np.ndarray:
    """The LIF equations of kdsnn/lif.py, one neuron and one step at a time (float64)."""
    T, n = y.shape
    out = np.zeros_like(y)
    for i in range(n):
        v = 0.0
        for t in range(T):
            v = beta * v + y[t, i]
            if v > theta:
                out[t, i] = 1.0
                v = 0.0 if reset == "zero" else v - theta
    return out


@settings(max_examples=40, deadline=None)
@given(T=st.integers(1, 8), beta=st.floats(0.3, 1.0), theta=st.floats(0.25, 2.0),
       reset=st.sampled_from(["zero", "subtract"]), seed=st.integers(0, 2**16))
def test_lif_matches_scalar_equations(T, beta, theta, reset, seed):
    y = np.random.default_rng(seed).normal(0.4, 0.8, size=(T, 7))
    n = LIFNeuron(theta=theta, beta=beta, reset=reset)
    n.T = T
    got = n(torch.from_numpy(y)).numpy()
    np.testing.assert_array_equal(got, _scalar_lif(y, n.beta, theta, reset))


def test_beta_one_zero_reset_is_the_if_neuron():
    y = torch.randn(5 * 3, 4, dtype=torch.float64)
    a, b = LIFNeuron(theta=0.7, beta=1.0), IFNeuron(theta=0.7)
    a.T = b.T = 5
    assert torch.equal(a(y), b(y))


def test_leak_is_on_the_12bit_grid_and_learnable():
    for beta in (0.9, 0.95, 0.123456, 1.0):
        q = beta_on_grid(beta)
        assert abs(q - beta) <= 0.5 / DECAY_UNIT + 1e-12
        assert ((1 - q) * DECAY_UNIT) == round((1 - q) * DECAY_UNIT)
    assert beta_from_tau(10.0) == pytest.approx(0.9) and beta_from_tau(float("inf")) == 1.0
    with pytest.raises(ValueError):
        beta_on_grid(0.0)
    n = LIFNeuron(theta=0.5, beta=0.8, learn_beta=True)
    n.T = 4
    n(torch.rand(4 * 3, 6, requires_grad=True)).sum().backward()
    assert n.beta_param.grad is not None and n.beta_param.grad.abs() > 0
    assert ((1 - n.beta) * DECAY_UNIT) == round((1 - n.beta) * DECAY_UNIT)


def test_graphnet_builds_lif_students_and_accepts_trains():
    cfg = {"model": "lif", "theta": 1.0, "beta": 0.9, "reset": "subtract"}
    net = build("cnn", True, 10, (1, 8, 8), T=3, neuron=cfg)
    acts = [m for m in net.modules() if isinstance(m, LIFNeuron)]
    assert acts and all(m.reset == "subtract" and m.T == 3 for m in acts)
    assert isinstance(make_neuron({"theta": 1.0}), IFNeuron)
    with pytest.raises(ValueError, match="neuron model"):
        make_neuron({"model": "adex"})
    x = torch.rand(2, 1, 8, 8)
    trains = x.unsqueeze(1).expand(2, 3, 1, 8, 8)
    net.eval()
    with torch.no_grad():   # a constant train is the direct encoding
        assert torch.allclose(net(trains), net(x), atol=1e-6)
        with pytest.raises(ValueError, match="steps"):
            net(x.unsqueeze(1).expand(2, 4, 1, 8, 8))


def test_rate_encoding_probability_and_determinism():
    x = torch.tensor([0.0, 0.25, 1.0]).reshape(3, 1, 1, 1).expand(3, 1, 40, 40)
    s = rate_encode(x, 50, None, None, torch.Generator().manual_seed(1))
    assert s.shape == (3, 50, 1, 40, 40) and set(s.unique().tolist()) <= {0.0, 1.0}
    rates = s.mean(dim=(1, 2, 3, 4))
    assert rates[0] == 0 and rates[2] == 1 and abs(float(rates[1]) - 0.25) < 0.01
    # normalized input: intensity = x * std + mean
    xn = (torch.full((1, 1, 2, 2), 0.5) - 0.1307) / 0.3081
    p = rate_encode(xn, 4000, [0.1307], [0.3081], torch.Generator().manual_seed(0)).mean()
    assert abs(float(p) - 0.5) < 0.02
    xs = np.random.default_rng(0).random((5, 1, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(encode_dataset(xs, 3, None, None, seed=7),
                                  encode_dataset(xs, 3, None, None, seed=7))
    assert not np.array_equal(encode_dataset(xs, 3, None, None, seed=7),
                              encode_dataset(xs, 3, None, None, seed=8))


def test_rate_student_encodes_images_itself():
    net = GraphNet(build("cnn", True, 10, (1, 8, 8), T=2).specs, (1, 8, 8), 10, True, T=2,
                   encoding={"kind": "rate", "seed": 3, "mean": [0.0], "std": [1.0]})
    x = torch.rand(4, 1, 8, 8)
    a = net(x)
    net2 = GraphNet(net.specs, (1, 8, 8), 10, True, T=2,
                    encoding={"kind": "rate", "seed": 3, "mean": [0.0], "std": [1.0]})
    net2.load_state_dict(net.state_dict())
    assert torch.equal(a, net2(x))     # same seed, same spikes


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_lif_student_exports_to_nir_lif_and_the_reference_reproduces_it(reset):
    import nir
    from kdsnn.backends.reference import ReferenceBackend
    from kdsnn.compiler.export import student_to_nir

    net = build("cnn", True, 10, (1, 8, 8), T=4,
                neuron={"model": "lif", "theta": 0.5, "beta": 0.8, "reset": reset}).eval()
    g = student_to_nir(net, {"kind": "student", "dataset": "digits", "T": 4})
    lifs = [k for k, v in g.nodes.items() if isinstance(v, nir.LIF)]
    assert lifs == ["act1", "act2", "act3"]
    assert g.metadata["dt"] == 1.0
    assert (g.metadata.get("reset_modes") or {}).get("act1", "zero") == reset
    rng = np.random.default_rng(0)
    for x in (rng.normal(size=(12, 1, 8, 8)).astype(np.float32),                 # direct
              (rng.random((12, 4, 1, 8, 8)) < 0.3).astype(np.float32)):       # spike trains
        with torch.no_grad():
            want = net(torch.from_numpy(x)).double().numpy()
        got = ReferenceBackend().compile(g).run(x)
        assert np.abs(got.logits - want).max() < 1e-5
        assert sum(int(v.sum()) for v in got.spike_counts.values()) > 0
