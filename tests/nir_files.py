"""A .nir file as another exporter stores it, for tests of foreign graphs.

nir.write's layout (one group per node, strings as variable-length strings) without its
compression, which fails on 0-d parameters, and without None fields, which nir 1.0.8's
writer cannot store (its reader takes a missing key as None). Torch tensors, as Norse's
exporter leaves them, are stored as arrays and string arrays (edges) as bytes."""

from __future__ import annotations

from pathlib import Path

import h5py
import nir
import numpy as np


def write_foreign(path: str | Path, graph: nir.NIRGraph, version: str = nir.version,
              drop: tuple[str, ...] = ()) -> Path:
    """Write `graph` to `path` as an exporter of nir `version` would, leaving out the
    parameters named in `drop` (e.g. v_reset, which nir <= 1.0.5 did not have)."""
    def rec(group, d):
        for k, v in d.items():
            if v is None or (k == "metadata" and not v) or k in drop:
                continue
            if isinstance(v, dict):
                rec(group.create_group(str(k)), v)
            elif isinstance(v, str):
                group.create_dataset(k, data=v, dtype=h5py.string_dtype())
            else:
                a = v.detach().numpy() if hasattr(v, "detach") else np.asarray(v)
                group.create_dataset(k, data=a.astype("S") if a.dtype.kind == "U" else a)
    with h5py.File(path, "w") as f:
        f.create_dataset("version", data=version, dtype=h5py.string_dtype())
        rec(f.create_group("node"), graph.to_dict())
    return Path(path)
