"""intsim: the bit-accurate integer IF simulator (docs/design.md, "Integer semantics"), batched and fast.

Canonical semantics: zero synaptic delay, T steps per sample, zero state at sample start,
and Lava 0.10's fixed-point arithmetic exactly, including its integer widths:

  dense  a = wrap32(shift(W' . s, weight_exp))   W' = Lava clip to 8 bits, then LSB truncation
                                                 (mixed sign: even values); int32 channel
  conv   a = wrap24(conv(W, s))                  Lava's Conv: weights as given, weight_exp
                                                 ignored (must be 0), signed 24-bit clamp
  LIF    a_in = wrap32(sum of the population's incoming a)           (int32 port sum)
         u = wrap_once24(wrap32(decay(u, du + 1) + wrap32(a_in << 6)))
         v = clip(wrap32(decay(v, dv) + u + bias), -(2^23 - 1), 2^23 - 1)
         s = v > vth << 6;  v = 0 where s
  wrap_once24(x) = x - 2^24 if x > 2^23, x + 2^24 if x <= -2^23, else x  (Lava's exact test)

Because the network is a feed-forward DAG without delays, each population is computed for
all T steps at once (time-folded, like the float student), then the next one. Integer
sums run in float32 (or float64) only where `_exact_dtype` proves from the weights' and
inputs' maxima that every partial sum is an integer below 2^24 (2^53); otherwise an exact
int64 path is taken. The bound is checked in code when compiling, not assumed.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from kdsnn.backends.base import Executable, RunResult
from kdsnn.compiler.geometry import pool_factor, window_out_hw
from kdsnn.compiler.intnet import INPUT, Connection, IntNet
from kdsnn.compiler.targets import LOIHI as _LAVA

from kdsnn.errors import KdsnnError

# Lava 0.10's fixed-point widths, as the loihi spec states them (kdsnn.compiler.targets);
# IntNets lowered for other widths are refused when compiled (targets.check_simulable).
LAVA_CLIP_BITS = _LAVA.weight_bits  # Lava's Dense clips weights to 8 bits, whatever the target
STATE_MAX = _LAVA.state_max         # 24-bit u and v
ACT_SHIFT = _LAVA.act_shift
VTH_SHIFT = _LAVA.vth_shift
DECAY_SHIFT = _LAVA.decay_bits
F32_EXACT = 1 << 24
F64_EXACT = 1 << 53


# -- Lava's weight handling -------------------------------------------------------------
def lava_dense_weights(w: np.ndarray, sign_mode: str, num_weight_bits: int) -> np.ndarray:
    """What PyDenseModelBitAcc does to weights: clip_weights(8 bits) then truncate_weights."""
    w = np.asarray(w).astype(np.int64)
    mixed = sign_mode == "mixed"
    inhib = sign_mode == "inhibitory"
    if inhib:
        w = -w
    lo = -(1 << LAVA_CLIP_BITS) if mixed else 0
    w = np.clip(w, lo, (1 << LAVA_CLIP_BITS) - 1)
    ntb = LAVA_CLIP_BITS - num_weight_bits + int(mixed)
    w = (w >> ntb) << ntb
    return -w if inhib else w


def effective_weights(c: Connection) -> np.ndarray:
    """The integer weights a connection really applies (int64)."""
    if c.kind == "dense":
        return lava_dense_weights(c.weight, c.sign_mode, c.num_weight_bits)
    return np.asarray(c.weight).astype(np.int64)


# -- integer helpers (torch int64) ------------------------------------------------------
def wrap(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Two's complement wrap of int64 values to a signed `bits`-bit integer."""
    half = 1 << (bits - 1)
    return ((x + half) & ((1 << bits) - 1)) - half


def decay(x: torch.Tensor, d: int) -> torch.Tensor:
    """sign(x) * ((|x| * (4096 - d)) >> 12), as Lava computes it in int64."""
    if d == 0:
        return x
    if d >= 1 << DECAY_SHIFT:
        return torch.zeros_like(x)
    p = x * ((1 << DECAY_SHIFT) - d)
    return torch.sign(p) * (p.abs() >> DECAY_SHIFT)


def wrap_once24(x: torch.Tensor) -> torch.Tensor:
    """Lava's u overflow handling: one conditional wrap, with `> max` and `<= -max`."""
    y = torch.where(x > STATE_MAX, x - 2 * STATE_MAX, x)
    return torch.where(y <= -STATE_MAX, x + 2 * STATE_MAX, y)


def bias_effective(mant: np.ndarray, exp: int) -> np.ndarray:
    """Lava's scale_bias: int16 storage of the mantissa, int32 shift by the exponent."""
    m = ((np.asarray(mant).astype(np.int64) + (1 << 15)) & 0xFFFF) - (1 << 15)
    out = (m << exp) if exp >= 0 else (m >> -exp)
    return ((out + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


# -- compiled form ------------------------------------------------------------------------
@dataclass
class _Conn:
    c: Connection
    bound: int                        # max |accumulation| for any input within src_max
    a_bound: int                      # max |a| after the weight exponent
    dtype: torch.dtype                # float32 / float64 (proved exact) or int64
    wt: torch.Tensor                  # weights in `dtype` (pool-factored when pool > 1)
    src_static: bool                  # source is the input: same value at every step
    pool: int = 1                     # sum-pool factor applied to the source first
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)


def _absmax(t: torch.Tensor | None) -> int:
    if t is None or t.numel() == 0:
        return 0
    lo, hi = torch.aminmax(t)
    return max(-int(lo), int(hi))


def _clip_(v: torch.Tensor, lim: int) -> int:
    """Clip v to +-lim in place (Lava's 24-bit v); returns how many values were clipped."""
    if v.numel() == 0:
        return 0
    lo, hi = torch.aminmax(v)
    if int(hi) <= lim and int(lo) >= -lim:
        return 0
    k = int(((v > lim) | (v < -lim)).sum())
    v.clamp_(-lim, lim)
    return k


def sum_pool(x: torch.Tensor, s: int, scratch: dict | None = None) -> torch.Tensor:
    """Non-overlapping s x s sum-pool of (N, C, H, W), H and W multiples of s (`pool_factor`).

    Strided adds, in x's dtype: exact for integers (int64), and in float32/float64 when every
    window sum is an integer below 2^24 / 2^53 (`_exact_dtype` is chosen from a bound that
    covers it, `pooled_bound`). On CPU this is several times faster than avg_pool2d with
    divisor_override=1, and it never rounds.
    """
    n, c, hh, ww = x.shape
    h = torch.add(x[:, :, 0::s], x[:, :, 1::s], out=_take(scratch, "pool_h", (n, c, hh // s, ww), x))
    for i in range(2, s):
        h.add_(x[:, :, i::s])
    y = torch.add(h[..., 0::s], h[..., 1::s], out=_take(scratch, "pool", (n, c, hh // s, ww // s), x))
    for j in range(2, s):
        y.add_(h[..., j::s])
    return y


def _take(scratch: dict | None, key: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """A contiguous buffer of `shape` in like's dtype/device, reused from `scratch` between batches.

    Fresh large tensors are fresh pages that the kernel zero-fills on first touch: profiled,
    that was the largest single cost of a batch (more than the convolutions). One flat
    buffer per role, grown to the largest batch seen, is touched once per executable.
    """
    need = int(np.prod(shape))
    if scratch is None:
        return torch.empty(shape, dtype=like.dtype, device=like.device)
    buf = scratch.get(key)
    if buf is None or buf.dtype != like.dtype or buf.numel() < need:
        buf = scratch[key] = torch.empty(need, dtype=like.dtype, device=like.device)
    return buf[:need].view(shape)


def pooled_bound(bound: int, pool: int, src_max: int) -> int:
    """The largest |value| the factored path holds: a window sum or a partial sum of the conv.

    Each window sum is at most pool^2 * src_max. Any partial sum of the reduced kernel w_r on
    pooled inputs, in whatever order a BLAS or conv kernel adds, is a sum over a subset of
    windows of |w_r| * pool^2 * src_max, at most sum|w_r| * pool^2 * src_max: that is the
    folded kernel's sum|w| * src_max (the folded W repeats w_r over the window), i.e. `bound`.
    """
    return max(int(bound), pool * pool * int(src_max)) if pool > 1 else int(bound)


def _spike_dtype(consumers: list[torch.dtype]) -> torch.dtype:
    """The dtype a population's 0/1 spikes are written in: its consumers' float dtype when they
    all share one, else float32 (int64 consumers convert, exactly, when they read)."""
    ds = set(consumers)
    return ds.pop() if len(ds) == 1 and next(iter(ds)) in (torch.float32, torch.float64) else torch.float32


def _exact_dtype(bound: int) -> torch.dtype:
    if bound < F32_EXACT:
        return torch.float32
    if bound < F64_EXACT:
        return torch.float64
    return torch.int64


def accumulation_bound(w: np.ndarray, kind: str, src_max: int) -> int:
    """Largest |sum| any partial sum of one output can reach with |inputs| <= src_max."""
    a = np.abs(w.astype(np.int64)) if w.size else np.zeros((1, 1), np.int64)
    per_out = a.sum(axis=1) if kind == "dense" else a.reshape(a.shape[0], -1).sum(axis=1)
    return int(per_out.max(initial=0)) * int(src_max)


MEMORY_BUDGET = 16 << 20     # bytes of one population's T-step spike buffer per batch


def auto_batch(net: IntNet, batch_size: int, budget: int = MEMORY_BUDGET) -> int:
    """Samples per batch: at most `batch_size`, fewer when the largest population's float32
    spikes over T steps (T * n * size * 4 bytes) would exceed `budget`.

    Results do not depend on the batch (each sample is simulated on its own); only speed does.
    A batch whose layer buffers stay in the last-level cache (and below glibc's 32 MiB mmap
    threshold, so freed blocks are reused, not returned to the kernel) runs faster per sample
    than the old fixed 256: measured in bench/intsim_limit.py.
    """
    per_sample = 4 * net.T * max((p.size for p in net.populations), default=1)
    return max(1, min(batch_size, budget // max(1, per_sample)))


class IntSimExecutable(Executable):
    """An IntNet ready to run batches on the CPU (or a CUDA device, same arithmetic)."""

    def __init__(self, net: IntNet, batch_size: int = 256, device: str = "cpu",
                 check_lava_datapath: bool = True, factor_pools: bool = True,
                 memory_budget: int = MEMORY_BUDGET) -> None:
        net.validate()
        self.net = net
        if int(batch_size) < 1:
            raise KdsnnError(f"intsim: batch_size must be >= 1, got {batch_size}")
        self.batch_size = auto_batch(net, int(batch_size), int(memory_budget))
        self.device = torch.device(device)
        self.conns: dict[str, list[_Conn]] = {}
        for p in net.populations:
            lst = []
            for c in net.incoming(p.name):
                self._check_conn(c)
                w = effective_weights(c)
                bound = accumulation_bound(w, c.kind, net.input.qmax if c.src == INPUT else 1)
                if check_lava_datapath:
                    lim = (1 << 31) if c.kind == "dense" else F32_EXACT
                    if bound >= lim:
                        raise KdsnnError(
                            f"connection {c.name}: accumulation can reach {bound} >= 2^{lim.bit_length() - 1}, "
                            f"beyond Lava's {'int32 Dense' if c.kind == 'dense' else 'float32 Conv'} datapath; "
                            "lower with smaller weights")
                e = c.weight_exp                          # 0 for conv (_check_conn)
                a_bound = (bound << e) if e >= 0 else -((-bound) >> -e)
                fac = pool_factor(c, w, net.shape_of(c.src)) if factor_pools else None
                pool, wr, stride, padding = 1, w, c.stride, c.padding
                src_max = net.input.qmax if c.src == INPUT else 1
                dt = _exact_dtype(pooled_bound(bound, fac[0] if fac else 1, src_max))
                if fac is not None:
                    pool, wr = fac
                    if c.kind == "conv":
                        stride = (c.stride[0] // pool, c.stride[1] // pool)
                        padding = (c.padding[0] // pool, c.padding[1] // pool)
                wt = torch.from_numpy(wr if dt == torch.int64 else wr.astype(np.float64)).to(self.device, dt)
                lst.append(_Conn(c, bound, a_bound, dt, wt, c.src == INPUT, pool, stride, padding))
            self.conns[p.name] = lst
        self._scratch: dict[str, dict] = {}       # reused buffers per population / connection (`_take`)
        self._like = {d: torch.empty(0, dtype=d, device=self.device) for d in (torch.float32, torch.float64, torch.int32)}
        self.spike_dtype = {p.name: _spike_dtype([k.dtype for lst in self.conns.values() for k in lst
                                                  if k.c.src == p.name]) for p in net.populations}
        self.bias = {p.name: torch.from_numpy(bias_effective(p.bias_mant, p.bias_exp).reshape(-1)).to(self.device)
                     for p in net.populations}
        self.bias_f32 = {k: b.to(torch.float32) for k, b in self.bias.items()}   # exact: |bias| < 2^24 where used

    def _check_conn(self, c: Connection) -> None:
        src_shape = self.net.shape_of(c.src)
        dst_shape = self.net.shape_of(c.dst)
        if c.kind == "conv":
            if c.weight_exp != 0:
                raise KdsnnError(f"connection {c.name}: conv weight_exp must be 0 (Lava's Conv ignores it)")
            if len(src_shape) != 3 or len(dst_shape) != 3:
                raise KdsnnError(f"connection {c.name}: conv needs (C, H, W) source and destination")
            if src_shape[0] % c.groups or c.weight.shape[0] % c.groups or c.weight.shape[1] * c.groups != src_shape[0]:
                raise KdsnnError(f"connection {c.name}: conv weight {c.weight.shape} with groups={c.groups} "
                                 f"does not fit source channels {src_shape[0]}")
            out = (int(c.weight.shape[0]), *window_out_hw(src_shape[1:], c.weight.shape[2:], c.stride, c.padding,
                                                          c.dilation))
            if out != tuple(dst_shape):
                raise KdsnnError(f"connection {c.name}: conv output {out} != population {c.dst} shape {tuple(dst_shape)}")

    # -- one batch ----------------------------------------------------------------------
    def _accumulate(self, k: _Conn, s: torch.Tensor) -> torch.Tensor:
        """a of one connection, flattened (B, n_dst).

        float32 when every value and partial sum is provably an integer below 2^24 (the
        weight exponent is then an exact multiply / floor by a power of two) and, for conv,
        below 2^23 (no 24-bit wrap); else int32 when it fits, else int64 with Lava's wraps.
        """
        c = k.c
        x = s if s.dtype == k.dtype else s.to(k.dtype)
        if k.pool > 1:
            x = sum_pool(x, k.pool, self._scratch.setdefault(k.c.name, {}))
        if c.kind == "dense":
            x = x.reshape(x.shape[0], -1)
            acc = x @ k.wt.T
        elif k.dtype == torch.int64:
            acc = _conv_int64(x, k.wt, c, k.stride, k.padding)
        else:
            with _no_nnpack():
                acc = F.conv2d(x, k.wt, None, k.stride, k.padding, c.dilation, c.groups)
        acc = acc.reshape(acc.shape[0], -1)
        e = c.weight_exp                                          # 0 for conv (_check_conn)
        if k.dtype == torch.float32 and k.a_bound < (F32_EXACT if c.kind == "dense" else STATE_MAX):
            if e > 0:
                acc = acc * float(1 << e)
            elif e < 0:
                acc = torch.floor(acc * (1.0 / (1 << -e)))
            return acc
        if c.kind == "dense":
            if k.bound < (1 << 31) and k.a_bound < (1 << 31):
                acc = acc.to(torch.int32)
                return (acc << e) if e >= 0 else (acc >> -e)
            acc = acc.to(torch.int64)
            acc = (acc << e) if e >= 0 else (acc >> -e)
            return wrap(acc, 32)
        if k.bound < STATE_MAX:
            return acc.to(torch.int32)
        return wrap(acc.to(torch.int64), 24)

    def _run_batch(self, xq: torch.Tensor, record: bool) -> dict[str, Any]:
        net, T, n = self.net, self.net.T, xq.shape[0]
        spikes: dict[str, torch.Tensor] = {INPUT: xq}             # input static: (n, ...)
        counts, per_step, trains, diag = {}, {}, {}, {}
        logits = None
        for p in net.populations:
            ks = self.conns[p.name]
            accs = [self._accumulate(k, spikes[k.c.src]) for k in ks]
            total = sum(k.a_bound for k in ks)
            if not all(a.dtype == torch.float32 for a in accs) or total >= F32_EXACT:
                it = torch.int32 if total < (1 << 31) else torch.int64
                accs = [a.to(it) for a in accs]
            static = dynamic = None
            for k, acc in zip(ks, accs, strict=True):
                if k.src_static:
                    static = acc if static is None else static + acc
                else:
                    dynamic = acc if dynamic is None else dynamic + acc
            if total >= (1 << 31) and static is not None:
                static = wrap(static, 32)
            s_all, info = self._neurons(p, static, dynamic, total, T, n)
            diag[p.name] = info
            if p.readout:
                logits = info.pop("v_last")
            spikes[p.name] = s_all.reshape(T * n, *p.shape)
            cdt = torch.float32 if p.size < F32_EXACT else torch.float64
            per = s_all.sum(dim=2, dtype=cdt).T.to(torch.int64)       # (n, T), exact counts
            per_step[p.name] = per
            counts[p.name] = per.sum(dim=1)
            if record:
                trains[p.name] = s_all.reshape(T, n, *p.shape).transpose(0, 1).to(torch.uint8)
        return {"logits": logits, "counts": counts, "per_step": per_step, "trains": trains,
                "diag": diag}

    def _neurons(self, p, static: torch.Tensor | None, dynamic: torch.Tensor | None,
                 a_bound: int, T: int, n: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """One population's LIF dynamics over T steps -> spikes (T, n, size) 0/1, in the dtype
        its consumers' kernels run in (`spike_dtype`: no conversion copy before they read it).

        static: (n, size) a that is the same at every step; dynamic: (T*n, size) a per step.
        """
        size = p.size
        bias = self.bias[p.name]
        bmax = _absmax(bias)
        vth = int(p.vth) << VTH_SHIFT
        lim = STATE_MAX - 1
        dyn = None if dynamic is None else dynamic.reshape(T, n, size)
        mine = self._scratch.setdefault(p.name, {})
        out = _take(mine, "spikes", (T, n, size), self._like[self.spike_dtype[p.name]])
        u_wraps = v_clips = 0
        is_float = any(t is not None and t.dtype == torch.float32 for t in (static, dynamic))
        if a_bound >= (1 << 17) and a_bound < (1 << 31):
            a_bound = _absmax(static) + _absmax(dynamic)          # what this batch really reaches
        if_fast = p.du == 4095 and p.dv == 0 and a_bound < (1 << 17)
        # No clip can happen when T steps of the largest |64 a + bias| stay within +-lim: before
        # each step max(vth, 0) >= v >= -t * B (a spike resets to 0), so every pre-clip value
        # lies in [-(t + 1) B, max(vth, 0) + B]. Then the per-step min/max scan is skipped.
        step_max = (a_bound << ACT_SHIFT) + bmax
        need_clip = T * step_max > lim or max(vth, 0) + step_max > lim
        if if_fast and is_float and step_max < STATE_MAX:
            # IF in float32: u = 64 a never wraps (|a| < 2^17) and every value stays an
            # integer below 2^24: |v| <= 2^23 - 1 before the step, |64 a| + |bias| < 2^23, so
            # 64 a + bias (formed once for all T steps) and each sum below are exact.
            # static and dynamic are this layer's own fresh sums: scaled in place, no copies.
            bf = self.bias_f32[p.name]
            if dyn is not None:
                dyn.mul_(float(1 << ACT_SHIFT)).add_(bf)
                base = None if static is None else static.mul_(float(1 << ACT_SHIFT))
            else:
                base = bf.expand(n, size) if static is None else static.mul_(float(1 << ACT_SHIFT)).add_(bf)
            v = _take(mine, "v", (n, size), self._like[torch.float32])
            for t in range(T):
                if t == 0:                                       # v starts at 0: v = a[0] (+ base)
                    v.copy_(dyn[0] if dyn is not None else base)
                    if dyn is not None and base is not None:
                        v.add_(base)
                else:
                    if dyn is not None:
                        v.add_(dyn[t])
                    if base is not None:
                        v.add_(base)
                if need_clip:
                    v_clips += _clip_(v, lim)
                st = out[t]
                torch.gt(v, vth, out=st)                         # spikes straight into the buffer
                if st.dtype == v.dtype:
                    v.addcmul_(v, st, value=-1.0)                # reset: v - v * s, exact
                else:
                    v.mul_(st.logical_not())
            if p.readout:                                        # only the readout's v is returned
                v = v.to(torch.int64)
        elif if_fast and bmax < (1 << 29):
            # IF in int32: no 24-bit wrap (|a| < 2^17), and |v + u + bias| < 2^31.
            b32 = bias.to(torch.int32)
            base = b32 if static is None else (static.to(torch.int32) << ACT_SHIFT) + b32
            dyn32 = None if dyn is None else dyn.to(torch.int32).mul_(1 << ACT_SHIFT)
            v = _take(mine, "v", (n, size), self._like[torch.int32]).zero_()
            for t in range(T):
                v += base
                if dyn32 is not None:
                    v += dyn32[t]
                if need_clip:
                    v_clips += _clip_(v, lim)
                st = out[t]
                torch.gt(v, vth, out=st)
                v.mul_(st.logical_not())                          # reset by multiplication
            if p.readout:                                        # only the readout's v is returned
                v = v.to(torch.int64)
        else:
            a_st = None if static is None else static.to(torch.int64)
            u = torch.zeros((n, size), dtype=torch.int64, device=self.device)
            v = torch.zeros_like(u)
            for t in range(T):
                a = torch.zeros_like(u)
                if a_st is not None:
                    a = a + a_st
                if dyn is not None:
                    a = a + dyn[t].to(torch.int64)
                a = wrap(a, 32)
                x = wrap(decay(u, p.du + 1) + wrap(a << ACT_SHIFT, 32), 32)
                u = wrap_once24(x)
                u_wraps += int((u != x).sum())
                pre = wrap(decay(v, p.dv) + u + bias, 32)
                v = pre.clamp(-lim, lim)
                v_clips += int((v != pre).sum())
                s = v > vth
                v = v.masked_fill(s, 0)
                out[t] = s
        info: dict[str, Any] = {"u_wraps": u_wraps, "v_clips": v_clips}
        if p.readout:
            info["v_last"] = v
            info["readout_spikes"] = int(out.sum())
        return out, info

    def run(self, x: np.ndarray, record: bool = False, progress: bool = False) -> RunResult:
        net = self.net
        t0 = time.perf_counter()
        x = np.asarray(x)
        lead = "N, T" if net.input.temporal else "N"
        if x.ndim != len(net.input.shape) + len(lead.split(", ")) or (net.input.temporal and x.shape[1] != net.T):
            raise KdsnnError(f"intsim: expected inputs of shape ({lead}, {', '.join(map(str, net.input.shape))}) "
                             f"with T = {net.T}, got {x.shape}")
        xq_all = net.input.quantize(x)
        chunks = []
        it = range(0, len(xq_all), self.batch_size)
        if progress:
            from tqdm import tqdm
            it = tqdm(it, desc="intsim", unit="batch")
        for i in it:
            xq = torch.from_numpy(xq_all[i:i + self.batch_size].astype(np.int64)).to(self.device)
            with torch.no_grad():
                chunks.append(self._run_batch(xq, record))
        names = [p.name for p in net.populations]

        def cat(key: str, k: str) -> np.ndarray:
            if not chunks:
                return np.zeros((0,))
            return np.concatenate([c[key][k].cpu().numpy() for c in chunks])

        logits = (np.concatenate([c["logits"].cpu().numpy() for c in chunks]).astype(np.int64)
                  if chunks else np.zeros((0, net.readout.size), np.int64))
        diag = {nm: {k: int(sum(c["diag"][nm][k] for c in chunks)) for k in chunks[0]["diag"][nm]}
                for nm in names} if chunks else {}
        return RunResult(
            logits=logits.reshape(len(logits), -1),
            spike_counts={nm: cat("counts", nm).astype(np.int64) for nm in names},
            backend="intsim", T=net.T, steps=net.T * len(logits),
            wall_s=time.perf_counter() - t0,
            layer_spikes_per_step={nm: cat("per_step", nm).astype(np.int64) for nm in names},
            spike_trains={nm: cat("trains", nm) for nm in names} if record else None,
            extra={"overflow": diag, "out_scale": net.readout.out_scale,
                   "input_int": xq_all if record else None},
        )


# -- conv helpers ---------------------------------------------------------------------------
def _conv_int64(x: torch.Tensor, w: torch.Tensor, c: Connection, stride: tuple[int, int],
                padding: tuple[int, int]) -> torch.Tensor:
    """Exact int64 convolution via im2col (torch has no integer conv2d on CPU)."""
    n, cin, h, wd = x.shape
    cout, cpg, kh, kw = w.shape
    g = c.groups
    ph, pw = padding
    sh, sw = stride
    dh, dw = c.dilation
    xp = F.pad(x, (pw, pw, ph, ph))
    ho, wo = window_out_hw((h, wd), (kh, kw), stride, padding, c.dilation)
    cols = []
    for i in range(kh):
        for j in range(kw):
            cols.append(xp[:, :, i * dh: i * dh + sh * (ho - 1) + 1: sh, j * dw: j * dw + sw * (wo - 1) + 1: sw])
    col = torch.stack(cols, dim=2)                                # (n, cin, kh*kw, ho, wo)
    col = col.reshape(n, g, cpg * kh * kw, ho * wo)
    wg = w.reshape(g, cout // g, cpg * kh * kw)
    out = torch.einsum("gok,ngkp->ngop", wg, col)
    return out.reshape(n, cout, ho, wo)


@contextlib.contextmanager
def _no_nnpack():
    """NNPACK's Winograd/FFT convolutions are not exact; keep PyTorch on direct/im2col."""
    try:
        ctx = torch.backends.nnpack.flags(enabled=False)
    except AttributeError:  # pragma: no cover - very old torch
        ctx = contextlib.nullcontext()
    with ctx:
        yield


# -- parity rung 3 ----------------------------------------------------------------------------
def rung3(student_logits: np.ndarray, labels: np.ndarray, int_result: RunResult,
          ref_result: RunResult | None = None, tolerance_points: float = 0.5) -> dict[str, Any]:
    """Rung 3 of the parity ladder (docs/design.md, "The parity ladder"): the lowered IntNet on intsim vs the float student.

    Accuracy of both on the same samples (pass: |float - integer| <= tolerance_points) and,
    given a float run with spike counts (the `reference` backend on the NIR graph), the
    per-layer spike agreement: total spike ratio integer / float, Pearson correlation of the
    per-sample counts, mean |difference| relative to the float mean. JSON-ready.
    """
    labels = np.asarray(labels)
    fl = np.asarray(student_logits).argmax(axis=1)
    it = int_result.predictions
    if len(fl) != len(labels) or len(it) != len(labels):
        raise KdsnnError(f"rung 3: {len(fl)} float and {len(it)} integer predictions for {len(labels)} labels")
    n = len(labels)
    acc_f = float((fl == labels).mean()) if n else 0.0
    acc_i = float((it == labels).mean()) if n else 0.0
    delta = 100.0 * (acc_f - acc_i)
    layers: dict[str, dict[str, Any]] = {}
    if ref_result is not None:
        for name, ci in int_result.spike_counts.items():
            if name not in ref_result.spike_counts:
                continue
            a = np.asarray(ci, dtype=np.float64)
            b = np.asarray(ref_result.spike_counts[name], dtype=np.float64)
            corr = float(np.corrcoef(a, b)[0, 1]) if n > 1 and a.std() > 0 and b.std() > 0 else None
            layers[name] = {
                "spikes_int": float(a.sum()), "spikes_float": float(b.sum()),
                "ratio": float(a.sum() / b.sum()) if b.sum() > 0 else None,
                "correlation": corr,
                "mean_abs_rel_diff": float(np.abs(a - b).mean() / b.mean()) if b.mean() > 0 else None,
                "samples_equal": float((a == b).mean()) if n else 1.0,
            }
    overflow = int_result.extra.get("overflow", {}) if int_result.extra else {}
    return {
        "rung": 3, "name": "IntNet on intsim vs float student",
        "samples": int(n), "accuracy_float": acc_f, "accuracy_int": acc_i,
        "delta_points": delta, "tolerance_points": tolerance_points,
        "prediction_agreement": float((fl == it).mean()) if n else 0.0,
        "passed": bool(abs(delta) <= tolerance_points),
        "layers": layers,
        "overflow_events": {k: {kk: int(vv) for kk, vv in v.items()} for k, v in overflow.items()},
    }
