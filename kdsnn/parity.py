"""The parity ladder's checks and files (docs/design.md, "The parity ladder").

  rung 1  the source (student in float64 PyTorch, or a .nir source on `reference`)
  rung 2  graph.nir read back on `reference`: same predictions, logits within 1e-4 (gate)
          a NIR-float plugin runs graph.nir too: its agreement is reported, not gated
  rung 3  the IntNet on `intsim`: accuracy within 0.5 points of rung 1 (not a gate: the export
          finishes, then the CLI exits 3); for a deployment-exact student whose plan the lowering
          reused, rung 3 exact instead: every layer's spikes at every step and the integer logits
          equal between the student's deployment-exact forward and intsim on every sample (gate)
  rung 4  the IntNet on another integer backend (Lava, a plugin): identical to intsim on
          every sample, logits and per-layer spikes at every step (gate)

Each check returns a `Rung`; a failed gate raises ParityError after parity.json is written.

`first_difference(ref, got, layers)` names the first differing sample, layer and step (or
logits), so a failed rung 4 says where the two backends diverged, not only that they did.
Within the first differing sample the earliest step wins, and at that step the shallowest
layer (the order of `layers`, i.e. IntNet.populations), which is where the difference
starts: everything downstream follows from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kdsnn.backends.base import RunResult

GRAPH_FILE = "graph.nir"
INTNET_FILE = "intnet.kdsnn"
PARITY_FILE = "parity.json"
PREDICTIONS_FILE = "predictions.npz"
RUNG2_TOL = 1e-4
RUNG3_ACC_POINTS = 0.5


@dataclass(repr=False)
class Rung:
    """One checked stage: what ran where, its scores, and whether it passed.

    passed is None for a stage that is reported but not gated (a NIR-float plugin)."""

    rung: int
    name: str
    backend: str
    scores: dict[str, Any]
    passed: bool | None = True
    details: dict[str, Any] = field(default_factory=dict)   # the rung's own comparison numbers

    def to_json(self) -> dict[str, Any]:
        return {"rung": self.rung, "name": self.name, "backend": self.backend, **self.scores,
                **self.details, "passed": self.passed}

    def __getitem__(self, key: str) -> Any:
        return self.to_json()[key]

    def __repr__(self) -> str:
        state = {True: "passed", False: "FAILED", None: "not gated"}[self.passed]
        return (f"Rung({self.rung}, {self.backend}, accuracy {100 * self.scores['accuracy']:.2f} % "
                f"on {self.scores['samples']} samples, {state})")


def scores(res: RunResult, y: np.ndarray | None) -> dict[str, Any]:
    n = len(res.logits)
    labelled = y is not None and n and bool(np.all(np.asarray(y)[:n] >= 0))
    acc = float((res.predictions == y).mean()) if labelled else (0.0 if y is None or not n else None)
    return {"samples": n, "accuracy": acc,
            "spikes_per_sample": {k: float(v.mean()) if len(v) else 0.0 for k, v in res.spike_counts.items()},
            "wall_s": round(res.wall_s, 3)}


def head(res: RunResult, n: int) -> RunResult:
    """The first n samples of a run (to compare with a run on fewer samples)."""
    def cut(d: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
        return None if d is None else {k: v[:n] for k, v in d.items()}

    return RunResult(logits=res.logits[:n], spike_counts=cut(res.spike_counts) or {}, backend=res.backend,
                     T=res.T, steps=res.steps, wall_s=res.wall_s,
                     layer_spikes_per_step=cut(res.layer_spikes_per_step), spike_trains=cut(res.spike_trains))


def spike_agreement(a: RunResult, b: RunResult) -> dict[str, Any]:
    """Per-layer spike counts of two runs: layers compared, equal, first difference."""
    common = [k for k in a.spike_counts if k in b.spike_counts]
    differ = {k: int(np.flatnonzero(a.spike_counts[k] != b.spike_counts[k])[0])
              for k in common if not np.array_equal(a.spike_counts[k], b.spike_counts[k])}
    return {"layers_compared": len(common), "layers_equal": len(common) - len(differ),
            "first_difference": {k: {"sample": v} for k, v in list(differ.items())[:5]},
            "equal": not differ and len(common) > 0}


def rung1(res: RunResult, y: np.ndarray, what: str, backend: str) -> Rung:
    return Rung(1, what, backend, scores(res, y))


def rung2(res: RunResult, ref: RunResult, y: np.ndarray) -> tuple[Rung, str | None]:
    """graph.nir on reference vs rung 1; (rung, failure message or None)."""
    diff = np.abs(res.logits - ref.logits)
    per_sample = diff.reshape(len(diff), -1).max(1) if len(diff) else np.zeros(0)
    same = res.predictions == ref.predictions
    bad = np.flatnonzero(~same | (per_sample > RUNG2_TOL))
    r = Rung(2, f"{GRAPH_FILE} read back, float (reference)", "reference", scores(res, y),
             passed=bool(len(bad) == 0),
             details={"same_predictions": bool(same.all()),
                      "max_abs_logit_diff": float(diff.max()) if diff.size else 0.0, "tolerance": RUNG2_TOL,
                      "spikes": spike_agreement(ref, res), "differing_samples": bad[:20].tolist()})
    if r.passed:
        return r, None
    i = int(bad[0])
    return r, (f"rung 2 failed: {len(bad)} of {len(same)} samples differ between {GRAPH_FILE} on reference "
               f"and rung 1; first: sample {i} (predictions {int(res.predictions[i])} vs "
               f"{int(ref.predictions[i])}, max |logit diff| {per_sample[i]:.3g} > {RUNG2_TOL})")


def float_backend(res: RunResult, ref: RunResult, y: np.ndarray) -> Rung:
    """A NIR-float plugin on graph.nir vs reference: reported, not gated (its numerics are its own)."""
    ref = head(ref, len(res.logits))
    diff = np.abs(np.asarray(res.logits, np.float64) - ref.logits) if res.logits.shape == ref.logits.shape else None
    return Rung(2, f"{GRAPH_FILE} on {res.backend} (float, not gated)", res.backend, scores(res, y[:len(res.logits)]),
                passed=None,
                details={"same_predictions_as_reference": float((res.predictions == ref.predictions).mean())
                         if diff is not None and len(diff) else 0.0,
                         "max_abs_logit_diff": float(diff.max()) if diff is not None and diff.size else None,
                         "spikes": spike_agreement(ref, res)})


def rung3(res: RunResult, ref: RunResult, y: np.ndarray) -> tuple[Rung, str | None]:
    """The IntNet on intsim vs rung 1; (rung, warning or None): quantization may move a spike."""
    from kdsnn.backends.intsim.rung3 import rung3 as compare

    r = compare(ref.logits, y, res, ref, tolerance_points=RUNG3_ACC_POINTS)
    delta = -r["delta_points"]  # integer minus float, as printed
    entry = Rung(3, f"{INTNET_FILE} on intsim (integer)", "intsim", scores(res, y), passed=r["passed"],
                 details={"accuracy_delta_points": delta, "tolerance_points": RUNG3_ACC_POINTS,
                          "same_predictions_as_rung1": r["prediction_agreement"], "spike_agreement": r["layers"],
                          "overflow": r["overflow_events"]})
    if entry.passed:
        return entry, None
    return entry, (f"rung 3: integer accuracy differs from the float student by {delta:+.2f} points "
                   f"(tolerance {RUNG3_ACC_POINTS}); try more --calibration samples")


def rung3_exact(rep: dict[str, Any], res: RunResult, ref: RunResult, y: np.ndarray) -> tuple[Rung, str | None]:
    """Rung 3 exact (kdsnn.deploy_exact.rung3_exact's report `rep`): the student's integer
    forward == intsim on every sample; (rung, failure message or None)."""
    n = int(rep["samples"])
    float_acc = scores(ref, y)["accuracy"]
    int_acc = scores(res, y)["accuracy"]
    details = {"kind": "exact", "samples_compared": n, "samples_identical": int(rep["samples_identical"]),
               "layers_compared": int(rep["layers_compared"]), "steps_compared": int(rep["steps_compared"]),
               "logits_equal": rep["logits_equal"], "layers": rep["layers"],
               "accuracy_student_int": rep["accuracy_student_int"], "plan_target": rep.get("target"),
               "accuracy_delta_points_vs_float": None if float_acc is None or int_acc is None
               else 100 * (int_acc - float_acc),
               "first_difference": rep["first_difference"]}
    r = Rung(3, f"{INTNET_FILE} on intsim (integer)", "intsim", scores(res, y), passed=bool(rep["passed"]),
             details=details)
    if r.passed:
        return r, None
    f = rep["first_difference"] or {}
    return r, (f"rung 3 exact failed: the deployment-exact student and intsim differ on "
               f"{n - int(rep['samples_identical'])} of {n} samples; first: sample {f.get('sample')}, "
               f"{f.get('layer')} at step {f.get('step')}")


def rung4(res: RunResult, intsim: RunResult, y: np.ndarray, layers: list[str],
          what: str) -> tuple[Rung, str | None]:
    """Another integer backend == intsim on every sample, logits and per-step spikes."""
    n = len(res.logits)
    diff = first_difference(head(intsim, n), res, layers)
    r = Rung(4, what, res.backend, scores(res, y[:n]), passed=diff is None,
             details={"identical_to_rung3": diff is None, "samples_compared": n,
                      "rung3_accuracy_on_these": scores(head(intsim, n), y[:n])["accuracy"],
                      "layers_compared": len(layers), "first_difference": diff,
                      "simulated_steps": int(res.steps)})
    return r, None if diff is None else f"rung 4 failed: {res.backend} differs from intsim: {diff['message']}"


def all_passed(rungs: Iterable[Rung]) -> bool:
    return all(r.passed is not False for r in rungs)


def write_parity(out: Path, head_doc: dict[str, Any], rungs: list[Rung], timings: dict[str, float]) -> Path:
    """parity.json (atomic): the rungs checked so far, what was run and on what."""
    from kdsnn.io import write_json

    doc = {"schema": "kdsnn.parity", "version": 1, **head_doc, "rungs": [r.to_json() for r in rungs],
           "passed": all_passed(rungs), "timings_s": {k: round(v, 3) for k, v in timings.items()}}
    return write_json(out / PARITY_FILE, doc)


def write_predictions(out: Path, y: np.ndarray, results: dict[str, RunResult]) -> Path:
    """predictions.npz: labels and, per backend run, logits and per-layer spike counts."""
    from kdsnn.io import atomic_path

    arrays: dict[str, np.ndarray] = {"labels": y}
    for key, res in results.items():
        arrays[f"{key}/logits"] = res.logits
        arrays[f"{key}/predictions"] = res.predictions
        for layer, c in res.spike_counts.items():
            arrays[f"{key}/spikes/{layer}"] = c
    path = out / PREDICTIONS_FILE
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return path


def rung_line(r: Rung) -> str:
    """One line for people per rung."""
    d = r.details
    if r.rung == 0:   # kdsnn.peer: the source graph against the framework that wrote it
        line = (f"rung 0  {r.name:<42} same argmax on {100 * d['argmax_agreement']:.1f} % of "
                f"{d['samples_compared']} samples (>= {100 * d['threshold']:.0f} %)")
        if "output_spikes" in d:
            o = d["output_spikes"]
            line += (f", output spikes equal at {100 * o['equal_fraction']:.2f} % of steps "
                     f"({o['kdsnn_spikes']} vs {o['peer_spikes']})")
        for k, v in d["layers"].items():
            line += f"; {k}: {v['kdsnn_mean']:.1f} vs {v['peer_mean']:.1f} spikes/sample"
        return line + ("  PASS" if r.passed else "  FAIL")
    acc = "   n/a" if r.scores["accuracy"] is None else f"{100 * r.scores['accuracy']:6.2f}"
    line = f"rung {r.rung}  {r.name:<42} accuracy {acc} % (first {r.scores['samples']:,} test samples)"
    if r.passed is None:
        line += f"  same predictions as reference: {100 * d['same_predictions_as_reference']:.1f} %"
        return line + "  (reported, not gated)"
    if r.rung == 2:
        line += (f"  vs rung 1 on the same samples: same predictions: {'yes' if d['same_predictions'] else 'NO'}, "
                 f"max |logit diff| "
                 f"{d['max_abs_logit_diff']:.2g} (<= {d['tolerance']:g})")
    if r.rung == 3 and d.get("kind") == "exact":
        steps = d["steps_compared"] // max(d["samples_compared"], 1)
        line = (f"rung 3 exact  {r.name:<35} accuracy {acc} % (first {r.scores['samples']:,} test samples)  "
                f"vs the student's deployment-exact forward: {d['samples_identical']:,} of "
                f"{d['samples_compared']:,} samples identical (spikes of {d['layers_compared']} layers at each "
                f"of {steps} steps, integer logits)")
    elif r.rung == 3:
        line += (f"  vs rung 1 on the same samples: {d['accuracy_delta_points']:+.2f} points "
                 f"({'<=' if r.passed else '>'} {d['tolerance_points']:g}), "
                 f"same predictions {100 * d['same_predictions_as_rung1']:.1f} %")
    if r.rung == 4:
        r3 = d.get("rung3_accuracy_on_these")
        line += (f"  vs rung 3 on the same {d['samples_compared']:,} samples"
                 + (f" (rung 3 there: {100 * r3:.2f} %)" if r3 is not None else "")
                 + f", {d['layers_compared']} layers: identical "
                 f"{'yes' if d['identical_to_rung3'] else 'NO'}")
    if r.rung != 1:
        line += "  PASS" if r.passed else "  FAIL"
    return line


def quantisation(net: Any) -> dict[str, Any]:
    """Per population of a lowered IntNet: its float decays against Lava's 12-bit du/dv and
    its float threshold against the integer vth / scale, with relative errors (the
    approximations the integer rungs carry, stated rather than hidden)."""
    layers = ((getattr(net, "metadata", None) or {}).get("lowering") or {}).get("layers") or {}
    out: dict[str, Any] = {}
    for name, rep in layers.items():
        d = rep.get("decay") or {}
        fires = rep.get("reset") != "none"
        out[name] = {
            "neuron": rep.get("neuron"), "du": rep.get("du"), "dv": rep.get("dv"),
            "alpha": d.get("alpha"), "alpha_12bit": d.get("alpha_int"), "alpha_rel_error": d.get("alpha_rel_error"),
            "beta": d.get("beta"), "beta_12bit": d.get("beta_int"), "beta_rel_error": d.get("beta_rel_error"),
            "decay_exact": bool(d) and d.get("alpha_rel_error") == 0 and d.get("beta_rel_error") == 0,
            "theta": rep.get("theta") if fires else None,
            "vth": rep.get("vth") if fires else None,
            "threshold_int": (rep["vth"] / rep["scale"]) if fires and rep.get("scale") else None,
            "threshold_rel_error": rep.get("threshold_rel_error") if fires else None,
        }
    return out


def quantisation_line(q: dict[str, Any]) -> str | None:
    """One line: the largest decay and threshold quantisation errors and where (None if no layers)."""
    if not q:
        return None

    def worst(keys: tuple[str, ...]) -> tuple[float, str]:
        errs = [(max(float(v[k] or 0.0) for k in keys), n) for n, v in q.items()]
        return max(errs)
    d_err, d_at = worst(("alpha_rel_error", "beta_rel_error"))
    t_err, t_at = worst(("threshold_rel_error",))
    dec = ("decays exact in 12 bits (du/dv)" if d_err == 0 else
           f"decays (12-bit du/dv) relative error up to {d_err:.2e} ({d_at})")
    thr = "thresholds exact" if t_err == 0 else f"thresholds relative error up to {t_err:.2e} ({t_at})"
    return f"quantisation: {dec}; {thr}; per layer in {PARITY_FILE} 'quantisation'"


def first_difference(ref: RunResult, got: RunResult,
                     layers: list[str] | None = None) -> dict[str, Any] | None:
    """None when logits and per-layer (per-step) spike counts are identical, else a dict
    with sample, layer, step (None for totals/logits), the two values and a message."""
    a_lg, b_lg = np.asarray(ref.logits), np.asarray(got.logits)
    if a_lg.shape != b_lg.shape:
        return {"sample": None, "layer": None, "step": None, "ref": a_lg.shape, "got": b_lg.shape,
                "message": f"logits have shape {b_lg.shape} on {got.backend}, "
                           f"{a_lg.shape} on {ref.backend}"}
    names = list(layers or ref.spike_counts)
    per_a, per_b = ref.layer_spikes_per_step, got.layer_spikes_per_step
    stepwise = per_a is not None and per_b is not None and all(k in per_a and k in per_b for k in names)
    n = len(a_lg)
    bad = np.zeros(n, dtype=bool)
    bad |= (a_lg != b_lg).reshape(n, -1).any(axis=1)
    for k in names:
        if stepwise:
            bad |= (np.asarray(per_a[k]) != np.asarray(per_b[k])).any(axis=1)
        else:
            bad |= np.asarray(ref.spike_counts[k]) != np.asarray(got.spike_counts[k])
    if not bad.any():
        return None
    i = int(np.flatnonzero(bad)[0])
    best: tuple[int, int, str] | None = None
    for li, k in enumerate(names):
        if stepwise:
            d = np.flatnonzero(np.asarray(per_a[k][i]) != np.asarray(per_b[k][i]))
            if d.size and (best is None or (int(d[0]), li) < best[:2]):
                best = (int(d[0]), li, k)
        elif ref.spike_counts[k][i] != got.spike_counts[k][i] and best is None:
            best = (-1, li, k)
    if best is None:
        return {"sample": i, "layer": "logits", "step": None, "ref": a_lg[i].tolist(),
                "got": b_lg[i].tolist(),
                "message": f"sample {i}: logits differ ({got.backend} {b_lg[i].tolist()} vs "
                           f"{ref.backend} {a_lg[i].tolist()}), spike counts equal"}
    t, _, k = best
    if t < 0:
        va, vb = int(ref.spike_counts[k][i]), int(got.spike_counts[k][i])
        where = f"sample {i}, layer {k}"
        step = None
    else:
        va, vb = int(per_a[k][i][t]), int(per_b[k][i][t])
        where = f"sample {i}, layer {k}, step {t}"
        step = t
    return {"sample": i, "layer": k, "step": step, "ref": va, "got": vb,
            "message": f"{where}: {vb} spikes on {got.backend} vs {va} on {ref.backend}"}
