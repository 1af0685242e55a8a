"""The per-core and per-chip limits the core mapping packs against (Loihi 1 by default)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kdsnn.errors import KdsnnError

# Loihi 1, one chip. Davies et al., IEEE Micro 38(1) 2018: 128 neuromorphic cores per chip,
# 1,024 compartments per core, 128 KB synaptic memory per core. The per-core checks NengoLoihi
# applies before placing a block (nengo_loihi/block.py: MAX_COMPARTMENTS = 1024,
# MAX_IN_AXONS = 4096, MAX_OUT_AXONS = 4096, MAX_SYNAPSE_BITS = 1048576) give the same numbers.
LOIHI1_LIMITS: dict[str, Any] = {
    "name": "loihi",
    "neurons_per_core": 1024,
    "synaptic_memory_bits_per_core": 128 * 1024 * 8,
    "max_fan_in_per_core": 4096,        # distinct input axons a core can receive
    "cores_per_chip": 128,
    "state_bits": 24,                   # u and v, each
    "weight_bits": 8,
    "bias_mant_bits": 13,
    "bias_exp_bits": 3,
    "source": "Davies et al. 2018 (IEEE Micro) and nengo_loihi/block.py limits",
}

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
    out["source"] = "; ".join(refs) if isinstance(refs, (list, tuple)) else str(refs or f"target {out['name']}")
    for k in ("neurons_per_core", "synaptic_memory_bits_per_core", "max_fan_in_per_core",
              "cores_per_chip", "state_bits", "weight_bits", "bias_mant_bits", "bias_exp_bits"):
        out[k] = int(out[k])
        if out[k] <= 0:
            raise KdsnnError(f"target {out['name']}: {k} must be positive, got {out[k]}")
    return out
