"""PNG plots of a report (headless: matplotlib's Agg canvas, no pyplot state).

Every plot is drawn from the report dict alone, so `kdsnn report` can re-render them from
report.json without the network or the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kdsnn.io import atomic_path, ensure_dir


def _figure(w: float = 8.0, h: float = 4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return path


def _names(report: Mapping[str, Any]) -> list[str]:
    return [r["name"] for r in report["layers"]]


def _nz(v: Any) -> float:
    return float(v) if v is not None else 0.0


def _grouped_bars(ax: Any, x: np.ndarray, names: list[str], series: list[tuple[str, Any]],
                  ylabel: str, title: str) -> None:
    """One bar per series at each x, side by side, on a log axis."""
    wdt = 0.8 / max(1, len(series))
    for i, (lab, vals) in enumerate(series):
        ax.bar(x + (i - (len(series) - 1) / 2) * wdt, vals, wdt, label=lab)
    ax.set_yscale("log", nonpositive="clip")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)


def plot_firing_rate(report: Mapping[str, Any], path: Path) -> Path:
    """Firing rate per layer, with silent/saturated fractions when known."""
    layers = report["layers"]
    names = _names(report)
    fig = _figure(max(5.0, 1.2 * len(names) + 2), 4)
    ax = fig.add_subplot(111)
    x = np.arange(len(names))
    ax.bar(x - 0.25, [r["firing_rate"] for r in layers], 0.25, label="firing rate")
    if all(r["silent_fraction"] is not None for r in layers):
        ax.bar(x, [r["silent_fraction"] for r in layers], 0.25, label="silent fraction")
        ax.bar(x + 0.25, [r["saturated_fraction"] for r in layers], 0.25, label="saturated fraction")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction")
    ax.set_title(f"Activity per layer (T={report['meta']['T']}, {report['meta']['backend']})")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_ops_energy(report: Mapping[str, Any], path: Path) -> Path:
    """ANN dense MACs vs SNN operations per layer, and energy per layer under each model."""
    layers = report["layers"]
    names = _names(report)
    fig = _figure(max(8.0, 1.6 * len(names) + 3), 4.2)
    ax1, ax2 = fig.add_subplot(121), fig.add_subplot(122)
    x = np.arange(len(names))
    series = [("ANN teacher MACs", [_nz(r["ann_macs"]) for r in layers]),
              ("student as ANN MACs", [_nz(r["student_ann_macs"]) for r in layers]),
              ("SNN ACs", [r["acs"] for r in layers]),
              ("SNN MACs (graded input)", [r["macs"] for r in layers])]
    _grouped_bars(ax1, x, names, series, "operations per inference", "Operations per layer")
    bars = []
    for m in report["energy"]:
        bars.append((f"SNN {m}", np.asarray([r["energy_pj"][m]["snn"] for r in layers]) / 1e3))
        if any(r["energy_pj"][m]["ann"] is not None for r in layers):
            bars.append((f"ANN {m}", np.asarray([_nz(r["energy_pj"][m]["ann"]) for r in layers]) / 1e3))
    _grouped_bars(ax2, x, names, bars, "energy per inference (nJ)", "Energy per layer")
    return _save(fig, path)


def plot_memory(report: Mapping[str, Any], path: Path) -> Path:
    """Memory per layer: ANN float32 parameters vs SNN integer weights, biases and state."""
    layers = report["layers"]
    names = _names(report)
    fig = _figure(max(5.0, 1.2 * len(names) + 2), 4)
    ax = fig.add_subplot(111)
    x = np.arange(len(names))
    mem = [r["memory"] for r in layers]
    ax.bar(x - 0.2, [_nz(m["ann_fp32_bytes"]) / 1024 for m in mem], 0.4, label="ANN teacher fp32")
    bottom = np.zeros(len(names))
    for key, lab in (("snn_weight_bytes", "SNN weights"), ("snn_bias_bytes", "SNN biases"),
                     ("snn_state_bytes", "SNN state (u, v)")):
        vals = np.array([m[key] for m in mem]) / 1024
        ax.bar(x + 0.2, vals, 0.4, bottom=bottom, label=lab)
        bottom += vals
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("KiB")
    ax.set_title("Memory per layer")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_raster(report: Mapping[str, Any], path: Path) -> Path | None:
    """Spike raster of a few neurons per layer for one sample; None without spike trains."""
    ras = report.get("raster") or {}
    groups = ras.get("layers") or []
    if not groups:
        return None
    T = int(ras.get("T", report["meta"]["T"]))
    fig = _figure(max(5.0, 0.5 * T + 4), max(3.0, 0.12 * sum(len(g["neurons"]) for g in groups) + 1.5))
    ax = fig.add_subplot(111)
    row = 0
    ticks, labels = [], []
    for gi, g in enumerate(groups):
        ev = np.asarray(g["events"], dtype=float).reshape(-1, 2)
        if ev.size:
            ax.scatter(ev[:, 0], row + ev[:, 1], marker="|", s=80, color=f"C{gi % 10}")
        ticks.append(row + (len(g["neurons"]) - 1) / 2)
        labels.append(g["name"])
        row += len(g["neurons"])
        ax.axhline(row - 0.5, color="0.8", lw=0.5)
    ax.set_yticks(ticks, labels)
    ax.set_xlim(-0.5, T - 0.5)
    ax.set_xticks(range(T))
    ax.set_ylim(-0.5, row - 0.5)
    ax.set_xlabel("time step")
    ax.set_title(f"Spike raster, sample {ras.get('sample', 0)} (most active neurons per layer)")
    return _save(fig, path)


def plot_compare(a: Mapping[str, Any], b: Mapping[str, Any], labels: tuple[str, str],
                 path: Path) -> Path:
    """Two runs side by side: firing rate per layer, and operations / energy / memory totals."""
    fig = _figure(11, 4)
    ax1, ax2 = fig.add_subplot(121), fig.add_subplot(122)
    names = [n for n in _names(a) if n in set(_names(b))] or _names(a)
    x = np.arange(len(names))
    for i, (rep, lab) in enumerate(((a, labels[0]), (b, labels[1]))):
        rate = {r["name"]: r["firing_rate"] for r in rep["layers"]}
        ax1.bar(x + (i - 0.5) * 0.4, [rate.get(n, 0.0) for n in names], 0.4, label=lab)
    ax1.set_xticks(x, names, rotation=30, ha="right")
    ax1.set_ylabel("firing rate")
    ax1.set_title("Firing rate per layer")
    ax1.legend(fontsize=8)
    keys = [("synops", "SynOps", lambda r: r["totals"]["synops"]),
            ("spikes", "spikes", lambda r: r["totals"]["spikes"])]
    for m in a["energy"]:
        if m in b["energy"]:
            keys.append((m, f"E {m}", lambda r, m=m: r["energy"][m]["snn_pj"]))
    keys.append(("mem", "SNN bytes", lambda r: r["memory"]["snn_total_bytes"]))
    xs = np.arange(len(keys))
    va = np.array([max(f(a), 1e-12) for _, _, f in keys])
    vb = np.array([f(b) for _, _, f in keys])
    ax2.bar(xs - 0.2, np.ones(len(keys)), 0.4, label=labels[0])
    ax2.bar(xs + 0.2, vb / va, 0.4, label=labels[1])
    ax2.set_xticks(xs, [k[1] for k in keys], rotation=30, ha="right")
    ax2.set_ylabel(f"relative to {labels[0]}")
    ax2.set_title("Totals per inference")
    ax2.legend(fontsize=8)
    return _save(fig, path)


def write_plots(report: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """All plots of one report into out_dir/plots/; returns the written paths."""
    d = ensure_dir(Path(out_dir) / "plots")
    paths = [plot_firing_rate(report, d / "firing_rate.png"),
             plot_ops_energy(report, d / "ops_energy.png"),
             plot_memory(report, d / "memory.png")]
    r = plot_raster(report, d / "raster.png")
    if r is not None:
        paths.append(r)
    return paths
