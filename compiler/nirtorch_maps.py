"""Our own nirtorch node mappings, both directions (docs/design.md, "Known traps").

nirtorch 2.6's defaults are not usable as they are: its Affine -> torch mapping assigns the
bias to `weight.bias` (the module keeps a random bias), its Flatten mapping reads NIR's
batch-free dims as torch's batched dims, and it has no IF/I. So every node type kdsnn
reads or writes gets an explicit mapping here, and `DEFAULT_MAP`s are switched off.

- torch -> NIR (`TORCH_TO_NIR`, `module_to_nir`): kdsnn's ConvBN / LinearBN (BatchNorm
  folded), IFNeuron, Readout, nn.AvgPool2d, nn.Flatten, traced by `nirtorch.torch_to_nir`
  and canonicalized. `kdsnn.compiler.export.student_to_nir` is the exporter the flow uses (it
  walks the GraphNet's own DAG); this path serves plain `nn.Sequential` models and checks
  the exporter independently.
- NIR -> torch (`NIR_TO_TORCH`, `nir_to_stepper`): one-step modules for
  `nirtorch.nir_to_torch`, run step by step with nirtorch's state dict. `IFStep` and
  `IStep` implement docs/design.md, "Float semantics" per step; the readout's output after T steps is sum_t y[t],
  so logits = output / T.
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np
import torch
from kdsnn.compiler.export import fold_bn
from kdsnn.compiler.geometry import pair
from kdsnn.compiler.nir.canonicalize import canonicalize
from torch import nn


# ------------------------------------------------------------------------------ torch -> NIR
def _conv_bn(m: nn.Module) -> nir.Conv2d:
    conv = m.conv
    w, b = fold_bn(conv.weight, conv.bias, m.bn)
    return nir.Conv2d(input_shape=None, weight=w, stride=tuple(conv.stride), padding=tuple(conv.padding),
                      dilation=tuple(conv.dilation), groups=int(conv.groups),
                      bias=b if b is not None else np.zeros(w.shape[0]))


def _linear_bn(m: nn.Module) -> nir.NIRNode:
    w, b = fold_bn(m.linear.weight, m.linear.bias, m.bn)
    return nir.Linear(weight=w) if b is None else nir.Affine(weight=w, bias=b)


def _torch_linear(m: nn.Linear) -> nir.NIRNode:
    w, b = fold_bn(m.weight, m.bias, None)
    return nir.Linear(weight=w) if b is None else nir.Affine(weight=w, bias=b)


def _torch_conv(m: nn.Conv2d) -> nir.Conv2d:
    w, b = fold_bn(m.weight, m.bias, None)
    return nir.Conv2d(input_shape=None, weight=w, stride=tuple(m.stride), padding=tuple(m.padding),
                      dilation=tuple(m.dilation), groups=int(m.groups),
                      bias=b if b is not None else np.zeros(w.shape[0]))


def _if(m: nn.Module) -> nir.IF:
    # scalar parameters: canonicalize broadcasts them to the layer's shape
    return nir.IF(r=np.ones(1), v_threshold=np.full(1, float(m.theta)), v_reset=np.zeros(1))


def _readout(m: nn.Module) -> nir.I:
    return nir.I(r=np.ones(1))


def _avgpool(m: nn.AvgPool2d) -> nir.AvgPool2d:
    k = pair(m.kernel_size)
    s = pair(m.stride if m.stride is not None else m.kernel_size)
    return nir.AvgPool2d(kernel_size=np.array(k), stride=np.array(s), padding=np.array(pair(m.padding)))


def _flatten(m: nn.Flatten) -> nir.Flatten:
    # torch dims count the batch; NIR dims do not
    sd = m.start_dim - 1 if m.start_dim > 0 else m.start_dim
    ed = m.end_dim - 1 if m.end_dim > 0 else m.end_dim
    return nir.Flatten(input_type=None, start_dim=sd, end_dim=ed)


def torch_to_nir_map() -> dict[type, Any]:
    """module type -> NIR node, for nirtorch.torch_to_nir (kdsnn modules imported lazily)."""
    from kdsnn.layers import ConvBN, LinearBN, Readout
    from kdsnn.neurons import IFNeuron

    return {ConvBN: _conv_bn, LinearBN: _linear_bn, IFNeuron: _if, Readout: _readout,
            nn.Linear: _torch_linear, nn.Conv2d: _torch_conv, nn.AvgPool2d: _avgpool,
            nn.Flatten: _flatten}


def module_to_nir(module: nn.Module, input_shape: tuple[int, ...], metadata: dict[str, Any] | None = None
                  ) -> nir.NIRGraph:
    """Trace a plain torch model of mappable modules with nirtorch -> canonical NIR graph."""
    import nirtorch

    g = nirtorch.torch_to_nir(module, torch_to_nir_map(), default_dict=None, type_check=False)
    for n in g.nodes.values():
        if isinstance(n, nir.Input):
            n.input_type = {"input": np.array(input_shape)}
            n.output_type = {"output": np.array(input_shape)}
        if isinstance(n, nir.Output):
            n.output_type = {"output": None}
    g.metadata = dict(metadata or {})
    return canonicalize(g, source=f"traced {type(module).__name__}")


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
