"""The teacher interface: whatever a teacher is (kdsnn checkpoint, ONNX file, torchvision
model), distillation only needs its logits and named features for a batch. Also the two
helpers every implementation uses.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch


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
