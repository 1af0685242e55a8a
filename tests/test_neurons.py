"""IF neuron: forward against docs/design.md, "Float semantics" step by step; surrogate gradients against autograd."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kdsnn.neurons import IFNeuron, spike


def reference_if(y: np.ndarray, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """Scalar loop straight from docs/design.md, "Float semantics": v += y; s = v > theta; v = 0 where s."""
    T = y.shape[0]
    v = np.zeros(y.shape[1:], dtype=np.float64)
    s = np.zeros_like(y)
    vs = np.zeros_like(y)
    for t in range(T):
        for i in np.ndindex(v.shape):
            v[i] = v[i] + y[(t, *i)]
            if v[i] > theta:
                s[(t, *i)] = 1.0
                v[i] = 0.0
            vs[(t, *i)] = v[i]
    return s, vs


def run_if(y: np.ndarray, theta: float, static: bool = False) -> np.ndarray:
    n = IFNeuron(theta=theta)
    n.T = y.shape[0]
    x = torch.tensor(y[0] if static else y.reshape(-1, *y.shape[2:]), dtype=torch.float64)
    return n(x, static=static).reshape(y.shape).numpy()


def test_forward_by_hand() -> None:
    # theta = 1: inputs 0.6 each step -> v 0.6, 1.2 (fire, reset), 0.6, 1.2 (fire)
    y = np.array([[0.6], [0.6], [0.6], [0.6]])
    assert run_if(y, 1.0)[:, 0].tolist() == [0, 1, 0, 1]
    # exactly at threshold does not fire (strict >), and the potential keeps it
    y = np.array([[1.0], [0.0], [1e-9]])
    assert run_if(y, 1.0)[:, 0].tolist() == [0, 0, 1]
    # hard reset to 0 (not subtraction): 5.0 fires once, the excess is lost
    y = np.array([[5.0], [0.0], [0.5]])
    assert run_if(y, 1.0)[:, 0].tolist() == [1, 0, 0]
    # negative inputs integrate without a floor
    y = np.array([[-2.0], [1.5], [1.6]])
    assert run_if(y, 1.0)[:, 0].tolist() == [0, 0, 1]


@settings(max_examples=60, deadline=None)
@given(T=st.integers(1, 6), n=st.integers(1, 5), theta=st.sampled_from([0.25, 0.5, 1.0, 2.0]),
       seed=st.integers(0, 10_000), static=st.booleans())
def test_forward_matches_equations(T: int, n: int, theta: float, seed: int, static: bool) -> None:
    rng = np.random.default_rng(seed)
    # quarter-integers: sums are exact in float, so "== theta" cases really happen
    if static:
        y = np.broadcast_to(rng.integers(-8, 9, size=(1, 3, n)) / 4.0, (T, 3, n)).copy()
    else:
        y = rng.integers(-8, 9, size=(T, 3, n)) / 4.0
    s_ref, _ = reference_if(y, theta)
    np.testing.assert_array_equal(run_if(y, theta, static=static), s_ref)


def test_record_keeps_spikes() -> None:
    n = IFNeuron()
    n.T, n.record = 2, True
    out = n(torch.tensor([[2.0], [0.0]]))
    assert n.last_spikes is not None and n.last_spikes.shape == (2, 1, 1)
    assert torch.equal(n.last_spikes.reshape(-1), out.reshape(-1))


@pytest.mark.parametrize("surrogate,smooth", [
    ("sigmoid", lambda x, a: torch.sigmoid(a * x)),
    ("arctan", lambda x, a: torch.atan(math.pi / 2 * a * x) / math.pi + 0.5),
])
@pytest.mark.parametrize("slope", [1.0, 4.0, 10.0])
def test_surrogate_gradient_is_smooth_functions_derivative(surrogate, smooth, slope) -> None:
    x = torch.linspace(-2, 2, 41, dtype=torch.float64, requires_grad=True)
    s = spike(x, surrogate, slope)
    assert torch.equal(s, (x > 0).double())
    s.sum().backward()
    xr = x.detach().clone().requires_grad_(True)
    smooth(xr, slope).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad)


@pytest.mark.parametrize("surrogate", ["sigmoid", "arctan"])
@pytest.mark.parametrize("static", [False, True])
def test_fused_backward_equals_stepwise_autograd(surrogate: str, static: bool) -> None:
    """The fused multi-step node has the gradient of the step-by-step graph (detached reset)."""
    torch.manual_seed(1)
    T, B = 5, 7
    n = IFNeuron(theta=0.8, surrogate=surrogate, slope=3.0)
    n.T = T
    y = torch.randn(B if static else T * B, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(T * B, 6, dtype=torch.float64)
    (n(y, static=static) * w).sum().backward()
    g_fused = y.grad.clone()
    y.grad = None
    ys = y.unsqueeze(0).expand(T, B, 6) if static else y.reshape(T, B, 6)
    (n._forward_autograd(ys).reshape(T * B, 6) * w).sum().backward()
    torch.testing.assert_close(g_fused, y.grad)


def test_gradient_flows_through_time_by_hand() -> None:
    """dL/dy[0] collects the surrogate of steps 0 and 1 while no spike resets in between."""
    a = 4.0
    n = IFNeuron(theta=1.0, surrogate="sigmoid", slope=a)
    n.T = 2
    y = torch.tensor([[0.25], [0.5]], dtype=torch.float64, requires_grad=True)  # v: 0.25, 0.75
    n(y).sum().backward()

    def sg(x: float) -> float:
        s = 1 / (1 + math.exp(-a * x))
        return a * s * (1 - s)

    assert y.grad[1, 0].item() == pytest.approx(sg(0.75 - 1.0))
    assert y.grad[0, 0].item() == pytest.approx(sg(0.25 - 1.0) + sg(0.75 - 1.0))


def test_unknown_surrogate_refused() -> None:
    with pytest.raises(ValueError, match="unknown surrogate"):
        IFNeuron(surrogate="relu")
