"""Dense MACs and parameters of float networks (the ANN teacher, the student run as an ANN)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


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


@dataclass(frozen=True)
class FloatCounts:
    """Dense MACs and parameters of the float networks, per population (graphnet_profile).

    ann_macs / ann_params: the ANN teacher's (ann_params per population or one total);
    student_ann_macs: the student run as an ANN (None: one MAC per IntNet synapse).
    """

    ann_macs: Mapping[str, int] | None = None
    student_ann_macs: Mapping[str, int] | None = None
    ann_params: int | Mapping[str, int] | None = None

    @classmethod
    def of(cls, teacher: Any = None, student: Any = None) -> FloatCounts:
        """From kdsnn GraphNets (either may be None)."""
        t = graphnet_profile(teacher) if teacher is not None else None
        s = graphnet_profile(student) if student is not None else None
        return cls(t["macs"] if t else None, s["macs"] if s else None, t["params"] if t else None)


def attribute_ann_macs(layers: list[dict[str, Any]], floats: FloatCounts, notes: list[str]) -> dict[str, int]:
    """Set each population row's ann_macs / student_ann_macs; returns the student's MACs per
    population (one per IntNet synapse when not given)."""
    ann_macs = floats.ann_macs
    student = (dict(floats.student_ann_macs) if floats.student_ann_macs is not None
               else {r["name"]: r["synapses"] for r in layers})
    for r in layers:
        r["ann_macs"] = int(ann_macs[r["name"]]) if ann_macs and r["name"] in ann_macs else None
        r["student_ann_macs"] = int(student[r["name"]]) if r["name"] in student else None
    unmatched = sorted(set(ann_macs or {}) - {r["name"] for r in layers})
    if unmatched:
        notes.append(f"teacher layers with no population of the same name: {', '.join(unmatched)} (counted in the total only)")
    return student
