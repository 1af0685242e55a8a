"""The Python API (docs/design.md, "Python API"): the CLI's commands as functions that
return objects. Options are the fields of kdsnn.config's dataclasses, with the same
defaults as the CLI; `quiet=True` prints nothing at all.

    >>> import kdsnn
    >>> s = kdsnn.distill("runs/nb", dataset="digits", kd="response", epochs=1, quiet=True)
    >>> d = kdsnn.export(s.paths["student"], "runs/nb/export", target="intsim", quiet=True)
    >>> d.intnet, d.results["intsim"].logits.shape, d.rung(3), d.report
    >>> r = kdsnn.run("runs/nb/export", target="reference", quiet=True)
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdsnn.config import DistillConfig, ExportConfig, LoweringConfig, RunConfig, from_options
from kdsnn.errors import KdsnnError

PathLike = str | os.PathLike


@dataclass(repr=False)
class Distilled:
    """A trained spiking student (a GraphNet in eval mode), its configuration and its files."""

    student: Any
    config: dict[str, Any]
    best_accuracy: float                 # validation accuracy of the selected epoch
    best_epoch: int
    paths: dict[str, Path]
    result: dict[str, Any]               # result.json: val and the one test evaluation

    @property
    def test_accuracy(self) -> float:
        return float(self.result["test"]["accuracy"])

    def __repr__(self) -> str:
        c, t = self.config, self.result["test"]
        return (f"Distilled({c['arch']} T={c['T']} kd={c['kd']} on {c['dataset']}: epoch {self.best_epoch} "
                f"selected by validation accuracy {100 * self.best_accuracy:.2f} %, test accuracy "
                f"{100 * t['accuracy']:.2f} % on {t['n']} test samples, {self.paths['student']})")


def distill(output: PathLike, *, quiet: bool = False, **options: Any) -> Distilled:
    """Train a spiking student with knowledge distilled from a teacher (`kdsnn distill`).

    options: the fields of kdsnn.config.DistillConfig (dataset, kd, teacher, time_steps, ...).

        >>> s = kdsnn.distill("runs/kd", dataset="digits", kd="response", epochs=1, quiet=True)
        >>> s.student(torch.zeros(1, 1, 8, 8)).shape     # logits of one blank digit
    """
    from kdsnn.checkpoint import load_model
    from kdsnn.train import distill_command

    cfg = from_options(DistillConfig, {**options, "output": str(output), "quiet": quiet})
    res = distill_command(**asdict(cfg), silent=cfg.quiet)
    model, config = load_model(res["path"], "cpu", kind="student")
    out = Path(cfg.output)
    paths = {"student": Path(res["path"])}
    for key, name in (("best", "best.pt"), ("last", "last.pt"), ("metrics", "metrics.jsonl"),
                      ("curves", "training.png"), ("teacher", "teacher.pt"), ("result", "result.json")):
        if (out / name).exists():
            paths[key] = out / name
    return Distilled(model, config, float(res["best_acc"]), int(res["best_epoch"]), paths, res["result"])


def export(source: PathLike, output: PathLike, *, quiet: bool = False, **options: Any):
    """A student checkpoint or .nir file through the parity ladder onto a backend (`kdsnn export`).

    options: the fields of kdsnn.config.ExportConfig (target, hw, samples, calibration, ...).
    Returns a kdsnn.deploy.Deployment: .graph, .intnet, .results[backend], .rungs, .report.

        >>> d = kdsnn.export("runs/kd/student.pt", "runs/kd/export", target="intsim", samples=100)
        >>> d.rung(3).passed, d.results["intsim"].spike_counts.keys()
    """
    from kdsnn.deploy import export as run_export

    return run_export(from_options(ExportConfig, {**options, "source": str(source), "output": str(output),
                                                  "quiet": quiet}))


def run(artifact: PathLike, *, quiet: bool = False, **options: Any):
    """An export folder again on any backend (`kdsnn run`); options: kdsnn.config.RunConfig.

    Returns a kdsnn.rerun.Rerun: .graph, .intnet, .result (logits, spike counts), .report.

        >>> r = kdsnn.run("runs/kd/export", target="intsim", samples=200)
        >>> r.accuracy, r.result.logits.shape
    """
    from kdsnn.rerun import rerun

    return rerun(from_options(RunConfig, {**options, "artifact": str(artifact), "quiet": quiet}))


def lower(graph: Any, hw: Any = "loihi", *, calibration: int | np.ndarray = 256, dataset: str | None = None,
          data_dir: str | None = None, download: bool = False, seed: int = 0, T: int | None = None,
          **lowering: Any):
    """A NIR graph (a nir.NIRGraph, a .nir file or a student .pt) -> IntNet for a hardware spec.

    calibration: the number of training samples of `dataset` (default: the graph's own) or
    an array of normalized inputs. lowering: the fields of kdsnn.config.LoweringConfig.

        >>> net = kdsnn.lower("runs/kd/export/graph.nir", "loihi", calibration=64)
        >>> net
        IntNet(loihi, T=4, input 1x28x28, 4 populations (...), 4 connections, readout 'fc2')
    """
    from kdsnn.compiler.lower import lower as lower_graph
    from kdsnn.compiler.nir.meta import graph_meta
    from kdsnn.compiler.targets import load_target

    g = _as_graph(graph)
    low = from_options(LoweringConfig, lowering)
    if isinstance(calibration, np.ndarray):
        x_cal = calibration
    else:
        from kdsnn.data import load_arrays

        ds = dataset or graph_meta(g, T=T).get("dataset")
        if not ds:
            raise KdsnnError("the graph names no dataset: give dataset= or calibration= an array of inputs")
        x_cal, _ = load_arrays(ds, "train", int(calibration), data_dir, download, seed)
    return lower_graph(g, load_target(hw), x_cal, T=T, **low.lowering_options())


def _as_graph(graph: Any) -> Any:
    if not isinstance(graph, (str, os.PathLike)):
        return graph
    p = Path(graph)
    if p.suffix.lower() == ".nir":
        from kdsnn.compiler.nir.read import read_nir

        return read_nir(p)
    from kdsnn.checkpoint import load_model
    from kdsnn.compiler.export import student_to_nir

    model, cfg = load_model(p, "cpu", kind="student")
    return student_to_nir(model, cfg)
