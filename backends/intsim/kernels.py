"""intsim's kernels and the bounds that keep them exact: the dtype each integer sum may run in
(float32, float64 or int64, proved from the weights' and inputs' maxima), the factored
sum-pool, the exact int64 convolution, and the reused buffers of a batch."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from kdsnn.compiler.geometry import window_out_hw
from kdsnn.compiler.intnet import Connection

F32_EXACT = 1 << 24
F64_EXACT = 1 << 53


def absmax(t: torch.Tensor | None) -> int:
    if t is None or t.numel() == 0:
        return 0
    lo, hi = torch.aminmax(t)
    return max(-int(lo), int(hi))


def clip_(v: torch.Tensor, lim: int) -> int:
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
    window sum is an integer below 2^24 / 2^53 (`exact_dtype` is chosen from a bound that
    covers it, `pooled_bound`). On CPU this is several times faster than avg_pool2d with
    divisor_override=1, and it never rounds.
    """
    n, c, hh, ww = x.shape
    h = torch.add(x[:, :, 0::s], x[:, :, 1::s], out=take(scratch, "pool_h", (n, c, hh // s, ww), x))
    for i in range(2, s):
        h.add_(x[:, :, i::s])
    y = torch.add(h[..., 0::s], h[..., 1::s], out=take(scratch, "pool", (n, c, hh // s, ww // s), x))
    for j in range(2, s):
        y.add_(h[..., j::s])
    return y


def take(scratch: dict | None, key: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
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


def spike_dtype(consumers: list[torch.dtype]) -> torch.dtype:
    """The dtype a population's 0/1 spikes are written in: its consumers' float dtype when they
    all share one, else float32 (int64 consumers convert, exactly, when they read)."""
    ds = set(consumers)
    return ds.pop() if len(ds) == 1 and next(iter(ds)) in (torch.float32, torch.float64) else torch.float32


def exact_dtype(bound: int) -> torch.dtype:
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


def conv_int64(x: torch.Tensor, w: torch.Tensor, c: Connection, stride: tuple[int, int],
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
def no_nnpack():
    """NNPACK's Winograd/FFT convolutions are not exact; keep PyTorch on direct/im2col."""
    try:
        ctx = torch.backends.nnpack.flags(enabled=False)
    except AttributeError:  # pragma: no cover - very old torch
        ctx = contextlib.nullcontext()
    with ctx:
        yield
