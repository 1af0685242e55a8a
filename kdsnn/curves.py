"""Training curves from metrics.jsonl (training.png): the weighted loss terms that add up to
the total, train and validation accuracy per epoch, and the test accuracy of the selected
epoch (evaluated once, after training) as a single marked point.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kdsnn.io import atomic_path

PARTS = ("soft", "ce", "feat")


def read_metrics(path: str | Path) -> list[dict]:
    """The per-epoch records of a run (blank or partial trailing lines are skipped)."""
    recs = []
    for line in Path(path).read_text().splitlines():
        try:
            recs.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return recs


def _val_key(recs: list[dict]) -> str:
    """val_acc (this version) or test_acc (runs written before the validation split)."""
    return "val_acc" if all("val_acc" in r for r in recs) else "test_acc"


def figure_training(recs: list[dict], title: str = "", result: Mapping[str, Any] | None = None):
    """The two-panel Figure (tests read what it draws)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8))
    FigureCanvasAgg(fig)
    a, b = fig.add_subplot(121), fig.add_subplot(122)
    ep = [r["epoch"] for r in recs]
    a.plot(ep, [r["loss"] for r in recs], "k-", marker="o", ms=3, label="total")
    for k in PARTS:
        if all(k in r for r in recs):
            w = recs[-1].get("weights", {}).get(k)
            vals = [r[k] * r.get("weights", {}).get(k, 1.0) for r in recs]
            a.plot(ep, vals, marker="o", ms=3, label=f"{k} x {w:g}" if w is not None else k)
    a.set_xlabel("epoch")
    a.set_ylabel("loss per sample (weighted terms)")
    a.set_yscale("log")
    a.legend(fontsize=8)
    a.set_title("loss = sum of the weighted terms")
    vk = _val_key(recs)
    n_tr, n_val = recs[-1].get("train_n"), recs[-1].get("val_n")
    for k, style, n in (("train_acc", "--", n_tr), (vk, "-", n_val)):
        if all(k in r for r in recs):
            lab = {"train_acc": "train (running, augmented)", "val_acc": "validation",
                   "test_acc": "test (per epoch: old run)"}[k]
            b.plot(ep, [100 * r[k] for r in recs], style, marker="o", ms=3,
                   label=lab + (f", {int(n):,} samples" if n else ""))
    if result and result.get("test"):
        t = result["test"]
        b.plot([result["epoch"]], [100 * t["accuracy"]], "r*", ms=12,
               label=f"test, selected epoch {result['epoch']} ({t['n']:,} samples, once)")
    b.set_xlabel("epoch")
    b.set_ylabel("accuracy (%)")
    b.grid(alpha=0.3)
    b.legend(fontsize=8)
    b.set_title("accuracy")
    from matplotlib.ticker import MaxNLocator

    for ax in (a, b):  # epochs are whole numbers
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_training(metrics_path: str | Path, out_png: str | Path, title: str = "",
                  result: Mapping[str, Any] | None = None) -> Path | None:
    """Write training.png; None when there is nothing to plot."""
    recs = read_metrics(metrics_path)
    if not recs:
        return None
    fig = figure_training(recs, title, result)
    out_png = Path(out_png)
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return out_png
