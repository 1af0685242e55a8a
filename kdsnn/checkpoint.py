"""Checkpoints: one `.pt` file that carries a model's weights and its whole configuration.

Layout of the dict saved with `torch.save` (atomically, through kdsnn.io):
    format      "kdsnn-checkpoint"       (anything else is refused as "not a kdsnn checkpoint")
    version     CHECKPOINT_VERSION
    config      kind ("student"|"teacher"), arch, width, num_classes, input_shape, T,
                neuron {theta, surrogate, slope}, dataset, mean, std, class_names, kd,
                kdsnn_version, train {...hyper-parameters}, teacher (spec or None),
                graph {specs: [NodeSpec as dict], feature_points} (the exact network)
    model       the GraphNet state_dict (the exportable network only)
    connectors  state_dict of the training-only feature connectors, or None (never exported)
    epoch, metrics, best_acc
    optimizer, scheduler, scaler, rng   (only in the resumable `last.pt`)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from kdsnn.encoding import encoding_of
from kdsnn.errors import KdsnnError
from kdsnn.io import atomic_path
from kdsnn.safe_load import load_torch

FORMAT = "kdsnn-checkpoint"
CHECKPOINT_VERSION = 1
KINDS = ("student", "teacher")


def save_checkpoint(path: str | os.PathLike, ckpt: dict[str, Any]) -> Path:
    """Write `ckpt` (format and version are added) atomically to `path`."""
    data = {"format": FORMAT, "version": CHECKPOINT_VERSION, **ckpt}
    # through a Python file object: a failed write then keeps its OSError (errno) behind
    # torch's RuntimeError, and atomic_path turns it into one line naming the file
    with atomic_path(path, suffix=".pt") as tmp, open(tmp, "wb") as f:
        torch.save(data, f)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, kind: str | None = None,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a kdsnn checkpoint; `kind` ("student"/"teacher") refuses the other kind.

    Every failure a user can cause (missing, unreadable, truncated, not ours, wrong kind)
    becomes a one-line KdsnnError.
    """
    p = Path(path)
    if not p.exists():
        raise KdsnnError(f"checkpoint {p} does not exist")
    if p.is_dir():
        raise KdsnnError(f"checkpoint {p} is a folder; give the .pt file inside it (e.g. {p / 'student.pt'})")
    data = load_torch(p, "checkpoint", map_location=map_location)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise KdsnnError(f"{p} is not a kdsnn checkpoint (made by `kdsnn distill` or `kdsnn train-teacher`)")
    version = data.get("version")
    if type(version) is not int or version < 1:
        raise KdsnnError(f"checkpoint {p}: format version must be a positive integer, got {version!r}; "
                         "it is corrupt")
    if version > CHECKPOINT_VERSION:
        raise KdsnnError(f"checkpoint {p} has format version {version}; this kdsnn reads "
                         f"up to {CHECKPOINT_VERSION}, upgrade kdsnn")
    cfg = data.get("config")
    if not isinstance(cfg, dict) or "model" not in data or cfg.get("kind") not in KINDS:
        raise KdsnnError(f"checkpoint {p} is incomplete (no config/model); it is corrupt")
    if kind is not None and cfg["kind"] != kind:
        what = {"student": "a spiking student (from `kdsnn distill`)",
                "teacher": "an ANN teacher (from `kdsnn train-teacher`)"}[kind]
        raise KdsnnError(f"{p} is a {cfg['kind']} checkpoint; {what} is expected here")
    for key in ("model", "connectors"):
        check_tensors(data.get(key), f"checkpoint {p}", key)
    return data


def check_tensors(state: Any, where: str, key: str) -> None:
    """A state_dict of tensors with finite values; else one line naming the tensor."""
    if state is None and key != "model":
        return
    if not isinstance(state, dict):
        raise KdsnnError(f"{where}: '{key}' must be a state_dict (names -> tensors), got {type(state).__name__}; "
                         "it is corrupt")
    for name, t in state.items():
        if not isinstance(t, torch.Tensor):
            raise KdsnnError(f"{where}: {key}[{name!r}] is a {type(t).__name__}, not a tensor; it is corrupt")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = "NaN" if bool(torch.isnan(t).any()) else "inf"
            raise KdsnnError(f"{where}: tensor {name} holds {bad} values ({int((~torch.isfinite(t)).sum())} of "
                             f"{t.numel()}); the training diverged or the file was altered, use another checkpoint")


def graph_of(model) -> dict[str, Any]:
    """The node list and feature points of a GraphNet, for the checkpoint config: a
    checkpoint rebuilds exactly the network it was trained as, even if the zoo changes."""
    from dataclasses import asdict

    return {"specs": [asdict(s) for s in model.specs], "feature_points": list(model.feature_points)}


def build_from_config(config: dict[str, Any]):
    """The GraphNet described by a checkpoint config (weights not loaded): from its stored
    node list (`graph`) when present, else from the zoo by architecture name."""
    from kdsnn.layers import GraphNet, NodeSpec
    from kdsnn.zoo import build

    spiking = config["kind"] == "student"
    encoding = encoding_of(config) if spiking else None
    T, width = int(config.get("T", 1) or 1), float(config.get("width", 1.0))
    if config.get("graph"):
        g = config["graph"]
        net = GraphNet([NodeSpec(**d) for d in g["specs"]], tuple(config["input_shape"]),
                       int(config["num_classes"]), spiking=spiking, T=T,
                       neuron=config.get("neuron"), feature_points=g["feature_points"], arch=config["arch"],
                       encoding=encoding)
        net.width = width
        return net
    return build(config["arch"], spiking=spiking, num_classes=int(config["num_classes"]),
                 input_shape=tuple(config["input_shape"]), T=T, neuron=config.get("neuron"), width=width,
                 encoding=encoding)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu",
               kind: str | None = None):
    """(GraphNet in eval mode on `device`, config dict) from a checkpoint file."""
    data = load_checkpoint(path, kind=kind)
    cfg = data["config"]
    try:
        model = build_from_config(cfg)
        model.load_state_dict(data["model"])
    except KdsnnError:
        raise
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        msg = str(e).splitlines()[0]
        raise KdsnnError(f"checkpoint {path} does not match its own config ({msg[:160]}); it is corrupt") from None
    model.to(device).eval()
    return model, cfg
