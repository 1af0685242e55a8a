"""Which neurons a report's spike raster shows, for one sample of one population.

The most active neurons of a rate-coded SNN fire at every step, so a raster of the top-k
is k identical lines. This picks neurons whose spike times vary within the sample first
(fire at some steps, not all), then saturated ones (every step), then silent ones, each
group spread evenly over the population's index range, and keeps the real flat indices
so the plot can label them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

RASTER_NEURONS = 48


def _spread(idx: np.ndarray, k: int) -> np.ndarray:
    """k of the sorted indices idx, evenly spaced over them (all when k >= len)."""
    if k <= 0 or len(idx) == 0:
        return idx[:0]
    if len(idx) <= k:
        return idx
    return idx[np.linspace(0, len(idx) - 1, k).round().astype(np.int64)]


def pick_neurons(trains: np.ndarray, k: int = RASTER_NEURONS) -> tuple[np.ndarray, dict[str, int]]:
    """trains: (T, n) spikes of one sample. Returns (sorted flat indices, counts per kind)."""
    s = np.asarray(trains).reshape(trains.shape[0], -1).astype(np.int64)
    T = s.shape[0]
    c = s.sum(0)
    kinds = {"varying": np.flatnonzero((c > 0) & (c < T)), "saturated": np.flatnonzero(c == T),
             "silent": np.flatnonzero(c == 0)}
    chosen: list[np.ndarray] = []
    left = int(k)
    for key in ("varying", "saturated", "silent"):
        got = _spread(kinds[key], left)
        chosen.append(got)
        left -= len(got)
    return np.sort(np.concatenate(chosen)), {key: int(len(v)) for key, v in kinds.items()}


def raster_layer(name: str, trains: np.ndarray, k: int = RASTER_NEURONS) -> dict[str, Any]:
    """The report entry: neurons (flat indices), events [[step, row]], kinds of the sample."""
    s = np.asarray(trains).reshape(trains.shape[0], -1).astype(np.int64)
    idx, kinds = pick_neurons(s, k)
    ev = np.argwhere(s[:, idx])
    return {"name": name, "neurons": idx.tolist(), "events": ev[:, [0, 1]].tolist(), "kinds": kinds}
