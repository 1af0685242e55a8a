"""One foreign NIR node -> its canonical node and output shape, exactly or refused (the
rules are listed in `kdsnn.compiler.nir.canonicalize`; the dynamics they keep are
docs/design.md, "Float semantics")."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import nir
import numpy as np
from kdsnn.compiler.dynamics import NEURONS, SPIKING, discretise, discretise_delay, resolve_reset
from kdsnn.compiler.geometry import pair, window_out_hw
from kdsnn.compiler.nir.context import ImportContext

CANONICAL = ("Input", "Output", "Conv2d", "Affine", "Linear", "Flatten", "AvgPool2d",
             "SumPool2d", "IF", "I", "LIF", "LI", "CubaLIF", "CubaLI", "Delay")
IMPORTABLE = CANONICAL + ("NIRGraph",)
SYNAPTIC = (nir.Conv2d, nir.Affine, nir.Linear)
REFUSED_WHY = {
    "Conv1d": "1-d convolutions are not supported (kdsnn networks take images or vectors)",
    "Scale": "an element-wise Scale is not supported (fold it into the neighbouring weights)",
    "Threshold": "a stateless Threshold has no exact IF equivalent",
    "Identity": "Identity nodes are not supported (remove them from the graph)",
}


def _shape_of(v: Any) -> tuple[int, ...] | None:
    if isinstance(v, dict):
        v = next(iter(v.values()), None)
    if v is None:
        return None
    a = np.asarray(v)
    if a.dtype == object:
        return None
    return tuple(int(x) for x in a.ravel())


def _strip_batch(name: str, s: tuple[int, ...], ctx: ImportContext) -> tuple[int, ...]:
    if len(s) in (2, 4) and s[0] == 1:
        ctx.notes.append(f"{name}: dropped a leading batch dimension of 1 from shape {s}")
        return s[1:]
    return s


def _arr(name: str, what: str, v: Any, ctx: ImportContext) -> np.ndarray:
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise ctx.fail(name, f"{what} is not numeric") from None
    if np.isnan(a).any():
        raise ctx.fail(name, f"{what} contains NaN")
    return a


def _param(name: str, what: str, v: Any, shape: tuple[int, ...], ctx: ImportContext) -> np.ndarray:
    """A neuron parameter broadcast to the layer's shape (scalars and (1,) allowed)."""
    a = _arr(name, what, v, ctx)
    if a.shape in ((), (1,)):
        return np.full(shape, float(np.ravel(a)[0]))
    if tuple(a.shape) != tuple(shape):
        raise ctx.fail(name, f"{what} has shape {tuple(a.shape)} but the layer receives shape {shape}")
    return a


def _homogeneous(name: str, what: str, a: np.ndarray, ctx: ImportContext) -> float:
    lo, hi = float(np.min(a)), float(np.max(a))
    if lo != hi:
        raise ctx.fail(name, f"per-neuron {what} differ ({lo:g} .. {hi:g}); a Loihi population holds "
                             f"one {what} per layer, so kdsnn refuses heterogeneous values")
    return lo


def _neuron_params(name: str, node: nir.NIRNode, s: tuple[int, ...], ctx: ImportContext) -> nir.NIRNode:
    """The same neuron with every parameter broadcast to the shape it receives (exporters
    write scalars and (1,) arrays)."""
    kw = {}
    for f in fields(node):
        if f.name in ("input_type", "output_type", "metadata"):
            continue
        v = getattr(node, f.name)
        if f.name == "v_reset" and v is None:
            v = 0.0
        kw[f.name] = _param(name, f.name, v, s, ctx)
    try:
        return type(node)(**kw)
    except (AssertionError, ValueError) as e:  # pragma: no cover - shapes were made equal above
        raise ctx.fail(name, f"inconsistent {type(node).__name__} parameters ({e})") from None


def _convert_neuron(name: str, node: nir.NIRNode, s: tuple[int, ...], ctx: ImportContext) -> nir.NIRNode:
    """Any of the six NIR neurons, read through `dynamics.discretise` (the one reading of its
    dynamics): refused where that refuses; simplified to IF / I where it neither leaks nor
    holds a current (exact: a gain != 1 is folded into the threshold or the feeding weights);
    otherwise kept as it is, with its parameters broadcast."""
    node = _neuron_params(name, node, s, ctx)
    mode = None
    if isinstance(node, SPIKING):
        if ctx.reset is None and name in ctx.stated_modes:
            mode = ctx.stated_modes[name]
        else:
            mode, note = resolve_reset(name, node, ctx.reset, name not in ctx.v_reset_missing, ctx.version,
                                       ctx.source)
            if note:
                ctx.notes.append(note)
        ctx.reset_modes[name] = mode
    d = discretise(node, ctx.dt, mode, name=name, source=ctx.source)
    ctx.notes.extend(d.notes)
    kind = type(node).__name__
    if d.has_current or d.leaks or np.any(d.bias != 0):
        return node
    gain = d.gain
    if not np.all(np.isfinite(gain)) or np.any(gain <= 0):
        raise ctx.fail(name, f"{kind} input gain {float(np.min(gain)):g}: only a finite gain > 0 integrates "
                             "its input")
    if not d.spiking:
        if kind != "I":
            ctx.notes.append(f"{name}: {kind} without leak or current read as the integrator I")
        g = _homogeneous(name, "readout gains", gain, ctx)
        if g != 1.0:
            ctx.readout_gain[name] = g
        return nir.I(r=np.ones(s))
    if kind != "IF":
        ctx.notes.append(f"{name}: {kind} without leak or current read as IF")
    theta = _homogeneous(name, "thresholds", d.v_threshold / gain, ctx)
    if not theta > 0:
        raise ctx.fail(name, f"threshold {theta:g} <= 0 fires without input; kdsnn needs theta > 0")
    if np.any(gain != 1.0):
        ctx.notes.append(f"{name}: input gain {float(gain.flat[0]):g} folded into the threshold "
                         f"({float(d.v_threshold.flat[0]):g} -> {theta:g})")
    return nir.IF(r=np.ones(s), v_threshold=np.full(s, theta), v_reset=d.v_reset / gain)


def convert_node(name: str, node: nir.NIRNode, s: tuple[int, ...] | None, ps: list[str], ss: list[str],
             nodes: dict[str, nir.NIRNode], ctx: ImportContext) -> tuple[nir.NIRNode, tuple[int, ...]]:
    """One node -> (canonical node, its batch-free output shape)."""
    if isinstance(node, nir.Input):
        shape = _shape_of(node.input_type)
        if not shape or any(d <= 0 for d in shape):
            raise ctx.fail(name, f"Input has no usable shape ({shape})")
        shape = _strip_batch(name, shape, ctx)
        return nir.Input(input_type={"input": np.array(shape)}), shape
    assert s is not None
    if isinstance(node, nir.Output):
        shape = _shape_of(node.output_type)
        if shape:
            shape = _strip_batch(name, shape, ctx)
            if shape != s and int(np.prod(shape)) == int(np.prod(s)):
                ctx.notes.append(f"{name}: Output declares shape {shape} but receives {s} from {ps[0]!r} "
                                 "(same elements; read as the shape it receives)")
            elif shape != s:
                raise ctx.fail(name, f"Output declares shape {shape} but receives {s} from {ps[0]!r}")
        return nir.Output(output_type={"output": np.array(s)}), s
    if isinstance(node, nir.Conv2d):
        return _convert_conv(name, node, s, ps, ctx)
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = _arr(name, "weight", node.weight, ctx)
        kind = type(node).__name__
        if w.ndim != 2:
            raise ctx.fail(name, f"{kind} weight has shape {w.shape}; kdsnn needs a 2-d (out, in) matrix")
        if s != (w.shape[1],):
            raise ctx.fail(name, f"{kind} expects input shape ({w.shape[1]},) but receives {s} from {ps[0]!r}")
        if isinstance(node, nir.Linear):
            return nir.Linear(weight=w), (w.shape[0],)
        b = _arr(name, "bias", node.bias, ctx)
        if b.shape in ((), (1,)) and w.shape[0] != 1:
            b = np.full(w.shape[0], float(np.ravel(b)[0]))
        if b.shape != (w.shape[0],):
            raise ctx.fail(name, f"Affine bias has shape {b.shape}, weight has {w.shape[0]} outputs")
        return nir.Affine(weight=w, bias=b), (w.shape[0],)
    if isinstance(node, nir.Flatten):
        return _convert_flatten(name, node, s, ps, ctx)
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        kind = type(node).__name__
        if len(s) != 3:
            raise ctx.fail(name, f"{kind} needs a (C, H, W) input, receives {s} from {ps[0]!r}")
        k = pair(node.kernel_size, "kernel_size", ctx.at(name))
        st = pair(node.stride if node.stride is not None else node.kernel_size, "stride", ctx.at(name))
        p = pair(node.padding if node.padding is not None else 0, "padding", ctx.at(name))
        if isinstance(node, nir.AvgPool2d) and p != (0, 0):
            raise ctx.fail(name, f"AvgPool2d with padding {p}: NIR does not define whether padded zeros "
                                 "count in the mean; use SumPool2d or no padding")
        if min(k) < 1 or min(st) < 1 or min(p) < 0:
            raise ctx.fail(name, f"{kind} kernel {k}, stride {st}, padding {p} are invalid")
        ho, wo = window_out_hw(s[1:], k, st, p)
        if ho < 1 or wo < 1:
            raise ctx.fail(name, f"{kind} kernel {k} is larger than its input {s}")
        cls = nir.AvgPool2d if isinstance(node, nir.AvgPool2d) else nir.SumPool2d
        return cls(kernel_size=np.array(k), stride=np.array(st), padding=np.array(p)), (s[0], ho, wo)
    if isinstance(node, NEURONS):
        return _convert_neuron(name, node, s, ctx), s
    if isinstance(node, nir.Delay):
        node = nir.Delay(delay=_param(name, "delay", node.delay, s, ctx))
        discretise_delay(node, ctx.dt, name=name, source=ctx.source)   # whole steps or refused
        return node, s
    raise ctx.fail(name, f"{type(node).__name__} is not supported: "
                         f"{REFUSED_WHY.get(type(node).__name__, 'unknown node type')}")


def _convert_conv(name: str, node: nir.Conv2d, s: tuple[int, ...], ps: list[str], ctx: ImportContext):
    w = _arr(name, "weight", node.weight, ctx)
    if w.ndim != 4:
        raise ctx.fail(name, f"Conv2d weight has shape {w.shape}; expected (C_out, C_in/groups, kH, kW)")
    groups = int(np.ravel(np.asarray(node.groups))[0]) if node.groups is not None else 1
    if len(s) != 3 or s[0] != w.shape[1] * groups:
        raise ctx.fail(name, f"Conv2d expects {w.shape[1] * groups} input channels (C, H, W) but receives "
                             f"{s} from {ps[0]!r}")
    if node.input_shape is not None:
        declared = _shape_of(node.input_shape)
        if declared and tuple(declared) != s[1:]:
            raise ctx.fail(name, f"Conv2d declares input_shape {tuple(declared)} but receives {s[1:]}")
    stride = pair(node.stride, "stride", ctx.at(name))
    dil = pair(node.dilation if node.dilation is not None else 1, "dilation", ctx.at(name))
    k = w.shape[2:]
    pad = node.padding
    if isinstance(pad, bytes):
        pad = pad.decode()
    if isinstance(pad, str):
        if pad == "valid":
            p = (0, 0)
        elif pad == "same":
            span = (dil[0] * (k[0] - 1), dil[1] * (k[1] - 1))
            if stride != (1, 1) or span[0] % 2 or span[1] % 2:
                raise ctx.fail(name, f"padding 'same' with stride {stride}, kernel {k} is asymmetric; "
                                     "give explicit padding")
            p = (span[0] // 2, span[1] // 2)
        else:
            raise ctx.fail(name, f"padding {pad!r} is not 'same', 'valid' or integers")
    else:
        p = pair(pad, "padding", ctx.at(name))
    ho, wo = window_out_hw(s[1:], k, stride, p, dil)
    if ho < 1 or wo < 1:
        raise ctx.fail(name, f"Conv2d output would be empty for input {s}")
    b = _arr(name, "bias", node.bias if node.bias is not None else 0.0, ctx)
    if b.shape in ((), (1,)) and w.shape[0] != 1:
        b = np.full(w.shape[0], float(np.ravel(b)[0]))
    if b.shape != (w.shape[0],):
        raise ctx.fail(name, f"Conv2d bias has shape {b.shape}, weight has {w.shape[0]} output channels")
    conv = nir.Conv2d(input_shape=(s[1], s[2]), weight=w, stride=stride, padding=p, dilation=dil,
                      groups=groups, bias=b)
    return conv, (w.shape[0], ho, wo)


def _convert_flatten(name: str, node: nir.Flatten, s: tuple[int, ...], ps: list[str], ctx: ImportContext):
    k = len(s)
    sd, ed = int(node.start_dim), int(node.end_dim)
    stored = _shape_of(node.input_type)
    if stored and len(stored) == k + 1 and (stored[1:] == s or not any(stored)):
        # batched convention (Sinabs' older exporter): dims count the batch dimension
        sd = sd - 1 if sd > 0 else sd
        ed = ed - 1 if ed > 0 else ed
        ctx.notes.append(f"{name}: Flatten dims counted a batch dimension; shifted by one")
    elif stored and any(stored) and stored != s:
        raise ctx.fail(name, f"Flatten declares input {stored} but receives {s} from {ps[0]!r}")
    if not (-k <= sd < k and -k <= ed < k):
        raise ctx.fail(name, f"Flatten dims ({node.start_dim}, {node.end_dim}) do not fit its input {s}")
    sd, ed = sd % k, ed % k
    if sd > ed:
        raise ctx.fail(name, f"Flatten start_dim {sd} > end_dim {ed}")
    out = s[:sd] + (int(np.prod(s[sd:ed + 1])),) + s[ed + 1:]
    return nir.Flatten(input_type={"input": np.array(s)}, start_dim=sd, end_dim=ed), out
