"""How a training run uses the machine: torch threads, memory layout and precision.

Measured in bench/train_throughput.py and recorded in bench/RESULTS.md ("Training at CIFAR
size"); each choice here is the default only where it measured a win:

- threads (`--threads`): torch's intra-op thread count. Default "auto": one thread per core
  the 1-minute load average leaves free (at least 1, at most the cores torch would use), so
  a run on a shared machine does not oversubscribe it (2 threads on a busy 2-core machine ran
  4.4x slower than 1). An OMP_NUM_THREADS set by the user (or torchrun) is respected.
- memory layout: on the CPU a convolutional student trains channels-last (NHWC); oneDNN's
  convolutions then need no reorders (resnet18 at 3x32x32 1.2-1.4x per step, vgg11 and the
  MNIST cnn about even). The IF neurons keep the layout (kdsnn.neurons.steps_like). Same
  numbers: a layout changes no value, only where it is stored.
- precision (`--precision`): "auto" is fp16 autocast with a gradient scaler on CUDA (as
  before) and fp32 on the CPU; "fp32" forces float32; "bf16" runs the synaptic layers under
  bfloat16 autocast on CPU or CUDA while the neurons integrate in float32 (their spikes,
  0 or 1, are exact in bfloat16).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch
from torch import nn

from kdsnn.errors import KdsnnError

PRECISIONS = ("auto", "fp32", "bf16")


def resolve_threads(threads: int | str | None) -> int | None:
    """The torch thread count of a run: a positive int, or for "auto"/None the free cores
    (None when OMP_NUM_THREADS decides)."""
    if threads in (None, "auto"):
        if os.environ.get("OMP_NUM_THREADS"):
            return None
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        try:
            busy = os.getloadavg()[0]
        except OSError:  # no load average on this OS
            return cores
        return max(1, min(cores, int(round((os.cpu_count() or cores) - busy))))
    try:
        n = int(threads)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise KdsnnError(f"--threads must be a positive number or auto, got {threads!r}")
    return n


def apply_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(int(threads))


def check_precision(precision: str | None) -> str:
    p = (precision or "auto").lower()
    if p not in PRECISIONS:
        raise KdsnnError(f"unknown --precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return p


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a run (None: plain float32)."""
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto" and device.type == "cuda":
        return torch.float16
    return None


def autocast(precision: str, device: torch.device) -> Any:
    dtype = autocast_dtype(precision, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def uses_scaler(precision: str, device: torch.device) -> bool:
    """fp16 needs loss scaling; bfloat16 has float32's range and does not."""
    return autocast_dtype(precision, device) == torch.float16


def memory_format(model: nn.Module, device: torch.device) -> torch.memory_format:
    """channels-last for a model with 2-d convolutions trained on the CPU, else contiguous."""
    has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    return torch.channels_last if (has_conv and device.type == "cpu") else torch.contiguous_format


def to_layout(model: nn.Module, device: torch.device) -> nn.Module:
    """The model in the layout `memory_format` chooses (in place; returns it)."""
    fmt = memory_format(model, device)
    return model.to(memory_format=fmt) if fmt is torch.channels_last else model
