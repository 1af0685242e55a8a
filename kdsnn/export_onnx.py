"""Write a GraphNet ANN teacher as ONNX, so a teacher moves between machines and frameworks.

The file has one input `input` (B, C, H, W) with a dynamic batch, the logits as first
output `logits`, and each feature point (act1, act2, ...) as a further named output, so
`--teacher-features act1,act2` picks them (by default, and by default OnnxTeacher uses
them all). Features are pre-activation (the ReLU's input), as kdsnn's own checkpoint
teacher gives them to the one-sided feature loss, so an exported teacher distils the same. kdsnn metadata (dataset, normalization, class
names, feature points) travels in the model's metadata_props; OnnxTeacher checks it
against the dataset before training. The export is verified with onnxruntime.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kdsnn import __version__
from kdsnn.errors import KdsnnError
from kdsnn.io import atomic_path
from kdsnn.layers import GraphNet

META_KEYS = ("dataset", "arch", "mean", "std", "class_names", "input_shape", "num_classes")


class _Outputs(nn.Module):
    """Logits followed by the named feature points, as a flat tuple ONNX can name."""

    def __init__(self, model: GraphNet, names: list[str], features: str) -> None:
        super().__init__()
        self.model, self.names, self.mode = model, names, features

    def forward(self, x: torch.Tensor):
        logits, feats = self.model(x, return_features="pre" if self.mode == "pre" else True)
        return (logits, *[feats[n] for n in self.names])


def export_onnx(model: GraphNet, path: str | os.PathLike, feature_names: list[str] | None = None,
                config: dict[str, Any] | None = None, features: str = "pre", opset: int = 17,
                verify: bool = True) -> Path:
    """Export an ANN GraphNet to `path` (written atomically) and return the path.

    feature_names: nodes to expose as outputs (default: the model's feature points).
    config: checkpoint config; its dataset/normalization/class names go into metadata.
    features: "pre" exports each feature point's activation input (pre-ReLU, what
    kdsnn.teachers.native.CheckpointTeacher distils from), "post" its output.
    """
    if features not in ("pre", "post"):
        raise ValueError(f"features must be 'pre' or 'post', not {features!r}")
    if model.spiking:
        raise KdsnnError("export_onnx writes ANN teachers; this model is a spiking student "
                         "(export students with `kdsnn export`, which writes NIR)")
    names = list(model.feature_points if feature_names is None else feature_names)
    nodes = [s.name for s in model.specs]
    bad = [n for n in names if n not in nodes]
    if bad:
        raise KdsnnError(f"cannot export features {', '.join(bad)}: not nodes of the model "
                         f"(nodes: {', '.join(nodes)})")
    if "logits" in names or "input" in names:
        raise KdsnnError("feature names 'logits' and 'input' are reserved in the ONNX export")
    was_training, saved_points = model.training, model.feature_points
    dev = next(model.parameters()).device
    x = torch.zeros(2, *model.input_shape, device=dev)
    out_names = ["logits", *names]
    try:
        model.eval()
        model.feature_points = names
        with atomic_path(path, suffix=".onnx") as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(_Outputs(model, names, features).eval(), (x,), str(tmp), input_names=["input"],
                              output_names=out_names, opset_version=opset, dynamo=False,
                              dynamic_axes={n: {0: "batch"} for n in ["input", *out_names]})
            _add_metadata(tmp, model, names, config or {}, features)
            if verify:
                _verify(tmp, model, names, features)
    finally:
        model.feature_points = saved_points
        model.train(was_training)
    return Path(path)


def _add_metadata(path: Path, model: GraphNet, names: list[str], config: dict[str, Any],
                  features: str) -> None:
    import onnx

    m = onnx.load(str(path))
    meta = {"kdsnn.version": __version__, "kdsnn.feature_points": json.dumps(names),
            "kdsnn.input_shape": json.dumps(list(model.input_shape)),
            "kdsnn.num_classes": json.dumps(model.num_classes), "kdsnn.arch": json.dumps(model.arch),
            "kdsnn.features": features}
    for k in META_KEYS:
        if config.get(k) is not None:
            meta[f"kdsnn.{k}"] = json.dumps(list(config[k]) if isinstance(config[k], tuple) else config[k])
    del m.metadata_props[:]
    for k, v in meta.items():
        m.metadata_props.add(key=k, value=v)
    m.producer_name = "kdsnn"
    m.doc_string = "kdsnn ANN teacher: input normalized (x - mean) / std; outputs logits, features"
    onnx.save(m, str(path))


def _verify(path: Path, model: GraphNet, names: list[str], features: str) -> None:
    """Run the file under onnxruntime on random inputs; it must match PyTorch."""
    import onnxruntime as ort

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, *model.input_shape, generator=g)
    model.eval()
    with torch.no_grad():
        ref_logits, ref_feats = model(x.to(next(model.parameters()).device),
                                      return_features="pre" if features == "pre" else True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {"input": x.numpy()})
    refs = [ref_logits, *[ref_feats[n] for n in names]]
    for n, o, r in zip(["logits", *names], outs, refs, strict=True):
        r = r.detach().cpu().numpy()
        if o.shape != r.shape or not np.allclose(o, r, rtol=1e-3, atol=1e-4 * max(1.0, float(np.abs(r).max()))):
            raise RuntimeError(f"ONNX export of {n} differs from PyTorch "
                               f"(max |diff| {float(np.abs(o - r).max()) if o.shape == r.shape else 'shape'})")
