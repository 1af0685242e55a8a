"""Calibration with folded pools factored back out (sum-pool + reduced kernel): the same float
graph, the same spikes, statistics equal to float64 rounding, and the cheaper form is taken."""

from __future__ import annotations

import numpy as np
import pytest
from kdsnn.compiler.geometry import pool_factor
from kdsnn.compiler.lower import lowering_state
from kdsnn.compiler.passes.calibrate import _prepare, simulate
from test_lower import _x, conv_graph, residual_graph

GRAPHS = {"conv_avg": lambda: conv_graph(0, "avg"), "conv_sum": lambda: conv_graph(1, "sum"),
          "residual": lambda: residual_graph(0)}


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_factored_calibration_equals_the_folded_kernels(name: str) -> None:
    g = GRAPHS[name]()
    x = _x(g, 24)
    st = lowering_state(g, "loihi", x[:8])
    factored = [c for c in st.conns if _prepare(c, st.shape_of(c.src))[1] > 1]
    assert factored, "the graph has a folded pool the calibration should factor out"
    new, old = simulate(st, x), simulate(st, x, factor_pools=False)
    for k in old["spike_counts"]:
        np.testing.assert_array_equal(new["spike_counts"][k], old["spike_counts"][k], err_msg=k)
    np.testing.assert_allclose(new["logits"], old["logits"], rtol=1e-12, atol=1e-12)
    for p, s in old["stats"].items():
        for k, v in s.items():
            assert new["stats"][p][k] == pytest.approx(v, rel=1e-12, abs=1e-12), (p, k)


def test_pool_factor_reads_lowering_connections() -> None:
    st = lowering_state(conv_graph(0, "avg"), "loihi", _x(conv_graph(0, "avg"), 4))
    c = next(c for c in st.conns if c.kind == "conv" and c.weight.shape[-1] > 3)   # pool folded in
    s, wr = pool_factor(c, np.asarray(c.weight), st.shape_of(c.src))
    assert s == 2 and wr.shape[-1] * 2 == c.weight.shape[-1]
