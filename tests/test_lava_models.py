"""The Lava backend's pieces without a Lava run: layouts, the conv process models, Lava's
weight rules, the backend's contract, and the tests' own reference (lava_nets.ref_run, the
canonical integer semantics of docs/design.md, "Integer semantics") against intsim.
"""

from __future__ import annotations

import numpy as np
import pytest
from kdsnn.compiler.intnet import INPUT, Connection
from lava_nets import (
    _conv,
    _conv_out,
    _eff_weight,
    assert_same,
    conv_net,
    dense_net,
    overflow_net,
    ref_run,
)

from kdsnn.errors import KdsnnError


def test_layout_permutations_are_exact():
    from kdsnn.backends.lava import layout

    rng = np.random.default_rng(1)
    shape_s, shape_d = (3, 5, 4), (2, 3, 6)
    x = rng.integers(-9, 9, size=(2, *shape_s))
    xl = layout.to_lava(x, shape_s)
    assert xl.shape == (2, 4, 5, 3) and np.array_equal(xl[1, 2, 3, 1], x[1, 1, 3, 2])
    assert np.array_equal(layout.from_lava_flat(xl.reshape(2, -1), shape_s), x)
    w = rng.integers(-9, 9, size=(36, 60))
    wl = layout.dense_weight(w, shape_s, shape_d)
    want = layout.to_lava((x.reshape(2, -1) @ w.T).reshape(2, *shape_d), shape_d).reshape(2, -1)
    assert np.array_equal(xl.reshape(2, -1) @ wl.T, want)


@pytest.mark.parametrize("k,s,p,d,g", [((3, 3), (1, 1), (1, 1), (1, 1), 1),
                                       ((3, 2), (2, 1), (1, 0), (1, 2), 1),
                                       ((2, 3), (1, 2), (0, 1), (2, 1), 2),
                                       ((1, 1), (2, 2), (0, 0), (1, 1), 4)])
def test_conv_layout_matches_lavas_conv(k, s, p, d, g):
    """Lava's own conv (true convolution on (W, H, C)) with our converted kernel equals
    PyTorch-layout cross-correlation, for stride/padding/dilation/groups and H != W."""
    from kdsnn.backends.lava import layout
    from lava.proc.conv import utils

    rng = np.random.default_rng(2)
    cin, cout, h, w = 4, 8, 9, 7
    x = rng.integers(-127, 128, size=(1, cin, h, w)).astype(np.int32)
    wt = rng.integers(-256, 256, size=(cout, cin // g, *k)).astype(np.int32)
    c = Connection("c", INPUT, "y", "conv", wt, stride=s, padding=p, dilation=d, groups=g)
    ho, wo = _conv_out((h, w), k, s, p, d)
    want = _conv(x.astype(np.int64), wt.astype(np.int64), c, (ho, wo))
    lw = layout.conv_weight(wt)
    got = utils.conv(layout.to_lava(x, (cin, h, w))[0], lw, lw.shape[1:3], layout.xy(s),
                     layout.xy(p), layout.xy(d), g)
    assert got.shape == (wo, ho, cout)
    assert np.array_equal(got.transpose(2, 1, 0)[None], want)


@pytest.mark.parametrize("k,s,p,d,g,graded", [((3, 3), (1, 1), (1, 1), (1, 1), 1, True),
                                              ((3, 2), (2, 1), (1, 0), (1, 2), 1, False),
                                              ((2, 3), (1, 2), (0, 1), (2, 1), 2, True),
                                              ((6, 6), (2, 2), (2, 2), (1, 1), 4, False)])
def test_im2col_conv_model_equals_lavas(k, s, p, d, g, graded):
    """PyConvModelFixedIm2col computes exactly what Lava's PyConvModelFixed computes, the
    24-bit output wrap included (large graded inputs and weights force it)."""
    from kdsnn.backends.lava.procs.processes import PyConvModelFixedIm2col as M
    from lava.proc.conv import utils

    rng = np.random.default_rng(8)
    cin, cout, X, Y = 4, 8, 11, 9
    m = M.__new__(M)                      # the arithmetic only: no runtime, no ports
    m.weight = rng.integers(-3000, 3000, size=(cout, *k, cin // g)).astype(np.int32)
    m.kernel_size, m.stride = np.array(k), np.array(s)
    m.padding, m.dilation, m.groups = np.array(p), np.array(d), np.array([g])
    m.num_message_bits = np.array([24 if graded else 0])
    m._plan = None
    x = (rng.integers(-2 ** 15, 2 ** 15, size=(X, Y, cin)).astype(np.int32) if graded
         else rng.random((X, Y, cin)) < 0.4)
    want = utils.signed_clamp(utils.conv(x, m.weight, k, s, p, d, g), bits=24)
    got = utils.signed_clamp(m._conv(x), bits=24)
    assert m._plan == "im2col" and got.dtype == want.dtype
    assert m._dtype == (np.float64 if graded else np.float32)     # both exactness paths
    assert np.array_equal(got, want)
    if graded:
        assert np.abs(utils.conv(x, m.weight, k, s, p, d, g)).max() >= 2 ** 23   # wrap exercised


def test_dense_weight_rules_are_lavas():
    from kdsnn.backends.lava.build import dense_effective_weight

    rng = np.random.default_rng(3)
    for mode in ("mixed", "excitatory", "inhibitory"):
        for bits in (8, 6, 3):
            c = Connection("c", INPUT, "y", "dense", rng.integers(-400, 400, size=(7, 9)).astype(np.int32),
                           sign_mode=mode, num_weight_bits=bits)
            assert np.array_equal(_eff_weight(c), dense_effective_weight(c)), (mode, bits)


def test_reference_matches_intsim():
    """The test's own reference is the canonical semantics: it equals intsim."""
    intsim = pytest.importorskip("kdsnn.backends.intsim")
    rng = np.random.default_rng(4)
    for net in (dense_net(rng, residual=True), conv_net(rng, residual=True), overflow_net(rng)):
        x = rng.normal(size=(6, *net.input.shape)).astype(np.float32)
        assert_same("intsim", ref_run(net, x), intsim.IntSimBackend().compile(net).run(x, record=True),
                    trains=True)


def test_overflow_net_overflows():
    net = overflow_net(np.random.default_rng(5))
    diag: dict = {}
    _, per, _ = ref_run(net, 3 * np.random.default_rng(6).normal(size=(8, 12)), diag)
    assert diag["u_wraps"] > 0 and diag["v_clips"] > 0 and per["act2"].sum() > 0


def test_backend_contract_and_refusals():
    from kdsnn.backends.lava import LavaBackend

    assert LavaBackend.name == "lava" and LavaBackend.accepts == "intnet"
    ok, reason = LavaBackend.available()
    assert ok == (reason == "")
    if not ok:
        return
    with pytest.raises(KdsnnError, match="IntNet"):
        LavaBackend().compile("graph.nir")
    net = conv_net(np.random.default_rng(7))
    with pytest.raises(KdsnnError, match="option"):
        LavaBackend().compile(net, periodd=3)
    net.connections[1].weight_exp = 1
    with pytest.raises(KdsnnError, match="conv2.*weight_exp"):
        LavaBackend().compile(net)
