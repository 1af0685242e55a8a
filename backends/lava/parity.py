"""Rung 4 of the parity ladder: Lava must equal intsim bit for bit (docs/design.md, "The parity ladder").

`first_difference(intsim_result, lava_result, layers)` names the first differing sample,
layer and step (or logits), so a failure says where the two diverged, not only that they
did. Within the first differing sample the earliest step wins, and at that step the
shallowest layer (the order of `layers`, i.e. IntNet.populations), which is where the
difference starts: everything downstream follows from it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from kdsnn.backends.base import RunResult


def first_difference(ref: RunResult, got: RunResult,
                     layers: list[str] | None = None) -> dict[str, Any] | None:
    """None when logits and per-layer (per-step) spike counts are identical, else a dict
    with sample, layer, step (None for totals/logits), the two values and a message."""
    a_lg, b_lg = np.asarray(ref.logits), np.asarray(got.logits)
    if a_lg.shape != b_lg.shape:
        return {"sample": None, "layer": None, "step": None, "ref": a_lg.shape, "got": b_lg.shape,
                "message": f"logits have shape {b_lg.shape} on {got.backend}, "
                           f"{a_lg.shape} on {ref.backend}"}
    names = list(layers or ref.spike_counts)
    per_a, per_b = ref.layer_spikes_per_step, got.layer_spikes_per_step
    stepwise = per_a is not None and per_b is not None and all(k in per_a and k in per_b for k in names)
    n = len(a_lg)
    bad = np.zeros(n, dtype=bool)
    bad |= (a_lg != b_lg).reshape(n, -1).any(axis=1)
    for k in names:
        if stepwise:
            bad |= (np.asarray(per_a[k]) != np.asarray(per_b[k])).any(axis=1)
        else:
            bad |= np.asarray(ref.spike_counts[k]) != np.asarray(got.spike_counts[k])
    if not bad.any():
        return None
    i = int(np.flatnonzero(bad)[0])
    best: tuple[int, int, str] | None = None
    for li, k in enumerate(names):
        if stepwise:
            d = np.flatnonzero(np.asarray(per_a[k][i]) != np.asarray(per_b[k][i]))
            if d.size and (best is None or (int(d[0]), li) < best[:2]):
                best = (int(d[0]), li, k)
        elif ref.spike_counts[k][i] != got.spike_counts[k][i] and best is None:
            best = (-1, li, k)
    if best is None:
        return {"sample": i, "layer": "logits", "step": None, "ref": a_lg[i].tolist(),
                "got": b_lg[i].tolist(),
                "message": f"sample {i}: logits differ ({got.backend} {b_lg[i].tolist()} vs "
                           f"{ref.backend} {a_lg[i].tolist()}), spike counts equal"}
    t, _, k = best
    if t < 0:
        va, vb = int(ref.spike_counts[k][i]), int(got.spike_counts[k][i])
        where = f"sample {i}, layer {k}"
        step = None
    else:
        va, vb = int(per_a[k][i][t]), int(per_b[k][i][t])
        where = f"sample {i}, layer {k}, step {t}"
        step = t
    return {"sample": i, "layer": k, "step": step, "ref": va, "got": vb,
            "message": f"{where}: {vb} spikes on {got.backend} vs {va} on {ref.backend}"}
