"""The float reference backend against docs/design.md, "Float semantics" computed by hand, and against nirtorch."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from kdsnn.backends.reference import ReferenceBackend
from kdsnn.compiler.nir.canonicalize import canonicalize

from kdsnn.errors import KdsnnError

torch.set_num_threads(1)


def mlp(w1, b1, theta, w2, b2, T):
    n_in, n_h, n_out = w1.shape[1], w1.shape[0], w2.shape[0]
    nodes = {"input": nir.Input(input_type={"input": np.array([n_in])}),
             "fc1": nir.Affine(weight=w1, bias=b1),
             "act1": nir.IF(r=np.ones(n_h), v_threshold=np.full(n_h, theta), v_reset=np.zeros(n_h)),
             "fc2": nir.Affine(weight=w2, bias=b2),
             "readout": nir.I(r=np.ones(n_out)),
             "output": nir.Output(output_type={"output": np.array([n_out])})}
    edges = [("input", "fc1"), ("fc1", "act1"), ("act1", "fc2"), ("fc2", "readout"), ("readout", "output")]
    return canonicalize(nir.NIRGraph(nodes=nodes, edges=edges, metadata={"T": T}, type_check=False))


def by_hand(x, w1, b1, theta, w2, b2, T):
    """docs/design.md, "Float semantics" written out with Python loops."""
    logits = np.zeros((len(x), w2.shape[0]))
    spikes = np.zeros((len(x), T), np.int64)
    for n in range(len(x)):
        y = w1 @ x[n] + b1
        v = np.zeros_like(y)
        acc = np.zeros(w2.shape[0])
        for t in range(T):
            v = v + y
            s = (v > theta).astype(float)
            v = np.where(s > 0, 0.0, v)
            spikes[n, t] = int(s.sum())
            acc += w2 @ s + b2
        logits[n] = acc / T
    return logits, spikes


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), T=st.integers(1, 6), theta=st.floats(0.25, 2.0),
       batch=st.integers(1, 5))
def test_if_semantics_match_hand_computation(seed, T, theta, batch):
    rng = np.random.default_rng(seed)
    w1, b1 = rng.normal(size=(7, 5)), rng.normal(size=7) * 0.3
    w2, b2 = rng.normal(size=(3, 7)), rng.normal(size=3)
    x = rng.normal(size=(6, 5)) * 2
    res = ReferenceBackend().compile(mlp(w1, b1, theta, w2, b2, T), batch_size=batch).run(x, record=True)
    want, spikes = by_hand(x, w1, b1, theta, w2, b2, T)
    np.testing.assert_allclose(res.logits, want, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(res.layer_spikes_per_step["act1"], spikes)
    np.testing.assert_array_equal(res.spike_counts["act1"], spikes.sum(1))
    assert res.spike_trains["act1"].shape == (6, T, 7)
    np.testing.assert_array_equal(res.spike_trains["act1"].sum((1, 2)), spikes.sum(1))


def test_threshold_is_strict_and_reset_is_to_zero():
    # y = 0.5 per step, theta = 1: v = 0.5, 1.0 (== theta: no spike), 1.5 (spike, v = 0), 0.5, 1.0, 1.5 ...
    g = mlp(np.array([[1.0]]), np.array([0.0]), 1.0, np.array([[1.0]]), np.array([0.0]), 6)
    res = ReferenceBackend().compile(g).run(np.array([[0.5]]))
    np.testing.assert_array_equal(res.layer_spikes_per_step["act1"][0], [0, 0, 1, 0, 0, 1])
    assert res.logits[0, 0] == pytest.approx(2 / 6)


def conv_res_graph(T=3):
    rng = np.random.default_rng(3)
    sh = (2, 6, 6)

    def conv(ci, co):
        return nir.Conv2d(input_shape=(6, 6), weight=rng.normal(size=(co, ci, 3, 3)), stride=1, padding=1,
                          dilation=1, groups=1, bias=rng.normal(size=co) * 0.2)

    def iff():
        return nir.IF(r=np.ones(sh), v_threshold=np.full(sh, 0.7), v_reset=np.zeros(sh))

    nodes = {"input": nir.Input(input_type={"input": np.array([1, 6, 6])}),
             "c1": conv(1, 2), "a1": iff(), "c2": conv(2, 2), "cs": conv(1, 2), "a2": iff(),
             "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([1, 1])),
             "flat": nir.Flatten(input_type={"input": np.array([2, 4, 4])}, start_dim=0, end_dim=-1),
             "fc": nir.Affine(weight=rng.normal(size=(4, 32)), bias=np.zeros(4)),
             "readout": nir.I(r=np.ones(4)),
             "output": nir.Output(output_type={"output": np.array([4])})}
    # residual: a2 sums c2 (time-varying) and cs (static: straight from the input)
    edges = [("input", "c1"), ("c1", "a1"), ("a1", "c2"), ("c2", "a2"), ("input", "cs"), ("cs", "a2"),
             ("a2", "pool"), ("pool", "flat"), ("flat", "fc"), ("fc", "readout"), ("readout", "output")]
    return canonicalize(nir.NIRGraph(nodes=nodes, edges=edges, metadata={"T": T}, type_check=False))


def test_batching_dtype_and_nirtorch_agree():
    from oracles.nirtorch_maps import nir_to_stepper

    g = conv_res_graph()
    x = np.random.default_rng(0).normal(size=(9, 1, 6, 6)) * 2
    a = ReferenceBackend().compile(g, batch_size=9).run(x)
    b = ReferenceBackend().compile(g, batch_size=2).run(x)
    # float64 convolution may sum in another order for another batch size (oneDNN/BLAS
    # blocking), so logits agree to rounding, not bit for bit; spikes must agree exactly
    np.testing.assert_allclose(a.logits, b.logits, rtol=0, atol=1e-12)
    assert all(np.array_equal(a.spike_counts[k], b.spike_counts[k]) for k in a.spike_counts)
    assert a.spike_counts["a2"].sum() > 0
    # an independent executor: nirtorch's interpreter with our step modules, one step per call
    gm = nir_to_stepper(g)
    state, xt = None, torch.from_numpy(x)
    for _ in range(3):
        out, state = gm(xt, state)
    np.testing.assert_allclose(out.detach().numpy() / 3, a.logits, atol=1e-10)
    c = ReferenceBackend().compile(g, dtype="float32").run(x)
    assert c.logits.dtype == np.float32 and np.abs(c.logits - a.logits).max() < 1e-3


def test_T_override_and_bad_inputs():
    g = conv_res_graph(T=3)
    ex = ReferenceBackend().compile(g, T=5)
    r = ex.run(np.zeros((2, 1, 6, 6)))
    assert r.T == 5 and r.layer_spikes_per_step["a1"].shape == (2, 5)
    with pytest.raises(KdsnnError, match="do not match the graph's input"):
        ex.run(np.zeros((2, 1, 5, 5)))
    with pytest.raises(KdsnnError, match="NIR graphs"):
        ReferenceBackend().compile("not a graph")
    if not torch.cuda.is_available():
        with pytest.raises(KdsnnError, match="CUDA is not available"):
            ReferenceBackend().compile(g, device="cuda")
