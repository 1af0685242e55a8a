"""Lower a canonical NIR graph to an IntNet for a hardware target (docs/design.md, "Integer semantics").

    net = lower(graph, load_target("loihi"), calibration_x)        # x: (N, C, H, W) normalized

runs the passes of `kdsnn.compiler.passes.PASSES` in order (import, fold flatten/pooling,
connections, calibration, input quantization, per-layer scales, depth) and returns a
validated IntNet whose metadata carries the per-layer choices (`metadata["lowering"]`).
Options: the fields of kdsnn.config.LoweringConfig (input_bits, headroom,
provable_budget_bits, min_weight_bits), with its defaults; unknown options are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nir
import numpy as np
from kdsnn.compiler.intnet import IntNet
from kdsnn.compiler.passes import PASSES, describe
from kdsnn.compiler.passes.state import LoweringState
from kdsnn.compiler.targets import TargetSpec, load_target

from kdsnn.config import LoweringConfig, from_options
from kdsnn.errors import KdsnnError

__all__ = ["lower", "describe", "lowering_state"]


def lowering_state(graph: nir.NIRGraph, target: TargetSpec | str | Path, calibration_x: np.ndarray,
                   T: int | None = None, **options: Any) -> LoweringState:
    """Run every pass and return the full state (float graph, stats, integer parts)."""
    tg = load_target(target)
    meta = dict(getattr(graph, "metadata", None) or {})
    if T is None:
        T = meta.get("T")
    if T is None:
        raise KdsnnError("the NIR graph has no T in its metadata; pass T (time steps) explicitly")
    T = int(T)
    if T < 1:
        raise KdsnnError(f"T must be >= 1, got {T}")
    opts = from_options(LoweringConfig, options).lowering_options()   # defaults: kdsnn.config
    st = LoweringState(target=tg, T=T, meta=meta, calibration_x=np.asarray(calibration_x), options=opts)
    for m in PASSES:
        if m.NAME == "import_nir":
            m.run(st, graph)
        else:
            m.run(st)
    return st


def lower(graph: nir.NIRGraph, target: TargetSpec | str | Path, calibration_x: np.ndarray,
          T: int | None = None, **options: Any) -> IntNet:
    """Canonical NIR graph + target + calibration images -> validated IntNet."""
    st = lowering_state(graph, target, calibration_x, T, **options)
    assert st.input_spec is not None
    class_names = [str(c) for c in (st.meta.get("class_names") or [])]
    net = IntNet(input=st.input_spec, populations=st.int_pops, connections=st.int_conns, T=st.T,
                 target=st.target.name, class_names=class_names,
                 metadata={"lowering": {"passes": [n for n, _ in describe()], "log": st.log,
                                        "calibration_samples": int(len(st.calibration_x)),
                                        "options": st.options, "layers": st.report},
                           "arithmetic": st.target.arithmetic(),
                           "graph": {k: v for k, v in st.meta.items()
                                     if isinstance(v, (str, int, float, list, type(None)))}})
    net.validate()
    return net
