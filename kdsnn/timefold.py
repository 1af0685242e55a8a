"""Time-folded tensors, shared by the student (kdsnn.layers.GraphNet) and the float
reference backend: one place for how a DAG's values are combined over T steps.

A value is (tensor, static): static tensors are (B, ...) and the same at every step (direct
encoding, everything before the first neuron), the others are time-folded (T*B, ...) with
t-major layout. A node with several inputs receives their sum.
"""

from __future__ import annotations

import torch


def expand(x: torch.Tensor, T: int) -> torch.Tensor:
    """Static (B, ...) -> time-folded (T*B, ...)."""
    return x.unsqueeze(0).expand(T, *x.shape).reshape(T * x.shape[0], *x.shape[1:])


def fold(x: torch.Tensor) -> torch.Tensor:
    """Input trains (B, T, ...) -> time-folded (T*B, ...)."""
    return x.transpose(0, 1).reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def unfold(x: torch.Tensor, T: int) -> torch.Tensor:
    """Time-folded (T*B, ...) -> (T, B, ...)."""
    return x.reshape(T, x.shape[0] // T, *x.shape[1:])


def sum_inputs(ins: list[tuple[torch.Tensor, bool]], T: int) -> tuple[torch.Tensor, bool]:
    """The summed input of a node: static only if all inputs are; static ones are expanded
    where they meet time-folded ones."""
    if len(ins) == 1:
        return ins[0]
    static = all(s for _, s in ins)
    return sum(expand(t, T) if (s and not static) else t for t, s in ins), static  # type: ignore[return-value]
