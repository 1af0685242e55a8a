"""Lava 0.10's fixed-point arithmetic as intsim computes it (docs/design.md, "Integer semantics").

The widths and the operations of Lava's bit-accurate process models, exactly:

  dense  a = wrap32(shift(W' . s, weight_exp))   W' = Lava clip to 8 bits, then LSB truncation
                                                 (mixed sign: even values); int32 channel
  conv   a = wrap24(conv(W, s))                  Lava's Conv: weights as given, weight_exp
                                                 ignored (must be 0), signed 24-bit clamp
  LIF    a_in = wrap32(sum of the population's incoming a)           (int32 port sum)
         u = wrap_once24(wrap32(decay(u, du + 1) + wrap32(a_in << 6)))
         v = clip(wrap32(decay(v, dv) + u + bias), -(2^23 - 1), 2^23 - 1)
         s = v > vth << 6;  v = 0 where s
  wrap_once24(x) = x - 2^24 if x > 2^23, x + 2^24 if x <= -2^23, else x  (Lava's exact test)

The widths are the loihi spec's (kdsnn.compiler.targets); IntNets lowered for other widths
are refused when compiled (targets.check_simulable).
"""

from __future__ import annotations

import numpy as np
import torch
from kdsnn.compiler.intnet import Connection
from kdsnn.compiler.targets import LOIHI as _LAVA

LAVA_CLIP_BITS = _LAVA.weight_bits  # Lava's Dense clips weights to 8 bits, whatever the target
STATE_MAX = _LAVA.state_max         # 24-bit u and v
ACT_SHIFT = _LAVA.act_shift
VTH_SHIFT = _LAVA.vth_shift
DECAY_SHIFT = _LAVA.decay_bits


# -- Lava's weight handling -------------------------------------------------------------
def lava_dense_weights(w: np.ndarray, sign_mode: str, num_weight_bits: int) -> np.ndarray:
    """What PyDenseModelBitAcc does to weights: clip_weights(8 bits) then truncate_weights."""
    w = np.asarray(w).astype(np.int64)
    mixed = sign_mode == "mixed"
    inhib = sign_mode == "inhibitory"
    if inhib:
        w = -w
    lo = -(1 << LAVA_CLIP_BITS) if mixed else 0
    w = np.clip(w, lo, (1 << LAVA_CLIP_BITS) - 1)
    ntb = LAVA_CLIP_BITS - num_weight_bits + int(mixed)
    w = (w >> ntb) << ntb
    return -w if inhib else w


def effective_weights(c: Connection) -> np.ndarray:
    """The integer weights a connection really applies (int64)."""
    if c.kind == "dense":
        return lava_dense_weights(c.weight, c.sign_mode, c.num_weight_bits)
    return np.asarray(c.weight).astype(np.int64)


# -- integer helpers (torch int64) ------------------------------------------------------
def wrap(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Two's complement wrap of int64 values to a signed `bits`-bit integer."""
    half = 1 << (bits - 1)
    return ((x + half) & ((1 << bits) - 1)) - half


def decay(x: torch.Tensor, d: int) -> torch.Tensor:
    """sign(x) * ((|x| * (4096 - d)) >> 12), as Lava computes it in int64."""
    if d == 0:
        return x
    if d >= 1 << DECAY_SHIFT:
        return torch.zeros_like(x)
    p = x * ((1 << DECAY_SHIFT) - d)
    return torch.sign(p) * (p.abs() >> DECAY_SHIFT)


def wrap_once24(x: torch.Tensor) -> torch.Tensor:
    """Lava's u overflow handling: one conditional wrap, with `> max` and `<= -max`."""
    y = torch.where(x > STATE_MAX, x - 2 * STATE_MAX, x)
    return torch.where(y <= -STATE_MAX, x + 2 * STATE_MAX, y)


def bias_effective(mant: np.ndarray, exp: int) -> np.ndarray:
    """Lava's scale_bias: int16 storage of the mantissa, int32 shift by the exponent."""
    m = ((np.asarray(mant).astype(np.int64) + (1 << 15)) & 0xFFFF) - (1 << 15)
    out = (m << exp) if exp >= 0 else (m >> -exp)
    return ((out + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
