"""Pass `calibrate`: run the float graph on calibration samples and record state ranges.

The float network here is exactly the one being lowered (after folding), run in float64
with the common form of `compiler.dynamics` (gain already in the weights):

    a[t] = sum_c W_c s_src[t - delay_c];  u = (1 - alpha) u + a;  v = (1 - beta) v + u + bias
    s = v > theta;  reset "zero": v = 0, "subtract": v -= theta, "none": never fires

Inputs are static images (N, *shape), the same at every step, or spike/current trains
(N, T, *shape). Recorded per population: the largest |a| (one step's synaptic input, bias
excluded), |u|, the range of v before reset, the firing rate. A graph without recurrence
is computed layer by layer over all T steps at once (a delay shifts the source's train);
with recurrence everything steps together. `simulate` is also used to compare the
integer result with the float one it approximates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from kdsnn.compiler.dynamics import TensorNeuron
from kdsnn.compiler.geometry import pool_factor
from kdsnn.compiler.intnet import INPUT
from kdsnn.compiler.passes.state import FConn, FPop, LoweringState

from kdsnn.errors import KdsnnError

NAME = "calibrate"


def conn_apply(c: FConn, x: torch.Tensor, prep: dict[str, Any] | None = None) -> torch.Tensor:
    """Float output of one connection for a batch of sources, flattened to (B, n_dst).

    With `prep` (a per-run cache), a kernel that repeats one weight over s x s blocks (a
    pool that `fold_pool` folded in) runs as sum-pool + the reduced kernel, as intsim does
    (`backends.intsim.fast.pool_factor`): the same real sum with 1/s^2 of the multiplies,
    rounded differently only in float64's last bits (measured: < 1e-12 on vgg11).
    """
    if prep is None:
        w, pool, stride, padding = torch.as_tensor(c.weight, dtype=torch.float64), 1, c.stride, c.padding
    else:
        if c.name not in prep:
            prep[c.name] = _prepare(c, tuple(x.shape[1:]))
        w, pool, stride, padding = prep[c.name]
    if pool > 1:
        x = _sum_pool(x, pool)
    if c.kind == "dense":
        return x.reshape(x.shape[0], -1) @ w.T
    y = F.conv2d(x, w, None, stride, padding, c.dilation, c.groups)
    return y.reshape(y.shape[0], -1)


def _prepare(c: FConn, src_shape: tuple[int, ...]) -> tuple[torch.Tensor, int, Any, Any]:
    """(weights, pool factor, stride, padding) of the cheapest exact form of c."""
    w = np.asarray(c.weight, np.float64)
    fac = pool_factor(c, w, src_shape) if len(src_shape) == 3 else None
    if fac is None:
        return torch.as_tensor(w), 1, c.stride, c.padding
    s, wr = fac
    if c.kind == "conv":
        return (torch.as_tensor(wr), s, (c.stride[0] // s, c.stride[1] // s),
                (c.padding[0] // s, c.padding[1] // s))
    return torch.as_tensor(wr), s, c.stride, c.padding


def _sum_pool(x: torch.Tensor, s: int) -> torch.Tensor:
    """Non-overlapping s x s window sums by strided adds (H, W multiples of s: `pool_factor`)."""
    h = x[:, :, 0::s]
    for i in range(1, s):
        h = h + x[:, :, i::s]
    y = h[..., 0::s]
    for j in range(1, s):
        y = y + h[..., j::s]
    return y


class _Neurons:
    """One population's float state for a batch, stepped by `dynamics.TensorNeuron` (the
    reference backend's step, on the folded population: gain 1, reset to 0), with the
    statistics taken between charge and reset."""

    def __init__(self, p: FPop, n: int, stats: dict[str, float]) -> None:
        self.p, self.stats = p, stats
        size = int(np.prod(p.shape))
        self.u = torch.zeros(n, size, dtype=torch.float64)
        self.v = torch.zeros_like(self.u)
        b = torch.as_tensor(np.asarray(p.bias, np.float64).reshape(-1), dtype=torch.float64)
        fires = p.reset != "none" and bool(np.isfinite(p.theta))
        self.nr = TensorNeuron(keep_u=1.0 - p.alpha if p.alpha != 1.0 else None, keep_v=1.0 - p.beta, gain=None,
                               bias=b, v_threshold=p.theta, v_reset=0.0, reset=p.reset if fires else "none")

    def step(self, a: torch.Tensor) -> torch.Tensor:
        ps = self.stats
        if a.numel():
            ps["a_max"] = max(ps["a_max"], float(a.abs().max()))
        self.u, self.v = self.nr.charge(self.u, self.v, a)
        if self.v.numel():
            ps["u_max"] = max(ps["u_max"], float(self.u.abs().max()))
            ps["v_max"] = max(ps["v_max"], float(self.v.max()))
            ps["v_min"] = min(ps["v_min"], float(self.v.min()))
        self.v, s = self.nr.fire(self.v)
        return torch.zeros_like(self.v) if s is None else s.to(torch.float64)


def _recurrent(st: LoweringState) -> bool:
    order = {p.name: i for i, p in enumerate(st.pops)}
    return any(c.src != INPUT and order[c.src] >= order[c.dst] for c in st.conns)


def _batch(st: LoweringState, xb: torch.Tensor, stats: dict[str, dict[str, float]],
           rec: bool, factor_pools: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, _Neurons]]:
    """One batch: spike trains (T, n, *shape) per population and the final neuron states."""
    T, temporal = st.T, st.temporal
    n = xb.shape[0]
    frames = [xb[:, t] for t in range(T)] if temporal else [xb] * T
    neurons = {p.name: _Neurons(p, n, stats[p.name]) for p in st.pops}
    trains: dict[str, list[torch.Tensor]] = {INPUT: frames}
    static: dict[str, torch.Tensor] = {}
    prep: dict[str, Any] | None = {} if factor_pools else None

    def a_of(p: FPop, t: int) -> torch.Tensor:
        a = torch.zeros(n, int(np.prod(p.shape)), dtype=torch.float64)
        for c in st.incoming(p.name):
            if c.src == INPUT and not temporal and c.delay == 0:
                if c.name not in static:
                    static[c.name] = conn_apply(c, xb, prep)
                a = a + static[c.name]
            elif t - c.delay >= 0:
                a = a + conn_apply(c, trains[c.src][t - c.delay], prep)
        return a

    if rec:
        for p in st.pops:
            trains[p.name] = []
        for t in range(T):
            for p in st.pops:
                trains[p.name].append(neurons[p.name].step(a_of(p, t)).reshape(n, *p.shape))
    else:
        for p in st.pops:
            trains[p.name] = [neurons[p.name].step(a_of(p, t)).reshape(n, *p.shape) for t in range(T)]
    return {p.name: torch.stack(trains[p.name]) for p in st.pops}, neurons


def simulate(st: LoweringState, x: np.ndarray, batch: int = 256, factor_pools: bool = True) -> dict[str, Any]:
    """Float run: logits (N, classes), spike counts per population, state statistics.
    logits: v[T] / T of a non-spiking readout, spike counts per neuron of a spiking one."""
    T = st.T
    stats = {p.name: {"a_max": 0.0, "u_max": 0.0, "v_max": 0.0, "v_min": 0.0, "spikes": 0.0} for p in st.pops}
    logits, counts = [], {p.name: [] for p in st.pops}
    rec = _recurrent(st)
    for i in range(0, len(x), batch):
        xb = torch.as_tensor(np.asarray(x[i:i + batch]), dtype=torch.float64)
        n = xb.shape[0]
        trains, neurons = _batch(st, xb, stats, rec, factor_pools)
        for p in st.pops:
            s_all = trains[p.name]                                    # (T, n, *shape)
            stats[p.name]["spikes"] += float(s_all.sum())
            counts[p.name].append(s_all.reshape(T, n, -1).sum(dim=(0, 2)).numpy())
            if p.readout:
                if p.reset == "none":
                    logits.append((neurons[p.name].v / T).numpy())
                else:
                    logits.append(s_all.reshape(T, n, -1).sum(dim=0).numpy())
    return {"logits": np.concatenate(logits) if logits else np.zeros((0, 0)),
            "spike_counts": {k: np.concatenate(v) if v else np.zeros(0) for k, v in counts.items()},
            "stats": stats}


def run(st: LoweringState) -> None:
    x = np.asarray(st.calibration_x, dtype=np.float64)
    in_shape = st.shape_of(INPUT)
    temporal = x.ndim == len(in_shape) + 2
    lead = f"(N, {st.T}, " if temporal else "(N, "
    if (x.ndim not in (len(in_shape) + 1, len(in_shape) + 2) or tuple(x.shape[-len(in_shape):]) != tuple(in_shape)
            or len(x) == 0 or (temporal and x.shape[1] != st.T)):
        raise KdsnnError(f"calibration data must be (N, {', '.join(map(str, in_shape))}) images or "
                         f"(N, T={st.T}, {', '.join(map(str, in_shape))}) trains with N >= 1, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise KdsnnError("calibration data contains NaN or inf")
    st.temporal = temporal
    res = simulate(st, x)
    n = len(x)
    for p in st.pops:
        s = res["stats"][p.name]
        s["rate"] = s.pop("spikes") / max(1, n * st.T * int(np.prod(p.shape)))
    st.stats = res["stats"]
    st.stats[INPUT] = {"x_max": float(np.abs(x).max()), "n": n,
                       "integer": bool(np.all(x == np.rint(x)))}
    st.log.append(f"{NAME}: {n} samples {lead}...), T={st.T}")
