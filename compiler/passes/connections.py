"""Pass `connections`: every IF/I node becomes a population, every edge into it a connection.

An edge from a synaptic node (Conv2d/Affine/Linear) becomes a connection from that node's
source population with its weights; its bias joins the population's bias. An edge
straight from a population (IF -> IF, or the input) is an identity connection (1x1
depthwise conv for maps, identity matrix for vectors); a pooling node left after
`fold_pool` becomes a depthwise conv, a flatten an identity matrix. Several edges into
one node (residual sums) give several connections into one population. The readout's
gain r multiplies its incoming weights and biases.
"""

from __future__ import annotations

import numpy as np
from kdsnn.compiler.passes.state import FConn, FPop, LoweringState

from kdsnn.errors import KdsnnError

NAME = "connections"
SOURCES = ("input", "if")


def _identity(src: str, dst: str, shape: tuple[int, ...], name: str) -> FConn:
    if len(shape) == 3:
        return FConn(name, src, dst, "conv", np.ones((shape[0], 1, 1, 1)), groups=shape[0])
    n = int(np.prod(shape))
    return FConn(name, src, dst, "dense", np.eye(n))


def run(st: LoweringState) -> None:
    used: set[str] = set()

    def fresh(base: str) -> str:
        n, i = base, 1
        while n in used:
            i += 1
            n = f"{base}_{i}"
        used.add(n)
        return n

    neurons = [n for n in st.nodes.values() if n.op in ("if", "readout")]
    neurons.sort(key=lambda n: n.op == "readout")          # readout last, order kept otherwise
    for n in neurons:
        pop = FPop(n.name, n.shape, float(n.params.get("theta", 0.0)), np.zeros(n.shape),
                   readout=n.op == "readout")
        gain = float(n.params.get("r", 1.0))
        conns = []
        for i in n.inputs:
            s = st.nodes[i]
            if s.op in SOURCES:
                conns.append(_identity(s.name, n.name, s.shape, fresh(f"{s.name}->{n.name}")))
                continue
            if s.op not in ("conv", "dense", "pool", "flatten"):
                raise KdsnnError(f"node {n.name} is fed by {s.name} ({s.op}); cannot lower that edge")
            src = st.nodes[s.inputs[0]]
            if src.op not in SOURCES:
                raise KdsnnError(f"{s.op} node {s.name} reads from {src.name} ({src.op}); kdsnn lowers one "
                                 "synaptic layer between neuron layers (fold or remove the extra linear layer)")
            p = s.params
            if s.op == "conv":
                c = FConn(fresh(s.name), src.name, n.name, "conv", p["weight"], p["stride"], p["padding"],
                          p["dilation"], p["groups"], s.origin)
                pop.bias = pop.bias + p["bias"].reshape(-1, 1, 1)
            elif s.op == "dense":
                c = FConn(fresh(s.name), src.name, n.name, "dense", p["weight"], origin=s.origin)
                pop.bias = pop.bias + p["bias"].reshape(n.shape)
            elif s.op == "pool":
                ch = src.shape[0]
                w = np.full((ch, 1, *p["kernel"]), p["scale"])
                c = FConn(fresh(s.name), src.name, n.name, "conv", w, p["stride"], p["padding"],
                          (1, 1), ch, s.origin)
            else:
                c = _identity(src.name, n.name, (int(np.prod(src.shape)),), fresh(s.name))
                c.origin = s.origin
            conns.append(c)
        if gain != 1.0:
            for c in conns:
                c.weight = c.weight * gain
            pop.bias = pop.bias * gain
        st.pops.append(pop)
        st.conns.extend(conns)
    st.log.append(f"{NAME}: {len(st.pops)} populations, {len(st.conns)} connections")
