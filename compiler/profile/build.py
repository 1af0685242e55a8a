"""The report of one run, assembled: what one inference of an IntNet costs (docs/design.md, "Reports").

Everything is counted, not sampled: the network's structure gives the synapses of every
connection (`synapses`), a backend run gives the spikes (`counting`), and the two together
give the synaptic operations, memory and energy (`costs`) and the core mapping (`mapping`)
per inference. Each number of the report names its definition (`definitions`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

import numpy as np
from kdsnn.compiler.intnet import IntNet
from kdsnn.compiler.profile.ann import FloatCounts, attribute_ann_macs
from kdsnn.compiler.profile.costs import energy, layer_memory, memory_totals
from kdsnn.compiler.profile.counting import (
    RunCounts,
    connection_operations,
    graded_input_rate,
    population_activity,
    samples_run,
)
from kdsnn.compiler.profile.definitions import DEFINITIONS, SCHEMA, SCHEMA_VERSION
from kdsnn.compiler.profile.energy import (
    DEFAULT_MODELS,
    EnergyModel,
    energy_model_of,
    load_energy_model,
)
from kdsnn.compiler.profile.limits import target_limits
from kdsnn.compiler.profile.mapping import map_layers
from kdsnn.compiler.profile.raster import RASTER_NEURONS


def _default_models(target: Any) -> list[str | EnergyModel]:
    """horowitz45 and the hardware spec's own model (Loihi's without a spec)."""
    from kdsnn.compiler.targets import TargetSpec

    if isinstance(target, TargetSpec):
        return ["horowitz45", energy_model_of(target)]
    return list(DEFAULT_MODELS)


def build_report(intnet: IntNet, run: RunCounts, *, target: Any = None,
                 floats: FloatCounts | None = None,
                 energy_models: Iterable[str | EnergyModel] | None = None,
                 meta: Mapping[str, Any] | None = None,
                 raster_neurons: int = RASTER_NEURONS) -> dict[str, Any]:
    """The report of one run (JSON-able dict). See DEFINITIONS for every number.

    run: what the backend counted; target: a TargetSpec, a dict of limits or None (Loihi 1);
    floats: the teacher's and the student's float MACs and parameters; meta is copied into
    report["meta"].
    """
    T = int(intnet.T)
    floats = floats or FloatCounts()
    lim = target_limits(target)
    models = [load_energy_model(m) for m in (energy_models or _default_models(target))]
    notes: list[str] = []
    layers, per_neuron, raster = population_activity(intnet, run, notes, raster_neurons)
    in_nz, input_exact = graded_input_rate(intnet, run, notes)
    conns = connection_operations(intnet, layers, per_neuron, in_nz, input_exact)
    student = attribute_ann_macs(layers, floats, notes)
    layer_memory(intnet, layers, lim, floats.ann_params)
    mapping = map_layers(intnet, layers, lim)
    ann_total_macs = int(sum(int(v) for v in floats.ann_macs.values())) if floats.ann_macs else None
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION,
            "meta": _meta(intnet, run, lim, floats, meta),
            "definitions": dict(DEFINITIONS), "layers": layers, "connections": conns,
            "totals": _totals(layers, T, ann_total_macs, student),
            "memory": memory_totals(intnet, layers, floats.ann_params), "mapping": mapping,
            "energy": energy(layers, models, T, ann_total_macs, student),
            "latency": {"T": T, "depth": int(intnet.depth), "intsim_steps": T,
                        "lava_steps": T + int(intnet.depth)},
            "raster": raster, "notes": notes}


def _totals(layers: list[dict[str, Any]], T: int, ann_total_macs: int | None,
            student: Mapping[str, int]) -> dict[str, Any]:
    """The report's `totals`: population rows summed (fractions weighted by neurons)."""
    hidden = [r for r in layers if not r["readout"]]
    neurons = sum(r["neurons"] for r in layers)
    spikes = sum(r["spikes"] for r in layers)
    hidden_n = sum(r["neurons"] for r in hidden)

    def tot(key: str) -> float:
        return float(sum(r[key] for r in layers))

    def weighted(key: str) -> float | None:
        vals = [r[key] for r in hidden]
        if not hidden or None in vals:
            return None
        return sum(s * r["neurons"] for s, r in zip(vals, hidden, strict=True)) / hidden_n

    acs_t, macs_t = tot("acs"), tot("macs")
    return {
        "neurons": neurons, "hidden_neurons": hidden_n, "spikes": spikes,
        "firing_rate": spikes / hidden_n / T if hidden_n else 0.0,
        "silent_fraction": weighted("silent_fraction"),
        "saturated_fraction": weighted("saturated_fraction"),
        "synapses": int(tot("synapses")), "synapses_nonzero": int(tot("synapses_nonzero")),
        "acs": acs_t, "macs": macs_t, "synops": acs_t + macs_t,
        "eff_acs": tot("eff_acs"), "eff_macs": tot("eff_macs"), "dense_synops": int(tot("dense_synops")),
        "ann_macs": ann_total_macs, "student_ann_macs": int(sum(student.values())),
        "ann_macs_over_snn_synops": (ann_total_macs / (acs_t + macs_t)) if ann_total_macs and (acs_t + macs_t) else None,
        "ops_exact": all(r["ops_exact"] for r in layers),
        "neuron_updates": neurons * T,
    }


def _meta(intnet: IntNet, run: RunCounts, lim: Mapping[str, Any], floats: FloatCounts,
          meta: Mapping[str, Any] | None) -> dict[str, Any]:
    out = {"backend": run.backend, "T": int(intnet.T), "samples": samples_run(intnet, run),
           "target": lim["name"],
           "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "ann_macs_source": "given" if floats.ann_macs else None,
           "student_ann_macs_source": "given" if floats.student_ann_macs is not None else "intnet synapses"}
    try:
        from importlib.metadata import version

        out["kdsnn_version"] = version("kdsnn")
    except Exception:  # pragma: no cover - not installed
        out["kdsnn_version"] = None
    out.update(dict(meta or {}))
    return out


def report_from_run(intnet: IntNet, result: Any, *, x: np.ndarray | None = None, target: Any = None,
                    teacher: Any = None, student: Any = None,
                    energy_models: Iterable[str | EnergyModel] | None = None,
                    meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """build_report from a backend's RunResult, with the teacher's/student's float profiles.

    teacher/student: kdsnn GraphNets (or None). meta may carry accuracy / teacher_accuracy
    (fractions in [0, 1]), dataset, checkpoint paths; it is copied into report["meta"].
    """
    floats = FloatCounts.of(teacher, student)
    s_params = sum(p.numel() for p in student.parameters()) if student is not None else None
    return build_report(
        intnet, RunCounts.of(result, x), target=target, floats=floats, energy_models=energy_models,
        meta={"wall_s": float(getattr(result, "wall_s", 0.0)),
              "student_float_params": int(s_params) if s_params is not None else None,
              **dict(meta or {})})
