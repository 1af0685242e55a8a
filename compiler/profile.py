"""The profiler: what one inference of an IntNet costs (DESIGN §7).

Everything here is counted, not sampled: the network's structure gives the synapses of every
connection (fan-out of each source neuron, exactly, including the borders of padded and
strided convolutions), a backend run gives the spikes, and the two together give the
synaptic operations, memory, core mapping and energy per inference. Each number of the
report names its definition (`DEFINITIONS`, versioned with `SCHEMA_VERSION`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

import numpy as np
from kdsnn.compiler.energy import DEFAULT_MODELS, EnergyModel, load_energy_model
from kdsnn.compiler.intnet import INPUT, Connection, IntNet, Population
from kdsnn.compiler.raster import RASTER_NEURONS, raster_layer

from kdsnn.errors import KdsnnError

SCHEMA = "kdsnn.report"
SCHEMA_VERSION = 1

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

DEFINITIONS: dict[str, str] = {
    "per_inference": "Every count is per inference (one sample of T steps), averaged over the N samples run.",
    "spikes": "Binary spikes a population emits in one inference (sum over its neurons and the T steps).",
    "firing_rate": "spikes / (neurons x T): the probability that a neuron fires at a step.",
    "silent_fraction": "Fraction of a population's neurons that never fire during a sample, averaged over samples. Needs spike trains; null without them.",
    "saturated_fraction": "Fraction of a population's neurons that fire at every one of the T steps of a sample, averaged over samples. Needs spike trains; null without them.",
    "synapses": "Synapses of a connection: (source neuron, destination neuron) pairs joined by a weight, zero weights included; dense: n_src x n_dst; conv: for each input position the output positions its kernel taps reach given stride, padding, dilation and groups, counted exactly at the borders.",
    "fan_out": "Synapses leaving one source neuron (see synapses).",
    "acs": "Accumulates (SynOps of binary sources): sum over source neurons of spikes x fan-out, every synapse counted whatever its weight. This is what a Loihi core does (it walks the whole fan-out list of an incoming spike).",
    "macs": "Multiply-accumulates of graded sources (the quantized image sent as graded spikes at every step): sum over steps and input positions with a non-zero value of fan-out.",
    "eff_acs": "NeuroBench Eff_ACs: as acs, counting only synapses with a non-zero integer weight (NeuroBench binarizes the layer's weights and inputs; bias not counted).",
    "eff_macs": "NeuroBench Eff_MACs: as macs, counting only synapses with a non-zero integer weight.",
    "dense_synops": "NeuroBench Dense: synapses x T, every source at every step, as hardware without sparsity would compute.",
    "ann_macs": "Dense MACs of one forward pass of the ANN teacher (conv: C_out x H_out x W_out x C_in/groups x kH x kW; linear: n_in x n_out), attributed to the population its synaptic layer feeds; pooling and bias adds not counted.",
    "student_ann_macs": "Dense MACs of one forward pass of the student run as an ANN: from the student GraphNet when given (same formula as ann_macs), else one MAC per synapse of the IntNet (after pooling was folded into the synaptic layers, which can multiply the synapses); meta.student_ann_macs_source says which.",
    "ops_exact": "True when acs/eff_acs use per-neuron spike counts (spike trains) or a uniform fan-out (dense); false when a conv source's per-neuron spikes were unknown and its mean fan-out was used.",
    "ann_fp32_bytes": "ANN teacher parameters (weights, biases, BatchNorm affine) x 4 bytes.",
    "student_fp32_bytes": "The student's float parameters (kernel weights and biases of the IntNet) x 4 bytes.",
    "snn_weight_bytes": "Integer weights as stored in the IntNet (a conv kernel once) x the connection's weight bits / 8.",
    "snn_bias_bytes": "One bias mantissa and exponent per neuron at the target's bias bits / 8.",
    "snn_state_bytes": "Neuron state: u and v per neuron at the target's state bits (24 on Loihi) / 8.",
    "input_buffer_bytes": "One step of the graded input: input positions x input bits / 8.",
    "synaptic_memory_bits": "Loihi synaptic memory a layer needs: its synapses x weight bits. Assumption: conv weights are stored expanded (one synapse entry per source/destination pair held by a core; no weight sharing across output positions), and the synapse-list header/index bits of the real encoding are not counted, so synaptic-memory-bound core counts are lower bounds.",
    "cores": "Cores of a layer from a greedy packing of its neurons in channel-last order (all channels of an output position together, then the next position), one layer per core (no two layers share a core), opening a new core when the next neuron would exceed neurons/core, synaptic memory/core or the distinct input axons (fan-in) a core can receive.",
    "binding_limit": "The limit that closed most of a layer's cores during packing (neurons, synaptic_memory or fan_in); 'none' when the layer fits one core; 'fan_in' with fits=false when one neuron alone needs more input axons than a core has (it would need a dendritic split over several compartments, not modeled).",
    "chips": "ceil(total cores / cores per chip).",
    "neuron_updates": "Every neuron is updated at every step: active updates = steps at which a neuron fires (= spikes), idle updates = neurons x T - spikes.",
    "energy": "Per inference, pJ, under each named energy model: E_snn = e_ac x ACs + e_mac x MACs + e_synop x (ACs + MACs) + e_active x active updates + e_idle x idle updates, with the model's synapse count basis (effective = eff_acs/eff_macs, all = acs/macs); E_ann = e_mac x ANN dense MACs.",
    "latency_steps": "T steps per sample with zero synaptic delay (intsim); T + depth on Lava, whose connections delay by one step each.",
}


# ------------------------------------------------------------------------ target limits ---
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


# ------------------------------------------------------------------------- connectivity ---
def _taps(n_out: int, k: int, stride: int, pad: int, dil: int) -> np.ndarray:
    """(n_out, k): the input index output o reads through kernel tap j, o*stride - pad + j*dil
    (outside [0, n_in) where it falls in the padding)."""
    return np.arange(n_out)[:, None] * stride - pad + np.arange(k)[None] * dil


def _conv_taps(c: Connection, dst_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """_taps along H and W of a conv connection into dst_shape (C, H, W)."""
    kh, kw = c.weight.shape[2:]
    return (_taps(dst_shape[1], kh, c.stride[0], c.padding[0], c.dilation[0]),
            _taps(dst_shape[2], kw, c.stride[1], c.padding[1], c.dilation[1]))


def axis_reach(n_in: int, n_out: int, k: int, stride: int, pad: int, dil: int) -> np.ndarray:
    """(n_in, k) bool: input index i is reached through kernel tap j by some output index.

    Padding positions are not neurons, so they carry no synapse.
    """
    reach = np.zeros((n_in, k), dtype=bool)
    i = _taps(n_out, k, stride, pad, dil)
    j = np.broadcast_to(np.arange(k), i.shape)
    inside = (i >= 0) & (i < n_in)
    reach[i[inside], j[inside]] = True
    return reach


def _conv_geometry(c: Connection, src_shape: tuple[int, ...], dst_shape: tuple[int, ...]):
    if len(src_shape) != 3 or len(dst_shape) != 3:
        raise KdsnnError(f"connection {c.name}: conv needs (C, H, W) source and destination, got {src_shape} -> {dst_shape}")
    c_out, cin_g, kh, kw = c.weight.shape
    c_in, h_in, w_in = src_shape
    _, h_out, w_out = dst_shape
    if cin_g * c.groups != c_in or c_out != dst_shape[0] or c_out % c.groups:
        raise KdsnnError(f"connection {c.name}: weight {c.weight.shape} with groups={c.groups} does not fit {src_shape} -> {dst_shape}")
    ry = axis_reach(h_in, h_out, kh, c.stride[0], c.padding[0], c.dilation[0])
    rx = axis_reach(w_in, w_out, kw, c.stride[1], c.padding[1], c.dilation[1])
    return ry, rx


def fan_out(c: Connection, src_shape: tuple[int, ...], dst_shape: tuple[int, ...],
            nonzero: bool = False) -> np.ndarray:
    """Synapses leaving each source neuron, shape = src_shape (int64).

    nonzero=True counts only synapses whose integer weight is not zero (NeuroBench effective).
    """
    w = np.asarray(c.weight)
    if c.kind == "dense":
        if nonzero:
            return (w != 0).sum(axis=0).astype(np.int64).reshape(src_shape)
        return np.full(src_shape, w.shape[0], dtype=np.int64)
    ry, rx = _conv_geometry(c, src_shape, dst_shape)
    c_out, cin_g, kh, kw = w.shape
    per_group = c_out // c.groups
    # taps[ci, ky, kx]: output channels whose kernel reaches input channel ci through (ky, kx)
    mask = (w != 0) if nonzero else np.ones_like(w, dtype=bool)
    taps = mask.reshape(c.groups, per_group, cin_g, kh, kw).sum(axis=1).reshape(c.groups * cin_g, kh, kw)
    return np.einsum("cyx,iy,jx->cij", taps.astype(np.int64), ry.astype(np.int64), rx.astype(np.int64))


def fan_in(c: Connection, src_shape: tuple[int, ...], dst_shape: tuple[int, ...]) -> np.ndarray:
    """Synapses arriving at each destination neuron (all weights), shape = dst_shape."""
    if c.kind == "dense":
        return np.full(dst_shape, int(np.prod(src_shape)), dtype=np.int64)
    c_out, cin_g, kh, kw = c.weight.shape
    c_in, h_in, w_in = src_shape
    _, h_out, w_out = dst_shape
    oy, ox = _conv_taps(c, dst_shape)
    ny = ((oy >= 0) & (oy < h_in)).sum(1)
    nx = ((ox >= 0) & (ox < w_in)).sum(1)
    per_pos = cin_g * ny[:, None] * nx[None, :]
    return np.broadcast_to(per_pos, (c_out, h_out, w_out)).astype(np.int64).copy()


def synapse_count(c: Connection, src_shape: tuple[int, ...], dst_shape: tuple[int, ...]) -> int:
    return int(fan_out(c, src_shape, dst_shape).sum())


# ------------------------------------------------------------------------- core mapping ---
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
            convs.append((cin, s_shape[1:], *_conv_taps(c, shape)))
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


# ---------------------------------------------------------------------- float networks ---
def graphnet_profile(model: Any) -> dict[str, Any]:
    """Dense MACs and parameters of a kdsnn GraphNet (teacher or student run as an ANN).

    Per layer keys are the population each synaptic node feeds (the first act/readout
    downstream through pooling/flatten), so they line up with IntNet population names.
    """
    import torch

    from kdsnn.layers import ConvBN, LinearBN

    specs = {s.name: s for s in model.specs}
    consumers: dict[str, list[str]] = {}
    for s in model.specs:
        for i in s.inputs:
            consumers.setdefault(i, []).append(s.name)

    def target_of(name: str) -> str:
        seen = name
        while True:
            nxt = consumers.get(seen, [])
            if not nxt:
                return name
            seen = nxt[0]
            if specs[seen].op in ("act", "readout"):
                return seen

    out_shapes: dict[str, tuple[int, ...]] = {}
    hooks = []
    for s in model.specs:
        mod = model.nodes[s.name]
        if isinstance(mod, (ConvBN, LinearBN)):
            hooks.append(mod.register_forward_hook(
                lambda m, i, o, n=s.name: out_shapes.__setitem__(n, tuple(o.shape[1:]))))
    was = model.training
    model.eval()
    try:
        dev = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(1, *model.input_shape, device=dev))
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    macs: dict[str, int] = {}
    params: dict[str, int] = {}
    for s in model.specs:
        mod = model.nodes[s.name]
        if not isinstance(mod, (ConvBN, LinearBN)):
            continue
        if isinstance(mod, ConvBN):
            conv = mod.conv
            m = int(np.prod(out_shapes[s.name])) * (conv.in_channels // conv.groups) * int(np.prod(conv.kernel_size))
        else:
            m = mod.linear.in_features * mod.linear.out_features
        key = target_of(s.name)
        macs[key] = macs.get(key, 0) + m
        params[key] = params.get(key, 0) + sum(p.numel() for p in mod.parameters())
    total_params = sum(p.numel() for p in model.parameters())
    return {"macs": macs, "params": params, "total_macs": sum(macs.values()),
            "total_params": int(total_params)}


def intnet_dense_macs(net: IntNet) -> dict[str, int]:
    """The student's weights run as an ANN: one MAC per synapse, per destination population."""
    out: dict[str, int] = {p.name: 0 for p in net.populations}
    for c in net.connections:
        out[c.dst] += synapse_count(c, net.shape_of(c.src), net.shape_of(c.dst))
    return out


# ------------------------------------------------------------------------------ report ---
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


def build_report(intnet: IntNet, spike_counts: Mapping[str, Any],
                 layer_spikes_per_step: Mapping[str, Any] | None = None,
                 spike_trains: Mapping[str, Any] | None = None,
                 target: Any = None, backend: str = "intsim",
                 ann_macs: Mapping[str, int] | None = None,
                 student_ann_macs: Mapping[str, int] | None = None,
                 ann_params: int | Mapping[str, int] | None = None,
                 energy_models: Iterable[str | EnergyModel] | None = None,
                 meta: Mapping[str, Any] | None = None,
                 x: np.ndarray | None = None,
                 raster_neurons: int = RASTER_NEURONS) -> dict[str, Any]:
    """The report of one run (JSON-able dict). See DEFINITIONS for every number.

    spike_counts: {population: (N,)} from RunResult; spike_trains {population: (N, T, *shape)}
    make silent/saturated fractions and conv operation counts exact; x: the (N, *input) normalized
    inputs that were run, to count the non-zero graded input values (else all are assumed non-zero).
    """
    T = int(intnet.T)
    lim = target_limits(target)
    models = [load_energy_model(m) for m in (energy_models or DEFAULT_MODELS)]
    names = [p.name for p in intnet.populations]
    n_samples = 0
    for k, v in spike_counts.items():
        if k in names:
            n_samples = max(n_samples, int(np.asarray(v).shape[0]))
    notes: list[str] = []

    # -- activity per population ------------------------------------------------------------
    layers: list[dict[str, Any]] = []
    per_neuron: dict[str, np.ndarray | None] = {}
    raster: dict[str, Any] = {"sample": 0, "T": T, "layers": []}
    for p in intnet.populations:
        tr = _train(spike_trains, p.name, p.shape)
        if p.name in spike_counts:
            spikes, _ = _mean_counts(spike_counts[p.name])
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
        if row["spikes_per_step"] is None and layer_spikes_per_step and p.name in layer_spikes_per_step:
            s = np.asarray(layer_spikes_per_step[p.name], dtype=np.float64)
            row["spikes_per_step"] = s.mean(axis=0).tolist()
        layers.append(row)
    if spike_trains is None:
        notes.append("no spike trains recorded: silent/saturated fractions are null and conv ACs use the mean fan-out")
    by_name = {r["name"]: r for r in layers}

    # -- graded input: which positions are non-zero ------------------------------------------
    in_nz: np.ndarray
    input_exact = True
    if x is not None:
        q = intnet.input.quantize(np.asarray(x))
        in_nz = (q != 0).reshape(q.shape[0], -1).mean(axis=0)
    elif spike_trains and INPUT in spike_trains:
        t = np.asarray(spike_trains[INPUT])
        in_nz = (t != 0).reshape(t.shape[0], t.shape[1], -1).mean(axis=(0, 1))
    else:
        in_nz = np.ones(int(np.prod(intnet.input.shape)))
        input_exact = False
        notes.append("inputs not given: every graded input value counted as non-zero (upper bound on MACs)")

    # -- synapses and operations per connection ----------------------------------------------
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

    # -- ANN operations --------------------------------------------------------------------
    # one MAC per synapse (intnet_dense_macs), already summed per population above
    student = (dict(student_ann_macs) if student_ann_macs is not None
               else {r["name"]: r["synapses"] for r in layers})
    student_src = "given" if student_ann_macs is not None else "intnet synapses"
    for r in layers:
        r["ann_macs"] = int(ann_macs[r["name"]]) if ann_macs and r["name"] in ann_macs else None
        r["student_ann_macs"] = int(student[r["name"]]) if r["name"] in student else None
    unmatched = sorted(set(ann_macs or {}) - set(names))
    if unmatched:
        notes.append(f"teacher layers with no population of the same name: {', '.join(unmatched)} (counted in the total only)")

    # -- memory ----------------------------------------------------------------------------
    ann_params_layer = dict(ann_params) if isinstance(ann_params, Mapping) else {}
    ann_params_total = (sum(int(v) for v in ann_params_layer.values()) if ann_params_layer
                        else (int(ann_params) if ann_params is not None else None))
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
        r["memory"]["snn_total_bytes"] = sum(r["memory"][k] for k in ("snn_weight_bytes", "snn_bias_bytes", "snn_state_bytes"))
    input_buffer = int(np.prod(intnet.input.shape)) * int(intnet.input.bits) / 8

    # -- mapping ---------------------------------------------------------------------------
    total_cores = 0
    all_fit = True
    for p, r in zip(intnet.populations, layers, strict=True):
        m = map_population(intnet, p, lim)
        r["mapping"] = m
        total_cores += m["cores"]
        all_fit = all_fit and m["fits"]
    chips = math.ceil(total_cores / lim["cores_per_chip"])

    # -- energy ----------------------------------------------------------------------------
    ann_total_macs = int(sum(int(v) for v in ann_macs.values())) if ann_macs else None
    energy: dict[str, Any] = {}
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
        energy[em.name] = {**em.to_dict(), "snn_pj": snn_total, "ann_pj": ann_total,
                           "student_ann_pj": stu,
                           "ann_over_snn": (ann_total / snn_total) if ann_total and snn_total else None}

    # -- totals ----------------------------------------------------------------------------
    hidden = [r for r in layers if not r["readout"]]
    neurons = sum(r["neurons"] for r in layers)
    spikes = sum(r["spikes"] for r in layers)
    hidden_n = sum(r["neurons"] for r in hidden)

    def tot(key: str) -> float:
        return float(sum(r[key] for r in layers))

    def memsum(key: str) -> float | None:
        vals = [r["memory"][key] for r in layers]
        return None if any(v is None for v in vals) else float(sum(vals))

    silent = [r["silent_fraction"] for r in hidden]
    sat = [r["saturated_fraction"] for r in hidden]
    acs_t, macs_t = tot("acs"), tot("macs")
    totals = {
        "neurons": neurons, "hidden_neurons": hidden_n, "spikes": spikes,
        "firing_rate": spikes / hidden_n / T if hidden_n else 0.0,
        "silent_fraction": (sum(s * r["neurons"] for s, r in zip(silent, hidden, strict=True)) / hidden_n
                            if hidden and None not in silent else None),
        "saturated_fraction": (sum(s * r["neurons"] for s, r in zip(sat, hidden, strict=True)) / hidden_n
                               if hidden and None not in sat else None),
        "synapses": int(tot("synapses")), "synapses_nonzero": int(tot("synapses_nonzero")),
        "acs": acs_t, "macs": macs_t, "synops": acs_t + macs_t,
        "eff_acs": tot("eff_acs"), "eff_macs": tot("eff_macs"), "dense_synops": int(tot("dense_synops")),
        "ann_macs": ann_total_macs, "student_ann_macs": int(sum(student.values())),
        "ann_macs_over_snn_synops": (ann_total_macs / (acs_t + macs_t)) if ann_total_macs and (acs_t + macs_t) else None,
        "ops_exact": all(r["ops_exact"] for r in layers),
        "neuron_updates": neurons * T,
    }
    memory = {
        "ann_fp32_bytes": ann_params_total * 4 if ann_params_total is not None else None,
        "ann_params": ann_params_total,
        "student_fp32_bytes": memsum("student_fp32_bytes"),
        "student_params": int(sum(int(c.weight.size) for c in intnet.connections) + neurons),
        "snn_weight_bytes": memsum("snn_weight_bytes"), "snn_bias_bytes": memsum("snn_bias_bytes"),
        "snn_state_bytes": memsum("snn_state_bytes"), "input_buffer_bytes": input_buffer,
    }
    memory["snn_total_bytes"] = sum(memory[k] for k in ("snn_weight_bytes", "snn_bias_bytes", "snn_state_bytes", "input_buffer_bytes"))
    memory["synaptic_memory_bits"] = int(sum(r["mapping"]["synaptic_memory_bits"] for r in layers))
    if memory["ann_fp32_bytes"]:
        memory["ann_over_snn"] = memory["ann_fp32_bytes"] / memory["snn_total_bytes"]
    mapping = {"target": {k: lim[k] for k in lim}, "cores": total_cores, "chips": chips,
               "fits": all_fit,
               "binding_limits": {r["name"]: r["mapping"]["binding_limit"] for r in layers}}
    latency = {"T": T, "depth": int(intnet.depth), "intsim_steps": T,
               "lava_steps": T + int(intnet.depth)}

    meta_out = {"backend": backend, "T": T, "samples": n_samples, "target": lim["name"],
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "ann_macs_source": "given" if ann_macs else None,
                "student_ann_macs_source": student_src}
    try:
        from importlib.metadata import version

        meta_out["kdsnn_version"] = version("kdsnn")
    except Exception:  # pragma: no cover - not installed
        meta_out["kdsnn_version"] = None
    meta_out.update(dict(meta or {}))
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "meta": meta_out,
            "definitions": dict(DEFINITIONS), "layers": layers, "connections": conns,
            "totals": totals, "memory": memory, "mapping": mapping, "energy": energy,
            "latency": latency, "raster": raster, "notes": notes}


def report_from_run(intnet: IntNet, result: Any, *, x: np.ndarray | None = None, target: Any = None,
                    teacher: Any = None, student: Any = None,
                    energy_models: Iterable[str | EnergyModel] | None = None,
                    meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """build_report from a backend's RunResult, with the teacher's/student's float profiles.

    teacher/student: kdsnn GraphNets (or None). meta may carry accuracy / teacher_accuracy
    (fractions in [0, 1]), dataset, checkpoint paths; it is copied into report["meta"].
    """
    t_prof = graphnet_profile(teacher) if teacher is not None else None
    s_prof = graphnet_profile(student) if student is not None else None
    return build_report(
        intnet, result.spike_counts, result.layer_spikes_per_step, result.spike_trains, target,
        result.backend, t_prof["macs"] if t_prof else None, s_prof["macs"] if s_prof else None,
        t_prof["params"] if t_prof else None, energy_models,
        {"wall_s": float(getattr(result, "wall_s", 0.0)),
         "student_float_params": s_prof["total_params"] if s_prof else None, **dict(meta or {})}, x=x)
