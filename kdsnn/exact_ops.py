"""The chip's integer neuron arithmetic on PyTorch floats, with straight-through gradients.

The pieces of kdsnn.deploy_exact's integer forward (its module docstring states the
arithmetic): `straight(x, q)` is q forward and x's gradient backward; `wrap` is a two's
complement wrap of integer-valued floats; `IntNeurons` runs T steps of one integer LIF
population exactly as intsim (backends/intsim/steps.py) does, with the student's surrogate
gradient backward. The widths are intsim's (kdsnn.backends.intsim.arith).
"""

from __future__ import annotations

import torch

from kdsnn.backends.intsim.arith import ACT_SHIFT, DECAY_SHIFT, STATE_MAX, VTH_SHIFT
from kdsnn.neurons import _surrogate_grad

__all__ = ["IntNeurons", "absmax", "straight", "wrap"]

_UNITY = 1 << DECAY_SHIFT             # decay d keeps (unity - d) / unity of u or v per step
_GAIN = float(1 << ACT_SHIFT)         # a << act_shift enters u


class _Straight(torch.autograd.Function):
    """Forward: the exact value `q`; backward: the gradient of `x` (times `mask`)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, q: torch.Tensor, mask: torch.Tensor | None):  # type: ignore[override]
        ctx.save_for_backward(mask if mask is not None else torch.empty(0))
        ctx.has_mask = mask is not None
        return q.to(x.dtype).clone()

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        (mask,) = ctx.saved_tensors
        return (g * mask if ctx.has_mask else g), None, None


def straight(x: torch.Tensor, q: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    return _Straight.apply(x, q, mask)


def wrap(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Two's complement wrap of integer-valued floats (exact below 2^53)."""
    half = float(1 << (bits - 1))
    return torch.remainder(x + half, 2 * half) - half


def _wrap_once24(x: torch.Tensor) -> torch.Tensor:
    """Lava's one-sided u overflow test (backends.intsim.arith.wrap_once24), on floats."""
    M = float(STATE_MAX)
    y = torch.where(x > M, x - 2 * M, x)
    return torch.where(y <= -M, x + 2 * M, y)


def _decay(x: torch.Tensor, d: int) -> torch.Tensor:
    """sign(x) * ((|x| * (unity - d)) >> decay_bits) on integer-valued floats (exact below 2^41)."""
    if d == 0:
        return x
    if d >= _UNITY:
        return torch.zeros_like(x)
    return torch.sign(x) * torch.floor(x.abs() * float(_UNITY - d) / float(_UNITY))


def absmax(t: torch.Tensor) -> float:
    if t.numel() == 0:
        return 0.0
    lo, hi = torch.aminmax(t)
    return max(-float(lo), float(hi))


class IntNeurons(torch.autograd.Function):
    """T steps of one integer LIF population (Lava's arithmetic), surrogate backward.

    a: (T, B, n) or static (B, n) integer input currents; bias: (n,) integer bias.
    Returns spikes (T, B, n) float32 0/1 and v after the last step (B, n) float64.
    The reset sets v to 0 where it fired, or (`subtract`, loihi2's programmable neurons)
    subtracts vth << vth_shift.
    An IF population whose |a| < state_max >> act_shift and |a << act_shift| + |bias| < state_max
    (2^17 and 2^23 on loihi; checked on the batch)
    cannot wrap u or overflow 32 bits, so only the 24-bit clip of v remains: that case runs
    in float32, where every value is an integer below 2^24 (as intsim's fast path)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, bias: torch.Tensor, T: int, static: bool, du: int, dv: int,  # type: ignore[override]
                vth: int, norm: float, kind: int, slope: float, readout: bool, subtract: bool = False):
        lim = float(STATE_MAX - 1)
        thr = float(vth << VTH_SHIFT)
        n_shape = a.shape if static else a.shape[1:]
        amax, bmax = absmax(a), absmax(bias)
        fast = du == _UNITY - 1 and dv == 0 and amax < (STATE_MAX >> ACT_SHIFT) and amax * _GAIN + bmax < STATE_MAX
        dt = torch.float32 if fast else torch.float64
        vs = torch.empty((T, *n_shape), dtype=dt, device=a.device)
        spikes = torch.empty((T, *n_shape), dtype=torch.float32, device=a.device)
        clipped = torch.zeros((T, *n_shape), dtype=torch.bool, device=a.device)
        if fast:
            b = bias.to(dt)
            base = b if not static else a.to(dt) * _GAIN + b
            v = torch.zeros(n_shape, dtype=dt, device=a.device)
            for t in range(T):
                v += base
                if not static:
                    v.add_(a[t].to(dt), alpha=_GAIN)
                lo, hi = torch.aminmax(v)
                if float(hi) > lim or float(lo) < -lim:
                    clipped[t] = v.abs() > lim
                    v.clamp_(-lim, lim)
                vs[t] = v
                s = v > thr
                spikes[t] = s
                if subtract:
                    v.sub_(s.to(dt), alpha=thr)
                else:
                    v.masked_fill_(s, 0.0)
            v = v.to(torch.float64)
        else:
            b = bias.to(torch.float64)
            u = torch.zeros(n_shape, dtype=torch.float64, device=a.device)
            v = torch.zeros_like(u)
            for t in range(T):
                at = wrap(a.to(torch.float64) if static else a[t].to(torch.float64), 32)
                u = _wrap_once24(wrap(_decay(u, du + 1) + wrap(at * _GAIN, 32), 32))
                pre = wrap(_decay(v, dv) + u + b, 32)
                v = pre.clamp(-lim, lim)
                clipped[t] = v != pre
                vs[t] = v
                s = v > thr
                spikes[t] = s
                v = v - thr * s.to(v.dtype) if subtract else v.masked_fill(s, 0.0)
        ctx.save_for_backward(vs, spikes, clipped)
        ctx.args = (T, static, du, dv, thr, norm, kind, slope, readout, a.dtype, subtract)
        ctx.mark_non_differentiable(spikes) if readout else None
        return spikes, v

    @staticmethod
    def backward(ctx, gs: torch.Tensor, gv_last: torch.Tensor):  # type: ignore[override]
        vs, spikes, clipped = ctx.saved_tensors
        T, static, du, dv, thr, norm, kind, slope, readout, a_dtype, subtract = ctx.args
        kv, ku = (_UNITY - dv) / float(_UNITY), max(0, _UNITY - 1 - du) / float(_UNITY)
        dt = vs.dtype
        if readout or gs is None:
            sg = None
        else:
            sg = _surrogate_grad((vs - thr).mul_(1.0 / norm), kind, slope).mul_(1.0 / norm)
            sg.mul_(gs.to(dt))
        any_clip = bool(clipped.any())
        ga = torch.empty_like(vs)
        gb = torch.zeros_like(vs[0])
        g_r = gv_last.to(dt) if gv_last is not None else torch.zeros_like(vs[0])   # dL/d(v after reset)
        g_x_next = None
        for t in range(T - 1, -1, -1):
            g_p = g_r if subtract else g_r - g_r * spikes[t].to(dt)   # through the (detached) reset
            if sg is not None:
                g_p += sg[t]
            if any_clip:
                g_p.masked_fill_(clipped[t], 0.0)
            g_u = g_p if g_x_next is None or ku == 0.0 else g_p + g_x_next * ku
            torch.mul(g_u, _GAIN, out=ga[t])
            gb += g_p
            g_x_next = g_u
            g_r = g_p * kv if kv != 1.0 else g_p
        g_a = (ga.sum(0) if static else ga).to(a_dtype)
        g_bias = gb.reshape(-1, gb.shape[-1]).sum(0).to(torch.float64)
        return g_a, g_bias, None, None, None, None, None, None, None, None, None, None
