"""Greedy packing of IntNet populations onto neuromorphic cores (see DEFINITIONS['cores'])."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from kdsnn.compiler.intnet import IntNet, Population
from kdsnn.compiler.profile.synapses import conv_taps, fan_in


def map_population(net: IntNet, pop: Population, lim: Mapping[str, Any]) -> dict[str, Any]:
    """Greedy packing of one population onto cores (see DEFINITIONS['cores'])."""
    N = lim["neurons_per_core"]
    S = lim["synaptic_memory_bits_per_core"]
    A = lim["max_fan_in_per_core"]
    conns = net.incoming(pop.name)
    shape = tuple(pop.shape)
    spatial = len(shape) == 3
    C = shape[0] if spatial else 1
    positions = [(y, x) for y in range(shape[1]) for x in range(shape[2])] if spatial else list(range(pop.size))
    dense_axons = 0
    convs = []
    bits_pos = np.zeros(shape[1:] if spatial else (pop.size,), dtype=np.int64)  # synapse bits per neuron
    for c in conns:
        s_shape, d_shape = net.shape_of(c.src), shape
        fi = fan_in(c, s_shape, d_shape)
        bits_pos += (fi[0] if spatial else fi.reshape(-1)) * int(c.num_weight_bits)
        if c.kind == "dense":
            dense_axons += int(np.prod(s_shape))
        else:
            cin = s_shape[0]
            convs.append((cin, s_shape[1:], *conv_taps(c, shape)))
    total_bits = int(bits_pos.sum()) * C
    max_neuron_axons = dense_axons + max(
        (int(((oy >= 0) & (oy < hw[0])).sum(1).max()) * int(((ox >= 0) & (ox < hw[1])).sum(1).max()) * cin
         for cin, hw, oy, ox in convs), default=0)
    fits = max_neuron_axons <= A and int(bits_pos.max(initial=0)) <= S
    A_eff = A if fits else max(A, max_neuron_axons)  # not fitting: count cores without the axon limit
    cores = 0
    reasons = {"neurons": 0, "synaptic_memory": 0, "fan_in": 0}
    cur_n = cur_bits = cur_axons = 0
    masks: list[np.ndarray] = []

    def open_core() -> None:
        nonlocal cores, cur_n, cur_bits, cur_axons, masks
        cores += 1
        cur_n = cur_bits = 0
        cur_axons = dense_axons
        masks = [np.zeros(hw, dtype=bool) for _, hw, _, _ in convs]

    open_core()
    if not spatial and not convs:  # uniform dense population: closed form
        b = int(bits_pos[0]) if pop.size else 0
        per_core = min(N, S // b if b else N)
        per_core = max(per_core, 1)
        cores = max(1, math.ceil(pop.size / per_core))
        if cores > 1:
            reasons["neurons" if per_core == N else "synaptic_memory"] = cores - 1
    else:
        for p in positions:
            b = int(bits_pos[p])
            new_axons = 0
            sel = []
            for (cin, hw, oy, ox), m in zip(convs, masks, strict=True):
                ys = oy[p[0]][(oy[p[0]] >= 0) & (oy[p[0]] < hw[0])]
                xs = ox[p[1]][(ox[p[1]] >= 0) & (ox[p[1]] < hw[1])]
                sel.append((ys, xs))
                new_axons += cin * int((~m[np.ix_(ys, xs)]).sum())
            left = C
            while left:
                room_n = N - cur_n
                room_b = (S - cur_bits) // b if b else left
                room = min(left, room_n, room_b)
                axons_ok = cur_n == 0 or cur_axons + new_axons <= A_eff
                if room <= 0 or not axons_ok:
                    reasons["neurons" if room_n <= 0 else "synaptic_memory" if room_b <= 0 else "fan_in"] += 1
                    open_core()
                    new_axons = sum(cin * len(ys) * len(xs) for (cin, _, _, _), (ys, xs) in zip(convs, sel, strict=True))
                    continue
                cur_n += room
                cur_bits += room * b
                left -= room
                for m, (ys, xs) in zip(masks, sel, strict=True):
                    m[np.ix_(ys, xs)] = True
                cur_axons += new_axons
                new_axons = 0
    binding = "none" if cores == 1 else max(reasons, key=lambda k: reasons[k])
    if not fits:
        binding = "fan_in" if max_neuron_axons > A else "synaptic_memory"
    return {
        "cores": cores, "fits": bool(fits), "binding_limit": binding,
        "closed_by": reasons,
        "cores_by_neurons": math.ceil(pop.size / N),
        "cores_by_synaptic_memory": max(1, math.ceil(total_bits / S)),
        "synaptic_memory_bits": total_bits,
        "max_fan_in_axons": int(max_neuron_axons),
        "fan_in_split": math.ceil(max_neuron_axons / A) if max_neuron_axons > A else 1,
    }


def map_layers(intnet: IntNet, layers: list[dict[str, Any]], lim: Mapping[str, Any]) -> dict[str, Any]:
    """The report's `mapping` (cores, chips, whether it fits); sets each row's `mapping`."""
    total_cores = 0
    all_fit = True
    for p, r in zip(intnet.populations, layers, strict=True):
        m = map_population(intnet, p, lim)
        r["mapping"] = m
        total_cores += m["cores"]
        all_fit = all_fit and m["fits"]
    return {"target": {k: lim[k] for k in lim}, "cores": total_cores,
            "chips": math.ceil(total_cores / lim["cores_per_chip"]), "fits": all_fit,
            "binding_limits": {r["name"]: r["mapping"]["binding_limit"] for r in layers}}
