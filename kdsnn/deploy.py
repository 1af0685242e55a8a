"""The export driver behind `kdsnn export` (docs/design.md, "Data flow").

The pipeline for a target is built from what its backend accepts (kdsnn.plan.Plan), so any
backend registered under the `kdsnn.backends` entry points deploys:

  every target      source -> graph.nir -> rung 1 (source, float) -> rung 2 (graph.nir on reference)
  accepts "nir"     + graph.nir on the target backend (reported, not gated), unless it is reference
  accepts "intnet"  + lowering for --hw -> intsim, rung 3 -> the target backend, rung 4 (exact),
                      unless it is intsim -> report (operations, memory, mapping, energy)

Each stage (kdsnn.stages) returns a typed result; `export` gathers them in a `Deployment`
(`kdsnn run`'s driver, kdsnn.rerun, gathers its one run in a `Rerun`). Nothing here prints
when the configuration says quiet; the CLI prints the summaries (`summary_lines`).
Everything is written into a staging folder next to -o (kdsnn.staging) that replaces -o
only when every stage has written: a failed or interrupted export leaves the earlier one as
it was. A failed gate moves the run's files to `<out>.failed/` and raises ParityError.
parity.json and report.json record the sha256 of graph.nir and intnet.kdsnn; `kdsnn run`
refuses a folder where they differ (kdsnn.bundle).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdsnn.backends.base import RunResult
from kdsnn.compiler.nir.meta import graph_meta
from kdsnn.config import ExportConfig, from_options
from kdsnn.errors import ParityError
from kdsnn.parity import (
    GRAPH_FILE,
    INTNET_FILE,
    PARITY_FILE,
    PREDICTIONS_FILE,
    Rung,
    all_passed,
    float_backend,
    quantisation,
    quantisation_line,
    rung1,
    rung2,
    rung3,
    rung3_exact,
    rung4,
    rung_line,
    write_parity,
    write_predictions,
)
from kdsnn.plan import Plan, plan_for
from kdsnn.progress import bars, mode_of, say, stage_done
from kdsnn.stages import (
    Exported,
    Lowered,
    Report,
    Samples,
    Setup,
    Source,
    compile_backend,
    export_graph,
    load_samples,
    load_source,
    lower_graph,
    make_report,
    record_ok,
    resolve,
)

__all__ = ["Deployment", "export", "export_command"]

# what an export writes into -o: an earlier export's copies of these are replaced or dropped,
# anything else there (a student.pt exported next to) is kept
EXPORT_FILES = (GRAPH_FILE, INTNET_FILE, PREDICTIONS_FILE, PARITY_FILE, "report.json", "report.md", "plots")

@dataclass(repr=False)
class Deployment:
    """Everything one export produced, as objects: the graph, the IntNet, each backend's run,
    the rungs and the report.

        >>> d = kdsnn.export("runs/demo/student.pt", target="intsim", output="runs/demo/export")
        >>> d.intnet, d.results["intsim"].logits.shape, d.rung(3).passed
    """

    config: ExportConfig
    plan: Plan
    source: Source
    setup: Setup
    exported: Exported
    samples: Samples
    results: dict[str, RunResult] = field(default_factory=dict)   # "rung1", "reference", "intsim", ...
    rungs: list[Rung] = field(default_factory=list)
    lowered: Lowered | None = None
    report: Report | None = None
    files: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    dir: Path | None = None            # where the files are written now: the staging folder, then out

    @property
    def graph(self) -> Any:
        return self.exported.graph

    @property
    def graph_path(self) -> Path:
        return self.exported.path

    @property
    def intnet(self) -> Any:
        return self.lowered.intnet if self.lowered else None

    @property
    def out(self) -> Path:
        return Path(self.config.output)

    @property
    def failed_dir(self) -> Path:
        """Where a run whose gate failed leaves its files (the earlier export stays in out)."""
        return self.out.parent / f"{self.out.name}.failed"

    @property
    def write_dir(self) -> Path:
        return self.dir if self.dir is not None else self.out

    def _relocate(self, old: Path, new: Path) -> None:
        """Paths under the staging folder -> the same paths under out, after the swap."""
        def mv(p: Path | None) -> Path | None:
            if p is None:
                return None
            try:
                return new / Path(p).relative_to(old)
            except ValueError:
                return Path(p)
        self.files = [mv(p) for p in self.files]  # type: ignore[misc]
        self.exported.path = mv(self.exported.path)  # type: ignore[assignment]
        if self.lowered is not None:
            self.lowered.path = mv(self.lowered.path)
        self.dir = new

    @property
    def passed(self) -> bool:
        return all_passed(self.rungs)

    def rung(self, n: int) -> Rung | None:
        return next((r for r in self.rungs if r.rung == n), None)

    def write_parity(self) -> Path:
        from kdsnn.bundle import artifact_digests
        from kdsnn.compiler.nir.meta import graph_summary

        doc = {"source": str(self.source.path), "source_kind": self.source.kind, "target": self.plan.target,
               "dataset": self.setup.dataset.name, "split": "test", "samples": len(self.samples),
               "T": self.setup.T, "graph": graph_summary(self.graph),
               "artifacts": artifact_digests(self.write_dir)}
        if self.lowered is not None:
            doc["quantisation"] = quantisation(self.lowered.intnet)
        path = write_parity(self.write_dir, doc, self.rungs, self.timings)
        if path not in self.files:
            self.files.append(path)
        return path

    def summary_lines(self) -> list[str]:
        """A few lines for people: the graph, each rung, the files written."""
        from kdsnn.compiler.nir.meta import graph_summary

        s = graph_summary(self.graph)
        kinds = ", ".join(f"{k} {v}" for k, v in s["node_types"].items() if k not in ("Input", "Output"))
        lines = [f"{GRAPH_FILE}: {s['nodes']} nodes ({kinds}), {s['parameters']:,} parameters, "
                 f"{s['neurons']:,} spiking neurons in {len(s['if_layers'])} layers, readout {s['readout']}, "
                 f"T={self.setup.T}"]
        lines += [rung_line(r) for r in self.rungs]
        q = quantisation_line(quantisation(self.lowered.intnet)) if self.lowered is not None else None
        if q:
            lines.append(q)
        from kdsnn.outputs import written_line

        return [*lines, written_line(self.files, self.out)]

    def __repr__(self) -> str:
        rungs = ", ".join(f"{r.rung}:{'-' if r.passed is None else 'ok' if r.passed else 'FAIL'}"
                          for r in self.rungs)
        return (f"Deployment({self.source.path.name} -> {self.plan.target}, {self.setup.dataset.name} "
                f"T={self.setup.T}, {len(self.samples)} samples, rungs {rungs}, out={self.out})")


def _gate(d: Deployment, r: Rung, failure: str | None) -> None:
    d.rungs.append(r)
    if failure is not None:
        d.write_parity()
        raise ParityError(f"{failure}; see {d.failed_dir / PARITY_FILE} (this run's files; {d.out} is as it "
                          "was)")


def export(cfg: ExportConfig) -> Deployment:
    """Run the target's pipeline on a source; see the module docstring for the stages."""
    from kdsnn.outlock import output_lock

    cfg.check()
    plan = plan_for(cfg.target)
    with output_lock(cfg.output, "export", quiet=cfg.quiet):   # one writer per folder (kdsnn.outlock)
        return _export(cfg, plan)


def _export(cfg: ExportConfig, plan: Plan) -> Deployment:
    from kdsnn.staging import staged

    source = load_source(cfg)
    setup = resolve(source, cfg)
    out = Path(cfg.output)
    with staged(out, EXPORT_FILES) as stage:
        try:
            d = _export_into(stage, cfg, plan, source, setup)
        except ParityError:
            failed = out.parent / f"{out.name}.failed"
            shutil.rmtree(failed, ignore_errors=True)
            os.rename(stage, failed)
            raise
    d._relocate(stage, out)
    return d


def _export_into(stage: Path, cfg: ExportConfig, plan: Plan, source: Source, setup: Setup) -> Deployment:
    """Every stage of the pipeline, writing into `stage`."""
    progress = bars(mode_of(cfg))
    exported = export_graph(source, setup, stage)
    n_target, n_all = plan.sample_counts(cfg.samples, cfg.eval_samples)
    d = Deployment(cfg, plan, source, setup, exported,
                   load_samples(setup.dataset.name, n_all, cfg, setup.input_shape, setup.T,
                                meta=graph_meta(exported.graph, T=setup.T)), files=[exported.path], dir=stage)
    if d.samples.note:
        say(cfg, f"note: {d.samples.note}")
    x, y, T = d.samples.x, d.samples.y, setup.T

    t0 = time.perf_counter()
    if source.kind == "checkpoint":
        from kdsnn import stages  # looked up at call time: tests replace the student's run

        ref1 = stages.run_student(source.model, x, batch_size=cfg.batch_size, device=cfg.device,
                                  progress=progress)
        what, backend = "student (float, PyTorch)", "pytorch"
    else:
        ref1 = compile_backend("reference", source.graph, T, cfg).run(x, record=bool(cfg.expect),
                                                                      progress=progress)
        what, backend = f"source graph {source.path.name} (float, reference)", "reference"
    d.results["rung1"] = ref1
    d.timings["rung1_s"] = time.perf_counter() - t0
    stage_done(cfg, f"rung 1, {what}", len(x), t0)
    if cfg.expect:
        from kdsnn.peer import rung0_of

        _gate(d, *rung0_of(cfg.expect, source, ref1, y))
    d.rungs.append(rung1(ref1, y, what, backend))

    t0 = time.perf_counter()
    d.results["reference"] = res = compile_backend("reference", exported.graph, T, cfg).run(x, progress=progress)
    d.timings["rung2_s"] = time.perf_counter() - t0
    stage_done(cfg, f"rung 2, {GRAPH_FILE} on reference", len(x), t0)
    _gate(d, *rung2(res, ref1, y))

    if plan.accepts == "nir" and plan.extra_backend:
        t0 = time.perf_counter()
        exe = compile_backend(plan.target, exported.graph, T, cfg)
        d.results[plan.target] = res = exe.run(x[:n_target], progress=progress)
        d.timings[f"{plan.target}_s"] = time.perf_counter() - t0
        d.rungs.append(float_backend(res, d.results["reference"], y))

    if plan.lowers:
        d.lowered = low = lower_graph(exported, setup, cfg, stage)
        d.timings["lower_s"] = low.wall_s
        d.files.append(low.path)
        net = low.intnet
        say(cfg, f"lowered for {low.spec.name}: {len(net.populations)} populations, {len(net.connections)} "
                  f"connections, depth {net.depth}, input {net.input.bits}-bit graded spikes "
                  f"(calibrated on {low.calibration} training samples) -> {Path(cfg.output) / low.path.name}")
        t0 = time.perf_counter()
        exe = compile_backend("intsim", net, T, cfg)
        d.results["intsim"] = res = exe.run(x, record=record_ok(net, len(x), T), progress=progress)
        d.timings["intsim_s"] = time.perf_counter() - t0
        stage_done(cfg, f"rung 3, {INTNET_FILE} on intsim", len(x), t0)
        exact = None
        if source.kind == "checkpoint":
            from kdsnn.exact_plan import is_exact
            from kdsnn.exact_rung3 import rung3_exact as exact_check

            t0 = time.perf_counter()
            exact = exact_check(source.model, source.config, net, x, y, intsim=res, batch_size=cfg.batch_size)
            if exact is not None:
                d.timings["rung3_exact_s"] = time.perf_counter() - t0
                stage_done(cfg, "rung 3 exact, the student's deployment-exact forward", len(x), t0)
                _gate(d, *rung3_exact(exact, res, ref1, y))
            elif is_exact(source.config):
                say(cfg, "note: the student is deployment-exact, but "
                          + "; ".join(m.removeprefix("plan: ") for m in net.metadata["lowering"]["log"]
                                      if m.startswith("plan:")))
        warning = None
        if exact is None:
            r, warning = rung3(res, ref1, y)
            d.rungs.append(r)
        if warning:
            d.warnings.append(warning)
            say(cfg, f"warning: {warning}", err=True)
        if plan.extra_backend:
            t0 = time.perf_counter()
            exe = compile_backend(plan.target, net, T, cfg)
            n = min(n_target, len(x))
            d.results[plan.target] = res = exe.run(x[:n], record=record_ok(net, n, T), progress=progress)
            d.timings[f"{plan.target}_s"] = time.perf_counter() - t0
            stage_done(cfg, f"rung 4, {INTNET_FILE} on {plan.target}", n, t0)
            what = ("Lava fixed_pt (Loihi bit-accurate)" if plan.target == "lava"
                    else f"{INTNET_FILE} on {plan.target} (integer)")
            _gate(d, *rung4(res, d.results["intsim"], y, [p.name for p in net.populations], what))

    d.files.append(write_predictions(stage, y, d.results))
    d.write_parity()
    if plan.lowers:
        from kdsnn.bundle import artifact_digests
        from kdsnn.compiler.profile.report import render_table, write_reports

        t0 = time.perf_counter()
        res = d.results[plan.target]
        d.report = make_report(d.lowered, res, d.samples, source, setup, d.results["rung1"])
        d.report.setdefault("meta", {})["artifacts"] = artifact_digests(stage)
        written = write_reports(d.report, stage)
        d.timings["report_s"] = time.perf_counter() - t0
        d.files.extend(Path(p) for p in written)  # report.json, report.md and plots/*.png
        say(cfg, render_table(d.report))
    return d


def export_command(**opts: Any) -> Deployment:
    """`kdsnn export SOURCE --target T -o OUT` from keyword options (None = the default)."""
    return export(from_options(ExportConfig, opts))
