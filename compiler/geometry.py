"""Window geometry shared by export, import, lowering and the simulators: one rule for how a
convolution or pooling window maps an (H, W) input to its output, and one reading of a
kernel / stride / padding / dilation value as an (H, W) pair."""

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
