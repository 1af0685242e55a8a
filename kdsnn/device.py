"""The torch device a command runs on (`--device`), checked before anything is loaded."""

from __future__ import annotations

import torch

from kdsnn.errors import KdsnnError


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch device, refusing CUDA where there is none (one clear line)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise KdsnnError(f"unknown device {device!r}; use cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise KdsnnError("--device cuda asked for, but PyTorch sees no CUDA GPU here; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise KdsnnError(f"unsupported device {device!r}; use cpu or cuda")
    return dev
