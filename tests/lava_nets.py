"""Shared by the Lava tests (test_lava_*.py): the canonical integer semantics written straight
from compiler/intnet.py's docstring (docs/design.md, "Integer semantics"), and Lava's
fixed-point arithmetic it names, as `ref_run`; random dense / conv IntNets; `needs_lava`;
`assert_same`, which names the first difference between a run and the reference.
"""

from __future__ import annotations

import numpy as np
import pytest
from kdsnn.compiler.intnet import INPUT, Connection, InputSpec, IntNet, Population

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
