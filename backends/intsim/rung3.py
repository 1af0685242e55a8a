"""Rung 3 of the parity ladder: the lowered IntNet on intsim compared with the float student."""

from __future__ import annotations

from typing import Any

import numpy as np
from kdsnn.backends.base import RunResult

from kdsnn.errors import KdsnnError

# Accuracy differences are k/n * 100 in floats: exactly the tolerance must pass.
TOLERANCE_EPS = 1e-9


def rung3(student_logits: np.ndarray, labels: np.ndarray, int_result: RunResult,
          ref_result: RunResult | None = None, tolerance_points: float = 0.5) -> dict[str, Any]:
    """Rung 3 of the parity ladder (docs/design.md, "The parity ladder"): the lowered IntNet on intsim vs the float student.

    Accuracy of both on the same samples (pass: |float - integer| <= tolerance_points) and,
    given a float run with spike counts (the `reference` backend on the NIR graph), the
    per-layer spike agreement: total spike ratio integer / float, Pearson correlation of the
    per-sample counts, mean |difference| relative to the float mean. JSON-ready.
    """
    labels = np.asarray(labels)
    fl = np.asarray(student_logits).argmax(axis=1)
    it = int_result.predictions
    if len(fl) != len(labels) or len(it) != len(labels):
        raise KdsnnError(f"rung 3: {len(fl)} float and {len(it)} integer predictions for {len(labels)} labels")
    n = len(labels)
    acc_f = float((fl == labels).mean()) if n else 0.0
    acc_i = float((it == labels).mean()) if n else 0.0
    delta = 100.0 * (acc_f - acc_i)
    layers: dict[str, dict[str, Any]] = {}
    if ref_result is not None:
        for name, ci in int_result.spike_counts.items():
            if name not in ref_result.spike_counts:
                continue
            a = np.asarray(ci, dtype=np.float64)
            b = np.asarray(ref_result.spike_counts[name], dtype=np.float64)
            corr = float(np.corrcoef(a, b)[0, 1]) if n > 1 and a.std() > 0 and b.std() > 0 else None
            layers[name] = {
                "spikes_int": float(a.sum()), "spikes_float": float(b.sum()),
                "ratio": float(a.sum() / b.sum()) if b.sum() > 0 else None,
                "correlation": corr,
                "mean_abs_rel_diff": float(np.abs(a - b).mean() / b.mean()) if b.mean() > 0 else None,
                "samples_equal": float((a == b).mean()) if n else 1.0,
            }
    overflow = int_result.extra.get("overflow", {}) if int_result.extra else {}
    return {
        "rung": 3, "name": "IntNet on intsim vs float student",
        "samples": int(n), "accuracy_float": acc_f, "accuracy_int": acc_i,
        "delta_points": delta, "tolerance_points": tolerance_points,
        "prediction_agreement": float((fl == it).mean()) if n else 0.0,
        "passed": bool(abs(delta) <= tolerance_points + TOLERANCE_EPS),
        "layers": layers,
        "overflow_events": {k: {kk: int(vv) for kk, vv in v.items()} for k, v in overflow.items()},
    }
