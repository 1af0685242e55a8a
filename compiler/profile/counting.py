"""What one run did, counted per population and per connection: spikes, firing, the non-zero
graded inputs, and the synaptic operations they cause (see DEFINITIONS)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from kdsnn.compiler.intnet import INPUT, IntNet
from kdsnn.compiler.profile.raster import RASTER_NEURONS, raster_layer
from kdsnn.compiler.profile.synapses import fan_out

from kdsnn.errors import KdsnnError


@dataclass(frozen=True)
class RunCounts:
    """What a backend run recorded (the fields of its RunResult) and the inputs it ran.

    spike_counts: {population: (N,)}; layer_spikes_per_step: {population: (N, T)};
    spike_trains: {population: (N, T, *shape)} make silent/saturated fractions and conv
    operation counts exact; x: the (N, *input) normalized inputs, to count the non-zero graded
    input values (else all are assumed non-zero).
    """

    spike_counts: Mapping[str, Any]
    backend: str = "intsim"
    layer_spikes_per_step: Mapping[str, Any] | None = None
    spike_trains: Mapping[str, Any] | None = None
    x: np.ndarray | None = None

    @classmethod
    def of(cls, result: Any, x: np.ndarray | None = None) -> RunCounts:
        """From a backend's RunResult."""
        return cls(result.spike_counts, result.backend, result.layer_spikes_per_step,
                   result.spike_trains, x)


def _mean_counts(arr: Any) -> tuple[float, int]:
    a = np.asarray(arr, dtype=np.float64).reshape(len(arr), -1).sum(1) if np.ndim(arr) > 1 else np.asarray(arr, dtype=np.float64)
    return (float(a.mean()) if a.size else 0.0), int(a.size)


def _train(trains: Mapping[str, Any] | None, name: str, pop_shape: tuple[int, ...]) -> np.ndarray | None:
    if not trains or name not in trains or trains[name] is None:
        return None
    t = np.asarray(trains[name])
    if t.ndim < 2 or int(np.prod(t.shape[2:])) != int(np.prod(pop_shape)):
        raise KdsnnError(f"spike train of {name} has shape {t.shape}, expected (N, T, {', '.join(map(str, pop_shape))})")
    return t.reshape(t.shape[0], t.shape[1], -1)


def samples_run(intnet: IntNet, run: RunCounts) -> int:
    """N: the most samples any population's counts cover."""
    names = {p.name for p in intnet.populations}
    return max((int(np.asarray(v).shape[0]) for k, v in run.spike_counts.items() if k in names), default=0)


def population_activity(intnet: IntNet, run: RunCounts, notes: list[str],
                        raster_neurons: int = RASTER_NEURONS) -> tuple[list[dict[str, Any]], dict[str, np.ndarray | None], dict[str, Any]]:
    """(one report row per population, mean spikes per neuron where known, the raster of
    sample 0: up to `raster_neurons` neurons per layer, chosen by profile.raster)."""
    T = int(intnet.T)
    layers: list[dict[str, Any]] = []
    per_neuron: dict[str, np.ndarray | None] = {}
    raster: dict[str, Any] = {"sample": 0, "T": T, "layers": []}
    for p in intnet.populations:
        tr = _train(run.spike_trains, p.name, p.shape)
        if p.name in run.spike_counts:
            spikes, _ = _mean_counts(run.spike_counts[p.name])
        elif tr is not None:
            spikes = float(tr.sum(axis=(1, 2)).mean())
        elif p.readout:
            spikes = 0.0
        else:
            raise KdsnnError(f"no spike counts for population {p.name}; the backend run must report every population")
        row: dict[str, Any] = {"name": p.name, "shape": list(p.shape), "neurons": p.size,
                               "depth": p.depth, "readout": p.readout, "spikes": spikes,
                               "firing_rate": spikes / p.size / T if p.size else 0.0,
                               "silent_fraction": None, "saturated_fraction": None,
                               "spikes_per_step": None}
        if tr is not None and p.readout:  # never fires by construction: fractions say nothing
            per_neuron[p.name] = tr.sum(axis=1).mean(axis=0)
        elif tr is not None:
            c = tr.sum(axis=1)  # (N, n)
            row["silent_fraction"] = float((c == 0).mean())
            row["saturated_fraction"] = float((c == T).mean())
            per_neuron[p.name] = c.mean(axis=0)
            row["spikes_per_step"] = tr.sum(axis=2).mean(axis=0).tolist()
            if tr.shape[0] > 0:
                raster["layers"].append(raster_layer(p.name, tr[0], raster_neurons))
        else:
            per_neuron[p.name] = None
        per_step = run.layer_spikes_per_step
        if row["spikes_per_step"] is None and per_step and p.name in per_step:
            s = np.asarray(per_step[p.name], dtype=np.float64)
            row["spikes_per_step"] = s.mean(axis=0).tolist()
        layers.append(row)
    if run.spike_trains is None:
        notes.append("no spike trains recorded: silent/saturated fractions are null and conv ACs use the mean fan-out")
    return layers, per_neuron, raster


def graded_input_rate(intnet: IntNet, run: RunCounts, notes: list[str]) -> tuple[np.ndarray, bool]:
    """(fraction of samples and steps at which each input position is non-zero, exact?)."""
    if run.x is not None:
        q = intnet.input.quantize(np.asarray(run.x))
        n_in = int(np.prod(intnet.input.shape))
        if q.ndim == len(intnet.input.shape) + 2:   # input trains (N, T, ...): every step counts
            return (q != 0).reshape(q.shape[0] * q.shape[1], n_in).mean(axis=0), True
        return (q != 0).reshape(q.shape[0], n_in).mean(axis=0), True
    if run.spike_trains and INPUT in run.spike_trains:
        t = np.asarray(run.spike_trains[INPUT])
        return (t != 0).reshape(t.shape[0], t.shape[1], -1).mean(axis=(0, 1)), True
    notes.append("inputs not given: every graded input value counted as non-zero (upper bound on MACs)")
    return np.ones(int(np.prod(intnet.input.shape))), False


def connection_operations(intnet: IntNet, layers: list[dict[str, Any]],
                          per_neuron: Mapping[str, np.ndarray | None],
                          in_nz: np.ndarray, input_exact: bool) -> list[dict[str, Any]]:
    """One report row per connection (synapses, fan-out, ACs/MACs); each row's counts are
    also summed into its destination population's row in `layers`."""
    T = int(intnet.T)
    by_name = {r["name"]: r for r in layers}
    conns: list[dict[str, Any]] = []
    for r in layers:
        r.update(acs=0.0, macs=0.0, eff_acs=0.0, eff_macs=0.0, dense_synops=0, synapses=0,
                 synapses_nonzero=0, ops_exact=True)
    for c in intnet.connections:
        s_shape, d_shape = intnet.shape_of(c.src), intnet.shape_of(c.dst)
        fo = fan_out(c, s_shape, d_shape).reshape(-1).astype(np.float64)
        fo_nz = fan_out(c, s_shape, d_shape, nonzero=True).reshape(-1).astype(np.float64)
        graded = c.graded or c.src == INPUT
        exact = True
        if c.src == INPUT:
            events = in_nz * T  # non-zero graded values per position per inference
            exact = input_exact
            ops, eff = float(events @ fo), float(events @ fo_nz)
        else:
            pn = per_neuron.get(c.src)
            if pn is not None:
                ops, eff = float(pn @ fo), float(pn @ fo_nz)
            else:
                spikes = by_name[c.src]["spikes"]
                ops = spikes * float(fo.mean())
                eff = spikes * float(fo_nz.mean())
                exact = bool(np.all(fo == fo[0])) and bool(np.all(fo_nz == fo_nz[0])) if fo.size else True
        syn = int(fo.sum())
        rec = {"name": c.name, "src": c.src, "dst": c.dst, "kind": c.kind, "graded": graded,
               "weight_shape": list(c.weight.shape), "num_weight_bits": int(c.num_weight_bits),
               "stride": list(c.stride), "padding": list(c.padding), "groups": int(c.groups),
               "synapses": syn, "synapses_nonzero": int(fo_nz.sum()),
               "fan_out_min": int(fo.min()) if fo.size else 0, "fan_out_max": int(fo.max()) if fo.size else 0,
               "fan_out_mean": float(fo.mean()) if fo.size else 0.0,
               "acs": 0.0 if graded else ops, "eff_acs": 0.0 if graded else eff,
               "macs": ops if graded else 0.0, "eff_macs": eff if graded else 0.0,
               "dense_synops": syn * T, "ops_exact": exact}
        conns.append(rec)
        d = by_name[c.dst]
        for k in ("acs", "eff_acs", "macs", "eff_macs", "dense_synops", "synapses", "synapses_nonzero"):
            d[k] += rec[k]
        d["ops_exact"] = d["ops_exact"] and exact
    return conns
