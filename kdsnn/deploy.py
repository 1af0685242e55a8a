"""The deployment flow behind `kdsnn export` and `kdsnn run` (DESIGN §2, §5).

Every stage is checked against the previous one (the parity ladder, FINN-style):
  rung 1  student (float, PyTorch) on the test samples
  rung 2  graph.nir read back and run on `reference`: same predictions, logits within 1e-4
  rung 3  IntNet on `intsim`: accuracy within 0.5 points of rung 1, per-layer spike agreement
  rung 4  Lava fixed_pt: identical to rung 3 on every sample (logits and spike counts)
A failed rung 2 or 4 raises ParityError (non-zero exit).

The pieces this flow calls:
  kdsnn.data.load_arrays(name, split, n, data_dir, download, seed) -> (x float32 normalized, y int64)
  kdsnn.data.dataset_info(name) -> DatasetInfo(name, input_shape, num_classes, mean, std, class_names)
  kdsnn.checkpoint.load_model(path, device) -> (GraphNet, config dict)
  kdsnn.compiler.export.student_to_nir(model, config) -> nir.NIRGraph (canonical, metadata set)
  kdsnn.compiler.nir.write.write_nir(graph, path); kdsnn.compiler.nir.read.read_nir(path) -> nir.NIRGraph
  kdsnn.compiler.nir.meta.graph_meta(graph) -> dict(T, encoding, mean, std, class_names, input_shape, dataset)
  kdsnn.compiler.targets.load_target(name_or_path) -> TargetSpec
  kdsnn.compiler.lower.lower(graph, target, calibration_x) -> IntNet
  kdsnn.backends.registry.get_backend(name) -> Backend;  Backend.compile(net).run(x) -> RunResult
  kdsnn.compiler.profile.build.build_report(...) / kdsnn.compiler.profile.report.write_reports(report, out)  (profiler issue)

How the flow is built: a `FlowContext` carries everything the stages produce; a target's
pipeline is a list of stage functions `stage(ctx) -> None` run in order (`PIPELINES`).
Adding a target (intsim, lava) or a stage (lowering, report) is adding functions and a
list entry; each stage reads what earlier stages put on the context and adds its own.
Rungs are appended to `ctx.rungs` (dicts written to parity.json as they are).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kdsnn.backends.base import RunResult
from kdsnn.errors import KdsnnError, ParityError

GRAPH_FILE = "graph.nir"
PARITY_FILE = "parity.json"
PREDICTIONS_FILE = "predictions.npz"
RUNG2_TOL = 1e-4
DEFAULT_SAMPLES = {"nir": 1000, "reference": 1000, "intsim": 1000, "lava": 100}


@dataclass
class FlowContext:
    """Everything one `kdsnn export` / `kdsnn run` produces, stage by stage."""

    opts: dict[str, Any]
    target: str
    out: Path
    quiet: bool = False
    source: Path | None = None
    source_kind: str = ""                  # "checkpoint" | "nir"
    model: Any = None                      # GraphNet student (checkpoint source)
    config: dict[str, Any] = field(default_factory=dict)
    source_graph: Any = None               # canonical graph of the source (exported / imported)
    graph: Any = None                      # graph.nir read back (what later rungs run)
    graph_path: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    dataset: str | None = None
    T: int = 0
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    results: dict[str, RunResult] = field(default_factory=dict)   # "rung1", "reference", ...
    rungs: list[dict[str, Any]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    intnet: Any = None                     # IntNet (intsim / lava targets)

    def log(self, msg: str) -> None:
        if not self.quiet:
            import click

            click.echo(msg)

    def rung(self, n: int) -> dict[str, Any] | None:
        return next((r for r in self.rungs if r["rung"] == n), None)


Stage = Callable[[FlowContext], None]


# ------------------------------------------------------------------------------ stages
def stage_load_source(ctx: FlowContext) -> None:
    """A student checkpoint (.pt) or a .nir graph from any framework."""
    src = Path(ctx.opts["source"])
    ctx.source = src
    if src.suffix.lower() == ".nir":
        from kdsnn.compiler.nir.read import read_nir

        ctx.source_kind = "nir"
        ctx.source_graph = read_nir(src, dt=ctx.opts.get("dt"), reset=ctx.opts.get("reset"))
        return
    for opt in ("dt", "reset"):
        if ctx.opts.get(opt) is not None:
            raise KdsnnError(f"--{opt} applies to a .nir SOURCE; {src} is a kdsnn checkpoint (its student "
                             "is IF neurons in steps)")
    from kdsnn.checkpoint import load_model

    ctx.source_kind = "checkpoint"
    ctx.model, ctx.config = load_model(src, device=ctx.opts.get("device") or "cpu", kind="student")


def stage_resolve_run(ctx: FlowContext) -> None:
    """Dataset, T and shape checks before anything is written."""
    from kdsnn.compiler.nir.meta import graph_meta
    from kdsnn.inputs import graph_input_shape, input_steps, run_info

    T_opt = ctx.opts.get("time_steps")
    if ctx.source_kind == "checkpoint":
        if T_opt:
            ctx.model.set_time_steps(int(T_opt))
            ctx.config = {**ctx.config, "T": int(T_opt)}
        ds = ctx.opts.get("dataset") or ctx.config.get("dataset")
        shape, n_cls = tuple(ctx.model.input_shape), int(ctx.model.num_classes)
        ctx.T = int(ctx.config.get("T") or ctx.model.T)
        if input_steps(ctx.opts, shape):
            raise KdsnnError(f"--input {ctx.opts['input']} holds trains (N, T, ...); a kdsnn student takes "
                             "static images (N, C, H, W): export it first, then run the .nir on trains")
    else:
        steps = input_steps(ctx.opts, graph_input_shape(ctx.source_graph))
        if steps and T_opt and int(T_opt) != steps:
            raise KdsnnError(f"--input trains have {steps} steps but -T {T_opt} was given")
        ctx.meta = graph_meta(ctx.source_graph, T=T_opt or steps)
        ds = ctx.opts.get("dataset") or ctx.meta.get("dataset")
        shape, n_cls = tuple(ctx.meta["input_shape"]), int(ctx.meta["num_classes"])
        ctx.T = ctx.meta["T"]
    info = run_info(ctx.opts, ds, shape, n_cls, ctx.source)
    ctx.extra["input_shape"] = shape
    ctx.dataset = info.name
    ctx.extra["dataset_info"] = info


def stage_export_nir(ctx: FlowContext) -> None:
    """Write out/graph.nir (the student exported, or the imported graph canonicalized) and
    read it back: everything downstream runs what is on disk."""
    from kdsnn.compiler.nir.read import read_nir
    from kdsnn.compiler.nir.write import write_nir
    from kdsnn.io import ensure_dir

    ensure_dir(ctx.out)
    if ctx.source_kind == "checkpoint":
        from kdsnn.compiler.export import student_to_nir

        ctx.source_graph = student_to_nir(ctx.model, {**ctx.config, "dataset": ctx.dataset})
    else:
        info = ctx.extra["dataset_info"]
        md = ctx.source_graph.metadata
        md["T"] = ctx.T
        md["dataset"] = ctx.dataset
        for k in ("mean", "std", "class_names"):
            if getattr(info, k):
                md.setdefault(k, list(getattr(info, k)))
        md.setdefault("encoding", "direct")
    ctx.graph_path = write_nir(ctx.source_graph, ctx.out / GRAPH_FILE)
    ctx.files.append(ctx.graph_path)
    ctx.graph = read_nir(ctx.graph_path)


def stage_load_data(ctx: FlowContext) -> None:
    """The first --samples test samples: normalized images, N-MNIST frames or --input."""
    from kdsnn.inputs import load_run_inputs

    n = ctx.opts.get("samples") or DEFAULT_SAMPLES.get(ctx.target, 1000)
    if ctx.target == "lava" and not ctx.extra.get("rerun"):
        # Lava runs --samples; the float and intsim rungs run the whole evaluation set
        # (intsim is fast), so rung 3's 0.5-point tolerance is judged on enough samples.
        ctx.extra["lava_samples"] = int(n)
        n = max(int(n), int(ctx.opts.get("eval_samples") or DEFAULT_SAMPLES["intsim"]))
    shape = ctx.extra.get("input_shape") or tuple(ctx.meta["input_shape"])
    ctx.x, ctx.y, note = load_run_inputs(ctx.opts, ctx.dataset, "test", int(n), shape, ctx.T,
                                         int(ctx.opts.get("seed") or 0))
    if note:
        ctx.log(f"note: {note}")
        ctx.extra.setdefault("input_notes", []).append(note)


def stage_rung1(ctx: FlowContext) -> None:
    """Rung 1: the student in PyTorch (float64), or the source graph on reference."""
    t0 = time.perf_counter()
    if ctx.source_kind == "checkpoint":
        res = run_student(ctx.model, ctx.x, batch_size=int(ctx.opts.get("batch_size") or 256),
                          device=ctx.opts.get("device") or "cpu", progress=not ctx.quiet)
        what, backend = "student (float, PyTorch)", "pytorch"
    else:
        res = _reference(ctx, ctx.source_graph).run(ctx.x, record=bool(ctx.opts.get("expect")),
                                                    progress=not ctx.quiet)
        what, backend = f"source graph {ctx.source.name} (float, reference)", "reference"
    ctx.results["rung1"] = res
    ctx.timings["rung1_s"] = time.perf_counter() - t0
    ctx.rungs.append({"rung": 1, "name": what, "backend": backend, **_scores(res, ctx.y),
                      "passed": True})


def stage_rung0(ctx: FlowContext) -> None:
    """Rung 0 (with --expect): the source graph on reference against the outputs of the
    framework that wrote it (kdsnn.peer); fails below its argmax agreement threshold."""
    if not ctx.opts.get("expect") or ctx.source_kind != "nir":
        if ctx.opts.get("expect"):
            raise KdsnnError("--expect compares a .nir SOURCE with the framework that wrote it; "
                             f"{ctx.source} is a kdsnn checkpoint")
        return
    from kdsnn.peer import load_expect, output_layer, rung0

    res = ctx.results["rung1"]
    entry = rung0(load_expect(ctx.opts["expect"]), res, output_layer(ctx.source_graph, res),
                  source=Path(ctx.opts["expect"]).name)
    ctx.rungs.insert(0, entry)
    if not entry["passed"]:
        stage_write_parity(ctx)
        raise ParityError(f"rung 0 failed: the reference agrees with {ctx.opts['expect']} on the argmax of "
                          f"{100 * entry['argmax_agreement']:.1f} % of {entry['samples_compared']} samples "
                          f"(< {100 * entry['threshold']:.0f} %); first differing samples "
                          f"{entry['differing_samples'][:5]}; see {ctx.out / PARITY_FILE}")


def stage_rung2(ctx: FlowContext) -> None:
    """Rung 2: graph.nir (read back) on reference == rung 1 (predictions, logits <= 1e-4)."""
    t0 = time.perf_counter()
    res = _reference(ctx, ctx.graph).run(ctx.x, progress=not ctx.quiet)
    ctx.results["reference"] = res
    ctx.timings["rung2_s"] = time.perf_counter() - t0
    ref = ctx.results["rung1"]
    diff = np.abs(res.logits - ref.logits)
    per_sample = diff.reshape(len(diff), -1).max(1) if len(diff) else np.zeros(0)
    same = res.predictions == ref.predictions
    bad = np.flatnonzero(~same | (per_sample > RUNG2_TOL))
    spikes = _spike_agreement(ref, res)
    entry = {"rung": 2, "name": f"{GRAPH_FILE} read back, float (reference)", "backend": "reference",
             **_scores(res, ctx.y), "same_predictions": bool(same.all()),
             "max_abs_logit_diff": float(diff.max()) if diff.size else 0.0, "tolerance": RUNG2_TOL,
             "spikes": spikes, "differing_samples": bad[:20].tolist(), "passed": bool(len(bad) == 0)}
    ctx.rungs.append(entry)
    if not entry["passed"]:
        stage_write_parity(ctx)
        i = int(bad[0])
        raise ParityError(f"rung 2 failed: {len(bad)} of {len(same)} samples differ between {ctx.graph_path} "
                          f"on reference and rung 1; first: sample {i} (predictions {int(res.predictions[i])} "
                          f"vs {int(ref.predictions[i])}, max |logit diff| {per_sample[i]:.3g} > {RUNG2_TOL}); "
                          f"see {ctx.out / PARITY_FILE}")


def stage_write_predictions(ctx: FlowContext) -> None:
    """predictions.npz: labels and, per backend run, logits and per-layer spike counts."""
    from kdsnn.io import atomic_path

    arrays: dict[str, np.ndarray] = {"labels": ctx.y}
    for key, res in ctx.results.items():
        arrays[f"{key}/logits"] = res.logits
        arrays[f"{key}/predictions"] = res.predictions
        for layer, c in res.spike_counts.items():
            arrays[f"{key}/spikes/{layer}"] = c
    path = ctx.out / PREDICTIONS_FILE
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    ctx.files.append(path)


def stage_write_parity(ctx: FlowContext) -> None:
    """parity.json (atomic): the rungs checked so far, what was run and on what."""
    from kdsnn.compiler.nir.meta import graph_summary
    from kdsnn.io import write_json

    doc = {
        "schema": "kdsnn.parity", "version": 1,
        "source": str(ctx.source), "source_kind": ctx.source_kind, "target": ctx.target,
        "dataset": ctx.dataset, "split": "test", "samples": int(len(ctx.y)) if ctx.y is not None else 0,
        "T": ctx.T, "graph": graph_summary(ctx.graph) if ctx.graph is not None else None,
        "rungs": ctx.rungs, "passed": all(r.get("passed", True) for r in ctx.rungs),
        "timings_s": {k: round(v, 3) for k, v in ctx.timings.items()},
    }
    path = write_json(ctx.out / PARITY_FILE, doc)
    if path not in ctx.files:
        ctx.files.append(path)


def stage_print_summary(ctx: FlowContext) -> None:
    """A few lines for people: the graph and each rung."""
    import click

    from kdsnn.compiler.nir.meta import graph_summary

    s = graph_summary(ctx.graph)
    kinds = ", ".join(f"{k} {v}" for k, v in s["node_types"].items() if k not in ("Input", "Output"))
    click.echo(f"{GRAPH_FILE}: {s['nodes']} nodes ({kinds}), {s['parameters']:,} parameters, "
               f"{s['neurons']:,} spiking neurons in {len(s['if_layers'])} layers, readout {s['readout']}, T={ctx.T}")
    for r in ctx.rungs:
        if r["rung"] == 0:
            click.echo(_rung0_line(r))
            continue
        acc = "   n/a" if r["accuracy"] is None else f"{100 * r['accuracy']:6.2f}"
        line = f"rung {r['rung']}  {r['name']:<42} accuracy {acc} % ({r['samples']} samples)"
        if r["rung"] == 2:
            line += (f"  same predictions: {'yes' if r['same_predictions'] else 'NO'}, max |logit diff| "
                     f"{r['max_abs_logit_diff']:.2g} (<= {r['tolerance']:g})")
        if r["rung"] == 3:
            line += (f"  {r['accuracy_delta_points']:+.2f} points vs rung 1 (<= {r['tolerance_points']:g}), "
                     f"same predictions {100 * r['same_predictions_as_rung1']:.1f} %")
        if r["rung"] == 4:
            line += (f"  identical to rung 3 on {r['samples_compared']} samples x {r['layers_compared']} layers: "
                     f"{'yes' if r['identical_to_rung3'] else 'NO'}")
        if "passed" in r and r["rung"] != 1:
            line += "  PASS" if r["passed"] else "  FAIL"
        click.echo(line)
    click.echo("wrote " + ", ".join(str(p) for p in ctx.files))


def _rung0_line(r: dict[str, Any]) -> str:
    line = (f"rung 0  {r['name']:<42} same argmax on {100 * r['argmax_agreement']:.1f} % of "
            f"{r['samples_compared']} samples (>= {100 * r['threshold']:.0f} %)")
    if "output_spikes" in r:
        o = r["output_spikes"]
        line += (f", output spikes equal at {100 * o['equal_fraction']:.2f} % of steps "
                 f"({o['kdsnn_spikes']} vs {o['peer_spikes']})")
    for k, v in r["layers"].items():
        line += f"; {k}: {v['kdsnn_mean']:.1f} vs {v['peer_mean']:.1f} spikes/sample"
    return line + ("  PASS" if r["passed"] else "  FAIL")


INTNET_FILE = "intnet.kdsnn"
RUNG3_ACC_POINTS = 0.5
RECORD_BUDGET_BYTES = 256 * 2**20   # spike trains kept for the report (silent/saturated fractions)


def lower_for_target(graph: Any, dataset: str, hw: Any = "loihi", calibration: int = 256,
                     data_dir: str | None = None, download: bool = False, seed: int = 0,
                     T: int | None = None, x_cal: np.ndarray | None = None) -> Any:
    """A canonical graph -> IntNet for the hardware target, with scales calibrated on the
    first `calibration` training samples (shared by `kdsnn export` and `evaluate --target intsim`)."""
    from kdsnn.compiler.lower import lower
    from kdsnn.compiler.targets import load_target
    from kdsnn.data import load_arrays

    if x_cal is None:
        x_cal, _ = load_arrays(dataset, "train", int(calibration), data_dir, download, seed)
    return lower(graph, load_target(hw), x_cal, T=T)


def stage_lower(ctx: FlowContext) -> None:
    """Lower graph.nir for the hardware target (--hw) with calibration data; save the IntNet."""
    from kdsnn.compiler.targets import load_target

    ctx.extra["target_spec"] = spec = load_target(ctx.opts.get("hw") or "loihi")
    n_cal = int(256 if ctx.opts.get("calibration") is None else ctx.opts["calibration"])
    if n_cal < 1:
        raise KdsnnError(f"--calibration must be positive, got {n_cal}")
    t0 = time.perf_counter()
    ctx.intnet = net = lower_for_target(ctx.graph, ctx.dataset, spec, n_cal, ctx.opts.get("data_dir"),
                                        bool(ctx.opts.get("download")), int(ctx.opts.get("seed") or 0),
                                        T=ctx.T, x_cal=_calibration_inputs(ctx, n_cal))
    ctx.timings["lower_s"] = time.perf_counter() - t0
    path = net.save(ctx.out / INTNET_FILE)
    ctx.files.append(path)
    ctx.log(f"lowered for {spec.name}: {len(net.populations)} populations, {len(net.connections)} "
            f"connections, depth {net.depth}, input {net.input.bits}-bit graded spikes "
            f"(calibrated on {n_cal} training samples) -> {path}")


def _calibration_inputs(ctx: FlowContext, n_cal: int) -> np.ndarray | None:
    """Calibration samples where they are not an image dataset's training split: the first
    of --input's own samples, or N-MNIST's Train recordings (None: the dataset's)."""
    from kdsnn.inputs import load_run_inputs
    from kdsnn.nmnist import NAME

    if ctx.opts.get("input"):
        ctx.log(f"note: integer scales calibrated on the first {min(n_cal, len(ctx.x))} samples of --input")
        return ctx.x[:n_cal]
    if ctx.dataset == NAME:
        return load_run_inputs(ctx.opts, NAME, "train", n_cal, ctx.extra["input_shape"], ctx.T)[0]
    return None


def _record_ok(ctx: FlowContext, n: int | None = None) -> bool:
    neurons = sum(p.size for p in ctx.intnet.populations)
    return (len(ctx.x) if n is None else n) * ctx.T * neurons <= RECORD_BUDGET_BYTES


def _head(res: RunResult, n: int) -> RunResult:
    """The first n samples of a run (to compare with a run on fewer samples)."""
    def cut(d: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
        return None if d is None else {k: v[:n] for k, v in d.items()}

    return RunResult(logits=res.logits[:n], spike_counts=cut(res.spike_counts) or {}, backend=res.backend,
                     T=res.T, steps=res.steps, wall_s=res.wall_s,
                     layer_spikes_per_step=cut(res.layer_spikes_per_step), spike_trains=cut(res.spike_trains))


def stage_intsim(ctx: FlowContext) -> None:
    """Run the IntNet on intsim (canonical integer semantics)."""
    from kdsnn.backends.registry import get_backend

    t0 = time.perf_counter()
    exe = get_backend("intsim").compile(ctx.intnet, batch_size=int(ctx.opts.get("batch_size") or 256))
    ctx.results["intsim"] = exe.run(ctx.x, record=_record_ok(ctx), progress=not ctx.quiet)
    ctx.timings["intsim_s"] = time.perf_counter() - t0


def stage_rung3(ctx: FlowContext) -> None:
    """Rung 3: intsim accuracy within 0.5 points of rung 1; per-layer spike agreement.

    Quantization may legitimately move a spike, so rung 3 is a tolerance check, reported
    (and printed) but not an error; rung 4 below is exact."""
    from kdsnn.backends.intsim import rung3

    ref, res = ctx.results["rung1"], ctx.results["intsim"]
    r = rung3(ref.logits, ctx.y, res, ref, tolerance_points=RUNG3_ACC_POINTS)
    delta = -r["delta_points"]  # integer minus float, as printed
    entry = {"rung": 3, "name": f"{INTNET_FILE} on intsim (integer)", "backend": "intsim",
             **_scores(res, ctx.y), "accuracy_delta_points": delta, "tolerance_points": RUNG3_ACC_POINTS,
             "same_predictions_as_rung1": r["prediction_agreement"], "spike_agreement": r["layers"],
             "overflow": r["overflow_events"], "passed": r["passed"]}
    ctx.rungs.append(entry)
    if not entry["passed"]:
        import click

        click.secho(f"warning: rung 3: integer accuracy differs from the float student by {delta:+.2f} "
                    f"points (tolerance {RUNG3_ACC_POINTS}); try more --calibration samples", fg="yellow",
                    err=True)


def stage_lava(ctx: FlowContext) -> None:
    """Run the same IntNet as real Lava processes (Loihi2SimCfg fixed_pt)."""
    from kdsnn.backends.registry import get_backend

    t0 = time.perf_counter()
    n = min(int(ctx.extra.get("lava_samples") or len(ctx.x)), len(ctx.x))
    exe = get_backend("lava").compile(ctx.intnet)
    ctx.results["lava"] = exe.run(ctx.x[:n], record=_record_ok(ctx, n), progress=not ctx.quiet)
    ctx.timings["lava_s"] = time.perf_counter() - t0


def stage_rung4(ctx: FlowContext) -> None:
    """Rung 4: Lava == intsim on every sample, logits and per-layer spikes at every step."""
    from kdsnn.backends.lava.parity import first_difference

    res = ctx.results["lava"]
    n = len(res.logits)
    ref = _head(ctx.results["intsim"], n)
    layers = [p.name for p in ctx.intnet.populations]
    diff = first_difference(ref, res, layers)
    entry = {"rung": 4, "name": "Lava fixed_pt (Loihi bit-accurate)", "backend": "lava",
             **_scores(res, ctx.y[:n]),
             "identical_to_rung3": diff is None, "samples_compared": n,
             "layers_compared": len(layers), "first_difference": diff,
             "simulated_steps": int(res.steps), "passed": diff is None}
    ctx.rungs.append(entry)
    if diff is not None:
        stage_write_parity(ctx)
        raise ParityError(f"rung 4 failed: Lava differs from intsim: {diff['message']}; "
                          f"see {ctx.out / PARITY_FILE}")


def stage_report(ctx: FlowContext) -> None:
    """Spikes, operations, memory, energy and Loihi mapping of the deployed run (+ plots)."""
    from kdsnn.compiler.profile.build import report_from_run
    from kdsnn.compiler.profile.report import render_table, write_reports

    key = "lava" if "lava" in ctx.results else "intsim"
    res = ctx.results[key]
    n = len(res.logits)
    x, y = ctx.x[:n], ctx.y[:n]
    teacher = _load_teacher_net(ctx)
    meta = {"accuracy": _scores(res, y)["accuracy"], "dataset": ctx.dataset,
            "source": str(ctx.source), "samples": int(n)}
    if "rung1" in ctx.results:
        meta["float_accuracy"] = _scores(_head(ctx.results["rung1"], n), y)["accuracy"]
    if teacher is not None:
        meta["teacher"] = str(ctx.config.get("teacher"))
        meta["teacher_accuracy"] = _teacher_accuracy(teacher, ctx, n)
    t0 = time.perf_counter()
    rep = report_from_run(ctx.intnet, res, x=x, target=ctx.extra.get("target_spec"), teacher=teacher,
                          student=ctx.model, meta=meta)
    written = write_reports(rep, ctx.out)
    ctx.timings["report_s"] = time.perf_counter() - t0
    ctx.files.extend(Path(p) for p in written if Path(p).suffix in (".json", ".md"))
    ctx.extra["report"] = rep
    if not ctx.quiet:
        import click

        click.echo(render_table(rep))


def _load_teacher_net(ctx: FlowContext) -> Any:
    """The student's teacher as a GraphNet when it is a kdsnn checkpoint that still exists."""
    t = ctx.config.get("teacher") if ctx.config else None
    if not t or not str(t).endswith(".pt"):
        return None
    p = Path(t)
    if not p.is_absolute() and ctx.source is not None and not p.exists():
        p = ctx.source.parent / p.name
    if not p.exists():
        return None
    try:
        from kdsnn.checkpoint import load_model

        net, _ = load_model(p, device="cpu", kind="teacher")
        return net
    except KdsnnError:
        return None


def _teacher_accuracy(teacher: Any, ctx: FlowContext, n: int) -> float:
    import torch

    with torch.no_grad():
        preds = []
        for i in range(0, n, 256):
            preds.append(teacher(torch.as_tensor(ctx.x[i:min(i + 256, n)])).argmax(1).numpy())
    return float((np.concatenate(preds) == ctx.y[:n]).mean()) if preds else 0.0


_FRONT = [stage_load_source, stage_resolve_run, stage_export_nir, stage_load_data, stage_rung1, stage_rung0,
          stage_rung2]
_BACK = [stage_write_predictions, stage_write_parity]

PIPELINES: dict[str, list[Stage]] = {
    "nir": [*_FRONT, *_BACK, stage_print_summary],
    "reference": [*_FRONT, *_BACK, stage_print_summary],
    "intsim": [*_FRONT, stage_lower, stage_intsim, stage_rung3, *_BACK, stage_report, stage_print_summary],
    "lava": [*_FRONT, stage_lower, stage_intsim, stage_rung3, stage_lava, stage_rung4, *_BACK, stage_report,
             stage_print_summary],
}


def export_command(**opts: Any) -> FlowContext:
    """`kdsnn export SOURCE --target T -o OUT`: run the target's pipeline of stages."""
    target = str(opts.get("target") or "lava")
    if target not in PIPELINES:
        raise KdsnnError(f"unknown target {target!r}; choose one of {', '.join(PIPELINES)} (see `kdsnn targets`)")
    for opt in ("samples", "eval_samples", "calibration", "batch_size"):
        if opts.get(opt) is not None and int(opts[opt]) < 1:
            raise KdsnnError(f"--{opt.replace('_', '-')} must be positive, got {opts[opt]}")
    ctx = FlowContext(opts=dict(opts), target=target, out=Path(opts["output"]), quiet=bool(opts.get("quiet")))
    for stage in PIPELINES[target]:
        stage(ctx)
    return ctx


# ------------------------------------------------------------------------------ kdsnn run
def run_command(**opts: Any) -> FlowContext:
    """`kdsnn run FOLDER --target T`: run an exported folder again and print accuracy, spikes."""
    import click

    from kdsnn.compiler.nir.meta import graph_meta
    from kdsnn.compiler.nir.read import read_nir

    folder = Path(opts["artifact"])
    target = str(opts.get("target") or "intsim")
    if target not in ("reference", "intsim", "lava"):
        raise KdsnnError(f"unknown target {target!r}; choose reference, intsim or lava")
    if not folder.is_dir():
        raise KdsnnError(f"{folder} is not an export folder (made by `kdsnn export -o {folder}`)")
    gpath = folder / GRAPH_FILE
    if not gpath.exists():
        raise KdsnnError(f"{folder} has no {GRAPH_FILE}; run `kdsnn export ... -o {folder}` first")
    ctx = FlowContext(opts=dict(opts), target=target, out=folder, quiet=bool(opts.get("quiet")))
    ctx.source, ctx.source_kind = gpath, "nir"
    ctx.graph = read_nir(gpath, dt=opts.get("dt"), reset=opts.get("reset"))
    from kdsnn.inputs import graph_input_shape, input_steps, run_info

    ctx.meta = graph_meta(ctx.graph, T=opts.get("time_steps") or input_steps(opts, graph_input_shape(ctx.graph)))
    ctx.T = ctx.meta["T"]
    ds = None if opts.get("input") else (opts.get("dataset") or ctx.meta.get("dataset"))
    info = run_info(opts, ds, tuple(ctx.meta["input_shape"]), int(ctx.meta["num_classes"]), gpath)
    ctx.dataset = info.name
    ctx.extra["input_shape"] = tuple(ctx.meta["input_shape"])
    if target != "reference":
        from kdsnn.compiler.intnet import IntNet

        ipath = folder / INTNET_FILE
        if not ipath.exists():
            raise KdsnnError(f"{folder} has no {INTNET_FILE}; export with --target intsim or lava first")
        ctx.intnet = IntNet.load(ipath)
        if opts.get("time_steps") and int(opts["time_steps"]) != ctx.intnet.T:
            raise KdsnnError(f"{ipath} was lowered for T={ctx.intnet.T}; re-export to change T")
        ctx.T = ctx.intnet.T
    ctx.opts.setdefault("download", False)
    ctx.extra["rerun"] = True
    stage_load_data(ctx)
    t0 = time.perf_counter()
    if target == "reference":
        res = _reference(ctx, ctx.graph).run(ctx.x, progress=not ctx.quiet)
    else:
        from kdsnn.backends.registry import get_backend

        opts_b = {"batch_size": int(opts.get("batch_size") or 256)} if target == "intsim" else {}
        res = get_backend(target).compile(ctx.intnet, **opts_b).run(ctx.x, progress=not ctx.quiet)
    ctx.results[target] = res
    wall = time.perf_counter() - t0
    sc = _scores(res, ctx.y)
    acc = "n/a (no labels)" if sc["accuracy"] is None else f"{100 * sc['accuracy']:.2f} %"
    click.echo(f"{target} on {ctx.dataset} (test, {sc['samples']} samples, T={ctx.T}): accuracy "
               f"{acc}, {sc['samples'] / max(wall, 1e-9):.1f} samples/s")
    for layer, c in res.spike_counts.items():
        click.echo(f"  {layer:<24} {c.mean():10.1f} spikes/sample")
    return ctx


# ------------------------------------------------------------------------------ helpers
def _reference(ctx: FlowContext, graph: Any):
    from kdsnn.backends.registry import get_backend

    return get_backend("reference").compile(graph, T=ctx.T, batch_size=int(ctx.opts.get("batch_size") or 256),
                                            device=ctx.opts.get("device") or "cpu")


def run_student(model: Any, x: np.ndarray, batch_size: int = 256, device: str = "cpu",
                progress: bool = False) -> RunResult:
    """Rung 1: the student GraphNet in float64 (a copy), with per-layer spike counts."""
    import torch

    from kdsnn.neurons import IFNeuron

    t0 = time.perf_counter()
    m = copy.deepcopy(model).to(device).double().eval()
    ifs = {name: mod for name, mod in m.nodes.items() if isinstance(mod, IFNeuron)}
    for mod in ifs.values():
        mod.record = True
    T, n = int(m.T), len(x)
    logits = []
    per_step = {k: np.zeros((n, T), np.int64) for k in ifs}
    starts = range(0, n, batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="student", unit="batch", leave=False)
    with torch.no_grad():
        for i in starts:
            xb = torch.as_tensor(x[i:i + batch_size], dtype=torch.float64, device=device)
            logits.append(m(xb).cpu().numpy())
            for k, mod in ifs.items():
                s = mod.last_spikes  # (T, B, ...)
                per_step[k][i:i + len(xb)] = s.flatten(2).sum(2).transpose(0, 1).round().long().cpu().numpy()
    out = np.concatenate(logits) if logits else np.zeros((0, m.num_classes))
    return RunResult(logits=out, spike_counts={k: v.sum(1) for k, v in per_step.items()}, backend="pytorch",
                     T=T, steps=T, wall_s=time.perf_counter() - t0, layer_spikes_per_step=per_step)


def _scores(res: RunResult, y: np.ndarray | None) -> dict[str, Any]:
    n = len(res.logits)
    labelled = y is not None and n and bool(np.all(np.asarray(y)[:n] >= 0))
    acc = float((res.predictions == y).mean()) if labelled else (0.0 if y is None or not n else None)
    return {"samples": n, "accuracy": acc,
            "spikes_per_sample": {k: float(v.mean()) if len(v) else 0.0 for k, v in res.spike_counts.items()},
            "wall_s": round(res.wall_s, 3)}


def _spike_agreement(a: RunResult, b: RunResult) -> dict[str, Any]:
    """Per-layer spike counts of two runs: layers compared, equal, first difference."""
    common = [k for k in a.spike_counts if k in b.spike_counts]
    differ = {k: int(np.flatnonzero(a.spike_counts[k] != b.spike_counts[k])[0])
              for k in common if not np.array_equal(a.spike_counts[k], b.spike_counts[k])}
    return {"layers_compared": len(common), "layers_equal": len(common) - len(differ),
            "first_difference": {k: {"sample": v} for k, v in list(differ.items())[:5]},
            "equal": not differ and len(common) > 0}
