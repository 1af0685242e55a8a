"""The run driver behind `kdsnn run`: an export folder again on any registered backend.

`rerun(cfg)` checks the folder (graph.nir, and intnet.kdsnn for an integer target, are the
files its parity.json records: kdsnn.bundle), reads the graph's metadata for T, the input
shape and the dataset, runs the backend the plan names (kdsnn.plan) on the first samples
and returns a `Rerun`: the graph, the IntNet, the run's logits and spikes, the folder's
report. It writes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdsnn.backends.base import RunResult
from kdsnn.compiler.nir.meta import graph_meta
from kdsnn.config import RunConfig, from_options
from kdsnn.errors import KdsnnError
from kdsnn.parity import GRAPH_FILE, INTNET_FILE, scores
from kdsnn.plan import plan_for
from kdsnn.progress import bars, mode_of
from kdsnn.stages import Report, Samples, compile_backend, load_samples

__all__ = ["Rerun", "rerun", "run_command"]

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
    report: Report | None = None     # the folder's report.json, when it has one

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
                f"accuracy {'n/a' if self.accuracy is None else f'{100 * self.accuracy:.2f} %'})")


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
    res = exe.run(samples.x, progress=bars(mode_of(cfg)))
    wall = time.perf_counter() - t0
    report = None
    if (folder / "report.json").is_file():
        from kdsnn.compiler.profile.report import load_report

        report = Report(load_report(folder))
    return Rerun(cfg, plan.target, graph, intnet, res, samples, str(dataset), int(T), wall, report)


def run_command(**opts: Any) -> Rerun:
    """`kdsnn run FOLDER --target T` from keyword options (None = the default)."""
    return rerun(from_options(RunConfig, opts))
