"""Noise robustness (the KDSNN paper's second claim): accuracy clean and under input noise,
for several models side by side (teacher, student with KD, student without KD).

Noise comes from kdsnn.noise: applied to the [0, 1] image before normalization, seeded per
sample, so every model sees exactly the same noisy images. Results go out as a terminal
table, JSON (`--json`), and with `-o DIR` as robustness.json + robustness.png (accuracy vs
noise level, one panel per noise type, one line per model).

Entry points:
  robustness_command(**opts)   `kdsnn evaluate CKPT... --noise ...` (float models); the
                               options are those of the evaluate command in cli.py
  load_models(paths, device, dataset)  -> list[RobustModel]  (kdsnn .pt checkpoints, .onnx)
  run_robustness(models, dataset, specs, ...) -> result dict (any predict function: a
                               compiled integer model plugs in the same way)
  write_robustness(result, output)   robustness.json + robustness.png; robustness_text: what the CLI prints
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdsnn import __version__
from kdsnn.config import EvaluateConfig
from kdsnn.errors import KdsnnError
from kdsnn.io import atomic_path, ensure_dir, write_json

CLEAN = "clean"
Predict = Callable[[np.ndarray], np.ndarray]  # normalized (B, C, H, W) float32 -> logits (B, K)

_D = EvaluateConfig()   # the defaults of `kdsnn evaluate` (kdsnn.config)


@dataclass
class RobustModel:
    """One model to evaluate: a label for people and a batch predict function."""

    label: str
    predict: Predict
    path: str = ""
    info: dict[str, Any] = field(default_factory=dict)  # kind, kd, arch, T, dataset, target
    dataset: str | None = None
    input_shape: tuple[int, ...] | None = None
    num_classes: int | None = None
    check: Callable[[Any], None] | None = None  # extra check against the DatasetInfo


# ------------------------------------------------------------------ models
def _torch_predict(fn: Callable[[torch.Tensor], torch.Tensor], device: torch.device | str) -> Predict:
    dev = torch.device(device)

    @torch.no_grad()
    def predict(x: np.ndarray) -> np.ndarray:
        out = fn(torch.from_numpy(np.ascontiguousarray(x)).to(dev))
        return out.detach().float().cpu().numpy()

    return predict


def load_models(paths: Sequence[str | os.PathLike], device: torch.device | str = _D.device,
                dataset: str | None = None) -> list[RobustModel]:
    """kdsnn checkpoints (teacher or student .pt) and ONNX teachers, ready to predict."""
    from kdsnn.checkpoint import load_model

    models = []
    for p in paths:
        p = Path(p)
        if p.suffix.lower() == ".onnx":
            from kdsnn.teachers.onnx_teacher import OnnxTeacher

            t = OnnxTeacher(p, feature_names=[], device=device)
            ds = dataset or json.loads(t.metadata.get("kdsnn.dataset", "null"))
            models.append(RobustModel(
                f"onnx {p.stem}", _torch_predict(lambda x, t=t: t(x)[0], device), str(p),
                {"kind": "teacher", "format": "onnx"}, ds,
                check=lambda i, t=t: t.check(i.input_shape, i.num_classes, list(i.mean), list(i.std))))
            continue
        model, cfg = load_model(p, device)
        kind = cfg.get("kind", "?")
        label = f"teacher {cfg.get('arch', '')}".strip() if kind == "teacher" else \
            f"student kd={cfg.get('kd') or 'none'}"
        info = {k: cfg.get(k) for k in ("kind", "kd", "arch", "T", "dataset") if cfg.get(k) is not None}
        models.append(RobustModel(label, _torch_predict(model, device), str(p), info,
                                  cfg.get("dataset"), tuple(cfg["input_shape"]), int(cfg["num_classes"])))
    _unique_labels(models)
    return models


def _unique_labels(models: list[RobustModel]) -> None:
    """Disambiguate equal labels with the checkpoint's folder (runs/kd/student.pt -> kd)."""
    for m in models:
        same = [o for o in models if o.label == m.label]
        if len(same) > 1:
            for o in same:
                where = Path(o.path).parent.name or Path(o.path).stem
                o.label = f"{o.label} ({where}/{Path(o.path).name})"


def _resolve_dataset(models: list[RobustModel], dataset: str | None):
    from kdsnn.data import dataset_info

    if dataset is None:
        named = {m.dataset for m in models if m.dataset}
        if not named:
            raise KdsnnError("no dataset known for these models; pass --dataset")
        if len(named) > 1:
            which = ", ".join(f"{Path(m.path).name}: {m.dataset}" for m in models if m.dataset)
            raise KdsnnError(f"the checkpoints come from different datasets ({which}); "
                             "evaluate them separately or pass --dataset")
        dataset = named.pop()
    info = dataset_info(dataset)
    for m in models:
        if m.check is not None:
            m.check(info)
        if m.input_shape is not None and tuple(m.input_shape) != tuple(info.input_shape):
            raise KdsnnError(f"{m.path or m.label} takes inputs {tuple(m.input_shape)} but {info.name} gives "
                             f"{tuple(info.input_shape)}; pass the model's own --dataset")
        if m.num_classes is not None and m.num_classes != info.num_classes:
            raise KdsnnError(f"{m.path or m.label} has {m.num_classes} classes but {info.name} has "
                             f"{info.num_classes}; pass the model's own --dataset")
    return info


# ------------------------------------------------------------------ evaluation
def run_robustness(models: list[RobustModel], dataset: str | None = None,
                   noise: Sequence[Any] = (), samples: int | None = None,
                   data_dir: str | os.PathLike | None = None, download: bool = False,
                   batch_size: int = _D.batch_size, seed: int = _D.seed, target: str = "float",
                   quiet: bool = True) -> dict[str, Any]:
    """Accuracy of every model on the clean test set and under each noise spec.

    All models see the same noisy images (noise seeded by (seed, sample index)). Under
    torchrun each rank takes a contiguous shard of the samples; totals are summed exactly.
    """
    from kdsnn import distributed as D
    from kdsnn import progress as P
    from kdsnn.data import load_arrays
    from kdsnn.noise import NOISE_KINDS, parse_noise

    if not models:
        raise KdsnnError("no model to evaluate; give at least one checkpoint")
    if batch_size <= 0:
        raise KdsnnError(f"--batch-size must be positive, got {batch_size}")
    specs = list(dict.fromkeys(parse_noise(s) for s in noise))
    info = _resolve_dataset(models, dataset)
    conditions = [CLEAN] + [str(s) for s in specs]
    correct: dict[str, dict[str, int]] = {m.label: {} for m in models}
    n = None
    bar = P.bar(None, "none" if quiet or not D.is_main() else "bars", total=len(conditions) * len(models),
                desc="robustness", unit="eval", leave=True)
    for cond, spec in zip(conditions, [None, *specs], strict=True):
        x, y = load_arrays(info.name, "test", samples, data_dir, download, seed=seed, noise=spec)
        n = len(y)
        part = D.shard_indices(n)  # all of it in one process
        x, y = x[part.start:part.stop], y[part.start:part.stop]
        for m in models:
            hits = 0
            for i in range(0, len(y), batch_size):
                logits = np.asarray(m.predict(x[i:i + batch_size]))
                if logits.ndim != 2 or logits.shape[0] != len(y[i:i + batch_size]):
                    raise KdsnnError(f"{m.label} returned logits of shape {logits.shape} for a batch of "
                                     f"{len(y[i:i + batch_size])}")
                hits += int((logits.argmax(1) == y[i:i + batch_size]).sum())
            correct[m.label][cond] = hits
            bar.update(1)
    bar.close()
    assert n is not None
    if D.is_dist():
        keys = [(m.label, c) for m in models for c in conditions]
        tot = D.gather_totals({f"{i}": correct[lb][c] for i, (lb, c) in enumerate(keys)})
        for i, (lb, c) in enumerate(keys):
            correct[lb][c] = tot[f"{i}"]
    kinds = sorted({s.kind for s in specs}, key=list(NOISE_KINDS).index)
    out_models = []
    for m in models:
        acc = {c: correct[m.label][c] / n for c in conditions}
        out_models.append({"label": m.label, "path": m.path, **m.info,
                           "accuracy": acc, "correct": correct[m.label],
                           "drop": {c: acc[CLEAN] - acc[c] for c in conditions[1:]}})
    return {"kdsnn_version": __version__, "dataset": info.name, "split": "test", "samples": n,
            "seed": seed, "target": target, "conditions": conditions,
            "noise": [{"spec": str(s), "type": s.kind, "level": s.level} for s in specs],
            "noise_types": {k: NOISE_KINDS[k] for k in kinds},
            "definition": "accuracy = correct / samples on the first `samples` test images; noise "
                          "applied to [0,1] pixels before normalization, clipped to [0,1], seeded "
                          "per (seed, sample index); drop = clean - noisy",
            "models": out_models}


# ------------------------------------------------------------------ output
def format_table(result: dict[str, Any]) -> str:
    """Accuracy (%) per model (rows) and condition (columns)."""
    conds = result["conditions"]
    rows = [["model", *conds]]
    for m in result["models"]:
        rows.append([m["label"], *[f"{100 * m['accuracy'][c]:.2f}" for c in conds]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    head = (f"{result['dataset']} test, {result['samples']} samples, target {result['target']}, "
            f"noise seed {result['seed']}; accuracy %")
    return head + "\n" + "\n".join(lines)


def plot_robustness(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """Accuracy vs noise level, one panel per noise type, one line per model (level 0 = clean)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    kinds = list(result["noise_types"]) or [CLEAN]
    fig = Figure(figsize=(4.2 * len(kinds), 3.6))   # no pyplot: a notebook's backend stays as it is
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(kinds), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        pts = sorted((n["level"], n["spec"]) for n in result["noise"] if n["type"] == kind)
        for i, m in enumerate(result["models"]):  # styles differ so equal curves stay visible
            xs = [0.0] + [lv for lv, _ in pts]
            ys = [100 * m["accuracy"][CLEAN]] + [100 * m["accuracy"][s] for _, s in pts]
            ax.plot(xs, ys, marker="osD^v<>"[i % 7], linestyle=["-", "--", "-.", ":"][i % 4],
                    markersize=6 - (i % 3), label=m["label"])
        ax.set_title(kind if kind != CLEAN else "clean")
        ax.set_xlabel("noise level")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{result['dataset']}: accuracy under input noise ({result['target']})", fontsize=10)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return Path(path)


def write_robustness(result: dict[str, Any], output: str | os.PathLike) -> list[Path]:
    """robustness.json and the accuracy-vs-noise plot robustness.png in `output`."""
    out = ensure_dir(output)
    write_json(out / "robustness.json", result)
    return [out / "robustness.json", plot_robustness(result, out / "robustness.png")]


def robustness_text(result: dict[str, Any], as_json: bool = False,
                    output: str | os.PathLike | None = None) -> str:
    """What the CLI prints: the table (or JSON), and the files written to `output`."""
    if as_json:
        return json.dumps(result, indent=2)
    text = format_table(result)
    if output:
        text += f"\nwrote {Path(output) / 'robustness.json'} and {Path(output) / 'robustness.png'}"
    return text


def robustness_command(checkpoints: Sequence[str], noise: Sequence[str] = (), dataset: str | None = None,
                       data_dir: str | None = None, download: bool = False, samples: int | None = None,
                       batch_size: int = _D.batch_size, device: str = _D.device, seed: int = _D.seed,
                       as_json: bool = False,
                       output: str | None = None, quiet: bool = False, target: str = "float",
                       **_: Any) -> dict[str, Any]:
    """`kdsnn evaluate CKPT... [--noise TYPE:LEVEL ...]` for float models (PyTorch / ONNX)."""
    from kdsnn import distributed as D
    from kdsnn.device import resolve_device
    from kdsnn.noise import parse_noise

    specs = [parse_noise(s) for s in noise]  # bad specs fail before any model is loaded
    if samples is not None and samples <= 0:
        raise KdsnnError(f"--samples must be positive, got {samples}")
    dev = D.init(resolve_device(device))  # under torchrun: this rank's device, shards below
    models = load_models(checkpoints, dev, dataset)
    result = run_robustness(models, dataset, specs, samples, data_dir, download, batch_size, seed,
                            target=target, quiet=quiet or as_json)
    if output and D.is_main():
        write_robustness(result, output)
    return result
