"""Pass `import_nir`: canonical NIR graph -> float LNodes with explicit shapes.

Strict: only the canonical node types (docs/design.md, "Float semantics") are accepted. Every neuron (IF, LIF,
CubaLIF, I, LI, CubaLI) is read through `compiler.dynamics.discretise_graph`, the one
discretisation the reference backend runs too (dt and reset modes from the graph's
metadata), and becomes a "neuron" node holding its `DiscreteNeuron`. A Loihi population
holds one du, dv and vth: alpha and beta must be uniform in a layer (refused otherwise,
with the node's name); per-neuron thresholds are normalised to 1 later (`connections`).
An edge that closes a cycle (`dynamics.closing_edges`) carries a one-step delay, a Delay
node whole steps (uniform per layer); both are recorded per edge in `LNode.delays` and end
on the connection they belong to. The Input node may have any name: it becomes "input".
"""

from __future__ import annotations

from collections import defaultdict

import nir
import numpy as np
from kdsnn.compiler.dynamics import DiscreteDelay, DiscreteNeuron, closing_edges, discretise_graph
from kdsnn.compiler.geometry import pair, window_out_hw
from kdsnn.compiler.intnet import INPUT
from kdsnn.compiler.nir.order import topological_order
from kdsnn.compiler.passes.state import LNode, LoweringState

from kdsnn.errors import KdsnnError

NAME = "import_nir"
NEURONS = (nir.IF, nir.I, nir.LIF, nir.LI, nir.CubaLIF, nir.CubaLI)


def _end(e: str, nodes: dict) -> str:
    if e in nodes:
        return e
    base = e.rsplit(".", 1)[0]
    if base in nodes:
        return base
    raise KdsnnError(f"NIR edge endpoint {e!r} is not a node of the graph")


def run(st: LoweringState, graph: nir.NIRGraph) -> None:
    nodes = graph.nodes
    inputs = [k for k, v in nodes.items() if isinstance(v, nir.Input)]
    if len(inputs) != 1:
        raise KdsnnError(f"the NIR graph must have exactly one Input node, found {len(inputs)}"
                         f"{' (' + ', '.join(inputs) + ')' if inputs else ''}; kdsnn lowers one input")
    inp = inputs[0]
    if inp != INPUT and INPUT in nodes:
        raise KdsnnError(f"node {INPUT!r} ({type(nodes[INPUT]).__name__}) is not the graph's Input node "
                         f"({inp!r}); kdsnn names the input {INPUT!r}: rename that node")

    def nm(k: str) -> str:
        return INPUT if k == inp else k

    edges = [(_end(a, nodes), _end(b, nodes)) for a, b in graph.edges]
    closing = set(closing_edges(list(nodes), edges, [inp]))
    preds: dict[str, list[str]] = defaultdict(list)
    succs: dict[str, list[str]] = defaultdict(list)
    all_preds: dict[str, list[str]] = defaultdict(list)
    for a, b in edges:
        all_preds[b].append(a)
        if (a, b) not in closing:
            preds[b].append(a)
            succs[a].append(b)
    order, cyc = topological_order(list(nodes), preds, succs)
    if cyc:  # pragma: no cover - closing_edges leaves a DAG
        raise KdsnnError(f"the NIR graph has a cycle through {', '.join(sorted(cyc)[:4])}")
    disc = discretise_graph(graph)
    shapes: dict[str, tuple[int, ...]] = {}
    for name0 in order:
        node = nodes[name0]
        name = nm(name0)
        ps = [nm(p) for p in all_preds[name0]]
        delays = {nm(a): 1 for a, b in closing if b == name0}
        kind = type(node).__name__
        if isinstance(node, nir.Input):
            shape = tuple(int(d) for d in np.ravel(next(iter(node.input_type.values()))))
            st.nodes[name] = LNode(name, "input", [], shape, origin=[name0])
            shapes[name] = shape
            continue
        if not ps:
            raise KdsnnError(f"node {name} ({kind}) has no input edge")
        known = [p for p in ps if p in shapes]
        s = shapes[known[0]]
        for p in known[1:]:
            if shapes[p] != s:
                raise KdsnnError(f"node {name}: inputs {known[0]} {s} and {p} {shapes[p]} differ in shape")
        if len(ps) > 1 and not isinstance(node, (*NEURONS, nir.Output)):
            raise KdsnnError(f"node {name} ({kind}) sums several inputs; kdsnn lowers sums only into neuron nodes")
        if isinstance(node, nir.Output):
            st.nodes[name] = LNode(name, "output", ps, s)
            shape = s
        elif isinstance(node, nir.Conv2d):
            if len(s) != 3:
                raise KdsnnError(f"node {name}: Conv2d needs a (C, H, W) input, got {s}")
            w = np.asarray(node.weight, dtype=np.float64)
            groups = int(node.groups)
            if w.ndim != 4 or w.shape[1] * groups != s[0]:
                raise KdsnnError(f"node {name}: Conv2d weight {w.shape} with groups={groups} does not fit input channels {s[0]}")
            stride = pair(node.stride, "stride", f"node {name}: ")
            dil = pair(node.dilation, "dilation", f"node {name}: ")
            pad = node.padding
            if isinstance(pad, str):
                if pad == "valid":
                    pad = (0, 0)
                elif pad == "same" and stride == (1, 1) and all((d * (k - 1)) % 2 == 0 for d, k in zip(dil, w.shape[2:], strict=True)):
                    pad = tuple(d * (k - 1) // 2 for d, k in zip(dil, w.shape[2:], strict=True))
                else:
                    raise KdsnnError(f"node {name}: Conv2d padding {pad!r} is not symmetric; cannot lower it")
            pad = pair(pad, "padding", f"node {name}: ")
            ho, wo = window_out_hw(s[1:], w.shape[2:], stride, pad, dil)
            if ho < 1 or wo < 1:
                raise KdsnnError(f"node {name}: Conv2d output would be empty for input {s}")
            b = np.zeros(w.shape[0]) if node.bias is None else np.broadcast_to(np.asarray(node.bias, np.float64), (w.shape[0],))
            shape = (w.shape[0], ho, wo)
            st.nodes[name] = LNode(name, "conv", ps, shape, dict(
                weight=w, bias=np.array(b), stride=stride, padding=pad, dilation=dil, groups=groups), [name])
        elif isinstance(node, (nir.Affine, nir.Linear)):
            w = np.asarray(node.weight, dtype=np.float64)
            n_in = int(np.prod(s))
            if w.ndim != 2 or w.shape[1] != n_in:
                raise KdsnnError(f"node {name}: {kind} weight {w.shape} does not fit its input of {n_in} values {s}")
            b = np.zeros(w.shape[0]) if isinstance(node, nir.Linear) or node.bias is None else \
                np.broadcast_to(np.asarray(node.bias, np.float64), (w.shape[0],))
            shape = (w.shape[0],)
            st.nodes[name] = LNode(name, "dense", ps, shape, dict(weight=w, bias=np.array(b)), [name])
        elif isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
            if len(s) != 3:
                raise KdsnnError(f"node {name}: {kind} needs a (C, H, W) input, got {s}")
            k = pair(node.kernel_size, "kernel_size", f"node {name}: ")
            stv = pair(node.stride if node.stride is not None else node.kernel_size, "stride", f"node {name}: ")
            pad = pair(node.padding if node.padding is not None else 0, "padding", f"node {name}: ")
            avg = isinstance(node, nir.AvgPool2d)
            if avg and pad != (0, 0):
                raise KdsnnError(f"node {name}: AvgPool2d with padding is ambiguous in NIR (do padded zeros count?); refused")
            ho, wo = window_out_hw(s[1:], k, stv, pad)
            shape = (s[0], ho, wo)
            st.nodes[name] = LNode(name, "pool", ps, shape, dict(
                kernel=k, stride=stv, padding=pad, scale=1.0 / (k[0] * k[1]) if avg else 1.0), [name])
        elif isinstance(node, nir.Flatten):
            sd, ed = int(node.start_dim), int(node.end_dim)
            r = len(s)
            sd, ed = sd % r, ed % r
            out = s[:sd] + (int(np.prod(s[sd:ed + 1])),) + s[ed + 1:]
            if len(out) != 1:
                raise KdsnnError(f"node {name}: Flatten to {out} is not a full flatten; kdsnn lowers full flattens only")
            shape = out
            st.nodes[name] = LNode(name, "flatten", ps, shape, {}, [name])
        elif isinstance(node, NEURONS):
            d = disc[name0]
            assert isinstance(d, DiscreteNeuron)
            _check_neuron(name, d, s)
            shape = s
            st.nodes[name] = LNode(name, "neuron", ps, shape, dict(neuron=d), [name0])
        elif isinstance(node, nir.Delay):
            dd = disc[name0]
            assert isinstance(dd, DiscreteDelay)
            steps = np.unique(dd.steps)
            if steps.size != 1:
                raise KdsnnError(f"node {name}: Delay differs between elements ({steps[:4].tolist()} steps); "
                                 "a Loihi connection holds one delay per layer")
            shape = s
            st.nodes[name] = LNode(name, "delay", ps, shape, dict(steps=int(steps[0])), [name0])
        else:
            raise KdsnnError(f"node {name}: NIR {kind} cannot be lowered to integers; supported: Input, Output, "
                             "Conv2d, Affine, Linear, Flatten, AvgPool2d, SumPool2d, Delay, IF, LIF, CubaLIF, "
                             "I, LI, CubaLI")
        st.nodes[name].delays = delays
        shapes[name] = shape
    outs = [n for n in st.nodes.values() if n.op == "output"]
    feeding = [st.nodes[i] for o in outs for i in o.inputs]
    if len(outs) != 1 or len(feeding) != 1 or feeding[0].op != "neuron":
        raise KdsnnError("the graph's Output must be fed by exactly one neuron node (the readout: I, LI, "
                         "CubaLI for logits, IF, LIF, CubaLIF for spike counts)")
    ro = feeding[0]
    ro.params["readout"] = True
    if any(c.op != "output" for c in st.consumers(ro.name)):
        raise KdsnnError(f"readout {ro.name} feeds other layers; the readout must be the last neuron node")
    st.log.append(f"{NAME}: {len(st.nodes)} nodes, {len(closing)} cycle-closing edge(s) delayed one step")


def _check_neuron(name: str, d: DiscreteNeuron, shape: tuple[int, ...]) -> None:
    """What one Loihi population cannot hold: per-neuron decays, a non-zero v_reset."""
    if tuple(d.shape) != tuple(shape) and int(np.prod(d.shape)) not in (1, int(np.prod(shape))):
        raise KdsnnError(f"node {name}: neuron shape {d.shape} does not match its input {shape}")
    for what, a in (("the current decay (tau_syn)", d.alpha), ("the voltage decay (tau / tau_mem)", d.beta)):
        a = np.ravel(a)
        if a.size and not np.allclose(a, a[0], rtol=1e-6, atol=0):
            raise KdsnnError(f"node {name}: {what} differs between neurons ({a.min():g} .. {a.max():g} per step); "
                             "a Loihi population holds one du/dv per layer")
    if d.spiking:
        th = np.ravel(d.v_threshold)
        if np.any(th <= 0):
            raise KdsnnError(f"node {name}: v_threshold <= 0 ({th.min():g}) cannot be held by Loihi's unsigned vth")
        if d.reset == "zero" and np.any(np.ravel(d.v_reset) != 0):
            raise KdsnnError(f"node {name}: v_reset = {np.ravel(d.v_reset)[np.ravel(d.v_reset) != 0][0]:g} != 0 "
                             "cannot be represented (Loihi's LIF resets v to 0); pass --reset subtract if the "
                             "network resets by subtraction")
