"""intsim's fast-path contracts: the strided sum-pool and its exactness bound, reused buffers and
the automatic batch (results independent of both), against integer references."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from intnet_gen import random_intnet
from kdsnn.backends.intsim import IntSimBackend
from kdsnn.backends.intsim.fast import auto_batch
from kdsnn.backends.intsim.kernels import F32_EXACT, accumulation_bound, pooled_bound, sum_pool


def _ref_pool(x: np.ndarray, s: int) -> np.ndarray:
    n, c, h, w = x.shape
    return x.reshape(n, c, h // s, s, w // s, s).sum(axis=(3, 5))


@settings(max_examples=120, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), s=st.sampled_from([2, 3, 4]), hw=st.integers(1, 4),
       vmax=st.sampled_from([1, 255, 2**20]), dt=st.sampled_from([torch.int64, torch.float32, torch.float64]))
def test_sum_pool_is_the_integer_window_sum(seed: int, s: int, hw: int, vmax: int, dt: torch.dtype) -> None:
    g = np.random.default_rng(seed)
    x = g.integers(-vmax, vmax + 1, size=(2, 3, s * hw, s * (hw + 1)))
    if dt == torch.float32 and s * s * vmax >= F32_EXACT:
        return                                           # outside the bound: float32 never chosen
    scratch: dict = {}
    for _ in range(2):                                   # the second call reuses the buffers
        got = sum_pool(torch.from_numpy(x).to(dt), s, scratch)
        np.testing.assert_array_equal(got.to(torch.int64).numpy(), _ref_pool(x, s))


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), s=st.sampled_from([2, 3]), src_max=st.sampled_from([1, 7, 255]))
def test_pooled_bound_covers_every_partial_sum(seed: int, s: int, src_max: int) -> None:
    """Any order of adding w_r * window sums stays within the folded kernel's bound."""
    g = np.random.default_rng(seed)
    wr = g.integers(-8, 9, size=(3, 2, 2, 2))                              # reduced kernel (O, I, 2, 2)
    wf = np.repeat(np.repeat(wr, s, axis=2), s, axis=3)                    # folded: pool into the kernel
    bound = pooled_bound(accumulation_bound(wf, "conv", src_max), s, src_max)
    x = g.integers(-src_max, src_max + 1, size=(2, 2 * s, 2 * s))          # one receptive field
    pooled = _ref_pool(x[None], s)[0]
    assert np.abs(pooled).max() <= bound
    for o in range(wr.shape[0]):
        terms = (wr[o] * pooled).reshape(-1)
        for order in (terms, terms[::-1], g.permutation(terms)):
            assert np.abs(np.cumsum(order)).max(initial=0) <= bound


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), big=st.booleans())
def test_results_do_not_depend_on_batch_or_buffer_reuse(seed: int, big: bool) -> None:
    net = random_intnet(seed, big=big)
    g = np.random.default_rng(seed)
    shape = (5, net.T, *net.input.shape) if net.input.temporal else (5, *net.input.shape)
    x = g.integers(0, net.input.qmax + 1, size=shape).astype(np.float64) / net.input.scale
    x2 = x[::-1].copy()
    fresh = IntSimBackend().compile(net, check_lava_datapath=False).run(x2, record=True)
    exe = IntSimBackend().compile(net, check_lava_datapath=False, memory_budget=1)   # batch 1
    assert exe.batch_size == 1
    exe.run(x)                                                  # fills the buffers with other data
    again = exe.run(x2, record=True)
    np.testing.assert_array_equal(again.logits, fresh.logits)
    for k in fresh.spike_trains:
        np.testing.assert_array_equal(again.spike_trains[k], fresh.spike_trains[k])
    assert again.extra["overflow"] == fresh.extra["overflow"]


def test_auto_batch_fits_the_budget() -> None:
    net = random_intnet(3, big=True)
    per = 4 * net.T * max(p.size for p in net.populations)
    assert auto_batch(net, 256, per * 10) == min(256, 10)
    assert auto_batch(net, 4, per * 10) == 4                    # never above the requested batch
    assert auto_batch(net, 256, 1) == 1
