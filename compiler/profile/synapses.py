"""Synapses of IntNet connections, counted exactly: the fan-out of every source neuron and the
fan-in of every destination neuron, including the borders of padded and strided convolutions."""

from __future__ import annotations

import numpy as np
from kdsnn.compiler.intnet import Connection

from kdsnn.errors import KdsnnError


def _taps(n_out: int, k: int, stride: int, pad: int, dil: int) -> np.ndarray:
    """(n_out, k): the input index output o reads through kernel tap j, o*stride - pad + j*dil
    (outside [0, n_in) where it falls in the padding)."""
    return np.arange(n_out)[:, None] * stride - pad + np.arange(k)[None] * dil


def conv_taps(c: Connection, dst_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """_taps along H and W of a conv connection into dst_shape (C, H, W)."""
    kh, kw = c.weight.shape[2:]
    return (_taps(dst_shape[1], kh, c.stride[0], c.padding[0], c.dilation[0]),
            _taps(dst_shape[2], kw, c.stride[1], c.padding[1], c.dilation[1]))


def axis_reach(n_in: int, n_out: int, k: int, stride: int, pad: int, dil: int) -> np.ndarray:
    """(n_in, k) bool: input index i is reached through kernel tap j by some output index.

    Padding positions are not neurons, so they carry no synapse.
    """
    reach = np.zeros((n_in, k), dtype=bool)
    i = _taps(n_out, k, stride, pad, dil)
    j = np.broadcast_to(np.arange(k), i.shape)
    inside = (i >= 0) & (i < n_in)
    reach[i[inside], j[inside]] = True
    return reach


def _conv_geometry(c: Connection, src_shape: tuple[int, ...], dst_shape: tuple[int, ...]):
    if len(src_shape) != 3 or len(dst_shape) != 3:
        raise KdsnnError(f"connection {c.name}: conv needs (C, H, W) source and destination, got {src_shape} -> {dst_shape}")
    c_out, cin_g, kh, kw = c.weight.shape
    c_in, h_in, w_in = src_shape
    _, h_out, w_out = dst_shape
    if cin_g * c.groups != c_in or c_out != dst_shape[0] or c_out % c.groups:
        raise KdsnnError(f"connection {c.name}: weight {c.weight.shape} with groups={c.groups} does not fit {src_shape} -> {dst_shape}")
    ry = axis_reach(h_in, h_out, kh, c.stride[0], c.padding[0], c.dilation[0])
    rx = axis_reach(w_in, w_out, kw, c.stride[1], c.padding[1], c.dilation[1])
    return ry, rx


def fan_out(c: Connection, src_shape: tuple[int, ...], dst_shape: tuple[int, ...],
            nonzero: bool = False) -> np.ndarray:
    """Synapses leaving each source neuron, shape = src_shape (int64).

    nonzero=True counts only synapses whose integer weight is not zero (NeuroBench effective).
    """
    w = np.asarray(c.weight)
    if c.kind == "dense":
        if nonzero:
            return (w != 0).sum(axis=0).astype(np.int64).reshape(src_shape)
        return np.full(src_shape, w.shape[0], dtype=np.int64)
    ry, rx = _conv_geometry(c, src_shape, dst_shape)
    c_out, cin_g, kh, kw = w.shape
    per_group = c_out // c.groups
    # taps[ci, ky, kx]: output channels whose kernel reaches input channel ci through (ky, kx)
    mask = (w != 0) if nonzero else np.ones_like(w, dtype=bool)
    taps = mask.reshape(c.groups, per_group, cin_g, kh, kw).sum(axis=1).reshape(c.groups * cin_g, kh, kw)
    return np.einsum("cyx,iy,jx->cij", taps.astype(np.int64), ry.astype(np.int64), rx.astype(np.int64))


def fan_in(c: Connection, src_shape: tuple[int, ...], dst_shape: tuple[int, ...]) -> np.ndarray:
    """Synapses arriving at each destination neuron (all weights), shape = dst_shape."""
    if c.kind == "dense":
        return np.full(dst_shape, int(np.prod(src_shape)), dtype=np.int64)
    c_out, cin_g, kh, kw = c.weight.shape
    c_in, h_in, w_in = src_shape
    _, h_out, w_out = dst_shape
    oy, ox = conv_taps(c, dst_shape)
    ny = ((oy >= 0) & (oy < h_in)).sum(1)
    nx = ((ox >= 0) & (ox < w_in)).sum(1)
    per_pos = cin_g * ny[:, None] * nx[None, :]
    return np.broadcast_to(per_pos, (c_out, h_out, w_out)).astype(np.int64).copy()

