"""Exact conversions between IntNet's PyTorch layouts and Lava's.

IntNet: (C, H, W) data flattened in C order; conv weights (C_out, C_in/g, kH, kW) applied as
cross-correlation; stride/padding/dilation as (H, W).
Lava: a 3-D population is (W, H, C) (`lava.proc.conv`); Conv weights are (C_out, W, H, C_in/g)
applied as a true convolution (the kernel is flipped); stride/padding/dilation as (W, H).
Dense weights act on the flattened Lava layout. Populations of any other rank are kept flat.
Everything here is a permutation or a flip: no value changes.
"""

from __future__ import annotations

import numpy as np


def lava_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Lava shape of a canonical population/input shape."""
    if len(shape) == 3:
        c, h, w = shape
        return (w, h, c)
    return (int(np.prod(shape)),)


def perm(shape: tuple[int, ...]) -> np.ndarray:
    """perm[i] = canonical flat index of the neuron at Lava flat index i."""
    n = int(np.prod(shape))
    idx = np.arange(n)
    if len(shape) == 3:
        return idx.reshape(shape).transpose(2, 1, 0).ravel()
    return idx


def to_lava(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(N, *shape) canonical arrays -> (N, *lava_shape(shape))."""
    n = x.shape[0]
    flat = x.reshape(n, -1)[:, perm(shape)]
    return flat.reshape((n, *lava_shape(shape)))


def from_lava_flat(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(..., prod(shape)) arrays in Lava flat order -> (..., *shape) canonical."""
    out = np.empty_like(x)
    out[..., perm(shape)] = x
    return out.reshape((*x.shape[:-1], *shape))


def dense_weight(w: np.ndarray, src_shape: tuple[int, ...], dst_shape: tuple[int, ...]) -> np.ndarray:
    """Canonical (n_dst, n_src) dense weights -> rows/columns in Lava flat order."""
    return np.ascontiguousarray(w[perm(dst_shape)][:, perm(src_shape)])


def conv_weight(w: np.ndarray) -> np.ndarray:
    """PyTorch (C_out, C_in/g, kH, kW) correlation kernel -> Lava (C_out, kW, kH, C_in/g)
    convolution kernel (flipped in both spatial axes)."""
    return np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))


def xy(pair: tuple[int, int]) -> tuple[int, int]:
    """(H, W) conv parameters -> Lava's (X, Y) = (W, H)."""
    return (int(pair[1]), int(pair[0]))
