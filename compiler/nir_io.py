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

import math
import os
from collections import deque
from pathlib import Path
from typing import Any

import h5py
import nir
import numpy as np

from kdsnn.errors import KdsnnError
from kdsnn.io import atomic_path

CANONICAL = ("Input", "Output", "Conv2d", "Affine", "Linear", "Flatten", "AvgPool2d",
             "SumPool2d", "IF", "I")
IMPORTABLE = CANONICAL + ("LIF", "LI", "CubaLIF", "NIRGraph")
SYNAPTIC = (nir.Conv2d, nir.Affine, nir.Linear)
REFUSED_WHY = {
    "Conv1d": "1-d convolutions are not supported (kdsnn networks take images or vectors)",
    "Delay": "synaptic delays are not supported (kdsnn's canonical timing has zero delay)",
    "Scale": "an element-wise Scale is not supported (fold it into the neighbouring weights)",
    "Threshold": "a stateless Threshold has no exact IF equivalent",
    "CubaLI": "a current-based leaky integrator leaks (only non-leaky I readouts are exact)",
    "Identity": "Identity nodes are not supported (remove them from the graph)",
}
META_DEFAULTS: dict[str, Any] = {"dt": 1.0, "encoding": "direct"}


# ------------------------------------------------------------------------------ files
def write_nir(graph: nir.NIRGraph, path: str | os.PathLike) -> Path:
    """Write `graph` with `nir.write` (HDF5) atomically; metadata made HDF5-storable."""
    dest = Path(path)
    g = nir.NIRGraph(nodes=graph.nodes, edges=list(graph.edges),
                     metadata=_encode_meta(dict(graph.metadata or {})), type_check=False)
    with atomic_path(dest, suffix=".nir") as tmp:
        try:
            nir.write(tmp, g)
        except OSError as e:
            raise KdsnnError(f"cannot write NIR file {dest}: {e}") from None
    return dest


def read_nir(path: str | os.PathLike, dt: float | None = None) -> nir.NIRGraph:
    """Read any `.nir` file into kdsnn's canonical graph, or fail with one clear line."""
    p = Path(path)
    if not p.exists():
        raise KdsnnError(f"NIR file {p} does not exist")
    if p.is_dir():
        raise KdsnnError(f"{p} is a folder; give the .nir file (e.g. {p / 'graph.nir'})")
    _precheck(p)
    try:
        graph = _load(p)
    except KdsnnError:
        raise
    except Exception as e:  # nir raises assertion/key/value/OS errors on malformed content
        msg = (str(e).splitlines() or [""])[0][:160]
        raise KdsnnError(f"{p} is not a readable NIR graph ({type(e).__name__}: {msg}); "
                         "the file is truncated, corrupt or from an incompatible NIR version") from None
    if not isinstance(graph, nir.NIRGraph):
        raise KdsnnError(f"{p} holds a single {type(graph).__name__} node, not a NIR graph")
    return canonicalize(graph, source=str(p), dt=dt)


def _load(p: Path) -> nir.NIRNode:
    """Like nir.read, but tolerant of what older NIR writers left out (Conv input_shape,
    Flatten input_type, v_reset) and without type checks (done by `canonicalize`)."""
    from nir.serialization import hdf2dict

    with h5py.File(p, "r") as f:
        return _from_dict(hdf2dict(f["node"]))


_OPTIONAL = {"Conv1d": ("input_shape",), "Conv2d": ("input_shape",)}


def _from_dict(d: dict[str, Any]) -> nir.NIRNode:
    d = dict(d)
    t = d["type"]
    if t == "NIRGraph":
        edges = np.asarray(d.get("edges", [])).reshape(-1, 2) if len(d.get("edges", [])) else []
        return nir.NIRGraph(nodes={str(k): _from_dict(v) for k, v in d["nodes"].items()},
                            edges=[(_s(a), _s(b)) for a, b in edges],
                            metadata=d.get("metadata") or {}, type_check=False)
    for key in _OPTIONAL.get(t, ()):
        d.setdefault(key, None)
    return nir.dict2NIRNode(d)


def _s(a: Any) -> str:
    return a.decode("utf8") if isinstance(a, bytes) else str(a)


def _precheck(p: Path) -> None:
    """HDF5 and NIR structure, and every node's type, before nir builds objects."""
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise KdsnnError(f"{p} is not a NIR file: not HDF5, or truncated ({str(e).splitlines()[0][:100]})") from None
    with f:
        try:
            root = f["node"]
        except Exception:
            raise KdsnnError(f"{p} is an HDF5 file but not a NIR graph (no 'node' group)") from None
        if not isinstance(root, h5py.Group) or "type" not in root:
            raise KdsnnError(f"{p} is an HDF5 file but not a NIR graph (no node type)")
        _check_node_types(p, root, "")


def _check_node_types(p: Path, group: h5py.Group, where: str) -> None:
    try:
        t = group["type"][()]
    except Exception:
        raise KdsnnError(f"{p}: node {where or '<root>'!r} has no readable type; the file is corrupt") from None
    t = t.decode() if isinstance(t, bytes) else str(t)
    if not where and t != "NIRGraph":
        raise KdsnnError(f"{p} holds a single {t} node, not a NIR graph")
    if t not in IMPORTABLE:
        why = REFUSED_WHY.get(t, "not a NIR node type kdsnn knows")
        raise KdsnnError(f"{p}: node {where!r} is a {t}, which kdsnn cannot import: {why}")
    if t == "NIRGraph":
        if "nodes" not in group or "edges" not in group:
            raise KdsnnError(f"{p}: graph {where or '<root>'!r} has no nodes/edges; the file is corrupt")
        for name, sub in group["nodes"].items():
            _check_node_types(p, sub, f"{where}.{name}" if where else name)


# ------------------------------------------------------------------------------ metadata
def _encode_meta(md: dict[str, Any]) -> dict[str, Any]:
    """Plain Python metadata -> values nir.write can store in HDF5."""
    out: dict[str, Any] = {}
    for k, v in md.items():
        if v is None:
            continue
        if isinstance(v, dict):
            out[k] = _encode_meta(v)
        elif isinstance(v, str):
            out[k] = v
        elif isinstance(v, (bool, np.bool_)):
            out[k] = int(v)
        elif isinstance(v, (int, np.integer)):
            out[k] = int(v)
        elif isinstance(v, (float, np.floating)):
            out[k] = float(v)
        elif isinstance(v, (list, tuple, np.ndarray)):
            arr = list(np.asarray(v).ravel()) if isinstance(v, np.ndarray) else list(v)
            if not arr:
                continue
            if all(isinstance(a, (str, bytes, np.str_, np.bytes_)) for a in arr):
                out[k] = np.array([a.encode() if isinstance(a, str) else bytes(a) for a in arr], dtype="S")
            elif all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in arr):
                out[k] = np.asarray(arr, dtype=np.int64)
            else:
                out[k] = np.asarray(arr, dtype=np.float64)
        else:
            out[k] = str(v)
    return out


def _plain(v: Any) -> Any:
    """HDF5/numpy metadata values -> plain Python (str, int, float, lists, dicts)."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, bytes):
        return v.decode("utf8", "replace")
    if isinstance(v, np.ndarray):
        if v.ndim == 0:
            return _plain(v.item())
        if v.dtype.kind in "SO":
            return [x.decode("utf8", "replace") if isinstance(x, bytes) else str(x) for x in v.ravel()]
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def graph_meta(graph: nir.NIRGraph, T: int | None = None) -> dict[str, Any]:
    """The run metadata of a graph: T, dt, encoding, mean, std, class_names, input_shape,
    dataset (None when unknown), num_classes, kdsnn_version (None for foreign graphs).

    `T` overrides the graph's own (foreign graphs rarely carry one); without either, fail.
    """
    md = _plain(dict(graph.metadata or {}))
    t = T if T is not None else md.get("T")
    if t is None:
        raise KdsnnError("the NIR graph does not say how many time steps to run (no 'T' in its "
                         "metadata); give -T/--time-steps")
    try:
        t = int(t)
    except (TypeError, ValueError):
        raise KdsnnError(f"the NIR graph's T {t!r} is not an integer") from None
    if t < 1:
        raise KdsnnError(f"time steps must be >= 1, got {t}")
    dt = float(md.get("dt", META_DEFAULTS["dt"]))
    if dt != 1.0:
        raise KdsnnError(f"the NIR graph's metadata says dt={dt}; kdsnn runs graphs with dt = 1 step")
    enc = str(md.get("encoding", META_DEFAULTS["encoding"]))
    if enc not in ("direct",):
        raise KdsnnError(f"input encoding {enc!r} in the NIR graph is not supported (only 'direct')")
    inp = next(n for n in graph.nodes.values() if isinstance(n, nir.Input))
    out = next(n for n in graph.nodes.values() if isinstance(n, nir.Output))
    shape = tuple(int(s) for s in inp.input_type["input"])
    n_cls = int(np.prod(out.output_type["output"]))
    names = md.get("class_names")
    return {
        "T": t, "dt": 1.0, "encoding": enc,
        "mean": _floats(md.get("mean")), "std": _floats(md.get("std")),
        "class_names": [str(c) for c in names] if isinstance(names, list) else None,
        "input_shape": shape, "num_classes": n_cls,
        "dataset": md.get("dataset") or None,
        "kdsnn_version": md.get("kdsnn_version"),
        "arch": md.get("arch"),
    }


def _floats(v: Any) -> list[float] | None:
    if v is None:
        return None
    if isinstance(v, (int, float)):
        return [float(v)]
    return [float(x) for x in v]


def graph_summary(graph: nir.NIRGraph) -> dict[str, Any]:
    """Counts for people: nodes by type, parameters, neurons (IF) and readout size."""
    kinds: dict[str, int] = {}
    params = neurons = 0
    layers = []
    for name, n in graph.nodes.items():
        t = type(n).__name__
        kinds[t] = kinds.get(t, 0) + 1
        if isinstance(n, (nir.Conv2d, nir.Affine)):
            params += int(n.weight.size + n.bias.size)
        elif isinstance(n, nir.Linear):
            params += int(n.weight.size)
        if isinstance(n, nir.IF):
            k = int(np.prod(n.v_threshold.shape))
            neurons += k
            layers.append({"name": name, "neurons": k, "theta": float(np.ravel(n.v_threshold)[0])})
    return {"nodes": len(graph.nodes), "edges": len(graph.edges), "node_types": kinds,
            "parameters": params, "neurons": neurons, "if_layers": layers,
            "readout": int(np.prod(next(n for n in graph.nodes.values()
                                        if isinstance(n, nir.Output)).output_type["output"]))}


# ------------------------------------------------------------------------------ canonical form
class _Ctx:
    def __init__(self, source: str, dt: float | None) -> None:
        self.source = source
        self.dt = dt
        self.notes: list[str] = []

    def fail(self, node: str, why: str) -> KdsnnError:
        return KdsnnError(f"{self.source}: node {node!r}: {why}")


def canonicalize(graph: nir.NIRGraph, source: str = "NIR graph", dt: float | None = None) -> nir.NIRGraph:
    """Any NIR graph -> kdsnn's canonical graph (see module docstring), or KdsnnError."""
    md = _plain(dict(graph.metadata or {})) if isinstance(graph.metadata, dict) else {}
    if dt is None and md.get("dt") is not None:
        try:
            dt = float(md["dt"])
        except (TypeError, ValueError):
            raise KdsnnError(f"{source}: metadata dt={md['dt']!r} is not a number") from None
    ctx = _Ctx(source, dt)
    nodes, edges = _inline(graph, "", ctx)
    order, preds, succs = _structure(nodes, edges, ctx)

    shapes: dict[str, tuple[int, ...]] = {}
    new: dict[str, nir.NIRNode] = {}
    for name in order:
        node = nodes[name]
        in_shape = _in_shape(name, preds[name], shapes, ctx)
        new[name], shapes[name] = _convert(name, node, in_shape, preds[name], succs[name], nodes, ctx)

    _fold_readout_gains(new, preds, succs, ctx)
    new, edges = _ensure_readout(new, edges, preds, shapes, ctx)
    order = _structure(new, edges, ctx)[0]
    nodes_sorted = {k: new[k] for k in order}
    meta = {k: v for k, v in md.items() if k != "import_notes"}
    notes = list(md.get("import_notes") or []) + ctx.notes
    if notes:
        meta["import_notes"] = notes
    try:
        return nir.NIRGraph(nodes=nodes_sorted, edges=list(edges), metadata=meta, type_check=True)
    except (ValueError, AssertionError) as e:  # pragma: no cover - our own shapes disagree with nir's
        raise KdsnnError(f"{source}: NIR type check failed after import ({str(e)[:200]})") from None


def _inline(graph: nir.NIRGraph, prefix: str, ctx: _Ctx) -> tuple[dict[str, nir.NIRNode], list[tuple[str, str]]]:
    """Flatten nested NIRGraphs: edges into/out of a subgraph go through its inner Input /
    Output, which are then bypassed, so only the top-level Input and Output remain."""
    nodes, edges, inner = _inline_rec(graph, prefix, ctx)
    for k in inner:
        ins_ = [a for a, b in edges if b == k]
        outs_ = [b for a, b in edges if a == k]
        edges = [e for e in edges if k not in e] + [(a, b) for a in ins_ for b in outs_]
        del nodes[k]
    if inner:
        ctx.notes.append(f"inlined {len(inner) // 2} subgraph(s)")
    return nodes, edges


def _inline_rec(graph: nir.NIRGraph, prefix: str, ctx: _Ctx):
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    inner: list[str] = []
    entry: dict[str, str] = {}   # subgraph name (or name.<its input>) -> its inner Input
    exit_: dict[str, str] = {}
    for name, node in graph.nodes.items():
        full = prefix + str(name)
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges, sub_inner = _inline_rec(node, full + ".", ctx)
            ins = [k for k, v in node.nodes.items() if isinstance(v, nir.Input)]
            outs = [k for k, v in node.nodes.items() if isinstance(v, nir.Output)]
            if len(ins) != 1 or len(outs) != 1:
                raise ctx.fail(full, f"subgraph with {len(ins)} inputs and {len(outs)} outputs; "
                                     "only subgraphs with one Input and one Output can be inlined")
            entry[full] = f"{full}.{ins[0]}"
            exit_[full] = f"{full}.{outs[0]}"
            inner += [entry[full], exit_[full], *sub_inner]
            nodes.update(sub_nodes)
            edges.extend(sub_edges)
        else:
            nodes[full] = node
    for a, b in graph.edges:
        a, b = prefix + str(a), prefix + str(b)
        edges.append((exit_.get(a, a), entry.get(b, b)))
    return nodes, edges, inner


def window_out_hw(hw: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...],
                  padding: tuple[int, ...], dilation: tuple[int, ...] = (1, 1)) -> tuple[int, int]:
    """Output (H, W) of a conv or pooling window over an (H, W) input (PyTorch's floor rule)."""
    h, w = ((n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, k, s, p, d in zip(hw, kernel, stride, padding, dilation, strict=True))
    return h, w


def topological_order(names: list[str], preds: dict[str, list[str]],
                      succs: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """Kahn's order of a DAG: (order, nodes left on a cycle; empty for a DAG)."""
    indeg = {k: len(preds[k]) for k in names}
    queue = deque(k for k in names if indeg[k] == 0)
    order: list[str] = []
    while queue:
        k = queue.popleft()
        order.append(k)
        for b in succs[k]:
            indeg[b] -= 1
            if indeg[b] == 0:
                queue.append(b)
    return order, [k for k in names if indeg[k] > 0]


def _structure(nodes: dict[str, nir.NIRNode], edges: list[tuple[str, str]], ctx: _Ctx):
    """Edges refer to nodes, one Input and one Output, every node connected, no cycles.
    Returns (topological order, preds, succs)."""
    seen = set()
    for a, b in edges:
        for end in (a, b):
            if end not in nodes:
                raise KdsnnError(f"{ctx.source}: edge {a!r} -> {b!r} refers to node {end!r}, which does "
                                 "not exist (dangling edge)")
        if (a, b) in seen:
            raise KdsnnError(f"{ctx.source}: edge {a!r} -> {b!r} appears twice")
        seen.add((a, b))
    ins = [k for k, v in nodes.items() if isinstance(v, nir.Input)]
    outs = [k for k, v in nodes.items() if isinstance(v, nir.Output)]
    if len(ins) != 1:
        raise KdsnnError(f"{ctx.source}: the graph has {len(ins)} Input nodes ({', '.join(ins) or 'none'}); "
                         "kdsnn runs graphs with exactly one input")
    if len(outs) != 1:
        raise KdsnnError(f"{ctx.source}: the graph has {len(outs)} Output nodes ({', '.join(outs) or 'none'}); "
                         "kdsnn runs graphs with exactly one output")
    preds: dict[str, list[str]] = {k: [] for k in nodes}
    succs: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in edges:
        preds[b].append(a)
        succs[a].append(b)
    for k, node in nodes.items():
        if isinstance(node, nir.Input):
            if preds[k]:
                raise ctx.fail(k, f"the Input node has incoming edges (from {', '.join(preds[k])})")
            if not succs[k]:
                raise ctx.fail(k, "the Input node feeds nothing")
        elif isinstance(node, nir.Output):
            if succs[k]:
                raise ctx.fail(k, "the Output node has outgoing edges")
            if len(preds[k]) != 1:
                raise ctx.fail(k, f"the Output node must have exactly one incoming edge, has {len(preds[k])}")
        else:
            if not preds[k]:
                raise ctx.fail(k, "has no incoming edge (not connected to the input)")
            if not succs[k]:
                raise ctx.fail(k, "has no outgoing edge (does not lead to the output)")
    order, cyc = topological_order(list(nodes), preds, succs)
    if cyc:
        raise KdsnnError(f"{ctx.source}: the graph has a cycle through {', '.join(cyc[:6])}: recurrent "
                         "connections are not supported (kdsnn runs feed-forward graphs with zero delay)")
    return order, preds, succs


def _in_shape(name: str, ps: list[str], shapes: dict[str, tuple[int, ...]], ctx: _Ctx) -> tuple[int, ...] | None:
    if not ps:
        return None
    s0 = shapes[ps[0]]
    for p in ps[1:]:
        if shapes[p] != s0:
            raise ctx.fail(name, f"sums inputs of different shapes: {s0} from {ps[0]!r} and {shapes[p]} from {p!r}")
    return s0


def _shape_of(v: Any) -> tuple[int, ...] | None:
    if isinstance(v, dict):
        v = next(iter(v.values()), None)
    if v is None:
        return None
    a = np.asarray(v)
    if a.dtype == object:
        return None
    return tuple(int(x) for x in a.ravel())


def _strip_batch(name: str, s: tuple[int, ...], ctx: _Ctx) -> tuple[int, ...]:
    if len(s) in (2, 4) and s[0] == 1:
        ctx.notes.append(f"{name}: dropped a leading batch dimension of 1 from shape {s}")
        return s[1:]
    return s


def _pair(name: str, what: str, v: Any, ctx: _Ctx) -> tuple[int, int]:
    a = np.ravel(np.asarray(v))
    if a.size == 1:
        a = np.repeat(a, 2)
    if a.size != 2 or not np.all(np.equal(np.mod(a, 1), 0)):
        raise ctx.fail(name, f"{what} {np.asarray(v).tolist()} is not one or two integers")
    return int(a[0]), int(a[1])


def _arr(name: str, what: str, v: Any, ctx: _Ctx) -> np.ndarray:
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise ctx.fail(name, f"{what} is not numeric") from None
    if np.isnan(a).any():
        raise ctx.fail(name, f"{what} contains NaN")
    return a


def _param(name: str, what: str, v: Any, shape: tuple[int, ...], ctx: _Ctx) -> np.ndarray:
    """A neuron parameter broadcast to the layer's shape (scalars and (1,) allowed)."""
    a = _arr(name, what, v, ctx)
    if a.shape in ((), (1,)):
        return np.full(shape, float(np.ravel(a)[0]))
    if tuple(a.shape) != tuple(shape):
        raise ctx.fail(name, f"{what} has shape {tuple(a.shape)} but the layer receives shape {shape}")
    return a


def _homogeneous(name: str, what: str, a: np.ndarray, ctx: _Ctx) -> float:
    lo, hi = float(np.min(a)), float(np.max(a))
    if lo != hi:
        raise ctx.fail(name, f"per-neuron {what} differ ({lo:g} .. {hi:g}); a Loihi population holds "
                             f"one {what} per layer, so kdsnn refuses heterogeneous values")
    return lo


def _if_node(name: str, shape: tuple[int, ...], r: np.ndarray, vth: np.ndarray, v_reset: np.ndarray,
             ctx: _Ctx, r_is_gain: bool = True) -> nir.IF:
    if np.any(v_reset != 0):
        raise ctx.fail(name, f"v_reset={float(np.ravel(v_reset)[0]):g}: kdsnn's IF resets to 0; another "
                             "reset value would change the dynamics")
    theta = _homogeneous(name, "thresholds", vth, ctx)
    if not math.isfinite(theta):
        raise ctx.fail(name, f"threshold {theta} is not finite")
    if r_is_gain:
        gain = _homogeneous(name, "input gains r", r, ctx)
        if not (gain > 0 and math.isfinite(gain)):
            raise ctx.fail(name, f"input gain r={gain:g}: only a finite r > 0 integrates its input "
                                 "exactly like kdsnn's IF")
        if gain != 1.0:
            ctx.notes.append(f"{name}: r={gain:g} folded into the threshold ({theta:g} -> {theta / gain:g})")
            theta = theta / gain
    if not theta > 0:
        raise ctx.fail(name, f"threshold {theta:g} <= 0 fires without input; kdsnn needs theta > 0")
    return nir.IF(r=np.ones(shape), v_threshold=np.full(shape, theta), v_reset=np.zeros(shape))


def _no_leak(name: str, kind: str, tau: np.ndarray, r: np.ndarray, ctx: _Ctx, what: str = "tau") -> None:
    """Accept only tau = inf with r = inf (snnTorch's r = tau/dt convention: unit gain)."""
    if not np.all(np.isposinf(tau)):
        t = float(np.ravel(tau)[np.argmin(np.isposinf(np.ravel(tau)))])
        raise ctx.fail(name, f"{kind} with {what}={t:g} leaks; kdsnn's neurons do not leak, and only "
                             f"{what}=inf reduces exactly to them")
    if not np.all(np.isposinf(r)):
        raise ctx.fail(name, f"{kind} with {what}=inf and finite r={float(np.ravel(r)[0]):g}: the input "
                             "term r*I/tau vanishes, so the neuron never integrates; only r=inf "
                             "(exporters' r = tau/dt convention) means unit gain")


def _convert(name: str, node: nir.NIRNode, s: tuple[int, ...] | None, ps: list[str], ss: list[str],
             nodes: dict[str, nir.NIRNode], ctx: _Ctx) -> tuple[nir.NIRNode, tuple[int, ...]]:
    """One node -> (canonical node, its batch-free output shape)."""
    if isinstance(node, nir.Input):
        shape = _shape_of(node.input_type)
        if not shape or any(d <= 0 for d in shape):
            raise ctx.fail(name, f"Input has no usable shape ({shape})")
        shape = _strip_batch(name, shape, ctx)
        return nir.Input(input_type={"input": np.array(shape)}), shape
    assert s is not None
    if isinstance(node, nir.Output):
        shape = _shape_of(node.output_type)
        if shape:
            shape = _strip_batch(name, shape, ctx)
            if shape != s:
                raise ctx.fail(name, f"Output declares shape {shape} but receives {s} from {ps[0]!r}")
        return nir.Output(output_type={"output": np.array(s)}), s
    if isinstance(node, nir.Conv2d):
        return _convert_conv(name, node, s, ps, ctx)
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = _arr(name, "weight", node.weight, ctx)
        kind = type(node).__name__
        if w.ndim != 2:
            raise ctx.fail(name, f"{kind} weight has shape {w.shape}; kdsnn needs a 2-d (out, in) matrix")
        if s != (w.shape[1],):
            raise ctx.fail(name, f"{kind} expects input shape ({w.shape[1]},) but receives {s} from {ps[0]!r}")
        if isinstance(node, nir.Linear):
            return nir.Linear(weight=w), (w.shape[0],)
        b = _arr(name, "bias", node.bias, ctx)
        if b.shape in ((), (1,)) and w.shape[0] != 1:
            b = np.full(w.shape[0], float(np.ravel(b)[0]))
        if b.shape != (w.shape[0],):
            raise ctx.fail(name, f"Affine bias has shape {b.shape}, weight has {w.shape[0]} outputs")
        return nir.Affine(weight=w, bias=b), (w.shape[0],)
    if isinstance(node, nir.Flatten):
        return _convert_flatten(name, node, s, ps, ctx)
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        kind = type(node).__name__
        if len(s) != 3:
            raise ctx.fail(name, f"{kind} needs a (C, H, W) input, receives {s} from {ps[0]!r}")
        k = _pair(name, "kernel_size", node.kernel_size, ctx)
        st = _pair(name, "stride", node.stride if node.stride is not None else node.kernel_size, ctx)
        p = _pair(name, "padding", node.padding if node.padding is not None else 0, ctx)
        if isinstance(node, nir.AvgPool2d) and p != (0, 0):
            raise ctx.fail(name, f"AvgPool2d with padding {p}: NIR does not define whether padded zeros "
                                 "count in the mean; use SumPool2d or no padding")
        if min(k) < 1 or min(st) < 1 or min(p) < 0:
            raise ctx.fail(name, f"{kind} kernel {k}, stride {st}, padding {p} are invalid")
        ho, wo = window_out_hw(s[1:], k, st, p)
        if ho < 1 or wo < 1:
            raise ctx.fail(name, f"{kind} kernel {k} is larger than its input {s}")
        cls = nir.AvgPool2d if isinstance(node, nir.AvgPool2d) else nir.SumPool2d
        return cls(kernel_size=np.array(k), stride=np.array(st), padding=np.array(p)), (s[0], ho, wo)
    if isinstance(node, nir.IF):
        r = _param(name, "r", node.r, s, ctx)
        vth = _param(name, "v_threshold", node.v_threshold, s, ctx)
        vr = _param(name, "v_reset", node.v_reset if node.v_reset is not None else 0.0, s, ctx)
        return _if_node(name, s, r, vth, vr, ctx), s
    if isinstance(node, nir.LIF):
        tau, r = _param(name, "tau", node.tau, s, ctx), _param(name, "r", node.r, s, ctx)
        _no_leak(name, "LIF", tau, r, ctx)
        vth = _param(name, "v_threshold", node.v_threshold, s, ctx)
        vr = _param(name, "v_reset", node.v_reset if node.v_reset is not None else 0.0, s, ctx)
        ctx.notes.append(f"{name}: LIF with tau=r=inf read as IF (no leak, unit gain)")
        return _if_node(name, s, r, vth, vr, ctx, r_is_gain=False), s
    if isinstance(node, nir.CubaLIF):
        tau_m, r = _param(name, "tau_mem", node.tau_mem, s, ctx), _param(name, "r", node.r, s, ctx)
        _no_leak(name, "CubaLIF", tau_m, r, ctx, what="tau_mem")
        tau_s = _param(name, "tau_syn", node.tau_syn, s, ctx)
        w_in = _param(name, "w_in", node.w_in, s, ctx)
        if ctx.dt is None:
            raise ctx.fail(name, "CubaLIF's synaptic current filter (tau_syn) has memory unless "
                                 "tau_syn == dt, and the graph does not state dt; refused")
        if not (np.all(tau_s == ctx.dt) and np.all(w_in == 1.0)):
            raise ctx.fail(name, f"CubaLIF synaptic current with tau_syn={float(np.ravel(tau_s)[0]):g}, "
                                 f"w_in={float(np.ravel(w_in)[0]):g} at dt={ctx.dt:g} has memory or "
                                 "scales its input; only tau_syn == dt and w_in == 1 reduce to IF")
        vth = _param(name, "v_threshold", node.v_threshold, s, ctx)
        vr = _param(name, "v_reset", node.v_reset if node.v_reset is not None else 0.0, s, ctx)
        ctx.notes.append(f"{name}: CubaLIF with memoryless synapse and tau_mem=r=inf read as IF")
        return _if_node(name, s, r, vth, vr, ctx, r_is_gain=False), s
    if isinstance(node, (nir.I, nir.LI)):
        if any(not isinstance(nodes[x], nir.Output) for x in ss):
            raise ctx.fail(name, f"a non-spiking integrator ({type(node).__name__}) that feeds "
                                 f"{', '.join(ss)}: kdsnn supports it only as the readout feeding the Output")
        if isinstance(node, nir.LI):
            _no_leak(name, "LI", _param(name, "tau", node.tau, s, ctx), _param(name, "r", node.r, s, ctx), ctx)
            ctx.notes.append(f"{name}: LI with tau=r=inf read as the readout integrator I")
            return nir.I(r=np.ones(s)), s
        r = _param(name, "r", node.r, s, ctx)
        gain = _homogeneous(name, "readout gains r", r, ctx)
        if not (gain > 0 and math.isfinite(gain)):
            raise ctx.fail(name, f"readout gain r={gain:g} must be finite and > 0")
        return nir.I(r=np.full(s, gain)), s
    raise ctx.fail(name, f"{type(node).__name__} is not supported: "
                         f"{REFUSED_WHY.get(type(node).__name__, 'unknown node type')}")


def _convert_conv(name: str, node: nir.Conv2d, s: tuple[int, ...], ps: list[str], ctx: _Ctx):
    w = _arr(name, "weight", node.weight, ctx)
    if w.ndim != 4:
        raise ctx.fail(name, f"Conv2d weight has shape {w.shape}; expected (C_out, C_in/groups, kH, kW)")
    groups = int(np.ravel(np.asarray(node.groups))[0]) if node.groups is not None else 1
    if len(s) != 3 or s[0] != w.shape[1] * groups:
        raise ctx.fail(name, f"Conv2d expects {w.shape[1] * groups} input channels (C, H, W) but receives "
                             f"{s} from {ps[0]!r}")
    if node.input_shape is not None:
        declared = _shape_of(node.input_shape)
        if declared and tuple(declared) != s[1:]:
            raise ctx.fail(name, f"Conv2d declares input_shape {tuple(declared)} but receives {s[1:]}")
    stride = _pair(name, "stride", node.stride, ctx)
    dil = _pair(name, "dilation", node.dilation if node.dilation is not None else 1, ctx)
    k = w.shape[2:]
    pad = node.padding
    if isinstance(pad, bytes):
        pad = pad.decode()
    if isinstance(pad, str):
        if pad == "valid":
            p = (0, 0)
        elif pad == "same":
            span = (dil[0] * (k[0] - 1), dil[1] * (k[1] - 1))
            if stride != (1, 1) or span[0] % 2 or span[1] % 2:
                raise ctx.fail(name, f"padding 'same' with stride {stride}, kernel {k} is asymmetric; "
                                     "give explicit padding")
            p = (span[0] // 2, span[1] // 2)
        else:
            raise ctx.fail(name, f"padding {pad!r} is not 'same', 'valid' or integers")
    else:
        p = _pair(name, "padding", pad, ctx)
    ho, wo = window_out_hw(s[1:], k, stride, p, dil)
    if ho < 1 or wo < 1:
        raise ctx.fail(name, f"Conv2d output would be empty for input {s}")
    b = _arr(name, "bias", node.bias if node.bias is not None else 0.0, ctx)
    if b.shape in ((), (1,)) and w.shape[0] != 1:
        b = np.full(w.shape[0], float(np.ravel(b)[0]))
    if b.shape != (w.shape[0],):
        raise ctx.fail(name, f"Conv2d bias has shape {b.shape}, weight has {w.shape[0]} output channels")
    conv = nir.Conv2d(input_shape=(s[1], s[2]), weight=w, stride=stride, padding=p, dilation=dil,
                      groups=groups, bias=b)
    return conv, (w.shape[0], ho, wo)


def _convert_flatten(name: str, node: nir.Flatten, s: tuple[int, ...], ps: list[str], ctx: _Ctx):
    k = len(s)
    sd, ed = int(node.start_dim), int(node.end_dim)
    stored = _shape_of(node.input_type)
    if stored and len(stored) == k + 1 and (stored[1:] == s or not any(stored)):
        # batched convention (Sinabs' older exporter): dims count the batch dimension
        sd = sd - 1 if sd > 0 else sd
        ed = ed - 1 if ed > 0 else ed
        ctx.notes.append(f"{name}: Flatten dims counted a batch dimension; shifted by one")
    elif stored and any(stored) and stored != s:
        raise ctx.fail(name, f"Flatten declares input {stored} but receives {s} from {ps[0]!r}")
    if not (-k <= sd < k and -k <= ed < k):
        raise ctx.fail(name, f"Flatten dims ({node.start_dim}, {node.end_dim}) do not fit its input {s}")
    sd, ed = sd % k, ed % k
    if sd > ed:
        raise ctx.fail(name, f"Flatten start_dim {sd} > end_dim {ed}")
    out = s[:sd] + (int(np.prod(s[sd:ed + 1])),) + s[ed + 1:]
    return nir.Flatten(input_type={"input": np.array(s)}, start_dim=sd, end_dim=ed), out


def _fold_readout_gains(new: dict[str, nir.NIRNode], preds: dict[str, list[str]],
                        succs: dict[str, list[str]], ctx: _Ctx) -> None:
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
                    shapes: dict[str, tuple[int, ...]], ctx: _Ctx):
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


def _insert_identity(new, edges, src: str, dst: str, s: tuple[int, ...], ctx: _Ctx):
    name, i = f"{dst}_fc", 1
    while name in new:
        name, i = f"{dst}_fc_{i}", i + 1
    new[name] = nir.Linear(weight=np.eye(s[0]))
    edges = [e for e in edges if e != (src, dst)] + [(src, name), (name, dst)]
    return new, edges
