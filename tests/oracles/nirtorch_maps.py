"""An independent float executor of canonical NIR graphs: nirtorch's interpreter with our own
step modules (docs/design.md, "Known traps").

nirtorch 2.6's defaults are not usable as they are: its Affine -> torch mapping assigns the
bias to `weight.bias` (the module keeps a random bias), its Flatten mapping reads NIR's
batch-free dims as torch's batched dims, and it has no IF/I. So every node type gets an
explicit mapping here and `default_map` is switched off.

`NIR_TO_TORCH` holds one-step modules for `nirtorch.nir_to_torch`; `nir_to_stepper` runs
them step by step with nirtorch's state dict. `IFStep` and `IStep` implement
docs/design.md, "Float semantics" per step; the readout's output after T steps is
sum_t y[t], so logits = output / T. The tests check the reference backend against it.
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np
import torch
from torch import nn


# ------------------------------------------------------------------------------ NIR -> torch
class IFStep(nn.Module):
    """One step of the IF neuron: v += x; s = v > theta; v = 0 where s. State: v."""

    def __init__(self, theta: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("theta", torch.as_tensor(np.asarray(theta)))

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None):
        v = (torch.zeros_like(x) if state is None else state) + x
        s = v > self.theta
        return s.to(x.dtype), v.masked_fill(s, 0.0)


class IStep(nn.Module):
    """One step of the readout integrator: v += r * x; the output is v (divide by T)."""

    def __init__(self, r: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("r", torch.as_tensor(np.asarray(r)))

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None):
        v = (torch.zeros_like(x) if state is None else state) + self.r * x
        return v, v


class SumPool(nn.Module):
    def __init__(self, k: tuple[int, int], s: tuple[int, int], p: tuple[int, int]) -> None:
        super().__init__()
        self.k, self.s, self.p = k, s, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(x, self.k, self.s, self.p, count_include_pad=True, divisor_override=1)


def _t(a: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def _to_linear(n: nir.NIRNode) -> nn.Linear:
    w = _t(n.weight)
    m = nn.Linear(w.shape[1], w.shape[0], bias=isinstance(n, nir.Affine))
    m.weight.data = w
    if isinstance(n, nir.Affine):
        m.bias.data = _t(n.bias)  # nirtorch's default sets `weight.bias` and keeps a random bias
    return m


def _to_conv(n: nir.Conv2d) -> nn.Conv2d:
    w = _t(n.weight)
    m = nn.Conv2d(w.shape[1] * int(n.groups), w.shape[0], tuple(w.shape[2:]), stride=tuple(n.stride),
                  padding=tuple(n.padding), dilation=tuple(n.dilation), groups=int(n.groups), bias=True)
    m.weight.data, m.bias.data = w, _t(n.bias)
    return m


def _to_flatten(n: nir.Flatten) -> nn.Flatten:
    k = len(n.input_type["input"])
    return nn.Flatten(int(n.start_dim) % k + 1, int(n.end_dim) % k + 1)  # NIR dims are batch-free


def _to_pool(n: nir.NIRNode) -> nn.Module:
    k, s, p = (tuple(int(v) for v in a) for a in (n.kernel_size, n.stride, n.padding))
    if isinstance(n, nir.AvgPool2d):
        return nn.AvgPool2d(k, s, p)
    return SumPool(k, s, p)


NIR_TO_TORCH: dict[type, Any] = {
    nir.Input: lambda n: nn.Identity(),
    nir.Output: lambda n: nn.Identity(),
    nir.Affine: _to_linear,
    nir.Linear: _to_linear,
    nir.Conv2d: _to_conv,
    nir.Flatten: _to_flatten,
    nir.AvgPool2d: _to_pool,
    nir.SumPool2d: _to_pool,
    nir.IF: lambda n: IFStep(n.v_threshold),
    nir.I: lambda n: IStep(n.r),
}


def nir_to_stepper(graph: nir.NIRGraph) -> torch.fx.GraphModule:
    """A canonical graph as a nirtorch GraphModule stepping one time step per call:
    `out, state = gm(x_t, state)`; after T steps, logits = out / T."""
    import nirtorch

    return nirtorch.nir_to_torch(graph, NIR_TO_TORCH, default_map={}, dtype=torch.float64)
