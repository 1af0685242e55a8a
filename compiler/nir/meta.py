"""A graph's run metadata (T, dt, encoding, normalisation, classes) and its summary counts."""

from __future__ import annotations

from typing import Any

import nir
import numpy as np

from kdsnn.errors import KdsnnError

META_DEFAULTS: dict[str, Any] = {"encoding": "direct"}


def plain(v: Any) -> Any:
    """HDF5/numpy metadata values -> plain Python (str, int, float, lists, dicts)."""
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, bytes):
        return v.decode("utf8", "replace")
    if isinstance(v, np.ndarray):
        if v.ndim == 0:
            return plain(v.item())
        if v.dtype.kind in "SO":
            return [x.decode("utf8", "replace") if isinstance(x, bytes) else str(x) for x in v.ravel()]
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def graph_meta(graph: nir.NIRGraph, T: int | None = None) -> dict[str, Any]:
    """The run metadata of a graph: T, dt (seconds, None when unknown), encoding, mean, std, class_names, input_shape,
    dataset (None when unknown), num_classes, kdsnn_version (None for foreign graphs).

    `T` overrides the graph's own (foreign graphs rarely carry one); without either, fail.
    """
    md = plain(dict(graph.metadata or {}))
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
    dt = md.get("dt")
    enc = str(md.get("encoding", META_DEFAULTS["encoding"]))
    if enc not in ("direct", "rate"):
        raise KdsnnError(f"input encoding {enc!r} in the NIR graph is not supported (direct or rate)")
    seed = md.get("encoding_seed")
    if enc == "rate" and not isinstance(seed, int | np.integer):
        raise KdsnnError(f"the NIR graph is rate-encoded but its encoding_seed {seed!r} is not an integer")
    inp = next(n for n in graph.nodes.values() if isinstance(n, nir.Input))
    out = next(n for n in graph.nodes.values() if isinstance(n, nir.Output))
    shape = tuple(int(s) for s in inp.input_type["input"])
    n_cls = int(np.prod(out.output_type["output"]))
    names = md.get("class_names")
    return {
        "T": t, "dt": float(dt) if dt is not None else None, "encoding": enc,
        "encoding_seed": int(seed) if enc == "rate" else None,
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
    """Counts for people: nodes by type, parameters, spiking neurons (IF, LIF, CubaLIF; the
    `if_layers` key keeps its name) and readout size."""
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
        if isinstance(n, (nir.IF, nir.LIF, nir.CubaLIF)):
            k = int(np.prod(n.v_threshold.shape))
            neurons += k
            layers.append({"name": name, "neurons": k, "theta": float(np.ravel(n.v_threshold)[0])})
    return {"nodes": len(graph.nodes), "edges": len(graph.edges), "node_types": kinds,
            "parameters": params, "neurons": neurons, "if_layers": layers,
            "readout": int(np.prod(next(n for n in graph.nodes.values()
                                        if isinstance(n, nir.Output)).output_type["output"]))}
