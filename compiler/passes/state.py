"""What the lowering passes read and write: a small float graph that ends as an IntNet.

`import_nir` turns the canonical NIR graph into `LNode`s (one per NIR node, shapes
explicit). The folding passes rewrite those nodes; `connections` turns them into float
populations (`FPop`, one per neuron node) and float connections (`FConn`); the later passes
attach calibration statistics and integer parameters. Each pass is a function
`run(state) -> None` that mutates the state and appends a line to `state.log`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from kdsnn.compiler.intnet import Connection, InputSpec, Population
from kdsnn.compiler.targets import TargetSpec

from kdsnn.config import LoweringConfig


@dataclass
class LNode:
    """One node of the float graph: op in input/conv/dense/pool/flatten/delay/neuron/output."""

    name: str
    op: str
    inputs: list[str]
    shape: tuple[int, ...]                       # output shape, batch-free
    params: dict[str, Any] = field(default_factory=dict)
    origin: list[str] = field(default_factory=list)   # NIR nodes folded into this one
    delays: dict[str, int] = field(default_factory=dict)   # input -> steps on that edge


def bypass(node: LNode, folded: LNode) -> None:
    """`node` now reads what `folded` (one of its inputs, folded into it) read; the steps of
    delay on both edges add up."""
    src = folded.inputs[0]
    node.inputs = [src if i == folded.name else i for i in node.inputs]
    steps = node.delays.pop(folded.name, 0) + folded.delays.get(src, 0)
    if steps:
        node.delays[src] = node.delays.get(src, 0) + steps
    node.origin = folded.origin + node.origin


@dataclass
class FConn:
    """A float synaptic connection between populations (or the input)."""

    name: str
    src: str
    dst: str
    kind: str                                    # dense | conv
    weight: np.ndarray                           # float64; dense (n_dst, n_src), conv OIHW
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    origin: list[str] = field(default_factory=list)
    delay: int = 0                               # whole steps (cycle-closing edges, Delay nodes)


@dataclass
class FPop:
    """A float population in the common form of `compiler.dynamics` with gain folded into
    its incoming weights and the threshold normalised per neuron:

        u = (1 - alpha) u + a;  v = (1 - beta) v + u + bias;  s = v > theta; reset."""

    name: str
    shape: tuple[int, ...]
    theta: float                                 # one per layer (inf: never fires)
    bias: np.ndarray                             # float64, shape == shape (v_leak + synaptic biases)
    readout: bool = False
    alpha: float = 1.0                           # current decay per step (1: no current state)
    beta: float = 0.0                            # voltage decay per step (0: no leak)
    reset: str = "zero"                          # zero | subtract | none
    kind: str = "IF"                             # the NIR neuron it came from


@dataclass
class LoweringState:
    target: TargetSpec
    T: int
    meta: dict[str, Any]
    calibration_x: np.ndarray
    config: LoweringConfig = field(default_factory=LoweringConfig)   # the options and their defaults
    temporal: bool = False                                     # inputs are (N, T, *shape) trains
    nodes: dict[str, LNode] = field(default_factory=dict)      # topological order
    pops: list[FPop] = field(default_factory=list)
    conns: list[FConn] = field(default_factory=list)
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    input_spec: InputSpec | None = None
    scales: dict[str, float] = field(default_factory=dict)    # population -> a units per float unit
    int_pops: list[Population] = field(default_factory=list)
    int_conns: list[Connection] = field(default_factory=list)
    report: dict[str, dict[str, Any]] = field(default_factory=dict)
    plan: dict[str, Any] | None = None       # deployment-exact plan the student was trained on
    log: list[str] = field(default_factory=list)

    def consumers(self, name: str) -> list[LNode]:
        return [n for n in self.nodes.values() if name in n.inputs]

    def shape_of(self, name: str) -> tuple[int, ...]:
        return self.nodes[name].shape

    def pop(self, name: str) -> FPop:
        for p in self.pops:
            if p.name == name:
                return p
        raise KeyError(name)

    def incoming(self, name: str) -> list[FConn]:
        return [c for c in self.conns if c.dst == name]
