"""The teacher interface: whatever a teacher is (kdsnn checkpoint, ONNX file, torchvision
model), distillation only needs its logits and named features for a batch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from kdsnn.errors import KdsnnError


def split_names(names: list[str] | str) -> list[str]:
    """Feature names as a list: `--teacher-features a,b` arrives as one string."""
    if isinstance(names, str):
        return [n.strip() for n in names.split(",") if n.strip()]
    return list(names)


def same_normalization(mean: Any, std: Any, other_mean: Any, other_std: Any) -> bool:
    """False only when both normalizations are known and differ (1e-4 per channel): a
    teacher fed inputs normalized another way than it was trained on is useless."""
    if mean is None or std is None or other_mean is None or other_std is None:
        return True
    return bool(np.allclose(mean, other_mean, atol=1e-4) and np.allclose(std, other_std, atol=1e-4))


@runtime_checkable
class Teacher(Protocol):
    """A frozen ANN teacher. Implementations: kdsnn checkpoint, ONNX, torchvision."""

    num_classes: int
    input_shape: tuple[int, ...]          # (C, H, W) it expects, after normalization
    feature_names: list[str]              # in stage order; matched to the student's in order
    feature_shapes: dict[str, tuple[int, ...]]  # per feature name, without batch (set by check)

    def check(self, input_shape: tuple[int, ...], num_classes: int,
              mean: list[float] | None = None, std: list[float] | None = None) -> None:
        """Raise KdsnnError before training if the teacher does not fit the dataset."""
        ...

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits (B, classes) and {feature name: (B, ...)} for a normalized batch, no grad."""
        ...

    def to(self, device: torch.device | str) -> Teacher: ...


class CheckpointTeacher:
    """A kdsnn ANN teacher checkpoint (`kdsnn train-teacher`), frozen, in eval mode.

    Its features are the pre-activation values (the ReLU inputs) at the architecture's
    feature points: the one-sided feature loss (kdsnn.distill) is built for pre-ReLU teacher
    features, where a student value below a negative teacher value costs nothing.
    """

    def __init__(self, path: str | os.PathLike, device: torch.device | str = "cpu",
                 features: str = "pre") -> None:
        from kdsnn.checkpoint import load_model

        self.path = Path(path)
        self.model, self.config = load_model(self.path, device, kind="teacher")
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.num_classes = int(self.config["num_classes"])
        self.input_shape = tuple(self.config["input_shape"])
        self.feature_names = list(self.model.feature_points)
        self.features = features
        self.feature_shapes: dict[str, tuple[int, ...]] = {}

    def check(self, input_shape: tuple[int, ...], num_classes: int,
              mean: list[float] | None = None, std: list[float] | None = None) -> None:
        """Fail before training if this teacher does not fit the dataset."""
        name = self.path.name
        if tuple(input_shape) != self.input_shape:
            raise KdsnnError(f"teacher {name} takes inputs of shape {self.input_shape} but the dataset gives "
                             f"{tuple(input_shape)}; train the teacher on this dataset")
        if int(num_classes) != self.num_classes:
            raise KdsnnError(f"teacher {name} has {self.num_classes} classes but the dataset has {num_classes}; "
                             "train the teacher on this dataset")
        tm, ts = self.config.get("mean"), self.config.get("std")
        if not same_normalization(tm, ts, mean, std):
            raise KdsnnError(f"teacher {name} was trained on {self.config.get('dataset')} inputs normalized "
                             f"with mean {tm}, std {ts}; the dataset uses mean {list(mean)}, std {list(std)}")
        dev = next(self.model.parameters()).device
        _, f = self(torch.zeros(2, *self.input_shape, device=dev))
        self.feature_shapes = {k: tuple(v.shape[1:]) for k, v in f.items()}

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.model.eval()
        return self.model(x, return_features=self.features if self.features == "pre" else True)

    def to(self, device: torch.device | str) -> CheckpointTeacher:
        self.model.to(device)
        return self

    def eval(self) -> CheckpointTeacher:
        self.model.eval()
        return self

    def __repr__(self) -> str:
        return f"CheckpointTeacher({self.path}, arch={self.config['arch']})"


def load_teacher(spec: str, device: torch.device | str = "cpu", feature_names: str | None = None,
                 **kwargs: Any) -> Teacher:
    """The teacher named by `spec`, dispatched on its form:

      *.pt / *.pth kdsnn checkpoint    -> CheckpointTeacher
      *.onnx                           -> kdsnn.teachers_onnx.OnnxTeacher(spec, feature_names)
      torchvision:NAME                 -> kdsnn.teachers_tv.TorchvisionTeacher(spec, **kwargs)
                                          (kwargs: weights, num_classes, input_shape, download)
    Only the torchvision teacher takes kwargs (the others ignore them).
    Call `teacher.check(input_shape, num_classes, mean, std)` before training.
    """
    spec = str(spec)
    if spec.startswith("torchvision:"):
        try:
            from kdsnn.teachers_tv import TorchvisionTeacher
        except ImportError:
            raise KdsnnError("torchvision teachers are not available in this kdsnn") from None
        return TorchvisionTeacher(spec, feature_names=feature_names, device=device, **kwargs)
    if spec.lower().endswith(".onnx"):
        from kdsnn.teachers_onnx import OnnxTeacher

        return OnnxTeacher(spec, feature_names=feature_names, device=device)
    if feature_names:
        raise KdsnnError("--teacher-features names tensors of an ONNX teacher; a kdsnn checkpoint "
                         "teacher uses its architecture's feature points")
    return CheckpointTeacher(spec, device=device)
