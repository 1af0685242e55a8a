"""Graph networks: one definition gives both the ANN teacher and the spiking student.

A network is a small DAG of named nodes (`NodeSpec`), mirroring NIR: synaptic nodes
(`ConvBN`, `LinearBN`), activations (`ReLU` in the ANN, `IFNeuron` in the SNN), pooling
(`AvgPool2d` only; no MaxPool in deployable students), `Flatten`, and a `Readout`.
A node with several inputs receives their sum (residual connections).

The SNN runs time-folded: tensors are (T*B, ...). With direct encoding the input is the
same at every step, so everything before the first IF is computed once on (B, ...)
("static") and expanded to T steps only where a neuron needs it — exact, and T times
cheaper for the first layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from kdsnn.encoding import rate_encode
from kdsnn.lif import LIFNeuron
from kdsnn.neurons import IFNeuron
from kdsnn.timefold import fold, sum_inputs

NEURON_MODULES = (IFNeuron, LIFNeuron)

OPS = ("conv", "linear", "act", "avgpool", "flatten", "readout")


@dataclass
class NodeSpec:
    """One node: its op, the names of the nodes feeding it, and op arguments."""

    name: str
    op: str
    inputs: list[str]
    args: dict[str, Any] = field(default_factory=dict)


class ConvBN(nn.Module):
    """Conv2d followed by an optional BatchNorm2d (folded into the conv at export)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 0, groups: int = 1, bn: bool = True, bias: bool | None = None):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride, padding, groups=groups,
                              bias=(not bn) if bias is None else bias)
        self.bn = nn.BatchNorm2d(c_out) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.bn(x) if self.bn is not None else x


class LinearBN(nn.Module):
    """Linear followed by an optional BatchNorm1d (folded at export)."""

    def __init__(self, n_in: int, n_out: int, bn: bool = False, bias: bool | None = None):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out, bias=(not bn) if bias is None else bias)
        self.bn = nn.BatchNorm1d(n_out) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        return self.bn(x) if self.bn is not None else x


class Readout(nn.Module):
    """Non-spiking integrator: logits = (1/T) sum_t y[t]. Identity in the ANN."""

    def __init__(self) -> None:
        super().__init__()
        self.T = 1

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.T == 1:
            return y
        return y.reshape(self.T, y.shape[0] // self.T, *y.shape[1:]).mean(0)


class GraphNet(nn.Module):
    """A DAG of named nodes; `spiking` selects IF neurons (student) or ReLU (teacher).

    forward(x) -> logits (B, classes);
    forward(x, return_features=True) -> (logits, {feature point: (B, ...)}) where a spiking
    feature is the firing rate (spikes averaged over the T steps);
    forward(x, return_features="pre") gives the activations' inputs instead (pre-ReLU
    features of a teacher; the time-averaged input current of a student).
    """

    def __init__(self, specs: list[NodeSpec], input_shape: tuple[int, ...], num_classes: int,
                 spiking: bool, T: int = 4, neuron: dict[str, Any] | None = None,
                 feature_points: list[str] | None = None, arch: str = "custom",
                 encoding: dict[str, Any] | None = None) -> None:
        super().__init__()
        # {"kind": "direct"} (default) or {"kind": "rate", "seed": int, "mean": [...], "std": [...]}
        self.encoding = dict(encoding or {"kind": "direct"})
        self._rate_gen: torch.Generator | None = None
        self.specs = list(specs)
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.spiking = spiking
        self.neuron = dict(neuron or {})
        self.feature_points = list(feature_points or [])
        self.arch = arch
        self.nodes = nn.ModuleDict()
        for s in self.specs:
            if s.op not in OPS:
                raise ValueError(f"node {s.name}: unknown op {s.op!r}")
            self.nodes[s.name] = self._make(s)
        self.T = 1
        self.set_time_steps(T if spiking else 1)

    def _make(self, s: NodeSpec) -> nn.Module:
        a = s.args
        if s.op == "conv":
            return ConvBN(a["c_in"], a["c_out"], a.get("kernel_size", 3), a.get("stride", 1),
                          a.get("padding", 0), a.get("groups", 1), a.get("bn", True))
        if s.op == "linear":
            return LinearBN(a["n_in"], a["n_out"], a.get("bn", False))
        if s.op == "act":
            return make_neuron(self.neuron) if self.spiking else nn.ReLU()
        if s.op == "avgpool":
            return nn.AvgPool2d(a["kernel_size"], a.get("stride") or a["kernel_size"])
        if s.op == "flatten":
            return nn.Flatten(1)
        return Readout()

    def set_time_steps(self, T: int) -> None:
        """Set the number of time steps of every neuron and the readout."""
        self.T = int(T) if self.spiking else 1
        for m in self.modules():
            if isinstance(m, (*NEURON_MODULES, Readout)):
                m.T = self.T

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """x: images (B, *input_shape), or input trains (B, T, *input_shape) such as
        rate-encoded spikes (kdsnn.encoding); a rate student encodes images itself."""
        T = self.T
        pre = return_features == "pre"
        if self.spiking and x.ndim == len(self.input_shape) + 1 and self.encoding.get("kind") == "rate":
            x = self._rate(x)
        if x.ndim == len(self.input_shape) + 2:        # trains (B, T, ...) -> time-folded (T*B, ...)
            if x.shape[1] != T:
                raise ValueError(f"input trains have {x.shape[1]} steps, the network runs T={T}")
            vals: dict[str, tuple[torch.Tensor, bool]] = {"input": (fold(x), False)}
        else:
            vals = {"input": (x, True)}  # (tensor, static)
        feats: dict[str, torch.Tensor] = {}
        out = None
        for s in self.specs:
            h, static = sum_inputs([vals[i] for i in s.inputs], T)
            mod = self.nodes[s.name]
            if pre and s.name in self.feature_points:
                feats[s.name] = h if static else h.reshape(T, -1, *h.shape[1:]).mean(0)
            if isinstance(mod, NEURON_MODULES):
                h, static = mod(h, static=static), False
            elif isinstance(mod, Readout):
                h, static = (h if static else mod(h)), True
            else:
                h = mod(h)
            vals[s.name] = (h, static)
            if return_features and not pre and s.name in self.feature_points:
                feats[s.name] = h if static else h.reshape(T, -1, *h.shape[1:]).mean(0)
            out = h
        assert out is not None
        return (out, feats) if return_features else out

    def _rate(self, x: torch.Tensor) -> torch.Tensor:
        """Fresh Bernoulli trains for images, from this student's seeded generator."""
        if self._rate_gen is None:
            self._rate_gen = torch.Generator().manual_seed(int(self.encoding.get("seed", 0)))
        return rate_encode(x, self.T, self.encoding.get("mean"), self.encoding.get("std"), self._rate_gen)

    def feature_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes (without batch) of the named feature points, from a dry run."""
        with torch.no_grad():
            was = self.training
            self.eval()
            dev = next(self.parameters()).device
            _, f = self.forward(torch.zeros(1, *self.input_shape, device=dev), return_features=True)
            self.train(was)
        return {k: tuple(v.shape[1:]) for k, v in f.items()}


def make_neuron(cfg: dict[str, Any]) -> nn.Module:
    """The student's neuron from its config: {"model": "if" (default) | "lif", ...kwargs}."""
    cfg = dict(cfg)
    model = cfg.pop("model", "if")
    if model == "lif":
        return LIFNeuron(**cfg)
    if model != "if":
        raise ValueError(f"unknown neuron model {model!r}; choose if or lif")
    return IFNeuron(**cfg)


class GraphBuilder:
    """Builds NodeSpecs while tracking shapes, so architectures read like the papers."""

    def __init__(self, input_shape: tuple[int, ...]) -> None:
        self.specs: list[NodeSpec] = []
        self.shapes: dict[str, tuple[int, ...]] = {"input": tuple(input_shape)}
        self.last = "input"

    def _src(self, src: str | list[str] | None) -> list[str]:
        if src is None:
            return [self.last]
        return [src] if isinstance(src, str) else list(src)

    def _add(self, name: str, op: str, inputs: list[str], shape: tuple[int, ...], **args) -> str:
        if name in self.shapes:
            raise ValueError(f"duplicate node name {name}")
        for i in inputs:
            if self.shapes[i] != self.shapes[inputs[0]]:
                raise ValueError(f"node {name}: summed inputs differ in shape {self.shapes[i]} vs {self.shapes[inputs[0]]}")
        self.specs.append(NodeSpec(name, op, inputs, args))
        self.shapes[name] = shape
        self.last = name
        return name

    def conv(self, name: str, c_out: int, kernel_size: int = 3, stride: int = 1,
             padding: int | None = None, bn: bool = True, groups: int = 1,
             src: str | None = None) -> str:
        ins = self._src(src)
        c, h, w = self.shapes[ins[0]]
        p = kernel_size // 2 if padding is None else padding
        ho, wo = (h + 2 * p - kernel_size) // stride + 1, (w + 2 * p - kernel_size) // stride + 1
        return self._add(name, "conv", ins, (c_out, ho, wo), c_in=c, c_out=c_out,
                         kernel_size=kernel_size, stride=stride, padding=p, groups=groups, bn=bn)

    def linear(self, name: str, n_out: int, bn: bool = False, src: str | None = None) -> str:
        ins = self._src(src)
        (n,) = self.shapes[ins[0]]
        return self._add(name, "linear", ins, (n_out,), n_in=n, n_out=n_out, bn=bn)

    def act(self, name: str, src: str | list[str] | None = None) -> str:
        ins = self._src(src)
        return self._add(name, "act", ins, self.shapes[ins[0]])

    def avgpool(self, name: str, kernel_size: int = 2, stride: int | None = None,
                src: str | None = None) -> str:
        ins = self._src(src)
        c, h, w = self.shapes[ins[0]]
        s = stride or kernel_size
        return self._add(name, "avgpool", ins, (c, (h - kernel_size) // s + 1, (w - kernel_size) // s + 1),
                         kernel_size=kernel_size, stride=s)

    def flatten(self, name: str, src: str | None = None) -> str:
        ins = self._src(src)
        n = 1
        for d in self.shapes[ins[0]]:
            n *= d
        return self._add(name, "flatten", ins, (n,))

    def readout(self, name: str = "readout", src: str | None = None) -> str:
        ins = self._src(src)
        return self._add(name, "readout", ins, self.shapes[ins[0]])
