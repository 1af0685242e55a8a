"""intsim: the bit-accurate integer IF simulator (docs/design.md, "Integer semantics"), batched and fast.

Canonical semantics: zero synaptic delay, T steps per sample, zero state at sample start,
and Lava 0.10's fixed-point arithmetic exactly, including its integer widths
(`kdsnn.backends.intsim.arith` states them).

Because the network is a feed-forward DAG without delays, each population is computed for
all T steps at once (time-folded, like the float student), then the next one. Integer
sums run in float32 (or float64) only where `exact_dtype` proves from the weights' and
inputs' maxima that every partial sum is an integer below 2^24 (2^53); otherwise an exact
int64 path is taken. The bound is checked in code when compiling, not assumed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from kdsnn.backends.base import Executable, RunResult
from kdsnn.backends.intsim.arith import (
    ACT_SHIFT,
    STATE_MAX,
    VTH_SHIFT,
    bias_effective,
    decay,
    effective_weights,
    wrap,
    wrap_once24,
)
from kdsnn.backends.intsim.kernels import (
    F32_EXACT,
    absmax,
    accumulation_bound,
    clip_,
    conv_int64,
    exact_dtype,
    no_nnpack,
    pooled_bound,
    spike_dtype,
    sum_pool,
    take,
)
from kdsnn.compiler.geometry import pool_factor, window_out_hw
from kdsnn.compiler.intnet import INPUT, Connection, IntNet

from kdsnn.errors import KdsnnError


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
                dt = exact_dtype(pooled_bound(bound, fac[0] if fac else 1, src_max))
                if fac is not None:
                    pool, wr = fac
                    if c.kind == "conv":
                        stride = (c.stride[0] // pool, c.stride[1] // pool)
                        padding = (c.padding[0] // pool, c.padding[1] // pool)
                wt = torch.from_numpy(wr if dt == torch.int64 else wr.astype(np.float64)).to(self.device, dt)
                lst.append(_Conn(c, bound, a_bound, dt, wt, c.src == INPUT, pool, stride, padding))
            self.conns[p.name] = lst
        self._scratch: dict[str, dict] = {}       # reused buffers per population / connection (`take`)
        self._like = {d: torch.empty(0, dtype=d, device=self.device) for d in (torch.float32, torch.float64, torch.int32)}
        self.spike_dtype = {p.name: spike_dtype([k.dtype for lst in self.conns.values() for k in lst
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
            acc = conv_int64(x, k.wt, c, k.stride, k.padding)
        else:
            with no_nnpack():
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
        bmax = absmax(bias)
        vth = int(p.vth) << VTH_SHIFT
        lim = STATE_MAX - 1
        dyn = None if dynamic is None else dynamic.reshape(T, n, size)
        mine = self._scratch.setdefault(p.name, {})
        out = take(mine, "spikes", (T, n, size), self._like[self.spike_dtype[p.name]])
        u_wraps = v_clips = 0
        is_float = any(t is not None and t.dtype == torch.float32 for t in (static, dynamic))
        if a_bound >= (1 << 17) and a_bound < (1 << 31):
            a_bound = absmax(static) + absmax(dynamic)          # what this batch really reaches
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
            v = take(mine, "v", (n, size), self._like[torch.float32])
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
                    v_clips += clip_(v, lim)
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
            v = take(mine, "v", (n, size), self._like[torch.int32]).zero_()
            for t in range(T):
                v += base
                if dyn32 is not None:
                    v += dyn32[t]
                if need_clip:
                    v_clips += clip_(v, lim)
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
            from kdsnn.progress import bar

            it = bar(it, "bars", desc="intsim", unit="batch", leave=True)
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
