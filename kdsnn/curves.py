"""Training curves from metrics.jsonl: loss parts and train/test accuracy per epoch (PNG)."""

from __future__ import annotations

import json
from pathlib import Path

from kdsnn.io import atomic_path

LOSS_KEYS = ("loss", "ce", "soft", "feat", "test_loss")


def read_metrics(path: str | Path) -> list[dict]:
    """The per-epoch records of a run (blank or partial trailing lines are skipped)."""
    recs = []
    for line in Path(path).read_text().splitlines():
        try:
            recs.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return recs


def plot_training(metrics_path: str | Path, out_png: str | Path, title: str = "") -> Path | None:
    """Write the two-panel training plot; None when there is nothing to plot."""
    recs = read_metrics(metrics_path)
    if not recs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in recs]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for k in LOSS_KEYS:
        if all(k in r for r in recs):
            a.plot(ep, [r[k] for r in recs], marker="o", ms=3, label=k)
    a.set_xlabel("epoch")
    a.set_ylabel("loss (per sample)")
    a.set_yscale("log")
    a.legend(fontsize=8)
    a.set_title("loss terms")
    for k, style in (("train_acc", "--"), ("test_acc", "-")):
        if all(k in r for r in recs):
            b.plot(ep, [100 * r[k] for r in recs], style, marker="o", ms=3, label=k.replace("_", " "))
    b.set_xlabel("epoch")
    b.set_ylabel("accuracy (%)")
    b.grid(alpha=0.3)
    b.legend(fontsize=8)
    b.set_title("accuracy")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_png = Path(out_png)
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out_png
