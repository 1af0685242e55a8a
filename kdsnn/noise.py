"""Input noise for the robustness evaluation (KDSNN paper, docs/design.md, "Data").

Noise is applied to the image in [0, 1] pixel space, BEFORE normalization, and the result is
clipped back to [0, 1]. Every sample draws its noise from its own generator seeded by
(seed, sample index), so a result does not depend on batch order, batch size or workers.
The same (seed, index) gives the same underlying random draws for every level of one kind
(common random numbers), so accuracy-vs-level curves are not jittered by resampling.

Spec strings are `TYPE:LEVEL`:
  gaussian:s     add N(0, s^2)                          s in [0, 1]
  uniform:w      add U(-w, w)                            w in [0, 1]
  salt_pepper:p  a fraction p of pixels set to 0 or 1    p in [0, 1]
  speckle:s      multiply by (1 + N(0, s^2))             s in [0, 1]
  poisson:l      shot noise: Poisson(x / l) * l          l in [0, 1] (l = 1/photons at white)
Level 0 is the identity for every kind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from kdsnn.errors import KdsnnError

NOISE_KINDS: dict[str, str] = {
    "gaussian": "additive Gaussian, level = standard deviation",
    "uniform": "additive uniform, level = half-width",
    "salt_pepper": "impulse noise, level = fraction of pixels set to 0 or 1",
    "speckle": "multiplicative Gaussian, level = standard deviation",
    "poisson": "shot noise, level = 1 / photon count at full intensity",
}
LEVEL_RANGE = (0.0, 1.0)

# Kinds get distinct streams so that e.g. gaussian and speckle at one seed are not the same draws.
_KIND_CODE = {k: i for i, k in enumerate(NOISE_KINDS)}

ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class NoiseSpec:
    """One noise condition: a kind from NOISE_KINDS and its level (see module docstring)."""

    kind: str
    level: float

    def __post_init__(self) -> None:
        if self.kind not in NOISE_KINDS:
            raise KdsnnError(f"unknown noise type {self.kind!r}; valid types: {', '.join(NOISE_KINDS)}")
        lo, hi = LEVEL_RANGE
        lvl = float(self.level)
        if not math.isfinite(lvl) or not lo <= lvl <= hi:
            raise KdsnnError(f"noise level {self.level} for {self.kind} is out of range; "
                             f"use a number in [{lo:g}, {hi:g}], e.g. {self.kind}:0.1")
        object.__setattr__(self, "level", lvl)

    def __str__(self) -> str:
        return f"{self.kind}:{self.level:g}"

    @property
    def is_identity(self) -> bool:
        return self.level == 0.0


def parse_noise(text: str | NoiseSpec) -> NoiseSpec:
    """Parse `TYPE:LEVEL` (e.g. "gaussian:0.1"); a bad type or level is a one-line KdsnnError."""
    if isinstance(text, NoiseSpec):
        return text
    kind, sep, level = str(text).strip().partition(":")
    kind = kind.strip().lower().replace("-", "_")
    if kind == "saltpepper" or kind == "s&p":
        kind = "salt_pepper"
    if not sep or not level.strip():
        raise KdsnnError(f"noise {text!r} must be TYPE:LEVEL, e.g. gaussian:0.1; "
                         f"valid types: {', '.join(NOISE_KINDS)}")
    if kind not in NOISE_KINDS:
        raise KdsnnError(f"unknown noise type {kind!r} in {text!r}; valid types: {', '.join(NOISE_KINDS)}")
    try:
        value = float(level)
    except ValueError:
        raise KdsnnError(f"noise level {level.strip()!r} in {text!r} is not a number; "
                         f"use e.g. {kind}:0.1") from None
    return NoiseSpec(kind, value)


def _rng(seed: int, index: int, kind: str) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index), _KIND_CODE[kind]])


def _noisy(x: np.ndarray, spec: NoiseSpec, rng: np.random.Generator) -> np.ndarray:
    """Apply one spec to one float32 image in [0, 1] (any shape)."""
    lvl = np.float32(spec.level)
    if spec.kind == "gaussian":
        out = x + lvl * rng.standard_normal(x.shape, dtype=np.float32)
    elif spec.kind == "uniform":
        out = x + lvl * rng.uniform(-1.0, 1.0, size=x.shape).astype(np.float32)
    elif spec.kind == "speckle":
        out = x * (1 + lvl * rng.standard_normal(x.shape, dtype=np.float32))
    elif spec.kind == "salt_pepper":
        u = rng.random(x.shape, dtype=np.float32)
        salt = rng.random(x.shape, dtype=np.float32) < 0.5
        out = x.copy()
        hit = u < lvl
        out[hit & salt] = 1.0
        out[hit & ~salt] = 0.0
    else:  # poisson
        lam = max(spec.level, 1e-9)  # numpy's poisson refuses rates above ~1e19
        out = (rng.poisson(np.clip(x, 0, 1).astype(np.float64) / lam) * lam).astype(np.float32)
    return np.clip(out, 0.0, 1.0, out=out.astype(np.float32, copy=False))


def apply_noise(img01: ArrayOrTensor, spec: NoiseSpec | str | None, seed: int = 0,
                index: int = 0) -> ArrayOrTensor:
    """Noisy copy of ONE image in [0, 1] (numpy or torch, any shape), clipped to [0, 1].

    Deterministic in (seed, index, spec.kind); level 0 or spec None returns an unchanged copy.
    """
    is_tensor = isinstance(img01, torch.Tensor)
    x = img01.detach().cpu().numpy() if is_tensor else np.asarray(img01)
    x = x.astype(np.float32, copy=True)
    if spec is not None:
        spec = parse_noise(spec)
        if not spec.is_identity:
            x = _noisy(x, spec, _rng(seed, index, spec.kind))
    if is_tensor:
        return torch.from_numpy(x).to(img01.device)
    return x


def apply_noise_batch(x01: np.ndarray, spec: NoiseSpec | str | None, seed: int = 0,
                      indices: np.ndarray | None = None) -> np.ndarray:
    """apply_noise over a batch (N, ...); sample i uses index indices[i] (default 0..N-1)."""
    x01 = np.asarray(x01, dtype=np.float32)
    spec = parse_noise(spec) if spec is not None else None
    if spec is None or spec.is_identity:
        return x01.copy()
    idx = np.arange(len(x01)) if indices is None else np.asarray(indices)
    if len(idx) != len(x01):
        raise ValueError(f"{len(idx)} indices for {len(x01)} samples")
    out = np.empty_like(x01)
    for i, k in enumerate(idx):
        out[i] = _noisy(x01[i], spec, _rng(seed, int(k), spec.kind))
    return out
