"""Pass `import_nir`: canonical NIR graph -> float LNodes with explicit shapes.

Strict: only the canonical node types (DESIGN §3) are accepted; IF must reset to 0 and
hold one threshold per layer (a Loihi population holds one `vth`); gains r are folded
(IF: theta / r, exact; I: r multiplies the incoming weights later). Anything else is
refused with the node's name.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import nir
import numpy as np
from kdsnn.compiler.geometry import pair, window_out_hw
from kdsnn.compiler.nir.order import topological_order
from kdsnn.compiler.passes.state import LNode, LoweringState

from kdsnn.errors import KdsnnError

NAME = "import_nir"


def _uniform(v: Any, name: str, what: str) -> float:
    a = np.ravel(np.asarray(v, dtype=np.float64))
    if a.size == 0 or not np.all(a == a[0]):
        raise KdsnnError(f"node {name}: {what} differs between neurons; an integer population "
                         "holds one value per layer")
    return float(a[0])


def _end(e: str, nodes: dict) -> str:
    if e in nodes:
        return e
    base = e.rsplit(".", 1)[0]
    if base in nodes:
        return base
    raise KdsnnError(f"NIR edge endpoint {e!r} is not a node of the graph")


def run(st: LoweringState, graph: nir.NIRGraph) -> None:
    nodes = graph.nodes
    preds: dict[str, list[str]] = defaultdict(list)
    succs: dict[str, list[str]] = defaultdict(list)
    for a, b in graph.edges:
        a, b = _end(a, nodes), _end(b, nodes)
        preds[b].append(a)
        succs[a].append(b)
    inputs = [k for k, v in nodes.items() if isinstance(v, nir.Input)]
    if len(inputs) != 1:
        raise KdsnnError(f"the NIR graph must have exactly one Input node, found {len(inputs)}")
    # topological order (Kahn), refusing cycles
    order, cyc = topological_order(list(nodes), preds, succs)
    if cyc:
        cyc = sorted(cyc)
        raise KdsnnError(f"the NIR graph has a cycle through {', '.join(cyc[:4])}; kdsnn lowers feed-forward graphs only")
    shapes: dict[str, tuple[int, ...]] = {}
    for name in order:
        node = nodes[name]
        ps = preds[name]
        kind = type(node).__name__
        if isinstance(node, nir.Input):
            shape = tuple(int(d) for d in np.ravel(next(iter(node.input_type.values()))))
            st.nodes[name] = LNode(name, "input", [], shape)
            shapes[name] = shape
            continue
        if not ps:
            raise KdsnnError(f"node {name} ({kind}) has no input edge")
        s = shapes[ps[0]]
        for p in ps[1:]:
            if shapes[p] != s:
                raise KdsnnError(f"node {name}: inputs {ps[0]} {s} and {p} {shapes[p]} differ in shape")
        if len(ps) > 1 and not isinstance(node, (nir.IF, nir.I, nir.Output)):
            raise KdsnnError(f"node {name} ({kind}) sums several inputs; kdsnn lowers sums only into IF/I nodes")
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
        elif isinstance(node, nir.IF):
            r = _uniform(node.r, name, "r")
            theta = _uniform(node.v_threshold, name, "v_threshold")
            if node.v_reset is not None and np.any(np.asarray(node.v_reset) != 0):
                raise KdsnnError(f"node {name}: IF v_reset != 0 cannot be represented (Loihi resets v to 0)")
            if not r > 0 or theta / r < 0:
                raise KdsnnError(f"node {name}: IF needs r > 0 and v_threshold >= 0, got r={r}, v_threshold={theta}")
            shape = s
            st.nodes[name] = LNode(name, "if", ps, shape, dict(theta=theta / r), [name])
        elif isinstance(node, nir.I):
            r = _uniform(node.r, name, "r")
            if not r > 0:
                raise KdsnnError(f"node {name}: readout I needs r > 0, got {r}")
            shape = s
            st.nodes[name] = LNode(name, "readout", ps, shape, dict(r=r), [name])
        else:
            raise KdsnnError(f"node {name}: NIR {kind} cannot be lowered to integers; supported: Input, Output, "
                             "Conv2d, Affine, Linear, Flatten, AvgPool2d, SumPool2d, IF, I")
        shapes[name] = shape
    ro = [n for n in st.nodes.values() if n.op == "readout"]
    if len(ro) != 1:
        raise KdsnnError(f"the graph must have exactly one I readout node, found {len(ro)}")
    if st.consumers(ro[0].name) and any(c.op != "output" for c in st.consumers(ro[0].name)):
        raise KdsnnError(f"readout {ro[0].name} feeds other layers; the I readout must be the last node")
    st.log.append(f"{NAME}: {len(st.nodes)} nodes")
