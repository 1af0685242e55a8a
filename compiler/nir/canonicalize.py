"""Reading, writing and canonicalizing NIR graphs (DESIGN §3, §9).

Every graph kdsnn works with — its own export or a `.nir` written by snnTorch, Sinabs,
Norse... — is brought into one *canonical* form by `canonicalize`:

    nodes   Input, Output, Conv2d, Affine, Linear, Flatten, AvgPool2d, SumPool2d,
            IF(r=1, v_threshold=theta (one value per layer), v_reset=0), I(r=1) readout
    shapes  batch-free, explicit on every node (Conv2d.input_shape, Flatten.input_type)
    graph   flat (no subgraphs), acyclic, one Input, one Output fed by an `I` readout that
            is fed by a synaptic layer; several edges into a node are summed

Semantics (discrete time, dt = 1 step, zero state at the start of a sample):
    IF:  v += sum of inputs;  s = v > theta;  v = 0 where s          (strict >, hard reset)
    I:   logits = (1/T) sum_t (sum of inputs)                        (the readout)

Import is strict: a foreign node is converted only where the conversion is exact in
real arithmetic, and otherwise refused with the node's name and the reason. The decisions
(see `_convert_*`):

- IF(r, theta, v_reset): v_reset must be 0 (kdsnn resets to zero). r > 0 is folded into
  the threshold (v' = v / r integrates the unscaled input and crosses theta / r exactly
  when v crosses theta); r and theta must be homogeneous per layer (a Loihi population
  holds one threshold), theta / r > 0. Parameters may be scalars, shape (1,) or the
  layer's shape (snnTorch and Sinabs write scalars).
- LIF / LI / CubaLIF: NIR dynamics are continuous, tau dv/dt = (v_leak - v) + r I; the
  leak vanishes exactly only for tau = inf, and then the input gain dt * r / tau is only
  defined through the exporter's convention r = tau / dt (snnTorch writes beta = 1 as
  tau = r = inf). So tau = r = inf is accepted as IF (LIF, CubaLIF) or as the readout I
  (LI); a finite tau (any leak) or a finite r with tau = inf (input that vanishes) is
  refused. CubaLIF's synaptic current must also be memoryless: tau_syn == dt and
  w_in == 1 with dt stated in the graph metadata (`dt`), otherwise refused.
- I(r): r homogeneous and > 0; r != 1 is folded into the synaptic layer(s) feeding it
  (exact in real arithmetic), refused when they also feed other nodes.
- Flatten: dims are batch-free in NIR; a Flatten whose stored input_type carries one extra
  (batch) dimension, as Sinabs' older exporter writes, has its dims shifted by one.
  Input/Output shapes of rank 2 or 4 with a leading 1 (snnTorch's sample batch) lose it.
- Conv2d with input_shape None (snnTorch, Sinabs) gets it from shape inference; padding
  'same' is accepted where it is symmetric. AvgPool2d with padding is refused (NIR does
  not say whether padded zeros count in the mean); SumPool2d padding is exact.
- Subgraphs are inlined. Cycles (recurrent layers such as snnTorch's RLeaky), several
  Inputs/Outputs, Conv1d, Delay, Scale, Threshold, CubaLI and unknown nodes are refused.
- If the Output is fed by a synaptic layer, an `I` readout is inserted; if it is fed by
  spikes (snnTorch's `Linear -> Leaky(output=True)`), an identity `Linear` plus `I` is
  inserted, so logits are the output spike counts / T. Both are exact.
"""

from __future__ import annotations

import nir
import numpy as np
from kdsnn.compiler.nir.context import ImportContext
from kdsnn.compiler.nir.convert import SYNAPTIC, convert_node
from kdsnn.compiler.nir.meta import plain
from kdsnn.compiler.nir.order import check_structure, inline_subgraphs

from kdsnn.errors import KdsnnError


def canonicalize(graph: nir.NIRGraph, source: str = "NIR graph", dt: float | None = None) -> nir.NIRGraph:
    """Any NIR graph -> kdsnn's canonical graph (see module docstring), or KdsnnError."""
    md = plain(dict(graph.metadata or {})) if isinstance(graph.metadata, dict) else {}
    if dt is None and md.get("dt") is not None:
        try:
            dt = float(md["dt"])
        except (TypeError, ValueError):
            raise KdsnnError(f"{source}: metadata dt={md['dt']!r} is not a number") from None
    ctx = ImportContext(source, dt)
    nodes, edges = inline_subgraphs(graph, "", ctx)
    order, preds, succs = check_structure(nodes, edges, ctx)

    shapes: dict[str, tuple[int, ...]] = {}
    new: dict[str, nir.NIRNode] = {}
    for name in order:
        node = nodes[name]
        in_shape = _in_shape(name, preds[name], shapes, ctx)
        new[name], shapes[name] = convert_node(name, node, in_shape, preds[name], succs[name], nodes, ctx)

    _fold_readout_gains(new, preds, succs, ctx)
    new, edges = _ensure_readout(new, edges, preds, shapes, ctx)
    order = check_structure(new, edges, ctx)[0]
    nodes_sorted = {k: new[k] for k in order}
    meta = {k: v for k, v in md.items() if k != "import_notes"}
    notes = list(md.get("import_notes") or []) + ctx.notes
    if notes:
        meta["import_notes"] = notes
    try:
        return nir.NIRGraph(nodes=nodes_sorted, edges=list(edges), metadata=meta, type_check=True)
    except (ValueError, AssertionError) as e:  # pragma: no cover - our own shapes disagree with nir's
        raise KdsnnError(f"{source}: NIR type check failed after import ({str(e)[:200]})") from None


def _in_shape(name: str, ps: list[str], shapes: dict[str, tuple[int, ...]], ctx: ImportContext) -> tuple[int, ...] | None:
    if not ps:
        return None
    s0 = shapes[ps[0]]
    for p in ps[1:]:
        if shapes[p] != s0:
            raise ctx.fail(name, f"sums inputs of different shapes: {s0} from {ps[0]!r} and {shapes[p]} from {p!r}")
    return s0


def _fold_readout_gains(new: dict[str, nir.NIRNode], preds: dict[str, list[str]],
                        succs: dict[str, list[str]], ctx: ImportContext) -> None:
    """I(r != 1): multiply the feeding synaptic layers' weights and biases by r."""
    for name, node in list(new.items()):
        if not isinstance(node, nir.I):
            continue
        r = float(np.ravel(node.r)[0])
        if r == 1.0:
            continue
        for p in preds[name]:
            src = new[p]
            if not isinstance(src, SYNAPTIC) or succs[p] != [name]:
                raise ctx.fail(name, f"readout gain r={r:g} can only be folded into synaptic layers that "
                                     f"feed nothing else; {p!r} is a {type(src).__name__} feeding {succs[p]}")
        for p in preds[name]:
            src = new[p]
            src.weight = src.weight * r
            if not isinstance(src, nir.Linear):
                src.bias = src.bias * r
        new[name] = nir.I(r=np.ones_like(node.r))
        ctx.notes.append(f"{name}: readout gain r={r:g} folded into {', '.join(preds[name])}")


def _ensure_readout(new: dict[str, nir.NIRNode], edges: list[tuple[str, str]], preds: dict[str, list[str]],
                    shapes: dict[str, tuple[int, ...]], ctx: ImportContext):
    """Make the Output's producer an `I` readout fed by a synaptic layer (inserting if needed)."""
    out = next(k for k, v in new.items() if isinstance(v, nir.Output))
    (p,) = preds[out]
    s = shapes[p]
    if len(s) != 1:
        raise ctx.fail(out, f"the graph's output has shape {s}; kdsnn classifies into a vector of class scores")
    if isinstance(new[p], nir.I):
        for q in preds[p]:
            if not isinstance(new[q], SYNAPTIC):
                ctx.notes.append(f"inserted identity weights between {q!r} and readout {p!r}")
                return _insert_identity(new, edges, q, p, s, ctx)
        return new, edges
    def fresh(base: str) -> str:
        n, i = base, 1
        while n in new:
            n, i = f"{base}_{i}", i + 1
        return n
    ro = fresh("readout")
    new[ro] = nir.I(r=np.ones(s))
    edges = [e for e in edges if e != (p, out)] + [(p, ro), (ro, out)]
    if isinstance(new[p], SYNAPTIC):
        ctx.notes.append(f"inserted readout integrator {ro!r} after {p!r}")
        return new, edges
    ctx.notes.append(f"inserted identity weights and readout integrator {ro!r} after {p!r} "
                     "(logits = output spike counts / T)")
    return _insert_identity(new, edges, p, ro, s, ctx)


def _insert_identity(new, edges, src: str, dst: str, s: tuple[int, ...], ctx: ImportContext):
    name, i = f"{dst}_fc", 1
    while name in new:
        name, i = f"{dst}_fc_{i}", i + 1
    new[name] = nir.Linear(weight=np.eye(s[0]))
    edges = [e for e in edges if e != (src, dst)] + [(src, name), (name, dst)]
    return new, edges
