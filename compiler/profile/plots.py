"""PNG plots of a report (headless: matplotlib's Agg canvas, no pyplot state).

Every plot is drawn from the report dict alone, so `kdsnn report` can re-render them from
report.json without the network or the run. `figure_*` build the matplotlib Figure (tests
read what it shows: bar heights, colours, axis scales, labels); `plot_*` save it.
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


# One colour per meaning, the same in every plot of a report (never one colour for two things).
COLORS = {
    "ANN teacher": "tab:red", "student as ANN": "tab:orange", "SNN ACs": "tab:blue",
    "SNN MACs (graded input)": "tab:cyan", "firing rate": "tab:blue", "silent": "0.55",
    "saturated": "tab:purple", "SNN weights": "tab:blue", "SNN biases": "tab:green",
    "SNN state (u, v)": "tab:cyan", "ANN teacher fp32": "tab:red",
}
_ENERGY_COLORS = ("tab:green", "tab:olive", "navy", "teal")       # SNN energy, per energy model
_ENERGY_ANN = ("tab:pink", "tab:brown", "tab:gray", "gold")       # ANN energy, per energy model


def _grouped_bars(ax: Any, names: list[str], series: list[tuple[str, Any, str]], ylabel: str,
                  title: str, log: bool = True) -> None:
    """Bars of each series (label, values, colour) side by side, centred on each name's tick."""
    x = np.arange(len(names))
    wdt = 0.8 / max(1, len(series))
    for i, (lab, vals, color) in enumerate(series):
        ax.bar(x + (i - (len(series) - 1) / 2) * wdt, vals, wdt, label=lab, color=color)
    if log:
        ax.set_yscale("log", nonpositive="clip")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)


def figure_firing_rate(report: Mapping[str, Any]) -> Any:
    """Firing rate, silent and saturated fraction per layer, centred on the layer's tick; a
    layer without fractions (the readout never fires; no spike trains) says n/a in place."""
    layers = report["layers"]
    names = _names(report)
    fig = _figure(max(5.0, 1.2 * len(names) + 2), 4)
    ax = fig.add_subplot(111)
    x = np.arange(len(names))
    w = 0.27
    for off, key, lab in ((-w, "firing_rate", "firing rate"), (0.0, "silent_fraction", "silent"),
                          (w, "saturated_fraction", "saturated")):
        vals = [r[key] for r in layers]
        have = [i for i, v in enumerate(vals) if v is not None]
        ax.bar(x[have] + off, [vals[i] for i in have], w, color=COLORS[lab],
               label=lab if key == "firing_rate" else f"{lab} neurons (fraction)")
        for i in (i for i, v in enumerate(vals) if v is None):
            ax.text(x[i] + off, 0.02, "n/a", rotation=90, ha="center", va="bottom", fontsize=7, color="0.4")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_xlim(-0.5, len(names) - 0.5)
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction")
    meta = report["meta"]
    ax.set_title(f"Activity per layer (T={meta['T']}, {meta['backend']}, {meta.get('samples', '?')} samples)")
    ax.legend(fontsize=8)
    return fig


def figure_ops_energy(report: Mapping[str, Any]) -> Any:
    """Operations per layer (ANN MACs vs SNN ACs/MACs) and energy per layer per model."""
    layers = report["layers"]
    names = _names(report)
    fig = _figure(max(8.0, 1.6 * len(names) + 3), 4.2)
    ax1, ax2 = fig.add_subplot(121), fig.add_subplot(122)
    series = [("ANN teacher MACs", [_nz(r["ann_macs"]) for r in layers], COLORS["ANN teacher"]),
              ("student as ANN MACs", [_nz(r["student_ann_macs"]) for r in layers], COLORS["student as ANN"]),
              ("SNN ACs", [r["acs"] for r in layers], COLORS["SNN ACs"]),
              ("SNN MACs (graded input)", [r["macs"] for r in layers], COLORS["SNN MACs (graded input)"])]
    _grouped_bars(ax1, names, series, "operations per inference", "Operations per layer")
    bars = []
    for i, m in enumerate(report["energy"]):
        bars.append((f"SNN, {m}", np.asarray([r["energy_pj"][m]["snn"] for r in layers]) / 1e3,
                     _ENERGY_COLORS[i % len(_ENERGY_COLORS)]))
        if any(r["energy_pj"][m]["ann"] is not None for r in layers):
            bars.append((f"ANN teacher, {m}", np.asarray([_nz(r["energy_pj"][m]["ann"]) for r in layers]) / 1e3,
                         _ENERGY_ANN[i % len(_ENERGY_ANN)]))
    _grouped_bars(ax2, names, bars, "energy per inference (nJ)", "Energy per layer (model)")
    return fig


def figure_memory(report: Mapping[str, Any]) -> Any:
    """Memory per layer on a log axis (sizes span decades): ANN fp32 parameters next to the
    SNN's integer weights, biases and neuron state."""
    layers = report["layers"]
    names = _names(report)
    fig = _figure(max(5.0, 1.4 * len(names) + 2), 4)
    ax = fig.add_subplot(111)
    mem = [r["memory"] for r in layers]
    series = [("ANN teacher fp32", [_nz(m["ann_fp32_bytes"]) for m in mem], COLORS["ANN teacher fp32"])]
    for key, lab in (("snn_weight_bytes", "SNN weights"), ("snn_bias_bytes", "SNN biases"),
                     ("snn_state_bytes", "SNN state (u, v)")):
        series.append((lab, [float(m[key]) for m in mem], COLORS[lab]))
    _grouped_bars(ax, names, series, "bytes (log)", "Memory per layer")
    return fig


def figure_raster(report: Mapping[str, Any]) -> Any | None:
    """Spike raster of one sample: per layer, neurons whose timing varies first, then
    saturated and silent ones (profile.raster), labelled with their flat indices."""
    ras = report.get("raster") or {}
    groups = ras.get("layers") or []
    if not groups:
        return None
    T = int(ras.get("T", report["meta"]["T"]))
    rows = sum(len(g["neurons"]) for g in groups)
    fig = _figure(max(6.0, 0.35 * T + 5), max(3.5, 0.07 * rows + 1.8))
    ax = fig.add_subplot(111)
    row = 0
    ticks, labels = [], []
    for gi, g in enumerate(groups):
        ev = np.asarray(g["events"], dtype=float).reshape(-1, 2)
        n = len(g["neurons"])
        if ev.size:
            ax.scatter(ev[:, 0], row + ev[:, 1], marker="|", s=40, color=f"C{gi % 10}")
        step = max(1, n // 6)
        for j in range(0, n, step):
            ticks.append(row + j)
            labels.append(str(g["neurons"][j]))
        k = g.get("kinds") or {}
        desc = (f"{g['name']}\n{k.get('varying', '?')} vary, {k.get('saturated', '?')} sat., "
                f"{k.get('silent', '?')} silent") if k else g["name"]
        ax.text(T - 0.4, row + (n - 1) / 2, desc, va="center", ha="left", fontsize=7, color=f"C{gi % 10}")
        row += n
        ax.axhline(row - 0.5, color="0.8", lw=0.5)
    ax.set_yticks(ticks, labels, fontsize=6)
    ax.set_xlim(-0.5, T - 0.5)
    ax.set_xticks(range(T))
    ax.set_ylim(-0.5, row - 0.5)
    ax.set_xlabel("time step")
    ax.set_ylabel("neuron (flat index in its layer)")
    ax.set_title(f"Spike raster, sample {ras.get('sample', 0)}")
    return fig


def figure_compare(a: Mapping[str, Any], b: Mapping[str, Any], labels: tuple[str, str]) -> Any:
    """Two runs: firing rate per layer, and B's totals as a % difference from A's (bars from 0,
    labelled, so a 2 % difference shows)."""
    fig = _figure(12, 4.4)
    ax1, ax2 = fig.add_subplot(121), fig.add_subplot(122)
    names = [n for n in _names(a) if n in set(_names(b))] or _names(a)
    x = np.arange(len(names))
    for i, (rep, lab) in enumerate(((a, labels[0]), (b, labels[1]))):
        rate = {r["name"]: r["firing_rate"] for r in rep["layers"]}
        ax1.bar(x + (i - 0.5) * 0.4, [rate.get(n, 0.0) for n in names], 0.4, label=lab, color=("C0", "C1")[i])
    ax1.set_xticks(x, names, rotation=30, ha="right")
    ax1.set_ylabel("firing rate")
    ax1.set_title("Firing rate per layer")
    ax1.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.32), ncol=2, frameon=False)
    keys = compare_totals(a, b)
    xs = np.arange(len(keys))
    pct = np.array([100.0 * (vb / va - 1.0) if va else np.nan for _, va, vb in keys])
    colors = ["tab:green" if v < 0 else "tab:red" for v in np.nan_to_num(pct)]
    ax2.bar(xs, np.nan_to_num(pct), 0.6, color=colors)
    for xi, v in zip(xs, pct, strict=True):
        ax2.annotate("n/a" if np.isnan(v) else f"{v:+.1f}%", (xi, 0 if np.isnan(v) else v), ha="center",
                     va="bottom" if (np.isnan(v) or v >= 0) else "top", fontsize=7,
                     xytext=(0, 2 if (np.isnan(v) or v >= 0) else -2), textcoords="offset points")
    ax2.axhline(0, color="0.3", lw=0.8)
    lim = max(1.0, float(np.nanmax(np.abs(pct))) * 1.25) if np.isfinite(pct).any() else 1.0
    ax2.set_ylim(-lim, lim)
    ax2.set_xticks(xs, [k[0] for k in keys], rotation=30, ha="right")
    ax2.set_ylabel(f"{labels[1]} vs {labels[0]} (%)")
    ax2.set_title("Totals per inference: difference")
    return fig


def compare_totals(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple[str, float, float]]:
    """(label, A, B) of the totals the compare plot draws."""
    keys = [("SynOps", lambda r: r["totals"]["synops"]), ("spikes", lambda r: r["totals"]["spikes"])]
    for m in a["energy"]:
        if m in b["energy"]:
            keys.append((f"E {m}", lambda r, m=m: r["energy"][m]["snn_pj"]))
    keys.append(("SNN bytes", lambda r: r["memory"]["snn_total_bytes"]))
    return [(lab, float(f(a)), float(f(b))) for lab, f in keys]


def plot_firing_rate(report: Mapping[str, Any], path: Path) -> Path:
    return _save(figure_firing_rate(report), path)


def plot_ops_energy(report: Mapping[str, Any], path: Path) -> Path:
    return _save(figure_ops_energy(report), path)


def plot_memory(report: Mapping[str, Any], path: Path) -> Path:
    return _save(figure_memory(report), path)


def plot_raster(report: Mapping[str, Any], path: Path) -> Path | None:
    """None without spike trains."""
    fig = figure_raster(report)
    return None if fig is None else _save(fig, path)


def plot_compare(a: Mapping[str, Any], b: Mapping[str, Any], labels: tuple[str, str],
                 path: Path) -> Path:
    return _save(figure_compare(a, b, labels), path)


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
