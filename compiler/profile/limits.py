"""The per-core and per-chip limits the core mapping packs against (Loihi 1 by default)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kdsnn.compiler.targets import LOIHI, TargetSpec

from kdsnn.errors import KdsnnError


def _limits_of(spec: Any) -> dict[str, Any]:
    return {"name": spec.name, "neurons_per_core": spec.neurons_per_core,
            "synaptic_memory_bits_per_core": spec.synaptic_memory_bits_per_core,
            "max_fan_in_per_core": spec.max_fan_in_per_core, "cores_per_chip": spec.cores_per_chip,
            "state_bits": spec.state_bits, "weight_bits": spec.weight_bits,
            "bias_mant_bits": spec.bias_mant_bits,
            "bias_exp_bits": max(1, (spec.bias_exp_max - spec.bias_exp_min).bit_length()),
            "source": "; ".join(spec.references)}


# Loihi 1, one chip, from kdsnn.compiler.targets.LOIHI (Davies et al., IEEE Micro 38(1) 2018;
# NengoLoihi's per-core checks in nengo_loihi/block.py give the same numbers).
LOIHI1_LIMITS: dict[str, Any] = _limits_of(LOIHI)

_ALIASES: dict[str, tuple[str, ...]] = {
    "neurons_per_core": ("neurons_per_core", "max_neurons_per_core", "compartments_per_core"),
    "synaptic_memory_bits_per_core": ("synaptic_memory_bits_per_core", "syn_mem_bits_per_core",
                                      "synaptic_bits_per_core", "synaptic_memory_bits"),
    "max_fan_in_per_core": ("max_fan_in_per_core", "fan_in_per_core", "input_axons_per_core",
                            "max_input_axons_per_core", "max_fan_in", "fan_in", "fan_in_limit"),
    "cores_per_chip": ("cores_per_chip",),
    "state_bits": ("state_bits", "v_bits"),
    "weight_bits": ("weight_bits", "num_weight_bits", "max_weight_bits"),
    "bias_mant_bits": ("bias_mant_bits", "bias_bits"),
    "bias_exp_bits": ("bias_exp_bits",),
    "name": ("name",),
}
_BYTE_ALIASES = ("synaptic_memory_bytes_per_core", "synaptic_memory_per_core_bytes",
                 "syn_mem_bytes_per_core", "synaptic_memory_per_core")


def target_limits(target: Any = None) -> dict[str, Any]:
    """Loihi limits from a TargetSpec, a dict or None (Loihi 1 defaults)."""
    out = dict(LOIHI1_LIMITS)
    if target is None:
        return out
    if isinstance(target, TargetSpec):
        return _limits_of(target)
    get = target.get if isinstance(target, Mapping) else (lambda k, d=None: getattr(target, k, d))
    for key, names in _ALIASES.items():
        for n in names:
            v = get(n, None)
            if v is not None:
                out[key] = v
                break
    for n in _BYTE_ALIASES:
        v = get(n, None)
        if v is not None:
            out["synaptic_memory_bits_per_core"] = int(v) * 8
            break
    refs = get("references", None) or get("source", None)
    out["source"] = "; ".join(refs) if isinstance(refs, (list, tuple)) else str(refs or f"hardware spec {out['name']}")
    for k in ("neurons_per_core", "synaptic_memory_bits_per_core", "max_fan_in_per_core",
              "cores_per_chip", "state_bits", "weight_bits", "bias_mant_bits", "bias_exp_bits"):
        out[k] = int(out[k])
        if out[k] <= 0:
            raise KdsnnError(f"hardware spec {out['name']}: {k} must be positive, got {out[k]}")
    return out
