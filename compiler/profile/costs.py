"""Memory and energy of one inference, per population and in total (see DEFINITIONS)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from kdsnn.compiler.intnet import IntNet
from kdsnn.compiler.profile.energy import EnergyModel

_SNN_BYTES = ("snn_weight_bytes", "snn_bias_bytes", "snn_state_bytes")


def layer_memory(intnet: IntNet, layers: list[dict[str, Any]], lim: Mapping[str, Any],
                 ann_params: int | Mapping[str, int] | None) -> None:
    """Set each population row's `memory`: the teacher's, the float student's and the SNN's bytes."""
    ann_params_layer = dict(ann_params) if isinstance(ann_params, Mapping) else {}
    bias_bits = lim["bias_mant_bits"] + lim["bias_exp_bits"]
    for r in layers:
        inc = intnet.incoming(r["name"])
        w_bits = sum(int(c.weight.size) * int(c.num_weight_bits) for c in inc)
        student_params = sum(int(c.weight.size) for c in inc) + r["neurons"]
        r["memory"] = {
            "ann_fp32_bytes": int(ann_params_layer[r["name"]]) * 4 if r["name"] in ann_params_layer else None,
            "student_fp32_bytes": student_params * 4,
            "snn_weight_bytes": w_bits / 8,
            "snn_bias_bytes": r["neurons"] * bias_bits / 8,
            "snn_state_bytes": r["neurons"] * 2 * lim["state_bits"] / 8,
        }
        r["memory"]["snn_total_bytes"] = sum(r["memory"][k] for k in _SNN_BYTES)


def memory_totals(intnet: IntNet, layers: list[dict[str, Any]],
                  ann_params: int | Mapping[str, int] | None) -> dict[str, Any]:
    """The report's `memory`: rows summed (after `layer_memory` and the core mapping), plus the
    input buffer."""
    ann_params_layer = dict(ann_params) if isinstance(ann_params, Mapping) else {}
    ann_params_total = (sum(int(v) for v in ann_params_layer.values()) if ann_params_layer
                        else (int(ann_params) if ann_params is not None else None))

    def memsum(key: str) -> float | None:
        vals = [r["memory"][key] for r in layers]
        return None if any(v is None for v in vals) else float(sum(vals))

    neurons = sum(r["neurons"] for r in layers)
    memory = {
        "ann_fp32_bytes": ann_params_total * 4 if ann_params_total is not None else None,
        "ann_params": ann_params_total,
        "student_fp32_bytes": memsum("student_fp32_bytes"),
        "student_params": int(sum(int(c.weight.size) for c in intnet.connections) + neurons),
        "snn_weight_bytes": memsum("snn_weight_bytes"), "snn_bias_bytes": memsum("snn_bias_bytes"),
        "snn_state_bytes": memsum("snn_state_bytes"),
        "input_buffer_bytes": int(np.prod(intnet.input.shape)) * int(intnet.input.bits) / 8,
    }
    memory["snn_total_bytes"] = sum(memory[k] for k in (*_SNN_BYTES, "input_buffer_bytes"))
    memory["synaptic_memory_bits"] = int(sum(r["mapping"]["synaptic_memory_bits"] for r in layers))
    if memory["ann_fp32_bytes"]:
        memory["ann_over_snn"] = memory["ann_fp32_bytes"] / memory["snn_total_bytes"]
    return memory


def energy(layers: list[dict[str, Any]], models: Iterable[EnergyModel], T: int,
           ann_total_macs: int | None, student: Mapping[str, int]) -> dict[str, Any]:
    """The report's `energy` per model; also sets each population row's `energy_pj`."""
    out: dict[str, Any] = {}
    for em in models:
        eff = em.count == "effective"
        snn_total = 0.0
        for r in layers:
            acs = r["eff_acs"] if eff else r["acs"]
            macs = r["eff_macs"] if eff else r["macs"]
            active = r["spikes"]
            idle = r["neurons"] * T - active
            e = em.snn_pj(acs, macs, active, idle)
            a = em.ann_pj(r["ann_macs"])
            r.setdefault("energy_pj", {})[em.name] = {"snn": e, "ann": a}
            snn_total += e
        ann_total = em.ann_pj(ann_total_macs)
        stu = em.ann_pj(sum(student.values()))
        out[em.name] = {**em.to_dict(), "snn_pj": snn_total, "ann_pj": ann_total,
                        "student_ann_pj": stu,
                        "ann_over_snn": (ann_total / snn_total) if ann_total and snn_total else None}
    return out
