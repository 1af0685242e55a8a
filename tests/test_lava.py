"""The Lava backend against the canonical integer semantics (docs/design.md, "Integer semantics"), sample by sample.

`ref_run` is written straight from compiler/intnet.py's docstring (and Lava's fixed-point
arithmetic it names); once backends/intsim/ exists, the Lava runs are compared to it too.
"""

from __future__ import annotations

import numpy as np
import pytest
from kdsnn.compiler.intnet import INPUT, Connection, InputSpec, IntNet, Population

from kdsnn.errors import KdsnnError

# ---------------------------------------------------------------------------------------
# canonical integer semantics, from compiler/intnet.py's docstring


def _decay(x: np.ndarray, d: int) -> np.ndarray:
    return np.sign(x) * ((np.abs(x) * (4096 - d)) >> 12)


def _wrap24(x: np.ndarray) -> np.ndarray:
    m = 2 ** 23                       # Lava: > 2**23 wraps down, <= -2**23 wraps up
    y = np.where(x > m, x - 2 * m, x)
    return np.where(y <= -m, x + 2 * m, y)


def _clip24(x: np.ndarray) -> np.ndarray:
    return np.clip(x, -(2 ** 23) + 1, 2 ** 23 - 1)


def _eff_weight(c: Connection) -> np.ndarray:
    """Lava's Dense: clip_weights(num_bits=8) then truncate_weights(num_weight_bits)."""
    w = np.asarray(c.weight, dtype=np.int64)
    mixed = c.sign_mode == "mixed"
    if c.sign_mode == "inhibitory":
        w = -w
    w = np.clip(w, -256 if mixed else 0, 255)
    k = 8 - c.num_weight_bits + int(mixed)
    w = (w >> k) << k
    return -w if c.sign_mode == "inhibitory" else w


def _conv(s: np.ndarray, w: np.ndarray, c: Connection, out_hw: tuple[int, int]) -> np.ndarray:
    """Cross-correlation, PyTorch layout, int64. s: (N, C, H, W); w: (Co, Ci/g, kH, kW)."""
    n, cin, _, _ = s.shape
    co, cig, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw), g = c.stride, c.padding, c.dilation, c.groups
    xp = np.pad(s, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho, wo = out_hw
    out = np.zeros((n, co, ho, wo), np.int64)
    cog = co // g
    for gi in range(g):
        xs = xp[:, gi * cig:(gi + 1) * cig]
        ws = w[gi * cog:(gi + 1) * cog]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dh: i * dh + sh * (ho - 1) + 1: sh,
                           j * dw: j * dw + sw * (wo - 1) + 1: sw]
                out[:, gi * cog:(gi + 1) * cog] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
    base = 1 << 24                      # Lava's Conv wraps its output to 24 bits
    return (out + base // 2) % base - base // 2


def ref_run(net: IntNet, x: np.ndarray, diag: dict | None = None):
    """-> logits (N, K) int64, per-step spike counts {pop: (N, T)}, trains {pop: (N,T,n)}.

    `diag`, when given, counts u wraps and v clips (to prove overflow cases were exercised).
    """
    xq = net.input.quantize(x).astype(np.int64)
    n = len(xq)
    u = {p.name: np.zeros((n, p.size), np.int64) for p in net.populations}
    v = {p.name: np.zeros((n, p.size), np.int64) for p in net.populations}
    per = {p.name: np.zeros((n, net.T), np.int64) for p in net.populations}
    trains = {p.name: np.zeros((n, net.T, p.size), np.uint8) for p in net.populations}
    for t in range(net.T):
        s = {INPUT: xq.reshape(n, -1)}
        for p in net.populations:
            a = np.zeros((n, p.size), np.int64)
            for c in net.incoming(p.name):
                w = _eff_weight(c) if c.kind == "dense" else np.asarray(c.weight, np.int64)
                src = s[c.src]
                if c.kind == "dense":
                    acc = src @ w.T
                    acc = acc << c.weight_exp if c.weight_exp > 0 else acc >> -c.weight_exp
                else:
                    acc = _conv(src.reshape(n, *net.shape_of(c.src)), w, c,
                                tuple(p.shape[1:])).reshape(n, -1)
                a += acc
            pre_u = _decay(u[p.name], p.du + 1) + (a << 6)
            u[p.name] = _wrap24(pre_u)
            bias = np.asarray(p.bias_mant, np.int64).reshape(-1)
            bias = (bias + 2 ** 15) % 2 ** 16 - 2 ** 15         # Lava stores bias_mant as int16
            bias = bias << p.bias_exp if p.bias_exp >= 0 else bias >> -p.bias_exp
            pre_v = _decay(v[p.name], p.dv) + u[p.name] + bias
            v[p.name] = _clip24(pre_v)
            if diag is not None:
                diag["u_wraps"] = diag.get("u_wraps", 0) + int((pre_u != u[p.name]).sum())
                diag["v_clips"] = diag.get("v_clips", 0) + int((pre_v != v[p.name]).sum())
            spk = v[p.name] > (p.vth << 6)        # the readout too: its vth keeps it silent
            v[p.name][spk] = 0
            s[p.name] = spk.astype(np.int64)
            per[p.name][:, t] = spk.sum(axis=1)
            trains[p.name][:, t] = spk
    logits = v[net.readout.name].reshape(n, -1)
    return logits, per, trains


# ---------------------------------------------------------------------------------------
# random IntNets: dense / conv, with and without residual shortcuts


def _pop(rng, name, shape, readout=False, bias=8):
    return Population(name=name, shape=tuple(shape), vth=2 ** 17 - 1 if readout else 1,
                      bias_mant=rng.integers(-bias, bias + 1, size=shape).astype(np.int32),
                      readout=readout)


def _w(rng, shape, lo=-90, hi=110):
    return rng.integers(lo, hi, size=shape).astype(np.int32)


def _conv_out(hw, k, s, p, d):
    return tuple((hw[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(2))


def _convc(rng, name, src, dst, cin, cout, k, s=(1, 1), p=(0, 0), d=(1, 1), g=1, **kw):
    return Connection(name, src, dst, "conv", _w(rng, (cout, cin // g, *k)), stride=s,
                      padding=p, dilation=d, groups=g, graded=src == INPUT, **kw)


def _dense(rng, name, src, dst, n_dst, n_src, lo=-90, **kw):
    return Connection(name, src, dst, "dense", _w(rng, (n_dst, n_src), lo=lo), graded=src == INPUT,
                      **kw)


def dense_net(rng, T=4, residual=False, scale=40.0) -> IntNet:
    pops = [_pop(rng, "act1", (14,)), _pop(rng, "act2", (11,)), _pop(rng, "act3", (9,)),
            _pop(rng, "out", (4,), readout=True)]
    conns = [_dense(rng, "fc1", INPUT, "act1", 14, 12), _dense(rng, "fc2", "act1", "act2", 11, 14),
             _dense(rng, "fc3", "act2", "act3", 9, 11, weight_exp=1),
             _dense(rng, "fc4", "act3", "out", 4, 9, weight_exp=-1)]
    if residual:
        conns += [_dense(rng, "skip1", "act1", "act3", 9, 14, sign_mode="excitatory", lo=0),
                  _dense(rng, "skip_in", INPUT, "act2", 11, 12),
                  _dense(rng, "skip2", "act1", "out", 4, 14, num_weight_bits=6)]
    return calibrate(IntNet(input=InputSpec(shape=(12,), scale=scale), populations=pops,
                            connections=conns, T=T), rng)


def conv_net(rng, T=3, residual=False, scale=40.0) -> IntNet:
    cin, h, w = 2, 9, 8                           # H != W: catches any W/H swap
    k1 = (3, 3)
    hw1 = _conv_out((h, w), k1, (1, 1), (1, 1), (1, 1))
    k2, s2, p2, d2 = (3, 2), (2, 1), (1, 0), (1, 2)
    hw2 = _conv_out(hw1, k2, s2, p2, d2)
    k3 = (2, 3)
    hw3 = _conv_out(hw2, k3, (1, 1), (0, 1), (1, 1))
    pops = [_pop(rng, "act1", (4, *hw1)), _pop(rng, "act2", (6, *hw2)),
            _pop(rng, "act3", (6, *hw3)), _pop(rng, "out", (5,), readout=True)]
    conns = [_convc(rng, "conv1", INPUT, "act1", cin, 4, k1, p=(1, 1)),
             _convc(rng, "conv2", "act1", "act2", 4, 6, k2, s=s2, p=p2, d=d2),
             _convc(rng, "conv3", "act2", "act3", 6, 6, k3, p=(0, 1), g=3),
             _dense(rng, "fc", "act3", "out", 5, 6 * hw3[0] * hw3[1])]
    if residual:
        # act1 -> act3 skips a layer (1 relay); input -> act2 (delayed source);
        # act1 -> out skips two (2 relays); the readout also sums a conv-free dense path
        assert _conv_out(hw1, (3, 3), (2, 1), (0, 0), (1, 1)) == hw3 and hw1 == (h, w)
        conns += [_convc(rng, "skip13", "act1", "act3", 4, 6, (3, 3), s=(2, 1)),
                  _convc(rng, "skip02", INPUT, "act2", cin, 6, k2, s=s2, p=p2, d=d2),
                  _dense(rng, "skip1o", "act1", "out", 5, 4 * hw1[0] * hw1[1])]
    return calibrate(IntNet(input=InputSpec(shape=(cin, h, w), scale=scale), populations=pops,
                            connections=conns, T=T), rng)


def calibrate(net: IntNet, rng, n=16) -> IntNet:
    """Pick each vth (in order) so the population fires at a middling rate on random data."""
    x = rng.normal(size=(n, *net.input.shape)).astype(np.float32)
    for p in net.populations:
        if p.readout:
            continue
        lo, hi = 0, 2 ** 16
        while hi - lo > 1:
            p.vth = (lo + hi) // 2
            _, per, _ = ref_run(net, x)
            rate = per[p.name].mean() / p.size
            lo, hi = (p.vth, hi) if rate > 0.3 else (lo, p.vth)
        p.vth = hi
    net.validate()
    return net


def overflow_net(rng, T=4) -> IntNet:
    """Inputs at the quantization limit, big weights: u wraps at 24 bits and v clips."""
    pops = [_pop(rng, "act1", (10,)), _pop(rng, "act2", (6,), bias=4000),
            _pop(rng, "out", (3,), readout=True)]
    pops[1].bias_exp = 6
    conns = [Connection("fc1", INPUT, "act1", "dense", _w(rng, (10, 12), -256, 256), graded=True),
             Connection("fc2", "act1", "act2", "dense", _w(rng, (6, 10), -40, 256), weight_exp=7),
             Connection("fc3", "act2", "out", "dense", _w(rng, (3, 6), -256, 256), weight_exp=9)]
    net = IntNet(input=InputSpec(shape=(12,), scale=500.0), populations=pops, connections=conns, T=T)
    pops[0].vth, pops[1].vth = 30000, 2 ** 17 - 1
    net.validate()
    return net


def _lava_ok() -> bool:
    from kdsnn.backends.lava import LavaBackend
    return LavaBackend.available()[0]


needs_lava = pytest.mark.skipif(not _lava_ok(), reason="lava-nc not importable here")


def assert_same(name: str, ref, res, trains: bool = False) -> None:
    """Logits and per-layer per-step spike counts identical; the first difference named."""
    lg, per, tr = ref
    for k in per:
        got = res.layer_spikes_per_step[k]
        if not np.array_equal(per[k], got):
            i, t = np.argwhere(per[k] != got)[0]
            raise AssertionError(f"{name}: layer {k} differs first at sample {i}, step {t}: "
                                 f"{per[k][i].tolist()} != {got[i].tolist()}")
        assert np.array_equal(per[k].sum(1), res.spike_counts[k])
        if trains:
            assert np.array_equal(tr[k], res.spike_trains[k].reshape(tr[k].shape)), k
    bad = np.flatnonzero((lg != res.logits).any(axis=1))
    assert bad.size == 0, f"{name}: logits differ first at sample {bad[:1]}: {lg[bad[:1]]} != {res.logits[bad[:1]]}"
    assert res.logits.dtype == np.int64


# ---------------------------------------------------------------------------------------
# fast: schedule, layouts, Lava's weight rules, the reference itself


def test_schedule_depths_delays_and_steps():
    from kdsnn.backends.lava.schedule import make_schedule

    net = dense_net(np.random.default_rng(0), residual=True)
    s = make_schedule(net, 5)
    assert s.depth == {"input": 0, "act1": 1, "act2": 2, "act3": 3, "out": 4}
    assert s.extra == {"fc1": 0, "fc2": 0, "fc3": 0, "fc4": 0, "skip1": 1, "skip_in": 1, "skip2": 2}
    assert s.relays == {}                              # dense shortcuts run as DelayDense
    assert s.period == net.T and s.total_steps == 4 * 4 + 4 + 4
    for pop in s.depth:
        for k in range(5):
            for t in range(net.T):
                tau = s.step(pop, k, t)
                assert s.slot(s.depth[pop], tau) == (k, t)
                assert (tau % s.period == s.reset_offset(pop)) == (t == 0) or pop == "input"
    s2 = make_schedule(net, 3, period=7)
    assert s2.slot(2, 1 + 2 + 7 + 4) is None           # a gap step of sample 1 (t = 4 >= T)
    with pytest.raises(KdsnnError, match="period"):
        make_schedule(net, 3, period=net.T - 1)


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


# ---------------------------------------------------------------------------------------
# slow: real Lava runs, sample by sample against the canonical semantics


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


# ---------------------------------------------------------------------------------------
# the schedule, checked on many random graphs without Lava: a numpy model of Lava's timing
# (every connection delays by one step, LIFReset resets, relays, streamed samples)


def lava_timing_model(net: IntNet, sched, x: np.ndarray):
    """Step the network as Lava does, on the backend's schedule; -> logits, per-step counts.

    Every connection accumulates at tau what its source sent extra(c) steps before (relay
    chain or DelayDense) and delivers it at tau + 1; a population is silent outside its
    windows (CountingLIF); dense connections only (a numpy model, no Lava)."""
    from kdsnn.backends.lava.schedule import slot

    temporal = net.input.temporal
    xq = net.input.quantize(x).astype(np.int64)
    xq = xq.reshape(len(x), net.T, -1) if temporal else xq.reshape(len(x), -1)
    N, T, P = len(x), sched.T, sched.period
    pops = {p.name: p for p in net.populations}
    u = {k: np.zeros(p.size, np.int64) for k, p in pops.items()}
    v = {k: np.zeros(p.size, np.int64) for k, p in pops.items()}
    buf = {c.name: np.zeros(pops[c.dst].size, np.int64) for c in net.connections}
    hist = {k: {} for k in pops}                           # pop -> {tau: spikes}
    per = {k: np.zeros((N, T), np.int64) for k in pops}
    logits = np.zeros((N, net.readout.size), np.int64)
    for tau in range(1, sched.total_steps + 1):
        for k, p in pops.items():                          # receive last step's accumulation
            a = sum((buf[c.name] for c in net.incoming(k)), np.zeros(p.size, np.int64))
            if tau % P == sched.reset_offset(k):
                u[k][:] = 0
                v[k][:] = 0
            u[k] = _wrap24(_decay(u[k], p.du + 1) + (a << 6))
            bias = np.asarray(p.bias_mant, np.int64).reshape(-1)
            v[k] = _clip24(_decay(v[k], p.dv) + u[k] + (bias << p.bias_exp))
            sl = slot(tau, sched.depth[k], P, T, N)
            s = (v[k] > (p.vth << 6)) & (sl is not None)
            if p.reset == "subtract":
                v[k][s] -= p.vth << 6
            else:
                v[k][s] = 0
            hist[k][tau] = s.astype(np.int64)
            if sl is not None:
                per[k][sl] = s.sum()
                if p.readout and p.readout_kind == "spikes":
                    logits[sl[0]] += s
                elif p.readout and sl[1] == T - 1:
                    logits[sl[0]] = v[k]
        for c in net.connections:                          # accumulate spikes of tau - extra
            e = sched.extra[c.name]
            if c.src == INPUT:
                sl = slot(tau, e, P, T, N)
                if sl is None:
                    s = np.zeros(xq.shape[-1], np.int64)
                else:
                    s = xq[sl] if temporal else xq[sl[0]]
            else:
                s = hist[c.src].get(tau - e, np.zeros(pops[c.src].size, np.int64))
            acc = s @ _eff_weight(c).T
            buf[c.name] = acc << c.weight_exp if c.weight_exp > 0 else acc >> -c.weight_exp
    return logits, per


@pytest.mark.parametrize("seed", range(30))
def test_schedule_reproduces_general_semantics_on_random_graphs(seed):
    """Recurrent and delayed connections, leaky neurons, subtractive resets, spike-train
    inputs, spiking readouts: Lava's timing on the backend's schedule == intsim, sample by
    sample (scalar oracle), with the default period and a longer one."""
    from intnet_gen import random_general_intnet, random_input
    from kdsnn.backends.lava.schedule import make_schedule
    from oracles.intsim_ref import run_scalar

    net = random_general_intnet(seed, conv=False)
    x = random_input(net, 1 + seed % 3, seed)
    ref = run_scalar(net, x)
    for extra_period in (0, seed % 3):
        P = net.T + max(c.delay for c in net.connections) + extra_period
        sched = make_schedule(net, len(x), period=P)
        lg, per = lava_timing_model(net, sched, x)
        assert np.array_equal(lg, ref["logits"]), (seed, P)
        for k in per:
            assert np.array_equal(per[k], ref["spikes"][k].sum(axis=2)), (seed, P, k)


def test_schedule_refuses_fast_cycles_and_short_periods():
    """A cycle with fewer delay steps than connections cannot be step-exact on Lava (each
    synapse takes one step); a period without room for the delays is refused."""
    from intnet_gen import random_general_intnet
    from kdsnn.backends.lava.schedule import make_schedule

    net = random_general_intnet(3, conv=False)
    names = [p.name for p in net.populations]
    assert len(names) >= 2
    for c in net.connections:
        if c.src == names[-1] and c.dst == names[0]:
            c.delay = 1
    net.connections.append(Connection(name="fast_back", src=names[-1], dst=names[0], kind="dense",
                                      weight=np.ones((net.populations[0].size, net.readout.size), np.int32),
                                      delay=1))
    with pytest.raises(KdsnnError, match=r"cycle .* fewer steps of delay than connections"):
        make_schedule(net, 2)
    net.connections.pop()
    gap = max(c.delay for c in net.connections)
    with pytest.raises(KdsnnError, match="period"):
        make_schedule(net, 2, period=net.T + gap - 1)


@pytest.mark.parametrize("seed", range(30))
def test_schedule_reproduces_canonical_semantics_on_random_graphs(seed):
    """Random dense DAGs with skips of every length, random T, P >= T (P = T included),
    N samples streamed: Lava's timing on the backend's schedule == zero-delay semantics."""
    from kdsnn.backends.lava.schedule import make_schedule

    rng = np.random.default_rng(100 + seed)
    n_pops = int(rng.integers(2, 6))
    T = int(rng.integers(1, 5))
    sizes = [int(rng.integers(3, 9)) for _ in range(n_pops)]
    names = [f"act{i}" for i in range(n_pops - 1)] + ["out"]
    pops = [_pop(rng, nm, (sz,), readout=nm == "out") for nm, sz in zip(names, sizes, strict=True)]
    conns, shapes = [], {INPUT: 7}
    for i, p in enumerate(pops):
        srcs = [([INPUT] + names)[i]]                      # the chain ...
        srcs += [s for s in [INPUT] + names[:i] if s not in srcs and rng.random() < 0.4]  # ... + skips
        for s in srcs:
            conns.append(_dense(rng, f"{s}_{p.name}", s, p.name, p.size, shapes[s]))
        shapes[p.name] = p.size
    net = calibrate(IntNet(input=InputSpec(shape=(7,), scale=40.0), populations=pops,
                           connections=conns, T=T), rng, n=8)
    x = rng.normal(size=(int(rng.integers(1, 5)), 7))
    P = T + int(rng.integers(0, 3))
    sched = make_schedule(net, len(x), period=P)
    lg, per, _ = ref_run(net, x)
    lg2, per2 = lava_timing_model(net, sched, x)
    assert np.array_equal(lg, lg2)
    for k in per:
        assert np.array_equal(per[k], per2[k]), k
