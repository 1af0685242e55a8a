"""A deliberately simple scalar executor of an IntNet, written straight from docs/design.md, "Integer semantics".

Python integers, one neuron and one synapse at a time, no vectorization, no float: slow
and obviously right. It is the oracle `intsim` (and through it Lava) is tested against, so it
lives with the tests, not in the package. The Lava-specific integer widths are spelled out
where Lava's process models apply them (see backends/intsim/arith.py for the list).
"""

from __future__ import annotations

import numpy as np
from kdsnn.compiler.intnet import INPUT, IntNet
from kdsnn.compiler.targets import LOIHI as _S  # the widths it simulates (Lava 0.10's)


def _wrap(x: int, bits: int) -> int:
    m = 1 << bits
    x %= m
    return x - m if x >= m >> 1 else x


def _decay(x: int, d: int) -> int:
    p = x * (_S.decay_unity - d)
    mag = abs(p) >> _S.decay_bits
    return mag if p > 0 else -mag


def _dense_weight(w: int, sign_mode: str, num_weight_bits: int) -> int:
    if sign_mode == "inhibitory":
        w = -w
    lo = -256 if sign_mode == "mixed" else 0
    w = min(max(w, lo), 255)
    k = 8 - num_weight_bits + (1 if sign_mode == "mixed" else 0)
    w = (w >> k) << k                      # Python >> floors, like numpy on int32
    return -w if sign_mode == "inhibitory" else w


def _conv_one(x: list, w: np.ndarray, c, co: int, oy: int, ox: int) -> int:
    cin_g = w.shape[1]
    cout_g = w.shape[0] // c.groups
    g = co // cout_g
    h, wd = len(x[0]), len(x[0][0])
    total = 0
    for ci in range(cin_g):
        for ky in range(w.shape[2]):
            for kx in range(w.shape[3]):
                iy = oy * c.stride[0] - c.padding[0] + ky * c.dilation[0]
                ix = ox * c.stride[1] - c.padding[1] + kx * c.dilation[1]
                if 0 <= iy < h and 0 <= ix < wd:
                    total += int(w[co, ci, ky, kx]) * x[g * cin_g + ci][iy][ix]
    return total


def _accumulate(c, s_src, src_shape, dst_shape) -> list[int]:
    n_dst = int(np.prod(dst_shape))
    if c.kind == "dense":
        flat = list(np.asarray(s_src, dtype=object).reshape(-1))
        out = []
        for i in range(n_dst):
            acc = 0
            for j, sj in enumerate(flat):
                if sj:
                    acc += _dense_weight(int(c.weight[i, j]), c.sign_mode, c.num_weight_bits) * int(sj)
            acc = (acc << c.weight_exp) if c.weight_exp >= 0 else (acc >> -c.weight_exp)
            out.append(_wrap(acc, 32))
        return out
    x = np.asarray(s_src, dtype=object).reshape(src_shape).tolist()
    out = []
    co_n, ho, wo = dst_shape
    for co in range(co_n):
        for oy in range(ho):
            for ox in range(wo):
                out.append(_wrap(_conv_one(x, c.weight, c, co, oy, ox), _S.conv_accum_bits))
    return out


def run_scalar(net: IntNet, x_norm: np.ndarray) -> dict:
    """Run N samples; returns logits (N, classes) int64 and spikes {pop: (N, T, size)}."""
    xq = net.input.quantize(np.asarray(x_norm))
    M = _S.state_max
    all_logits, all_spikes = [], {p.name: [] for p in net.populations}
    for xs in xq:
        frames = [xs[t] for t in range(net.T)] if net.input.temporal else [xs] * net.T
        past: dict[str, list] = {}                 # source -> its frames of earlier steps
        state = {p.name: ([0] * p.size, [0] * p.size) for p in net.populations}
        spikes = {p.name: [] for p in net.populations}
        for t in range(net.T):
            src = {INPUT: [int(v) for v in frames[t].reshape(-1)]}
            past.setdefault(INPUT, []).append(src[INPUT])
            for p in net.populations:
                a = [0] * p.size
                for c in net.incoming(p.name):
                    if c.delay == 0:
                        s_src = src[c.src]
                    elif t - c.delay >= 0:
                        s_src = past[c.src][t - c.delay]
                    else:
                        continue
                    acc = _accumulate(c, s_src, net.shape_of(c.src), p.shape)
                    a = [_wrap(ai + ci, 32) for ai, ci in zip(a, acc, strict=True)]
                u, v = state[p.name]
                bias = [_wrap(_wrap(int(b), 16) << p.bias_exp if p.bias_exp >= 0
                              else _wrap(int(b), 16) >> -p.bias_exp, 32)
                        for b in np.asarray(p.bias_mant).reshape(-1)]
                s = [0] * p.size
                for i in range(p.size):
                    x = _wrap(_decay(u[i], p.du + 1) + _wrap(a[i] << _S.act_shift, 32), 32)
                    if x > M:
                        x -= 2 * M
                    elif x <= -M:
                        x += 2 * M
                    u[i] = x
                    vi = _wrap(_decay(v[i], p.dv) + u[i] + bias[i], 32)
                    vi = min(max(vi, -(M - 1)), M - 1)
                    if vi > (p.vth << _S.vth_shift):
                        s[i] = 1
                        vi = vi - (p.vth << _S.vth_shift) if p.reset == "subtract" else 0
                    v[i] = vi
                src[p.name] = s
                past.setdefault(p.name, []).append(s)
                spikes[p.name].append(s)
        ro = net.readout
        if ro.readout_kind == "v":
            all_logits.append(list(state[ro.name][1]))
        else:
            all_logits.append([sum(col) for col in zip(*spikes[ro.name], strict=True)])
        for p in net.populations:
            all_spikes[p.name].append(spikes[p.name])
    return {"logits": np.asarray(all_logits, dtype=np.int64).reshape(len(xq), -1),
            "spikes": {k: np.asarray(v, dtype=np.int64).reshape(len(xq), net.T, -1)
                       for k, v in all_spikes.items()}}
