"""Window geometry shared by export, import, lowering and the simulators: one rule for how a
convolution or pooling window maps an (H, W) input to its output, and one reading of a
kernel / stride / padding / dilation value as an (H, W) pair; and the test that a kernel is a
sum-pool followed by a smaller kernel (a folded pool, factored back out by intsim and calibration)."""

from __future__ import annotations

from typing import Any

import numpy as np

from kdsnn.errors import KdsnnError


def pair(v: Any, what: str = "value", where: str = "") -> tuple[int, int]:
    """One or two integers (an int, a tuple, a NIR array) as an (H, W) pair; `where` prefixes
    the error (e.g. "graph.nir: node 'conv1': ")."""
    a = np.ravel(np.asarray(v))
    if a.size == 1:
        a = np.repeat(a, 2)
    if a.size != 2 or not np.all(np.equal(np.mod(a, 1), 0)):
        raise KdsnnError(f"{where}{what} {np.asarray(v).tolist()} is not one or two integers")
    return int(a[0]), int(a[1])


def window_out_hw(hw: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...],
                  padding: tuple[int, ...], dilation: tuple[int, ...] = (1, 1)) -> tuple[int, int]:
    """Output (H, W) of a conv or pooling window over an (H, W) input (PyTorch's floor rule)."""
    h, w = ((n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, k, s, p, d in zip(hw, kernel, stride, padding, dilation, strict=True))
    return h, w


def pool_factor(c: Any, w: np.ndarray, src_shape: tuple[int, ...]) -> tuple[int, np.ndarray] | None:
    """(s, reduced weights) when W applies the same weight to every s x s block of the source.

    c: an integer `Connection` or a lowering `FConn` (kind, stride, padding, dilation).

    Then W.x == W_reduced . sumpool_s(x) exactly (integer identity), which undoes the kernel
    expansion of a folded AvgPool and runs as cheaply as the float student's pool + conv.
    Needs the map size to be a multiple of s (no rows the pool would drop) and, for conv,
    stride, padding and kernel multiples of s with no dilation.
    """
    if len(src_shape) != 3:
        return None
    _, h, wd = src_shape
    for s in (4, 3, 2):
        if h % s or wd % s:
            continue
        if c.kind == "conv":
            co, ci, kh, kw = w.shape
            if (c.dilation != (1, 1) or kh % s or kw % s or c.stride[0] % s or c.stride[1] % s
                    or c.padding[0] % s or c.padding[1] % s):
                continue
            b = w.reshape(co, ci, kh // s, s, kw // s, s)
            if np.array_equal(b, np.broadcast_to(b[:, :, :, :1, :, :1], b.shape)):
                return s, np.ascontiguousarray(b[:, :, :, 0, :, 0])
        else:
            n = w.shape[0]
            b = w.reshape(n, src_shape[0], h // s, s, wd // s, s)
            if np.array_equal(b, np.broadcast_to(b[:, :, :, :1, :, :1], b.shape)):
                return s, np.ascontiguousarray(b[:, :, :, 0, :, 0]).reshape(n, -1)
    return None
