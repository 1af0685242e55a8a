"""An IntNet read from a file is checked against the arithmetic it was lowered for.

`intnet.kdsnn` is a zip a user can edit: a weight of 2^31-1 in an 8-bit field, a bias
beyond its mantissa or a negative threshold would run on intsim and Lava as garbage.
Every number is checked against the target's spec (compiler/targets.py): the built-in
spec by name, else the arithmetic the file records (`metadata["arithmetic"]`, written by
the lowering) with the field limits of Loihi, else (a hand-made IntNet for another target)
int32's. Each failure is one line naming the field.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from kdsnn.errors import KdsnnError


def _int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _limits(net: Any) -> dict[str, Any]:
    from kdsnn.compiler.targets import BUILTIN, LOIHI

    arith = net.metadata.get("arithmetic") if isinstance(net.metadata, dict) else None
    spec = BUILTIN.get(net.target)
    if spec is not None:
        lim = dict(spec.to_dict())
        if isinstance(arith, dict) and any(arith.get(k) != v for k, v in spec.arithmetic().items()):
            lim["mismatch"] = True
        return lim
    lim = dict(LOIHI.to_dict())   # a spec file's target: the widths the lowering recorded
    lim.update({"weight_exp_min": -31, "weight_exp_max": 31, "bias_exp_min": -31, "bias_exp_max": 31,
                "conv_weight_exp": True, "vth_bits": 31 - LOIHI.vth_shift, "max_message_bits": 32,
                "reset_modes": ("zero", "subtract")})
    if isinstance(arith, dict):
        for k, v in arith.items():
            if k in lim and _int(v) and 0 < v <= 64:
                lim[k] = int(v)
    else:                          # no record (a hand-made IntNet): only what int32 holds
        lim.update({"weight_bits": 31, "bias_mant_bits": 32})
    return lim


def check_intnet(net: Any, path: Path) -> None:
    """Values of every field within the target's spec; raises one KdsnnError line."""
    where = f"IntNet {path}"
    lim = _limits(net)
    if lim.get("mismatch"):
        raise KdsnnError(f"{where}: its recorded arithmetic differs from the built-in hardware spec {net.target!r}; "
                         "the file was edited, re-run `kdsnn export`")
    if not _int(net.T) or net.T < 1:
        raise KdsnnError(f"{where}: T must be an integer >= 1, got {net.T!r}")
    inp = net.input
    if not _int(inp.bits) or not 2 <= inp.bits <= lim["max_message_bits"]:
        raise KdsnnError(f"{where}: input.bits {inp.bits!r} outside [2, {lim['max_message_bits']}]")
    if not isinstance(inp.scale, (int, float)) or not math.isfinite(inp.scale) or inp.scale <= 0:
        raise KdsnnError(f"{where}: input.scale must be a positive finite number, got {inp.scale!r}")
    for shape, what in [(inp.shape, "input.shape")] + [(p.shape, f"population {p.name}: shape")
                                                       for p in net.populations]:
        if not shape or not all(_int(n) and n >= 1 for n in shape):
            raise KdsnnError(f"{where}: {what} {tuple(shape)} must be positive integers")
    vmax = (1 << lim["vth_bits"]) - 1
    bmax = (1 << (lim["bias_mant_bits"] - 1)) - 1
    dmax = (1 << lim["decay_bits"]) - 1
    for p in net.populations:
        at = f"{where}: population {p.name}"
        if not _int(p.vth) or not 1 <= p.vth <= vmax:
            raise KdsnnError(f"{at}: vth {p.vth!r} outside [1, {vmax}] ({lim['vth_bits']}-bit threshold)")
        _ints(p.bias_mant, f"{at}: bias_mant")
        if p.bias_mant.size and (p.bias_mant.min() < -bmax - 1 or p.bias_mant.max() > bmax):
            raise KdsnnError(f"{at}: bias_mant in [{p.bias_mant.min()}, {p.bias_mant.max()}] beyond the "
                             f"{lim['bias_mant_bits']}-bit mantissa [{-bmax - 1}, {bmax}]")
        if not _int(p.bias_exp) or not lim["bias_exp_min"] <= p.bias_exp <= lim["bias_exp_max"]:
            raise KdsnnError(f"{at}: bias_exp {p.bias_exp!r} outside [{lim['bias_exp_min']}, {lim['bias_exp_max']}]")
        for k in ("du", "dv"):
            v = getattr(p, k)
            if not _int(v) or not 0 <= v <= dmax:
                raise KdsnnError(f"{at}: {k} {v!r} outside [0, {dmax}] ({lim['decay_bits']}-bit decay)")
        if not isinstance(p.out_scale, (int, float)) or not math.isfinite(p.out_scale):
            raise KdsnnError(f"{at}: out_scale must be a finite number, got {p.out_scale!r}")
        if p.reset not in lim["reset_modes"]:
            raise KdsnnError(f"{at}: reset {p.reset!r} is not one of hardware spec {net.target}'s {list(lim['reset_modes'])}")
    wb = lim["weight_bits"]
    for c in net.connections:
        at = f"{where}: connection {c.name}"
        if not _int(c.num_weight_bits) or not 1 <= c.num_weight_bits <= wb:
            raise KdsnnError(f"{at}: num_weight_bits {c.num_weight_bits!r} outside [1, {wb}] (weight_bits)")
        if c.sign_mode not in ("mixed", "excitatory", "inhibitory"):
            raise KdsnnError(f"{at}: unknown sign_mode {c.sign_mode!r}")
        _ints(c.weight, f"{at}: weight")
        if c.weight.size and (c.weight.min() < -(1 << wb) or c.weight.max() > (1 << wb) - 1):
            raise KdsnnError(f"{at}: weights in [{c.weight.min()}, {c.weight.max()}] beyond the {wb}-bit field "
                             f"[{-(1 << wb)}, {(1 << wb) - 1}]")
        lo, hi = lim["weight_exp_min"], lim["weight_exp_max"]
        if c.kind == "conv" and not lim["conv_weight_exp"]:
            lo = hi = 0
        if not _int(c.weight_exp) or not lo <= c.weight_exp <= hi:
            raise KdsnnError(f"{at}: weight_exp {c.weight_exp!r} outside [{lo}, {hi}]")
        for k in ("stride", "dilation"):
            if not all(_int(v) and v >= 1 for v in getattr(c, k)):
                raise KdsnnError(f"{at}: {k} {getattr(c, k)!r} must be positive integers")
        if not all(_int(v) and v >= 0 for v in c.padding) or not _int(c.groups) or c.groups < 1:
            raise KdsnnError(f"{at}: padding {c.padding!r} / groups {c.groups!r} out of range")
        if c.kind == "conv":
            src, dst = net.shape_of(c.src), net.shape_of(c.dst)
            if len(src) != 3 or len(dst) != 3 or c.weight.shape[0] != dst[0] or c.weight.shape[1] * c.groups != src[0]:
                raise KdsnnError(f"{at}: conv weight {tuple(c.weight.shape)} does not connect {src} to {dst}")


def _ints(a: np.ndarray, what: str) -> None:
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "iu":
        raise KdsnnError(f"{what} must be an integer array, got {getattr(a, 'dtype', type(a).__name__)}")
