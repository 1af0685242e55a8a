"""Pass `calibrate`: run the float graph on calibration samples and record state ranges.

The float network here is exactly the one being lowered (after folding), run with the
DESIGN §3 semantics in float64: per population, the largest |a| (synaptic input of one
step, bias excluded), the range of v before reset, the firing rate. `simulate` is also
used to compare the integer result with the float one it approximates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from kdsnn.compiler.passes.state import FConn, LoweringState

from kdsnn.errors import KdsnnError

NAME = "calibrate"


def conn_apply(c: FConn, x: torch.Tensor) -> torch.Tensor:
    """Float output of one connection for a batch of sources, flattened to (B, n_dst)."""
    w = torch.as_tensor(c.weight, dtype=torch.float64)
    if c.kind == "dense":
        return x.reshape(x.shape[0], -1) @ w.T
    y = F.conv2d(x, w, None, c.stride, c.padding, c.dilation, c.groups)
    return y.reshape(y.shape[0], -1)


def simulate(st: LoweringState, x: np.ndarray, batch: int = 256) -> dict[str, Any]:
    """Float run: logits (N, classes), spike counts per population, state statistics."""
    T = st.T
    stats = {p.name: {"a_max": 0.0, "v_max": 0.0, "v_min": 0.0, "spikes": 0.0} for p in st.pops}
    logits, counts = [], {p.name: [] for p in st.pops}
    for i in range(0, len(x), batch):
        xb = torch.as_tensor(np.asarray(x[i:i + batch]), dtype=torch.float64)
        n = xb.shape[0]
        vals: dict[str, torch.Tensor] = {"input": xb}
        for p in st.pops:
            a = torch.zeros(T * n, p.bias.size, dtype=torch.float64)
            for c in st.incoming(p.name):
                src = vals[c.src]
                y = conn_apply(c, src)
                if c.src == "input":
                    y = y.repeat(T, 1)
                a = a + y
            a = a.reshape(T, n, -1)
            b = torch.as_tensor(p.bias.reshape(-1), dtype=torch.float64)
            s_out = torch.zeros_like(a)
            v = torch.zeros(n, a.shape[2], dtype=torch.float64)
            ps = stats[p.name]
            ps["a_max"] = max(ps["a_max"], float(a.abs().max()) if a.numel() else 0.0)
            for t in range(T):
                v = v + a[t] + b
                if v.numel():
                    ps["v_max"] = max(ps["v_max"], float(v.max()))
                    ps["v_min"] = min(ps["v_min"], float(v.min()))
                if not p.readout:
                    s = v > p.theta
                    s_out[t] = s.to(torch.float64)
                    v = torch.where(s, torch.zeros_like(v), v)
            ps["spikes"] += float(s_out.sum())
            counts[p.name].append(s_out.sum(dim=(0, 2)).numpy())
            vals[p.name] = s_out.reshape(T * n, *p.shape)
            if p.readout:
                logits.append((v / T).numpy())
    return {"logits": np.concatenate(logits) if logits else np.zeros((0, 0)),
            "spike_counts": {k: np.concatenate(v) if v else np.zeros(0) for k, v in counts.items()},
            "stats": stats}


def run(st: LoweringState) -> None:
    x = np.asarray(st.calibration_x, dtype=np.float64)
    in_shape = st.nodes[next(k for k, v in st.nodes.items() if v.op == "input")].shape
    if x.ndim != len(in_shape) + 1 or tuple(x.shape[1:]) != tuple(in_shape) or len(x) == 0:
        raise KdsnnError(f"calibration data must be (N, {', '.join(map(str, in_shape))}) with N >= 1, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise KdsnnError("calibration data contains NaN or inf")
    res = simulate(st, x)
    n = len(x)
    for p in st.pops:
        s = res["stats"][p.name]
        s["rate"] = s.pop("spikes") / max(1, n * st.T * p.bias.size)
    st.stats = res["stats"]
    st.stats["input"] = {"x_max": float(np.abs(x).max()), "n": n}
    st.log.append(f"{NAME}: {n} samples, T={st.T}")
