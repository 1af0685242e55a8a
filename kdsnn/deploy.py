"""The deployment flow behind `kdsnn export` and `kdsnn run` (docs/design.md, "Data flow").

The pipeline for a target is built from what its backend accepts (`Plan`), so any backend
registered under the `kdsnn.backends` entry points deploys:

  every target      source -> graph.nir -> rung 1 (source, float) -> rung 2 (graph.nir on reference)
  accepts "nir"     + graph.nir on the target backend (reported, not gated), unless it is reference
  accepts "intnet"  + lowering for --hw -> intsim, rung 3 -> the target backend, rung 4 (exact),
                      unless it is intsim -> report (operations, memory, mapping, energy)

Each stage (kdsnn.stages) returns a typed result; `export` gathers them in a `Deployment`,
`rerun` in a `Rerun`. Nothing here prints when the configuration says quiet; the CLI
prints the summaries (`summary_lines`). Everything is written into a staging folder next
to -o (kdsnn.staging) that replaces -o only when every stage has written: a failed or
interrupted export leaves the earlier one as it was. A failed gate moves the run's files to
`<out>.failed/` and raises ParityError. parity.json and report.json record the sha256 of
graph.nir and intnet.kdsnn; `rerun` refuses a folder where they differ (kdsnn.bundle).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kdsnn.backends.base import RunResult
from kdsnn.compiler.nir.meta import graph_meta
from kdsnn.config import ExportConfig, RunConfig, from_options
from kdsnn.errors import KdsnnError, ParityError
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
    scores,
    write_parity,
    write_predictions,
)
from kdsnn.stages import (
    EVAL_SAMPLES,
    Exported,
    Lowered,
    Samples,
    Setup,
    Source,
    compile_backend,
    export_graph,
    load_samples,
    load_source,
    lower_for_target,
    lower_graph,
    make_report,
    record_ok,
    resolve,
)

__all__ = ["Deployment", "Plan", "Rerun", "export", "export_command", "lower_for_target", "plan_for",
           "rerun", "run_command"]

# what an export writes into -o: an earlier export's copies of these are replaced or dropped,
# anything else there (a student.pt exported next to) is kept
EXPORT_FILES = (GRAPH_FILE, INTNET_FILE, PREDICTIONS_FILE, PARITY_FILE, "report.json", "report.md", "plots")

REMOVED_TARGETS = {"nir": "--target nir was removed: every export writes graph.nir; --target reference "
                          "writes it and checks it (rungs 1 and 2) without lowering"}


@dataclass(frozen=True)
class Plan:
    """Which stages a target runs, from what its backend accepts."""

    target: str
    accepts: Literal["nir", "intnet"]
    default_samples: int

    @property
    def lowers(self) -> bool:
        return self.accepts == "intnet"

    @property
    def extra_backend(self) -> str | None:
        """The target when it is not one of the ladder's own backends (reference, intsim)."""
        return None if self.target in ("reference", "intsim") else self.target

    def sample_counts(self, samples: int | None, eval_samples: int | None) -> tuple[int, int]:
        """(samples the target runs, samples the float and intsim rungs run)."""
        n = int(samples or self.default_samples)
        if self.extra_backend is None:
            return n, n
        return n, max(n, int(eval_samples or EVAL_SAMPLES))

    def stages(self) -> list[str]:
        out = ["source", GRAPH_FILE, "rung 1", "rung 2"]
        if self.accepts == "nir" and self.extra_backend:
            out.append(f"{self.target} (float)")
        if self.lowers:
            out += ["lower", "intsim", "rung 3"]
            if self.extra_backend:
                out += [self.target, "rung 4"]
            out.append("report")
        return out


def plan_for(target: str) -> Plan:
    """The plan of a registered, available backend (else a KdsnnError saying why not)."""
    from kdsnn.backends.registry import backend_info

    if target in REMOVED_TARGETS:
        raise KdsnnError(REMOVED_TARGETS[target])
    info = backend_info(target)
    return Plan(target, info.accepts, int(getattr(info.cls, "default_samples", 1000)))  # type: ignore[arg-type]


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
    report: dict[str, Any] | None = None
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


def progress_mode(cfg: ExportConfig | RunConfig) -> str:
    """bars, lines or none (kdsnn.progress): bars only on a terminal unless asked for."""
    from kdsnn.progress import resolve

    return resolve(getattr(cfg, "progress", None), cfg.quiet)


def bars(mode: str) -> bool:
    from kdsnn.progress import bars as _bars

    return _bars(mode)


def _stage(cfg: ExportConfig | RunConfig, what: str, n: int, t0: float) -> None:
    """In lines / bars mode, one line per finished stage (what a log shows while Lava runs)."""
    from kdsnn.progress import lines

    if lines(progress_mode(cfg)):
        import click

        click.echo(f"  {what}: {n:,} test samples in {time.perf_counter() - t0:.1f} s")


def _say(cfg: ExportConfig | RunConfig, msg: str, err: bool = False) -> None:
    if not cfg.quiet:
        import click

        click.secho(msg, fg="yellow" if err else None, err=err)


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
    with output_lock(cfg.output, "export"):   # one writer per folder (kdsnn.outlock)
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
    progress = bars(progress_mode(cfg))
    exported = export_graph(source, setup, stage)
    n_target, n_all = plan.sample_counts(cfg.samples, cfg.eval_samples)
    d = Deployment(cfg, plan, source, setup, exported,
                   load_samples(setup.dataset.name, n_all, cfg, setup.input_shape, setup.T,
                                meta=graph_meta(exported.graph, T=setup.T)), files=[exported.path], dir=stage)
    if d.samples.note:
        _say(cfg, f"note: {d.samples.note}")
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
    _stage(cfg, f"rung 1, {what}", len(x), t0)
    if cfg.expect:
        from kdsnn.peer import rung0_of

        _gate(d, *rung0_of(cfg.expect, source, ref1, y))
    d.rungs.append(rung1(ref1, y, what, backend))

    t0 = time.perf_counter()
    d.results["reference"] = res = compile_backend("reference", exported.graph, T, cfg).run(x, progress=progress)
    d.timings["rung2_s"] = time.perf_counter() - t0
    _stage(cfg, f"rung 2, {GRAPH_FILE} on reference", len(x), t0)
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
        _say(cfg, f"lowered for {low.spec.name}: {len(net.populations)} populations, {len(net.connections)} "
                  f"connections, depth {net.depth}, input {net.input.bits}-bit graded spikes "
                  f"(calibrated on {low.calibration} training samples) -> {Path(cfg.output) / low.path.name}")
        t0 = time.perf_counter()
        exe = compile_backend("intsim", net, T, cfg)
        d.results["intsim"] = res = exe.run(x, record=record_ok(net, len(x), T), progress=progress)
        d.timings["intsim_s"] = time.perf_counter() - t0
        _stage(cfg, f"rung 3, {INTNET_FILE} on intsim", len(x), t0)
        exact = None
        if source.kind == "checkpoint":
            from kdsnn.deploy_exact import is_exact
            from kdsnn.deploy_exact import rung3_exact as exact_check

            t0 = time.perf_counter()
            exact = exact_check(source.model, source.config, net, x, y, intsim=res, batch_size=cfg.batch_size)
            if exact is not None:
                d.timings["rung3_exact_s"] = time.perf_counter() - t0
                _stage(cfg, "rung 3 exact, the student's deployment-exact forward", len(x), t0)
                _gate(d, *rung3_exact(exact, res, ref1, y))
            elif is_exact(source.config):
                _say(cfg, "note: the student is deployment-exact, but "
                          + "; ".join(m.removeprefix("plan: ") for m in net.metadata["lowering"]["log"]
                                      if m.startswith("plan:")))
        warning = None
        if exact is None:
            r, warning = rung3(res, ref1, y)
            d.rungs.append(r)
        if warning:
            d.warnings.append(warning)
            _say(cfg, f"warning: {warning}", err=True)
        if plan.extra_backend:
            t0 = time.perf_counter()
            exe = compile_backend(plan.target, net, T, cfg)
            n = min(n_target, len(x))
            d.results[plan.target] = res = exe.run(x[:n], record=record_ok(net, n, T), progress=progress)
            d.timings[f"{plan.target}_s"] = time.perf_counter() - t0
            _stage(cfg, f"rung 4, {INTNET_FILE} on {plan.target}", n, t0)
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
        _say(cfg, render_table(d.report))
    return d


def export_command(**opts: Any) -> Deployment:
    """`kdsnn export SOURCE --target T -o OUT` from keyword options (None = the default)."""
    return export(from_options(ExportConfig, opts))


# ------------------------------------------------------------------------------ kdsnn run
@dataclass(repr=False)
class Rerun:
    """An exported folder run again on one backend: the graph, the IntNet (integer targets),
    the run's logits and spikes."""

    config: RunConfig
    target: str
    graph: Any
    intnet: Any
    result: RunResult
    samples: Samples
    dataset: str
    T: int
    wall_s: float
    report: dict[str, Any] | None = None     # the folder's report.json, when it has one

    @property
    def results(self) -> dict[str, RunResult]:
        return {self.target: self.result}

    @property
    def accuracy(self) -> float | None:
        return scores(self.result, self.samples.y)["accuracy"]

    def summary_lines(self) -> list[str]:
        n = len(self.samples)
        acc = "n/a (no labels)" if self.accuracy is None else f"{100 * self.accuracy:.2f} %"
        lines = [f"{self.target} on {self.dataset} (first {n:,} test samples, T={self.T}): accuracy "
                 f"{acc}, {n / max(self.wall_s, 1e-9):.1f} samples/s"]
        return lines + [f"  {layer:<24} {c.mean():10.1f} spikes/sample"
                        for layer, c in self.result.spike_counts.items()]

    def __repr__(self) -> str:
        return (f"Rerun({self.target} on {self.dataset}, T={self.T}, {len(self.samples)} samples, "
                f"accuracy {self.accuracy})")


def rerun(cfg: RunConfig) -> Rerun:
    """Run an export folder again on any registered backend."""
    from kdsnn.compiler.nir.read import read_nir

    cfg.check()
    plan = plan_for(cfg.target)
    folder = Path(cfg.artifact)
    if not folder.is_dir():
        raise KdsnnError(f"{folder} is not an export folder (made by `kdsnn export -o {folder}`)")
    gpath = folder / GRAPH_FILE
    if not gpath.exists():
        raise KdsnnError(f"{folder} has no {GRAPH_FILE}; run `kdsnn export ... -o {folder}` first")
    from kdsnn.bundle import check_bundle

    check_bundle(folder)   # graph.nir and intnet.kdsnn are the ones parity.json records
    graph = read_nir(gpath, dt=cfg.dt, reset=cfg.reset)
    from kdsnn.inputs import graph_input_shape, input_steps, run_info

    meta = graph_meta(graph, T=cfg.time_steps or input_steps(vars(cfg), graph_input_shape(graph)))
    T = meta["T"]
    shape = tuple(meta["input_shape"])
    ds = None if cfg.input else (cfg.dataset or meta.get("dataset"))
    dataset = run_info(vars(cfg), ds, shape, int(meta["num_classes"]), gpath).name
    intnet = None
    if plan.lowers:
        from kdsnn.compiler.intnet import IntNet

        ipath = folder / INTNET_FILE
        if not ipath.exists():
            raise KdsnnError(f"{folder} has no {INTNET_FILE}; export with an integer target "
                             "(intsim, lava) first")
        intnet = IntNet.load(ipath)
        if cfg.time_steps and int(cfg.time_steps) != intnet.T:
            raise KdsnnError(f"{ipath} was lowered for T={intnet.T}; re-export to change T")
        T = intnet.T
    from kdsnn.budget import check_run
    from kdsnn.compiler.nir.meta import graph_summary

    check_run(cfg.batch_size, int(T), shape, graph_summary(graph)["neurons"], f"run of {folder}")
    samples = load_samples(dataset, int(cfg.samples or plan.default_samples), cfg, shape, int(T), meta=meta)
    t0 = time.perf_counter()
    exe = compile_backend(plan.target, intnet if plan.lowers else graph, T, cfg)
    res = exe.run(samples.x, progress=bars(progress_mode(cfg)))
    wall = time.perf_counter() - t0
    report = None
    if (folder / "report.json").is_file():
        from kdsnn.compiler.profile.report import load_report
        from kdsnn.stages import Report

        report = Report(load_report(folder))
    return Rerun(cfg, plan.target, graph, intnet, res, samples, str(dataset), int(T), wall, report)


def run_command(**opts: Any) -> Rerun:
    """`kdsnn run FOLDER --target T` from keyword options (None = the default)."""
    return rerun(from_options(RunConfig, opts))
