"""Float evaluation of teacher and student checkpoints (`kdsnn evaluate`, the float target).

`evaluate_model` is the one place that runs a torch model over a test split; the training
loop and `kdsnn evaluate` call it. With --noise (or an ONNX model) `kdsnn evaluate` hands
over to kdsnn.robustness, which evaluates any batch predict function (ONNX, integer models).
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from kdsnn.config import EvaluateConfig
from kdsnn.device import resolve_device
from kdsnn.errors import KdsnnError

_D = EvaluateConfig()   # the defaults of `kdsnn evaluate` (kdsnn.config)


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, config: dict[str, Any] | None, dataset: str | Dataset,
                   noise: Any = None, samples: int | None = None, batch_size: int = _D.batch_size,
                   device: str | torch.device = "cpu", seed: int = _D.seed,
                   data_dir: str | os.PathLike | None = None, download: bool = False,
                   quiet: bool = True) -> dict[str, Any]:
    """Accuracy of `model` on a test split.

    dataset: a dataset name (its test split is loaded, with `noise` applied to the image
    before normalization, seeded by `seed`) or a ready torch Dataset. samples: only the
    first N test samples. Returns {"accuracy" (fraction), "correct", "n", "loss"}.
    """
    from kdsnn.progress import bar

    if isinstance(dataset, str):
        from kdsnn import data

        ddir = data_dir if data_dir is not None else (config or {}).get("data_dir")
        from kdsnn.event_data import is_event_dataset

        cfg = config or {}
        steps = ({"time_steps": cfg.get("T") if cfg.get("kind") == "student" else None}
                 if is_event_dataset(dataset) else {})   # event data: a student's T frames, a teacher's sum
        ds = data.load_dataset(dataset, "test", data_dir=ddir, download=download, noise=noise, seed=seed,
                               **steps)
    else:
        if noise:
            raise ValueError("noise is applied when the dataset is given by name")
        ds = dataset
    if samples is not None:
        if samples <= 0:
            raise KdsnnError(f"--samples must be positive, got {samples}")
        ds = Subset(ds, range(min(int(samples), len(ds))))
    from kdsnn import distributed

    ds = distributed.shard(ds)  # under torchrun: this rank's contiguous slice, no padding
    dev = resolve_device(device)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False)
    was = model.training
    model.eval()
    correct, n, loss = 0, 0, 0.0
    for x, y in bar(loader, "none" if quiet or not distributed.is_main() else "bars", desc="evaluate"):
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        z = model(x)
        z = z[0] if isinstance(z, tuple) else z
        loss += float(torch.nn.functional.cross_entropy(z.float(), y, reduction="sum"))
        correct += int((z.argmax(1) == y).sum())
        n += int(y.numel())
    model.train(was)
    tot = distributed.gather_totals({"correct": correct, "n": n})  # exact sums over the ranks
    correct, n, loss = tot["correct"], tot["n"], distributed.all_reduce_sum(loss)
    return {"accuracy": correct / max(n, 1), "correct": correct, "n": n, "loss": loss / max(n, 1)}


def evaluate_command(checkpoints: tuple[str, ...] = (), target: str = "float",
                     noise: tuple[str, ...] = (), dataset: str | None = None,
                     data_dir: str | None = None, download: bool = False,
                     samples: int | None = None, batch_size: int = _D.batch_size, device: str = _D.device,
                     seed: int = _D.seed, as_json: bool = False, output: str | None = None,
                     quiet: bool = False, **_: Any) -> list[dict[str, Any]]:
    """`kdsnn evaluate CKPT...` (float): a row per checkpoint; prints nothing (evaluate_text
    says what the CLI prints). With --noise (or an .onnx model) the robustness evaluation
    (kdsnn.robustness) takes over and returns its result.
    """
    from kdsnn.config import check_values

    check_values({"samples": samples, "batch_size": batch_size, "device": device, **_})
    if noise or any(str(c).lower().endswith(".onnx") for c in checkpoints):
        try:
            from kdsnn.robustness import robustness_command
        except ImportError:
            raise KdsnnError("--noise is not available in this kdsnn yet") from None
        return robustness_command(checkpoints=checkpoints, target=target, noise=noise, dataset=dataset,
                                  data_dir=data_dir, download=download, samples=samples,
                                  batch_size=batch_size, device=device, seed=seed, as_json=as_json,
                                  output=output, quiet=quiet)
    from kdsnn import distributed
    from kdsnn.checkpoint import load_model

    dev = distributed.init(resolve_device(device))  # under torchrun each rank takes a shard
    if batch_size <= 0:
        raise KdsnnError(f"--batch-size must be positive, got {batch_size}")
    models = [(path, *load_model(path, dev)) for path in checkpoints]  # fail early on a bad file
    rows = []
    for path, model, cfg in models:
        ds_name = dataset or cfg.get("dataset")
        if not ds_name:
            raise KdsnnError(f"{path} names no dataset; give --dataset")
        _check_fits(path, cfg, ds_name)
        r = evaluate_model(model, cfg, ds_name, samples=samples, batch_size=batch_size, device=dev,
                           seed=seed, data_dir=data_dir, download=download, quiet=quiet or as_json)
        row = {"checkpoint": str(path), "kind": cfg["kind"], "arch": cfg["arch"], "dataset": ds_name,
               "T": cfg.get("T") if cfg["kind"] == "student" else None, "kd": cfg.get("kd"), **r}
        rows.append(row)
    return rows


def evaluate_text(res: list[dict[str, Any]] | dict[str, Any], as_json: bool = False,
                  output: str | None = None) -> str:
    """What `kdsnn evaluate` prints for the result of evaluate_command or evaluate_deployed:
    a line per checkpoint (float rows), the robustness table (a dict), or their JSON."""
    if isinstance(res, dict):
        from kdsnn.robustness import robustness_text

        return robustness_text(res, as_json, output)
    if as_json:
        return json.dumps(res if len(res) != 1 else res[0], indent=2)
    lines = []
    for r in res:
        what = f"student T={r['T']} kd={r['kd']}" if r["kind"] == "student" else "teacher (ANN)"
        lines.append(f"{r['checkpoint']}: {r['arch']} {what} on {r['dataset']} test: accuracy "
                     f"{100 * r['accuracy']:.2f}% ({r['correct']}/{r['n']})")
    return "\n".join(lines)


def _check_fits(path: str, cfg: dict[str, Any], ds_name: str) -> None:
    """A model evaluated on another dataset must at least take its shapes and classes."""
    from kdsnn.data import dataset_info

    info = dataset_info(ds_name)
    if tuple(info.input_shape) != tuple(cfg["input_shape"]) or info.num_classes != int(cfg["num_classes"]):
        raise KdsnnError(f"{path} was trained for inputs {tuple(cfg['input_shape'])} and {cfg['num_classes']} "
                         f"classes; {info.name} has {tuple(info.input_shape)} and {info.num_classes}")
