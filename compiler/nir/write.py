"""Writing NIR files: atomically, with metadata made HDF5-storable."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import nir
import numpy as np

from kdsnn.errors import KdsnnError
from kdsnn.io import write_bytes


def write_nir(graph: nir.NIRGraph, path: str | os.PathLike) -> Path:
    """Write `graph` with `nir.write` (HDF5) atomically; metadata made HDF5-storable."""
    dest = Path(path)
    g = nir.NIRGraph(nodes=graph.nodes, edges=list(graph.edges),
                     metadata=_encode_meta(dict(graph.metadata or {})), type_check=False)
    # HDF5 is built in memory first: h5py writing straight to a full disk can crash the
    # process (a segfault in its C library) and leave half a file; bytes are then written
    # like every other output (kdsnn.io.write_bytes: one line naming the file on failure)
    buf = io.BytesIO()
    try:
        nir.write(buf, g)
    except (OSError, ValueError, TypeError) as e:
        raise KdsnnError(f"cannot write NIR file {dest}: {e}") from None
    write_bytes(dest, buf.getvalue())
    return dest


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
