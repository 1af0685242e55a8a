"""Reading, writing and canonicalizing NIR graphs (docs/design.md, "Float semantics").

Every graph kdsnn works with — its own export or a `.nir` written by snnTorch, Sinabs,
Norse, SpikingJelly, Rockpool... — is brought into one *canonical* form by `canonicalize`:

    nodes   Input (named "input"), Output, Conv2d, Affine, Linear, Flatten, AvgPool2d,
            SumPool2d, Delay (whole steps), and the neurons IF(r=1), I(r=1), LIF, LI,
            CubaLIF, CubaLI with every parameter broadcast to the layer's shape
    shapes  batch-free, explicit on every node (Conv2d.input_shape, Flatten.input_type)
    graph   flat (no subgraphs), one Input, one Output fed by a non-spiking readout (I, LI,
            CubaLI) that is fed by a synaptic layer; several edges into a node are summed;
            cycles allowed through a neuron or Delay (the closing edge carries one step)
    meta    dt (seconds, when known), reset_modes {spiking node: "zero" | "subtract"}

Semantics: `kdsnn.compiler.dynamics` (forward Euler at dt; one place for every backend);
the readout's logits are v[T] / T (for I of unit gain: the mean of its input over T).

Import is strict: a foreign node is converted only where the conversion is exact in
real arithmetic, and otherwise refused with the node's name and the reason:

- dt: the graph's metadata, else --dt; a node whose meaning depends on dt (finite tau, IF/I
  r != 1, Delay) without one is refused, naming the exporters' conventions.
- Resets: a spiking neuron resets to its v_reset ("zero") or subtracts its threshold
  ("subtract", --reset subtract; it also overrides a stated v_reset = 0, which snnTorch
  writes whatever its reset, with a note). A file written by nir <= 1.0.5 whose neuron has
  no v_reset is refused without --reset: that spec said subtractive, its exporters meant zero.
- A neuron that neither leaks nor holds a current (tau = inf, alpha = 1) becomes IF or I: a
  gain != 1 (IF/I r != 1 is dt*r; SpikingJelly's r = 1/dt is unit gain) is folded into the
  threshold (IF: thresholds must then be one per layer and > 0) or into the feeding weights
  (I). Others stay as they are.
- Flatten: dims are batch-free in NIR; a Flatten whose stored input_type carries one extra
  (batch) dimension, as Sinabs' older exporter writes, has its dims shifted by one.
  Input/Output shapes of rank 2 or 4 with a leading 1 (snnTorch's sample batch) lose it; an
  Output declaring another shape of the same size (Rockpool's (1, 1, 1)) is read with a note.
- Conv2d with input_shape None (snnTorch, Sinabs) gets it from shape inference; padding
  'same' is accepted where it is symmetric. AvgPool2d with padding is refused (NIR does
  not say whether padded zeros count in the mean); SumPool2d padding is exact.
- Subgraphs are inlined. Several Inputs/Outputs, edges naming missing nodes, cycles of
  synapses alone, Conv1d, Scale, Threshold and unknown nodes are refused.
- If the Output is fed by a synaptic layer, an `I` readout is inserted; if it is fed by
  spikes (snnTorch's `Linear -> Leaky(output=True)`), an identity `Linear` plus `I` is
  inserted, so logits are the output spike counts / T. Both are exact.
"""

from __future__ import annotations

import math

import nir
import numpy as np
from kdsnn.compiler.dynamics import check_dt
from kdsnn.compiler.nir.context import ImportContext
from kdsnn.compiler.nir.convert import SYNAPTIC, convert_node
from kdsnn.compiler.nir.meta import plain
from kdsnn.compiler.nir.order import check_structure, inline_subgraphs

from kdsnn.errors import KdsnnError

INPUT = "input"
READOUTS = (nir.I, nir.LI, nir.CubaLI)   # non-spiking neurons: logits = v[T] / T


def canonicalize(graph: nir.NIRGraph, source: str = "NIR graph", dt: float | None = None,
                 reset: str | None = None, version: tuple[int, ...] | None = None,
                 v_reset_missing: frozenset[str] = frozenset()) -> nir.NIRGraph:
    """Any NIR graph -> kdsnn's canonical graph (see module docstring), or KdsnnError.

    dt: --dt (seconds), used where the graph's metadata states none; reset: --reset;
    version: the nir version that wrote the file; v_reset_missing: neurons whose file held
    no v_reset (both from `read_nir`)."""
    md = plain(dict(graph.metadata or {})) if isinstance(graph.metadata, dict) else {}
    dt = _resolve_dt(md.get("dt"), dt, source)
    stated = md.get("reset_modes") if isinstance(md.get("reset_modes"), dict) else {}
    ctx = ImportContext(source, dt, reset, version, frozenset(v_reset_missing),
                        {str(k): str(v) for k, v in stated.items()})
    nodes, edges = inline_subgraphs(graph, "", ctx)
    order, preds, succs = check_structure(nodes, edges, ctx)
    nodes, edges, order, preds, succs = _name_input(nodes, edges, order, preds, succs, ctx)

    shapes: dict[str, tuple[int, ...]] = {}
    new: dict[str, nir.NIRNode] = {}
    for name in order:
        node = nodes[name]
        in_shape = _in_shape(name, [p for p in preds[name] if p in shapes], shapes, ctx)
        new[name], shapes[name] = convert_node(name, node, in_shape, preds[name], succs[name], nodes, ctx)
    for name in order:   # edges closing a cycle, now that every shape is known
        _in_shape(name, preds[name], shapes, ctx)

    _fold_readout_gains(new, preds, succs, ctx)
    new, edges = _ensure_readout(new, edges, preds, shapes, ctx)
    order = check_structure(new, edges, ctx)[0]
    nodes_sorted = {k: new[k] for k in order}
    meta = {k: v for k, v in md.items() if k not in ("import_notes", "reset_modes", "dt")}
    if dt is not None:
        meta["dt"] = dt
    if ctx.reset_modes:
        meta["reset_modes"] = {k: v for k, v in ctx.reset_modes.items() if k in nodes_sorted}
    notes = list(dict.fromkeys(list(md.get("import_notes") or []) + ctx.notes))
    if notes:
        meta["import_notes"] = notes
    try:
        return nir.NIRGraph(nodes=nodes_sorted, edges=list(edges), metadata=meta, type_check=True)
    except (ValueError, AssertionError) as e:  # pragma: no cover - our own shapes disagree with nir's
        raise KdsnnError(f"{source}: NIR type check failed after import ({str(e)[:200]})") from None


def _resolve_dt(stated: object, given: float | None, source: str) -> float | None:
    """The graph's own dt (metadata), else --dt; both and different: refused."""
    given = check_dt(given, "--dt")
    if stated is None:
        return given
    try:
        own = check_dt(stated, f"{source}: metadata dt")
    except KdsnnError:
        raise KdsnnError(f"{source}: metadata dt={stated!r} is not a positive number of seconds") from None
    if given is not None and not math.isclose(own, given, rel_tol=1e-9):
        raise KdsnnError(f"{source}: the graph states dt={own:g} s but --dt {given:g} was given; drop --dt "
                         "or fix the graph's metadata")
    return own


def _name_input(nodes, edges, order, preds, succs, ctx: ImportContext):
    """The Input node is called "input" in canonical graphs (SpikingJelly writes `input_1`);
    a non-Input node already called so is renamed out of the way."""
    inp = next(k for k, v in nodes.items() if isinstance(v, nir.Input))
    if inp == INPUT:
        return nodes, edges, order, preds, succs
    ren = {inp: INPUT}
    if INPUT in nodes:
        i, other = 1, f"{INPUT}_node"
        while other in nodes:
            i, other = i + 1, f"{INPUT}_node_{i}"
        ren[INPUT] = other
    ctx.notes.append(", ".join(f"node {a!r} renamed {b!r}" for a, b in ren.items()))
    r = lambda k: ren.get(k, k)  # noqa: E731
    ctx.v_reset_missing = frozenset(r(k) for k in ctx.v_reset_missing)
    ctx.stated_modes = {r(k): v for k, v in ctx.stated_modes.items()}
    return ({r(k): v for k, v in nodes.items()}, [(r(a), r(b)) for a, b in edges], [r(k) for k in order],
            {r(k): [r(p) for p in v] for k, v in preds.items()}, {r(k): [r(p) for p in v] for k, v in succs.items()})


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
    """An integrator read as I with input gain g != 1 (dt*r, `dynamics`): multiply the
    feeding synaptic layers' weights and biases by g (exact in real arithmetic)."""
    for name, g in ctx.readout_gain.items():
        for p in preds[name]:
            src = new[p]
            if not isinstance(src, SYNAPTIC) or succs[p] != [name]:
                raise ctx.fail(name, f"integrator gain {g:g} can only be folded into synaptic layers that "
                                     f"feed nothing else; {p!r} is a {type(src).__name__} feeding {succs[p]}")
        for p in preds[name]:
            src = new[p]
            src.weight = src.weight * g
            if not isinstance(src, nir.Linear):
                src.bias = src.bias * g
        ctx.notes.append(f"{name}: integrator gain {g:g} folded into {', '.join(preds[name])}")


def _ensure_readout(new: dict[str, nir.NIRNode], edges: list[tuple[str, str]], preds: dict[str, list[str]],
                    shapes: dict[str, tuple[int, ...]], ctx: ImportContext):
    """Make the Output's producer an `I` readout fed by a synaptic layer (inserting if needed)."""
    out = next(k for k, v in new.items() if isinstance(v, nir.Output))
    (p,) = preds[out]
    s = shapes[p]
    if len(s) != 1:
        raise ctx.fail(out, f"the graph's output has shape {s}; kdsnn classifies into a vector of class scores")
    if isinstance(new[p], READOUTS):
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
