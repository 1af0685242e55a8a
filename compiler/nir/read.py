"""Reading `.nir` files from any writer: structure and node types are checked before nir
builds objects, what older writers left out is tolerated, and the graph is canonicalized."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import nir
import numpy as np
from kdsnn.compiler.dynamics import parse_version
from kdsnn.compiler.nir.canonicalize import canonicalize
from kdsnn.compiler.nir.convert import IMPORTABLE, REFUSED_WHY

from kdsnn.errors import KdsnnError


def read_nir(path: str | os.PathLike, dt: float | None = None, reset: str | None = None) -> nir.NIRGraph:
    """Read any `.nir` file into kdsnn's canonical graph, or fail with one clear line.
    dt: --dt (seconds) where the graph states none; reset: --reset ("zero" | "subtract")."""
    p = Path(path)
    if not p.exists():
        raise KdsnnError(f"NIR file {p} does not exist")
    if p.is_dir():
        raise KdsnnError(f"{p} is a folder; give the .nir file (e.g. {p / 'graph.nir'})")
    _precheck(p)
    missing: set[str] = set()
    try:
        graph, version = _load(p, missing)
    except KdsnnError:
        raise
    except Exception as e:  # nir raises assertion/key/value/OS errors on malformed content
        msg = (str(e).splitlines() or [""])[0][:160]
        raise KdsnnError(f"{p} is not a readable NIR graph ({type(e).__name__}: {msg}); "
                         "the file is truncated, corrupt or from an incompatible NIR version") from None
    if not isinstance(graph, nir.NIRGraph):
        raise KdsnnError(f"{p} holds a single {type(graph).__name__} node, not a NIR graph")
    _check_finite(p, graph, "")
    return canonicalize(graph, source=str(p), dt=dt, reset=reset, version=version,
                        v_reset_missing=frozenset(missing))


def _load(p: Path, missing: set[str]) -> tuple[nir.NIRNode, tuple[int, ...] | None]:
    """Like nir.read, but tolerant of what older NIR writers left out (Conv input_shape,
    Flatten input_type, v_reset) and without type checks (done by `canonicalize`).
    Returns the node and the file's nir version; names of neurons without v_reset go
    into `missing` (named as `inline_subgraphs` names them: "sub.node")."""
    from nir.serialization import hdf2dict

    with h5py.File(p, "r") as f:
        version = parse_version(f["version"][()]) if "version" in f else None
        return _from_dict(hdf2dict(f["node"]), "", missing), version


_OPTIONAL = {"Conv1d": ("input_shape",), "Conv2d": ("input_shape",)}
_RESETTING = ("IF", "LIF", "CubaLIF")


def _from_dict(d: dict[str, Any], name: str, missing: set[str]) -> nir.NIRNode:
    d = dict(d)
    t = d["type"]
    if t == "NIRGraph":
        edges = np.asarray(d.get("edges", [])).reshape(-1, 2) if len(d.get("edges", [])) else []
        pre = f"{name}." if name else ""
        return nir.NIRGraph(nodes={str(k): _from_dict(v, pre + str(k), missing) for k, v in d["nodes"].items()},
                            edges=[(_s(a), _s(b)) for a, b in edges],
                            metadata=d.get("metadata") or {}, type_check=False)
    for key in _OPTIONAL.get(t, ()):
        d.setdefault(key, None)
    if t in _RESETTING and "v_reset" not in d:
        missing.add(name)
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
        _check_declared_size(p, root)


def _check_declared_size(p: Path, root: h5py.Group) -> None:
    """The arrays the file declares (shapes are read, no data) against the memory budget:
    HDF5 compresses, so 0.5 MB can declare a 100000x100000 matrix."""
    from kdsnn.budget import check_size

    sizes: list[tuple[int, str, tuple[int, ...]]] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            sizes.append((int(obj.size) * int(obj.dtype.itemsize), name, tuple(obj.shape)))

    root.visititems(visit)
    if sizes:
        big = max(sizes)
        node = big[1].replace("nodes/", "").rsplit("/", 1)
        check_size(sum(s for s, _, _ in sizes),
                   f"NIR file {p} (largest: node {node[0]!r} parameter {node[-1]!r} of shape "
                   f"{'x'.join(map(str, big[2]))})", "the file declares more than this machine can hold")


def _check_finite(p: Path, graph: nir.NIRGraph, where: str) -> None:
    """NaN/inf parameters refused, naming node and parameter (they would run as garbage);
    +inf time constants and r (no leak) are NIR's own."""
    for name, node in graph.nodes.items():
        full = f"{where}.{name}" if where else name
        if isinstance(node, nir.NIRGraph):
            _check_finite(p, node, full)
            continue
        for key, v in vars(node).items():
            if not isinstance(v, np.ndarray) or v.dtype.kind not in "fc":
                continue
            # +inf time constants and r are NIR's "no leak" (snnTorch writes beta = 1 so)
            ok = np.isfinite(v) | (np.isposinf(v) if (key.startswith("tau") or key == "r") and v.dtype.kind == "f" else False)
            if not ok.all():
                bad = "NaN" if np.isnan(v).any() else "inf"
                raise KdsnnError(f"{p}: node {full!r} parameter {key} holds {bad} values "
                                 f"({int((~ok).sum())} of {v.size}); the exporting model diverged "
                                 "or the file was altered")


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
