"""The plan of a deployment-exact student: the lowering's integer choices, made once.

`make_plan(model, config, target, x_cal)` lowers the float student and keeps what the
lowering chose (input grid, each population's scale S and bias exponent, each connection's
weight exponent and sign mode: `compiler.lower.plan_from_state`). The plan is stored in the
checkpoint config (`deploy_exact`) and the exported graph's metadata; `lower_exact` lowers
with it, so training (kdsnn.deploy_exact) and deployment share one integer grid.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from kdsnn.compiler.export import student_to_nir
from kdsnn.compiler.intnet import IntNet
from kdsnn.compiler.lower import (
    arithmetic_changes,
    lower,
    lowering_state,
    plan_from_state,
    plan_matches,
)
from kdsnn.compiler.targets import TargetSpec, load_target
from kdsnn.errors import KdsnnError

__all__ = ["headroom_note", "is_exact", "lower_exact", "make_plan", "plan_target"]


def make_plan(model: nn.Module, config: dict[str, Any], target: str | TargetSpec,
              calibration_x: np.ndarray, **lowering: Any) -> dict[str, Any]:
    """Lower the float student once and keep the lowering's choices (JSON-ready).

    lowering: the fields of kdsnn.config.LoweringConfig (--min-weight-bits, --headroom, ...)."""
    graph = student_to_nir(model, {**config, "deploy_exact": None})
    st = lowering_state(graph, target, calibration_x, T=int(model.T), **lowering)
    plan = plan_from_state(st)
    plan["target"] = target.name if isinstance(target, TargetSpec) else str(target)
    plan["calibration_samples"] = int(len(calibration_x))
    return plan


def plan_target(plan: dict[str, Any]) -> TargetSpec:
    """The target spec a plan was made for (refused if its arithmetic changed since)."""
    tg = load_target(plan["target"])
    if not plan_matches(plan, tg):
        raise KdsnnError(f"hardware spec {plan['target']!r}: its arithmetic changed since this student was "
                         f"trained deployment-exact for it ({arithmetic_changes(plan, tg)}); fine-tune again with "
                         f"`kdsnn finetune STUDENT --hw {plan['target']}`")
    return tg


def lower_exact(model: nn.Module, config: dict[str, Any], calibration_x: np.ndarray) -> IntNet:
    """The IntNet of a deployment-exact student (its graph carries the plan; the lowering reuses it)."""
    plan = config["deploy_exact"]
    graph = student_to_nir(model, config)
    net = lower(graph, plan_target(plan), calibration_x, T=int(plan["T"]))
    if not net.metadata["lowering"].get("deploy_exact_plan"):
        raise KdsnnError("the lowering did not take the student's deployment-exact plan; "
                         + "; ".join(m for m in net.metadata["lowering"]["log"] if m.startswith("plan:")))
    return net


def is_exact(config: dict[str, Any] | None) -> bool:
    return bool(config and isinstance(config.get("deploy_exact"), dict))


def headroom_note(plan: dict[str, Any]) -> str:
    """One line on the plan: scales per population (for logs)."""
    return ", ".join(f"{k} S={v['scale']:.4g}" for k, v in plan["populations"].items()) + (
        f"; input scale {plan['input']['scale']:.4g} ({plan['input']['bits']} bits)")
