"""Input encodings of static images for spiking students (docs/design.md).

- ``direct`` (the default): the normalized image is the graded input of the first synaptic
  layer at every step (no copies: layers see it once, "static").
- ``rate``: Bernoulli spikes, P(s[t, i] = 1) = the pixel's intensity in [0, 1] (the image
  before normalization), drawn independently per step and pixel from a generator seeded
  with the encoding's seed. Training draws fresh spikes each batch from the run's seeded
  generator; deployment encodes the evaluation samples once, in order, from a generator
  seeded with the same seed, and every rung (student, reference, intsim, Lava) receives
  those identical trains.

Spike trains are (N, T, *input_shape) float32 in {0, 1}, the layout of `--input FILE.npz`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from kdsnn.errors import KdsnnError

ENCODINGS = ("direct", "rate")


def encoding_of(config: dict[str, Any]) -> dict[str, Any]:
    """A student's encoding, as GraphNet takes it, from its run config."""
    kind = config.get("encoding") or "direct"
    if kind not in ENCODINGS:
        raise KdsnnError(f"unknown encoding {kind!r}; choose one of {', '.join(ENCODINGS)}")
    if kind == "direct":
        return {"kind": "direct"}
    return {"kind": kind, "seed": int(config.get("encoding_seed") or 0),
            "mean": list(config.get("mean") or []), "std": list(config.get("std") or [])}


def intensity(x: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None) -> torch.Tensor:
    """Normalized images (N, C, ...) back to intensities in [0, 1] (per-channel mean/std)."""
    if mean is not None and std is not None and len(mean):
        shape = (1, -1) + (1,) * (x.ndim - 2)
        m = torch.as_tensor(list(mean), dtype=x.dtype, device=x.device).reshape(shape)
        s = torch.as_tensor(list(std), dtype=x.dtype, device=x.device).reshape(shape)
        x = x * s + m
    return x.clamp(0.0, 1.0)


def rate_encode(x: torch.Tensor, T: int, mean: Sequence[float] | None, std: Sequence[float] | None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Bernoulli spike trains (N, T, ...) of normalized images x (N, ...).

    Example::

        >>> g = torch.Generator().manual_seed(0)
        >>> rate_encode(torch.ones(2, 1, 3, 3), 4, None, None, g).shape
        torch.Size([2, 4, 1, 3, 3])
    """
    p = intensity(x, mean, std)
    u = torch.rand((x.shape[0], int(T), *x.shape[1:]), generator=generator, dtype=p.dtype,
                   device="cpu").to(p.device)
    return (u < p.unsqueeze(1)).to(p.dtype)


def encode_dataset(x: np.ndarray, T: int, mean: Sequence[float] | None, std: Sequence[float] | None,
                   seed: int, batch: int = 512) -> np.ndarray:
    """The deployment encoding of an evaluation set: trains (N, T, ...) from one generator
    seeded with `seed`, samples in order (so the same set gives the same trains)."""
    g = torch.Generator().manual_seed(int(seed))
    out = [rate_encode(torch.from_numpy(np.ascontiguousarray(x[i:i + batch])).float(), T, mean, std, g).numpy()
           for i in range(0, len(x), batch)]
    return np.concatenate(out) if out else np.zeros((0, int(T), *x.shape[1:]), np.float32)
