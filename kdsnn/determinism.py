"""Deterministic mode (`--deterministic`): the same seed gives bit-identical weights where
PyTorch can promise it.

Without it, `--seed` fixes the initialization, the shuffling, the augmentation and the
noise, but not the order of floating-point sums: PyTorch splits a reduction over as many
threads as it has (so a run on 1 thread and one on 2 drift apart after some hundred steps,
e.g. 87.78 % vs 88.06 % on mnist5k), and some CUDA kernels add with atomics.

Deterministic mode sets, for the whole process:
  torch.use_deterministic_algorithms(True)   (an op without a deterministic kernel raises)
  torch.set_num_threads(1) and set_num_interop_threads(1) where still possible
  cuDNN: deterministic on, benchmark off; CUBLAS_WORKSPACE_CONFIG=:4096:8 (CUDA)
It cannot make equal what runs differently: another number of torchrun processes (each
sums its own slice of a batch), CPU vs GPU, another PyTorch version or CPU instruction set.
The checkpoint records the mode and the thread count (config train.deterministic / threads).
"""

from __future__ import annotations

import os
from typing import Any

import torch

THREADS = 1


def enable(threads: int = THREADS) -> dict[str, Any]:
    """Switch the process to deterministic kernels and a fixed thread count; returns the
    previous settings (for `restore`)."""
    prev = {"algorithms": torch.are_deterministic_algorithms_enabled(), "threads": torch.get_num_threads(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cublas": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.set_num_threads(int(threads))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only settable before the first parallel work of the process
        pass
    return prev


def restore(prev: dict[str, Any]) -> None:
    """Undo `enable` (tests run several modes in one process)."""
    torch.use_deterministic_algorithms(prev["algorithms"])
    torch.set_num_threads(prev["threads"])
    torch.backends.cudnn.deterministic = prev["cudnn_deterministic"]
    torch.backends.cudnn.benchmark = prev["cudnn_benchmark"]
    if prev["cublas"] is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = prev["cublas"]


def apply(train_cfg: dict[str, Any]) -> None:
    """Enable deterministic mode when the run config asks for it (train.deterministic)."""
    if train_cfg.get("deterministic"):
        enable(int(train_cfg.get("threads") or THREADS))
