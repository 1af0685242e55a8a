"""One foreign NIR node -> its canonical node and output shape, exactly or refused (the
rules are listed in `kdsnn.compiler.nir.canonicalize`)."""

from __future__ import annotations

import math
from typing import Any

import nir
import numpy as np
from kdsnn.compiler.geometry import pair, window_out_hw
from kdsnn.compiler.nir.context import ImportContext

CANONICAL = ("Input", "Output", "Conv2d", "Affine", "Linear", "Flatten", "AvgPool2d",
             "SumPool2d", "IF", "I")
IMPORTABLE = CANONICAL + ("LIF", "LI", "CubaLIF", "NIRGraph")
SYNAPTIC = (nir.Conv2d, nir.Affine, nir.Linear)
REFUSED_WHY = {
    "Conv1d": "1-d convolutions are not supported (kdsnn networks take images or vectors)",
    "Delay": "synaptic delays are not supported (kdsnn's canonical timing has zero delay)",
    "Scale": "an element-wise Scale is not supported (fold it into the neighbouring weights)",
    "Threshold": "a stateless Threshold has no exact IF equivalent",
    "CubaLI": "a current-based leaky integrator leaks (only non-leaky I readouts are exact)",
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


def _if_node(name: str, shape: tuple[int, ...], r: np.ndarray, vth: np.ndarray, v_reset: np.ndarray,
             ctx: ImportContext, r_is_gain: bool = True) -> nir.IF:
    if np.any(v_reset != 0):
        raise ctx.fail(name, f"v_reset={float(np.ravel(v_reset)[0]):g}: kdsnn's IF resets to 0; another "
                             "reset value would change the dynamics")
    theta = _homogeneous(name, "thresholds", vth, ctx)
    if not math.isfinite(theta):
        raise ctx.fail(name, f"threshold {theta} is not finite")
    if r_is_gain:
        gain = _homogeneous(name, "input gains r", r, ctx)
        if not (gain > 0 and math.isfinite(gain)):
            raise ctx.fail(name, f"input gain r={gain:g}: only a finite r > 0 integrates its input "
                                 "exactly like kdsnn's IF")
        if gain != 1.0:
            ctx.notes.append(f"{name}: r={gain:g} folded into the threshold ({theta:g} -> {theta / gain:g})")
            theta = theta / gain
    if not theta > 0:
        raise ctx.fail(name, f"threshold {theta:g} <= 0 fires without input; kdsnn needs theta > 0")
    return nir.IF(r=np.ones(shape), v_threshold=np.full(shape, theta), v_reset=np.zeros(shape))


def _no_leak(name: str, kind: str, tau: np.ndarray, r: np.ndarray, ctx: ImportContext, what: str = "tau") -> None:
    """Accept only tau = inf with r = inf (snnTorch's r = tau/dt convention: unit gain)."""
    if not np.all(np.isposinf(tau)):
        t = float(np.ravel(tau)[np.argmin(np.isposinf(np.ravel(tau)))])
        raise ctx.fail(name, f"{kind} with {what}={t:g} leaks; kdsnn's neurons do not leak, and only "
                             f"{what}=inf reduces exactly to them")
    if not np.all(np.isposinf(r)):
        raise ctx.fail(name, f"{kind} with {what}=inf and finite r={float(np.ravel(r)[0]):g}: the input "
                             "term r*I/tau vanishes, so the neuron never integrates; only r=inf "
                             "(exporters' r = tau/dt convention) means unit gain")


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
            if shape != s:
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
    if isinstance(node, nir.IF):
        r = _param(name, "r", node.r, s, ctx)
        vth = _param(name, "v_threshold", node.v_threshold, s, ctx)
        vr = _param(name, "v_reset", node.v_reset if node.v_reset is not None else 0.0, s, ctx)
        return _if_node(name, s, r, vth, vr, ctx), s
    if isinstance(node, nir.LIF):
        tau, r = _param(name, "tau", node.tau, s, ctx), _param(name, "r", node.r, s, ctx)
        _no_leak(name, "LIF", tau, r, ctx)
        vth = _param(name, "v_threshold", node.v_threshold, s, ctx)
        vr = _param(name, "v_reset", node.v_reset if node.v_reset is not None else 0.0, s, ctx)
        ctx.notes.append(f"{name}: LIF with tau=r=inf read as IF (no leak, unit gain)")
        return _if_node(name, s, r, vth, vr, ctx, r_is_gain=False), s
    if isinstance(node, nir.CubaLIF):
        tau_m, r = _param(name, "tau_mem", node.tau_mem, s, ctx), _param(name, "r", node.r, s, ctx)
        _no_leak(name, "CubaLIF", tau_m, r, ctx, what="tau_mem")
        tau_s = _param(name, "tau_syn", node.tau_syn, s, ctx)
        w_in = _param(name, "w_in", node.w_in, s, ctx)
        if ctx.dt is None:
            raise ctx.fail(name, "CubaLIF's synaptic current filter (tau_syn) has memory unless "
                                 "tau_syn == dt, and the graph does not state dt; refused")
        if not (np.all(tau_s == ctx.dt) and np.all(w_in == 1.0)):
            raise ctx.fail(name, f"CubaLIF synaptic current with tau_syn={float(np.ravel(tau_s)[0]):g}, "
                                 f"w_in={float(np.ravel(w_in)[0]):g} at dt={ctx.dt:g} has memory or "
                                 "scales its input; only tau_syn == dt and w_in == 1 reduce to IF")
        vth = _param(name, "v_threshold", node.v_threshold, s, ctx)
        vr = _param(name, "v_reset", node.v_reset if node.v_reset is not None else 0.0, s, ctx)
        ctx.notes.append(f"{name}: CubaLIF with memoryless synapse and tau_mem=r=inf read as IF")
        return _if_node(name, s, r, vth, vr, ctx, r_is_gain=False), s
    if isinstance(node, (nir.I, nir.LI)):
        if any(not isinstance(nodes[x], nir.Output) for x in ss):
            raise ctx.fail(name, f"a non-spiking integrator ({type(node).__name__}) that feeds "
                                 f"{', '.join(ss)}: kdsnn supports it only as the readout feeding the Output")
        if isinstance(node, nir.LI):
            _no_leak(name, "LI", _param(name, "tau", node.tau, s, ctx), _param(name, "r", node.r, s, ctx), ctx)
            ctx.notes.append(f"{name}: LI with tau=r=inf read as the readout integrator I")
            return nir.I(r=np.ones(s)), s
        r = _param(name, "r", node.r, s, ctx)
        gain = _homogeneous(name, "readout gains r", r, ctx)
        if not (gain > 0 and math.isfinite(gain)):
            raise ctx.fail(name, f"readout gain r={gain:g} must be finite and > 0")
        return nir.I(r=np.full(s, gain)), s
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
