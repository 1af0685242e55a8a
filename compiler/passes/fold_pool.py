"""Pass `fold_pool`: fold AvgPool/SumPool into the synaptic layer that follows it.

pool -> conv: conv(pool(x)) is one conv on x with an expanded kernel: offsets s*i + a
(a < k) carry W[i] * scale, stride s * stride, padding s * padding. Exact when the pool
tiles the map (k <= s, no pool padding, and the pooled map's zero padding lands on the
folded conv's zero padding): the pass checks it numerically on random data and refuses
(with the node names) where it does not hold.
pool -> dense: W @ P, computed as the adjoint of the pool applied to W's rows (exact for
any pooling). A pool feeding a neuron directly becomes a depthwise conv in `connections`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from kdsnn.compiler.passes.state import LNode, LoweringState, bypass

from kdsnn.errors import KdsnnError

NAME = "fold_pool"


def pool_apply(x: torch.Tensor, p: dict) -> torch.Tensor:
    """The float pool op on (N, C, H, W)."""
    y = F.avg_pool2d(x, p["kernel"], p["stride"], p["padding"], count_include_pad=True)
    return y * (p["kernel"][0] * p["kernel"][1] * p["scale"])


def conv_apply(x: torch.Tensor, p: dict) -> torch.Tensor:
    w = torch.as_tensor(p["weight"], dtype=x.dtype)
    return F.conv2d(x, w, None, p["stride"], p["padding"], p["dilation"], p["groups"])


def _fold_into_conv(pool: LNode, conv: LNode, in_shape: tuple[int, ...]) -> dict | None:
    pp, cp = pool.params, conv.params
    if pp["padding"] != (0, 0) or cp["dilation"] != (1, 1):
        return None
    (kh, kw), (sh, sw) = pp["kernel"], pp["stride"]
    w = cp["weight"]
    co, ci, K1, K2 = w.shape
    wf = np.zeros((co, ci, (K1 - 1) * sh + kh, (K2 - 1) * sw + kw))
    for i in range(K1):
        for j in range(K2):
            wf[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw] += w[:, :, i:i + 1, j:j + 1] * pp["scale"]
    new = dict(cp, weight=wf, stride=(sh * cp["stride"][0], sw * cp["stride"][1]),
               padding=(sh * cp["padding"][0], sw * cp["padding"][1]), dilation=(1, 1))
    x = torch.randn(2, *in_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = conv_apply(pool_apply(x, pp), cp)
        got = conv_apply(x, new)
    if ref.shape != got.shape or not torch.allclose(ref, got, rtol=1e-9, atol=1e-9):
        return None
    return new


def _fold_into_dense(pool: LNode, dense: LNode, in_shape: tuple[int, ...]) -> np.ndarray:
    w = torch.as_tensor(dense.params["weight"], dtype=torch.float64)
    n_out = w.shape[0]
    x = torch.zeros(n_out, *in_shape, dtype=torch.float64, requires_grad=True)
    y = pool_apply(x, pool.params)
    (y * w.reshape(n_out, *y.shape[1:])).sum().backward()
    assert x.grad is not None
    return x.grad.reshape(n_out, -1).numpy()


def run(st: LoweringState) -> None:
    folded = 0
    changed = True
    while changed:
        changed = False
        for pool in [n for n in st.nodes.values() if n.op == "pool"]:
            in_shape = st.shape_of(pool.inputs[0])
            for c in st.consumers(pool.name):
                if c.op == "conv":
                    new = _fold_into_conv(pool, c, in_shape)
                    if new is None:
                        raise KdsnnError(
                            f"cannot fold pooling {pool.name} into conv {c.name} exactly (pool padding, "
                            "overlapping windows or a map size the pool does not tile); move the pooling "
                            "after an IF layer or make the map size a multiple of the pool stride")
                    c.params = new
                elif c.op == "dense":
                    c.params = dict(c.params, weight=_fold_into_dense(pool, c, in_shape))
                else:
                    continue
                bypass(c, pool)
                folded += 1
                changed = True
            if not st.consumers(pool.name):
                del st.nodes[pool.name]
    st.log.append(f"{NAME}: {folded} pooling layer(s) folded into synaptic layers")
