"""Rung 3 exact: a deployment-exact student's own integer forward against intsim, bit for bit.

`compare_runs(ex, intnet, x)` compares every layer's spikes at every step and the integer
logits of kdsnn.deploy_exact.ExactStudent and intsim on every sample; `rung3_exact` is the
export flow's gate (kdsnn.deploy); `spike_agreement_float` measures how far a float student
is from exact (the "before" of a fine-tuning).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from kdsnn.backends.base import RunResult
from kdsnn.backends.intsim import IntSimBackend
from kdsnn.compiler.intnet import IntNet
from kdsnn.deploy_exact import ExactStudent
from kdsnn.exact_plan import is_exact
from kdsnn.neurons import IFNeuron

__all__ = ["compare_runs", "rung3_exact", "spike_agreement_float"]


def compare_runs(ex: ExactStudent, net: IntNet, x: np.ndarray, batch_size: int = 128,
                 intsim: RunResult | None = None) -> dict[str, Any]:
    """Rung 3 exact: the student's integer forward vs intsim on every sample of x.

    Equal means every layer's spikes at every step and the integer logits are the same.
    `intsim`: a recorded intsim run of x to compare against (spike trains kept), else intsim
    runs here, batch by batch. Returns per-layer fractions of equal samples and of equal
    (sample, step) spike maps, the fraction of samples whose logits are equal, and the first
    difference."""
    names = [p.name for p in net.populations]
    if intsim is not None and (intsim.spike_trains is None or len(intsim.logits) != len(x)
                               or any(k not in intsim.spike_trains for k in names)):
        intsim = None                                   # not recorded: run it here, batch by batch
    exe = IntSimBackend().compile(net, batch_size=batch_size) if intsim is None else None
    dev = next(ex.student.parameters()).device
    n = len(x)
    eq_samples = {k: 0 for k in names}
    eq_steps = {k: 0 for k in names}
    logits_eq = 0
    all_eq = 0
    first: dict[str, Any] | None = None
    preds = np.zeros(n, np.int64)
    was = ex.training
    ex.eval()
    with torch.no_grad():
        for i in range(0, n, batch_size):
            xb = np.asarray(x[i:i + batch_size])
            if exe is not None:
                r = exe.run(xb, record=True)
                r_logits, r_trains = np.asarray(r.logits), r.spike_trains
            else:
                assert intsim is not None and intsim.spike_trains is not None
                r_logits = np.asarray(intsim.logits[i:i + len(xb)])
                r_trains = {k: intsim.spike_trains[k][i:i + len(xb)] for k in names}
            z, sp = ex.integer_run(torch.as_tensor(xb, device=dev))
            zi = z.round().to(torch.int64).cpu().numpy()
            preds[i:i + len(xb)] = zi.argmax(1)
            same = np.ones(len(xb), bool)
            lg = (zi == r_logits).all(1)
            logits_eq += int(lg.sum())
            same &= lg
            for k in names:
                mine = sp[k].transpose(0, 1).reshape(len(xb), ex.T, -1).to(torch.uint8).cpu().numpy()
                theirs = np.asarray(r_trains[k]).reshape(len(xb), ex.T, -1)
                step_eq = (mine == theirs).all(2)
                eq_steps[k] += int(step_eq.sum())
                s_eq = step_eq.all(1)
                eq_samples[k] += int(s_eq.sum())
                same &= s_eq
                if first is None and not s_eq.all():
                    j = int(np.flatnonzero(~s_eq)[0])
                    t = int(np.flatnonzero(~step_eq[j])[0])
                    first = {"sample": i + j, "layer": k, "step": t,
                             "spikes_student": int(mine[j, t].sum()), "spikes_intsim": int(theirs[j, t].sum())}
            if first is None and not lg.all():
                j = int(np.flatnonzero(~lg)[0])
                first = {"sample": i + j, "layer": "logits", "step": ex.T - 1}
            all_eq += int(same.sum())
    ex.train(was)
    return {"kind": "exact", "samples": n, "samples_identical": all_eq,
            "logits_equal": logits_eq / max(n, 1),
            "layers": {k: {"samples_equal": eq_samples[k] / max(n, 1),
                           "steps_equal": eq_steps[k] / max(n * ex.T, 1)} for k in names},
            "first_difference": first, "predictions": preds, "passed": bool(n and all_eq == n)}


def spike_agreement_float(student: nn.Module, net: IntNet, x: np.ndarray, batch_size: int = 128) -> dict[str, Any]:
    """How far a float student is from exact: per layer, the fraction of samples whose spikes
    equal intsim's at every step, and of equal (sample, step) spike maps ("before")."""
    import copy

    exe = IntSimBackend().compile(net, batch_size=batch_size)
    m = copy.deepcopy(student).double().eval()
    ifs = {k: mod for k, mod in m.nodes.items() if isinstance(mod, IFNeuron)}
    for mod in ifs.values():
        mod.record = True
    n, T = len(x), int(m.T)
    eq_samples = {k: 0 for k in ifs}
    eq_steps = {k: 0 for k in ifs}
    with torch.no_grad():
        for i in range(0, n, batch_size):
            xb = np.asarray(x[i:i + batch_size])
            r = exe.run(xb, record=True)
            m(torch.as_tensor(xb, dtype=torch.float64))
            for k, mod in ifs.items():
                mine = mod.last_spikes.transpose(0, 1).reshape(len(xb), T, -1).to(torch.uint8).numpy()
                theirs = np.asarray(r.spike_trains[k]).reshape(len(xb), T, -1)
                step_eq = (mine == theirs).all(2)
                eq_steps[k] += int(step_eq.sum())
                eq_samples[k] += int(step_eq.all(1).sum())
    return {k: {"samples_equal": eq_samples[k] / max(n, 1), "steps_equal": eq_steps[k] / max(n * T, 1)}
            for k in ifs}


def rung3_exact(model: nn.Module, config: dict[str, Any] | None, intnet: IntNet, x: np.ndarray, y: np.ndarray,
                intsim: RunResult | None = None, batch_size: int = 128) -> dict[str, Any] | None:
    """Rung 3 exact for a deployment-exact student whose lowering reused its plan, else None
    (the flow then checks the tolerance rung). JSON-ready, with the student's integer accuracy;
    `passed` only when every sample is identical. `intsim`: the flow's recorded intsim run."""
    if not is_exact(config) or not intnet.metadata.get("lowering", {}).get("deploy_exact_plan"):
        return None
    assert config is not None
    r = compare_runs(ExactStudent(model, config["deploy_exact"]), intnet, x, batch_size, intsim=intsim)
    preds = r.pop("predictions")
    labelled = len(preds) and bool(np.all(np.asarray(y)[:len(preds)] >= 0))
    r["accuracy_student_int"] = float((preds == np.asarray(y)[:len(preds)]).mean()) if labelled else None
    r["layers_compared"] = len(r["layers"])
    r["steps_compared"] = int(len(preds) * int(intnet.T))
    r["target"] = config["deploy_exact"].get("target")
    return r
