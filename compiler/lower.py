"""Lower a canonical NIR graph to an IntNet for a hardware spec (docs/design.md, "Integer semantics").

    net = lower(graph, load_target("loihi"), calibration_x)        # x: (N, C, H, W) normalized

runs the passes of `kdsnn.compiler.passes.PASSES` in order (import, fold flatten/pooling,
connections, calibration, input quantization, per-layer scales, depth) and returns a
validated IntNet whose metadata carries the per-layer choices (`metadata["lowering"]`).
Options: the fields of kdsnn.config.LoweringConfig (input_bits, headroom,
provable_budget_bits, min_weight_bits); `lowering_state` builds the LoweringConfig (the one
place their defaults live, unknown options refused) and the passes read it as `st.config`.

A deployment-exact student (kdsnn.deploy_exact) carries, in the graph metadata
(`deploy_exact`), the plan it was trained on: `plan_from_state` of an earlier lowering
(input grid, per-population scale and bias exponent, per-connection weight exponent and
sign mode). When its hardware spec and T match, the passes reuse those choices instead of
making them, so the integer weights are those the student's forward used.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import nir
import numpy as np
from kdsnn.compiler.intnet import IntNet
from kdsnn.compiler.passes import PASSES, describe
from kdsnn.compiler.passes.state import LoweringState
from kdsnn.compiler.targets import TargetSpec, load_target

from kdsnn.config import LoweringConfig, from_options
from kdsnn.errors import KdsnnError

__all__ = ["lower", "describe", "lowering_state", "plan_from_state", "target_fingerprint", "plan_matches",
           "arithmetic_changes"]

PLAN_SCHEMA = "kdsnn.deploy_exact_plan"


def target_fingerprint(tg: TargetSpec) -> str:
    """A short hash of the spec's arithmetic (targets.ARITHMETIC_FIELDS): a plan stays valid when
    only the name, description, core sizes, energy or references change."""
    return hashlib.sha256(json.dumps(tg.arithmetic_fields(), sort_keys=True).encode()).hexdigest()[:16]


def _full_fingerprint(tg: TargetSpec) -> str:
    """The fingerprint plans stored before it hashed only the arithmetic (every field)."""
    return hashlib.sha256(json.dumps(tg.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]


def plan_matches(plan: dict[str, Any], tg: TargetSpec) -> bool:
    """Whether a plan was made for this spec's arithmetic."""
    fp = plan.get("target_fingerprint")
    return fp == target_fingerprint(tg) or fp == _full_fingerprint(tg)


def arithmetic_changes(plan: dict[str, Any], tg: TargetSpec) -> str:
    """The arithmetic fields in which `tg` differs from the spec the plan was made for, as
    'vth_bits 17 -> 16, ...' (plans that do not record the fields: 'its arithmetic fields')."""
    was = plan.get("target_arithmetic")
    if not isinstance(was, dict):
        return "its arithmetic fields"
    now = tg.arithmetic_fields()
    diff = [f"{k} {was.get(k)!r} -> {now[k]!r}" for k in now if was.get(k) != now[k]]
    return ", ".join(diff) or "its arithmetic fields"


def plan_from_state(st: LoweringState) -> dict[str, Any]:
    """The lowering's choices as a JSON-ready plan (what a deployment-exact student trains on)."""
    assert st.input_spec is not None
    pops: dict[str, Any] = {}
    for p in st.int_pops:
        rep = st.report[p.name]
        pops[p.name] = {"scale": float(rep["scale"]), "bias_exp": int(p.bias_exp), "vth": int(p.vth),
                        "du": int(p.du), "dv": int(p.dv), "readout": int(p.readout),
                        "reset": str(p.reset),
                        "connections": {d["name"]: {"src": d["src"], "kind": d["kind"],
                                                    "weight_exp": int(d["weight_exp"]),
                                                    "sign_mode": d["sign_mode"]} for d in rep["connections"]}}
    return {"schema": PLAN_SCHEMA, "target": st.target.name, "target_fingerprint": target_fingerprint(st.target),
            "target_name": st.target.name, "target_arithmetic": st.target.arithmetic_fields(),
            "T": int(st.T), "input": {"scale": float(st.input_spec.scale), "bits": int(st.input_spec.bits)},
            "populations": pops}


def _plan_for(meta: dict[str, Any], tg: TargetSpec, T: int, cfg: LoweringConfig) -> tuple[dict | None, str]:
    """The graph's deployment-exact plan when it applies to this lowering, else (None, why not)."""
    plan = meta.get("deploy_exact")
    if not isinstance(plan, dict) or plan.get("schema") != PLAN_SCHEMA:
        return None, ""
    if not plan_matches(plan, tg):
        if tg.name == plan.get("target_name", plan.get("target")):
            raise KdsnnError(f"hardware spec {tg.name}: its arithmetic changed since the student was trained "
                             f"deployment-exact for it ({arithmetic_changes(plan, tg)}); fine-tune again with "
                             f"`kdsnn finetune STUDENT --deploy-exact {tg.name}`, or name the changed spec differently "
                             "to deploy with a tolerance rung 3")
        return None, (f"the student was trained deployment-exact for hardware spec {plan.get('target')!r}, not this "
                      f"{tg.name!r} spec ({arithmetic_changes(plan, tg)}): scales chosen afresh, rung 3 is a tolerance")
    if int(plan.get("T", -1)) != T:
        return None, f"the student was trained deployment-exact at T={plan.get('T')}, not T={T}: scales chosen afresh"
    if cfg.input_bits and int(cfg.input_bits) != int(plan["input"]["bits"]):
        return None, "input_bits differs from the deployment-exact plan: scales chosen afresh"
    return plan, f"deployment-exact plan for {tg.name} reused (the scales the student was trained on)"


def lowering_state(graph: nir.NIRGraph, target: TargetSpec | str | Path, calibration_x: np.ndarray,
                   T: int | None = None, **options: Any) -> LoweringState:
    """Run every pass and return the full state (float graph, stats, integer parts)."""
    tg = load_target(target)
    meta = dict(getattr(graph, "metadata", None) or {})
    if T is None:
        T = meta.get("T")
    if T is None:
        raise KdsnnError("the NIR graph has no T in its metadata; pass T (time steps) explicitly")
    T = int(T)
    if T < 1:
        raise KdsnnError(f"T must be >= 1, got {T}")
    cfg = from_options(LoweringConfig, options)       # the one place the defaults live; unknown: refused
    st = LoweringState(target=tg, T=T, meta=meta, calibration_x=np.asarray(calibration_x), config=cfg)
    st.plan, note = _plan_for(meta, tg, T, cfg)
    if note:
        st.log.append(f"plan: {note}")
    for m in PASSES:
        if m.NAME == "import_nir":
            m.run(st, graph)
        else:
            m.run(st)
    return st


def lower(graph: nir.NIRGraph, target: TargetSpec | str | Path, calibration_x: np.ndarray,
          T: int | None = None, **options: Any) -> IntNet:
    """Canonical NIR graph + hardware spec + calibration images -> validated IntNet."""
    st = lowering_state(graph, target, calibration_x, T, **options)
    assert st.input_spec is not None
    class_names = [str(c) for c in (st.meta.get("class_names") or [])]
    net = IntNet(input=st.input_spec, populations=st.int_pops, connections=st.int_conns, T=st.T,
                 target=st.target.name, class_names=class_names,
                 metadata={"lowering": {"passes": [n for n, _ in describe()], "log": st.log,
                                        "calibration_samples": int(len(st.calibration_x)),
                                        "deploy_exact_plan": st.plan is not None,
                                        "options": st.config.lowering_options(), "layers": st.report},
                           "arithmetic": st.target.arithmetic(),
                           "graph": {k: v for k, v in st.meta.items()
                                     if isinstance(v, (str, int, float, list, type(None)))}})
    net.validate()
    return net
