"""The teacher interface: whatever a teacher is (kdsnn checkpoint, ONNX file, torchvision
model), distillation only needs its logits and named features for a batch.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Teacher(Protocol):
    """A frozen ANN teacher. Implementations: kdsnn checkpoint, ONNX, torchvision."""

    num_classes: int
    input_shape: tuple[int, ...]          # (C, H, W) it expects, after normalization
    feature_names: list[str]              # in stage order; matched to the student's in order

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits (B, classes) and {feature name: (B, ...)} for a normalized batch, no grad."""
        ...

    def to(self, device: torch.device | str) -> Teacher: ...
