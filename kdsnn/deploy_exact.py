"""Deployment-exact students: a PyTorch forward that is the chip's integer run, spike for spike.

`make_plan(model, config, target, x_cal)` lowers the float student once; the lowering's own
passes choose the input grid, each population's scale S and bias exponent and each
connection's weight exponent and sign mode (`compiler.lower.plan_from_state`). The plan
is stored in the checkpoint config and the exported graph's metadata, and the lowering
reuses it (compiler/lower.py), so training and deployment share one integer grid.

`ExactStudent(model, plan)` runs the student's graph with the target's integer arithmetic
exactly as `backends/intsim.py` computes it (the IntNet docstring in compiler/intnet.py):
  input    x_int = InputSpec.quantize(x)                          (the deployed grid)
  weights  BatchNorm folded by compiler.export.fold_bn_torch (running statistics, frozen),
           put on the grid by compiler.passes.scales.quantize_weights; dense weights then
           go through Lava's clip + LSB truncation (backends.intsim.arith.lava_dense_weights)
  a        conv: sum over the window, wrapped to 24 bits; dense: dot product shifted by the
           weight exponent (arithmetic, flooring), wrapped to 32 bits. A pooling in front
           of a synaptic layer is the sum-pool of the spikes into weights W/k^2, which is the
           integer identity the lowering's folded kernel computes
  neurons  u = wrap_once24(wrap32(decay(u, du + 1) + wrap32(a << 6)))
           v = clip24(wrap32(decay(v, dv) + u + bias)),  s = v > vth << 6,
           v = 0 where s (reset "zero"), v -= vth << 6 where s (reset "subtract", loihi2)
           bias = bias_effective(bias_mantissa(64 S b + floor corrections, bias_exp))
  readout  its v after step T is the integer logit; the float logit is v / (64 S T)
Every value is an integer held in a float tensor: float32 only where the sum of |w|·|x| of
one output is below 2^24 (then every partial sum is exact in any order), else float64.
LIF students: the neuron step takes du and dv (12-bit decays, Lava's
sign(x) * (|x| * (4096 - d) >> 12)) and the reset from the plan; IF students have du = 4095
(u holds no memory) and dv = 0. The leak is not trained here: the forward reads the plan's
dv, so a learned beta stays where the plan found it. A subtractive reset (loihi2) subtracts
vth << 6; its gradient passes the reset unchanged (detached), as the float neuron's.

Backward, straight-through: rounding, clipping of weights (zero gradient outside the clip
range), shifts and wraps pass the gradient of their float counterpart; spikes use the
student's surrogate on (v - vth << 6) / (64 S), the float neuron's v - theta; the reset is
detached. So every distillation loss applies unchanged to the integer forward.

`compare_runs(ex, intnet, x)` is rung 3 exact: every layer's spikes at every step and the
integer logits, student forward vs intsim, on every sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kdsnn.backends.base import RunResult
from kdsnn.backends.intsim import IntSimBackend
from kdsnn.backends.intsim.arith import bias_effective, lava_dense_weights
from kdsnn.backends.intsim.kernels import no_nnpack
from kdsnn.compiler.export import fold_bn_torch, student_to_nir
from kdsnn.compiler.geometry import pair, window_out_hw
from kdsnn.compiler.intnet import InputSpec, IntNet
from kdsnn.compiler.lower import (
    arithmetic_changes,
    lower,
    lowering_state,
    plan_from_state,
    plan_matches,
)
from kdsnn.compiler.passes.scales import (
    bias_mantissa,
    bias_target,
    floor_correction,
    quantize_weights,
    weight_sigma,
)
from kdsnn.compiler.targets import TargetSpec, load_target
from kdsnn.errors import KdsnnError
from kdsnn.lif import DECAY_UNIT, LIFNeuron
from kdsnn.neurons import SURROGATES, IFNeuron, _surrogate_grad

F32_EXACT = 1 << 24
STATE_MAX = 1 << 23


# ------------------------------------------------------------------ the plan
def make_plan(model: nn.Module, config: dict[str, Any], target: str | TargetSpec,
              calibration_x: np.ndarray) -> dict[str, Any]:
    """Lower the float student once and keep the lowering's choices (JSON-ready)."""
    graph = student_to_nir(model, {**config, "deploy_exact": None})
    st = lowering_state(graph, target, calibration_x, T=int(model.T))
    plan = plan_from_state(st)
    plan["target"] = target.name if isinstance(target, TargetSpec) else str(target)
    plan["calibration_samples"] = int(len(calibration_x))
    return plan


def plan_target(plan: dict[str, Any]) -> TargetSpec:
    """The target spec a plan was made for (refused if its arithmetic changed since)."""
    tg = load_target(plan["target"])
    if not plan_matches(plan, tg):
        raise KdsnnError(f"target {plan['target']!r}: its arithmetic changed since this student was trained "
                         f"deployment-exact for it ({arithmetic_changes(plan, tg)}); fine-tune again with "
                         "`kdsnn finetune --deploy-exact`")
    return tg


# ------------------------------------------------------------------ straight-through pieces
class _Straight(torch.autograd.Function):
    """Forward: the exact value `q`; backward: the gradient of `x` (times `mask`)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, q: torch.Tensor, mask: torch.Tensor | None):  # type: ignore[override]
        ctx.save_for_backward(mask if mask is not None else torch.empty(0))
        ctx.has_mask = mask is not None
        return q.to(x.dtype).clone()

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        (mask,) = ctx.saved_tensors
        return (g * mask if ctx.has_mask else g), None, None


def straight(x: torch.Tensor, q: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    return _Straight.apply(x, q, mask)


def _wrap(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Two's complement wrap of integer-valued floats (exact below 2^53)."""
    half = float(1 << (bits - 1))
    return torch.remainder(x + half, 2 * half) - half


def _wrap_once24(x: torch.Tensor) -> torch.Tensor:
    """Lava's one-sided u overflow test (backends.intsim.arith.wrap_once24), on floats."""
    M = float(STATE_MAX)
    y = torch.where(x > M, x - 2 * M, x)
    return torch.where(y <= -M, x + 2 * M, y)


def _decay(x: torch.Tensor, d: int) -> torch.Tensor:
    """sign(x) * ((|x| * (4096 - d)) >> 12) on integer-valued floats (exact below 2^41)."""
    if d == 0:
        return x
    if d >= 4096:
        return torch.zeros_like(x)
    return torch.sign(x) * torch.floor(x.abs() * float(4096 - d) / 4096.0)


def _absmax(t: torch.Tensor) -> float:
    if t.numel() == 0:
        return 0.0
    lo, hi = torch.aminmax(t)
    return max(-float(lo), float(hi))


class _IntNeurons(torch.autograd.Function):
    """T steps of one integer LIF population (Lava's arithmetic), surrogate backward.

    a: (T, B, n) or static (B, n) integer input currents; bias: (n,) integer bias.
    Returns spikes (T, B, n) float32 0/1 and v after the last step (B, n) float64.
    The reset sets v to 0 where it fired, or (`subtract`, loihi2's programmable neurons)
    subtracts vth << 6.
    An IF population whose |a| < 2^17 and |a << 6| + |bias| < 2^23 (checked on the batch)
    cannot wrap u or overflow 32 bits, so only the 24-bit clip of v remains: that case runs
    in float32, where every value is an integer below 2^24 (as intsim's fast path)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, bias: torch.Tensor, T: int, static: bool, du: int, dv: int,  # type: ignore[override]
                vth: int, norm: float, kind: int, slope: float, readout: bool, subtract: bool = False):
        lim = float(STATE_MAX - 1)
        thr = float(vth << 6)
        n_shape = a.shape if static else a.shape[1:]
        amax, bmax = _absmax(a), _absmax(bias)
        fast = du == 4095 and dv == 0 and amax < (1 << 17) and amax * 64 + bmax < STATE_MAX
        dt = torch.float32 if fast else torch.float64
        vs = torch.empty((T, *n_shape), dtype=dt, device=a.device)
        spikes = torch.empty((T, *n_shape), dtype=torch.float32, device=a.device)
        clipped = torch.zeros((T, *n_shape), dtype=torch.bool, device=a.device)
        if fast:
            b = bias.to(dt)
            base = b if not static else a.to(dt) * 64.0 + b
            v = torch.zeros(n_shape, dtype=dt, device=a.device)
            for t in range(T):
                v += base
                if not static:
                    v.add_(a[t].to(dt), alpha=64.0)
                lo, hi = torch.aminmax(v)
                if float(hi) > lim or float(lo) < -lim:
                    clipped[t] = v.abs() > lim
                    v.clamp_(-lim, lim)
                vs[t] = v
                s = v > thr
                spikes[t] = s
                if subtract:
                    v.sub_(s.to(dt), alpha=thr)
                else:
                    v.masked_fill_(s, 0.0)
            v = v.to(torch.float64)
        else:
            b = bias.to(torch.float64)
            u = torch.zeros(n_shape, dtype=torch.float64, device=a.device)
            v = torch.zeros_like(u)
            for t in range(T):
                at = _wrap(a.to(torch.float64) if static else a[t].to(torch.float64), 32)
                u = _wrap_once24(_wrap(_decay(u, du + 1) + _wrap(at * 64.0, 32), 32))
                pre = _wrap(_decay(v, dv) + u + b, 32)
                v = pre.clamp(-lim, lim)
                clipped[t] = v != pre
                vs[t] = v
                s = v > thr
                spikes[t] = s
                v = v - thr * s.to(v.dtype) if subtract else v.masked_fill(s, 0.0)
        ctx.save_for_backward(vs, spikes, clipped)
        ctx.args = (T, static, du, dv, thr, norm, kind, slope, readout, a.dtype, subtract)
        ctx.mark_non_differentiable(spikes) if readout else None
        return spikes, v

    @staticmethod
    def backward(ctx, gs: torch.Tensor, gv_last: torch.Tensor):  # type: ignore[override]
        vs, spikes, clipped = ctx.saved_tensors
        T, static, du, dv, thr, norm, kind, slope, readout, a_dtype, subtract = ctx.args
        kv, ku = (4096 - dv) / 4096.0, max(0, 4095 - du) / 4096.0
        dt = vs.dtype
        if readout or gs is None:
            sg = None
        else:
            sg = _surrogate_grad((vs - thr).mul_(1.0 / norm), kind, slope).mul_(1.0 / norm)
            sg.mul_(gs.to(dt))
        any_clip = bool(clipped.any())
        ga = torch.empty_like(vs)
        gb = torch.zeros_like(vs[0])
        g_r = gv_last.to(dt) if gv_last is not None else torch.zeros_like(vs[0])   # dL/d(v after reset)
        g_x_next = None
        for t in range(T - 1, -1, -1):
            g_p = g_r if subtract else g_r - g_r * spikes[t].to(dt)   # through the (detached) reset
            if sg is not None:
                g_p += sg[t]
            if any_clip:
                g_p.masked_fill_(clipped[t], 0.0)
            g_u = g_p if g_x_next is None or ku == 0.0 else g_p + g_x_next * ku
            torch.mul(g_u, 64.0, out=ga[t])
            gb += g_p
            g_x_next = g_u
            g_r = g_p * kv if kv != 1.0 else g_p
        g_a = (ga.sum(0) if static else ga).to(a_dtype)
        g_bias = gb.reshape(-1, gb.shape[-1]).sum(0).to(torch.float64)
        return g_a, g_bias, None, None, None, None, None, None, None, None, None, None


# ------------------------------------------------------------------ the integer forward
class ExactStudent(nn.Module):
    """The student's graph in the target's integer arithmetic (module docstring).

    forward(x) -> float logits (B, classes), the integer logit times out_scale;
    forward(x, return_features=True) -> (logits, {feature point: spike rate}), as GraphNet.
    integer_run(x) -> (integer logits (B, classes), {population: spikes (T, B, ...)}).
    The parameters are the wrapped GraphNet's (`self.student`); only its weights, biases,
    BatchNorm gamma and beta are read, and BatchNorm's running statistics never change.
    """

    def __init__(self, student: nn.Module, plan: dict[str, Any]) -> None:
        super().__init__()
        self.student = student
        self.plan = plan
        self.tg = plan_target(plan)
        if int(plan["T"]) != int(student.T):
            raise KdsnnError(f"the deployment-exact plan is for T={plan['T']}, the student runs T={student.T}")
        self.input_spec = InputSpec(shape=tuple(student.input_shape), scale=float(plan["input"]["scale"]),
                                    bits=int(plan["input"]["bits"]))
        self.T = int(plan["T"])
        nrn = dict(student.neuron or {})
        self.kind = SURROGATES.index(nrn.get("surrogate", "sigmoid"))
        self.slope = float(nrn.get("slope", 4.0))
        self.feature_points = list(student.feature_points)
        self._check_graph()

    # -- structure -----------------------------------------------------------------------
    def _check_graph(self) -> None:
        pops = self.plan["populations"]
        enc = (getattr(self.student, "encoding", None) or {}).get("kind", "direct")
        if enc != "direct":
            raise KdsnnError(f"the student's input is {enc}-encoded; deployment-exact training runs the deployed "
                             "graded input (direct encoding) only: distil with --encoding direct")
        for name, mod in self.student.nodes.items():
            if isinstance(mod, LIFNeuron) and name in pops:
                dv = min(DECAY_UNIT - 1, max(0, round((1.0 - mod.beta) * DECAY_UNIT)))
                want = (int(pops[name]["dv"]), pops[name].get("reset", mod.reset))
                if (dv, mod.reset) != want:
                    raise KdsnnError(f"node {name}: the LIF leak/reset (dv={dv}, reset {mod.reset}) is not the "
                                     f"plan's (dv={want[0]}, reset {want[1]}); plan the student afresh with "
                                     "`kdsnn finetune --deploy-exact`")
        consumers: dict[str, list[str]] = {}
        for s in self.student.specs:
            for i in s.inputs:
                consumers.setdefault(i, []).append(s.name)
        for s in self.student.specs:
            if s.op in ("act", "readout") and s.name not in pops:
                raise KdsnnError(f"node {s.name}: no population of that name in the deployment-exact plan; "
                                 "the plan belongs to another network")
            if s.op in ("conv", "linear"):
                outs = consumers.get(s.name, [])
                if len(outs) != 1 or outs[0] not in pops or s.name not in pops[outs[0]]["connections"]:
                    raise KdsnnError(f"node {s.name}: deployment-exact training needs each synaptic layer to feed "
                                     "one neuron layer directly (the lowering's connection of the same name)")
            if s.op in ("act", "readout"):
                for i in s.inputs:
                    src = next((x for x in self.student.specs if x.name == i), None)
                    if src is not None and src.op not in ("conv", "linear"):
                        raise KdsnnError(f"node {s.name}: input {i} ({src.op}) is not a conv/linear layer; "
                                         "deployment-exact training supports synaptic layers into neurons only")
                    if src is None:
                        raise KdsnnError(f"node {s.name}: the input image feeds it directly; deployment-exact "
                                         "training needs a synaptic layer in between")

    # -- pieces ------------------------------------------------------------------------------
    def _dtype(self, device: torch.device, bound: float) -> torch.dtype:
        return torch.float32 if device.type == "cpu" and bound < F32_EXACT else torch.float64

    def _synapse(self, spec: Any, src: torch.Tensor, src_max: float, from_input: bool, pscale: float,
                 pop: str) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """Integer a of one synaptic node (flattened per sample), its float bias, its exponent."""
        tg = self.tg
        mod = self.student.nodes[spec.name]
        c = self.plan["populations"][pop]["connections"][spec.name]
        S = float(self.plan["populations"][pop]["scale"])
        e, mode = int(c["weight_exp"]), c["sign_mode"]
        lin = mod.conv if spec.op == "conv" else mod.linear
        w, b = fold_bn_torch(lin.weight, lin.bias, mod.bn)
        if pscale != 1.0:                           # a pooling folded into this layer (fold_pool)
            w = w * pscale
        sigma = weight_sigma(S, e, self.input_spec.scale if from_input else 1.0)
        lo, hi, step = tg.weight_range(mode)
        w_np = w.detach().cpu().numpy()
        q = quantize_weights(w_np, sigma, lo, hi, step)
        if spec.op == "linear":
            q = lava_dense_weights(q, mode, tg.num_weight_bits)
        ws = w * sigma
        mask = ((ws >= lo) & (ws <= hi)).to(ws.dtype)
        fan_in = int(np.prod(q.shape[1:]))
        bound = float(max(abs(lo), abs(hi))) * fan_in * src_max
        dt = self._dtype(src.device, bound)
        wi = straight(ws, torch.from_numpy(q).to(src.device), mask).to(dt)
        if spec.op == "conv":
            with no_nnpack():
                acc = F.conv2d(src.to(dt), wi, None, lin.stride, lin.padding, lin.dilation, lin.groups)
            acc = acc.reshape(acc.shape[0], -1).to(torch.float64)
            if _absmax(acc.detach()) >= STATE_MAX:                 # Lava's Conv: 24-bit wrap
                acc = straight(acc, _wrap(acc.detach(), 24))
        else:
            acc = (src.reshape(src.shape[0], -1).to(dt) @ wi.T).to(torch.float64)
            y = acc * 2.0 ** e
            acc = y if e >= 0 else straight(y, torch.floor(y.detach()))
            if _absmax(acc.detach()) >= 1 << 31:                   # int32 Dense output
                acc = straight(acc, _wrap(acc.detach(), 32))
        return acc, b, e

    def _population(self, spec: Any, incoming: list[tuple[torch.Tensor, bool, torch.Tensor | None, int]],
                    B: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Spikes (T, B, n) and v after the last step (B, n) of one population."""
        tg = self.tg
        pp = self.plan["populations"][spec.name]
        S = float(pp["scale"])
        n = incoming[0][0].shape[1]
        dev = incoming[0][0].device
        bias = torch.zeros(n, dtype=torch.float64, device=dev)
        corr = 0.0
        for _, _, b, e in incoming:
            corr += floor_correction(e)
            if b is not None:
                per = int(n // b.numel())
                bias = bias + b.repeat_interleave(per)
        b_eff = bias_target(S, bias, corr)
        mant = bias_mantissa(b_eff.detach().cpu().numpy(), int(pp["bias_exp"]), tg.bias_mant_max)
        b_int = straight(b_eff, torch.from_numpy(bias_effective(mant, int(pp["bias_exp"]))).to(dev))
        static = [a for a, st, _, _ in incoming if st]
        dynamic = [a for a, st, _, _ in incoming if not st]
        a_st = sum(static) if static else None
        if dynamic:
            a = sum(dynamic).reshape(self.T, B, n)
            if a_st is not None:
                a = a + a_st.unsqueeze(0)
            is_static = False
        else:
            a, is_static = a_st, True
        norm = float((1 << tg.act_shift) * S)
        return _IntNeurons.apply(a, b_int, self.T, is_static, int(pp["du"]), int(pp["dv"]), int(pp["vth"]),
                                 norm, self.kind, self.slope, bool(pp["readout"]),
                                 pp.get("reset", "zero") == "subtract")

    # -- forward -------------------------------------------------------------------------------
    def integer_run(self, x: torch.Tensor, features: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(integer logits (B, classes) as float64, {population: spikes (T, B, *shape)})."""
        T, B = self.T, x.shape[0]
        xq = torch.from_numpy(self.input_spec.quantize(x.detach().cpu().numpy())).to(x.device)
        # name -> (tensor, static, largest |value|, from the input, pool scale to fold)
        vals: dict[str, tuple[torch.Tensor, bool, float, bool, float]] = {
            "input": (xq.to(torch.float64), True, float(self.input_spec.qmax), True, 1.0)}
        syn: dict[str, tuple[torch.Tensor, bool, torch.Tensor | None, int]] = {}
        spikes: dict[str, torch.Tensor] = {}
        shapes: dict[str, tuple[int, ...]] = {}
        logits = None
        for s in self.student.specs:
            if s.op in ("conv", "linear"):
                t, static, mx, from_in, psc = vals[s.inputs[0]]
                pop = next(o.name for o in self.student.specs if s.name in o.inputs)
                a, b, e = self._synapse(s, t, mx, from_in, psc, pop)
                syn[s.name] = (a, static, b, e)
                mod = self.student.nodes[s.name]
                shapes[s.name] = tuple(_out_shape(mod, t))
            elif s.op == "avgpool":
                t, static, mx, from_in, psc = vals[s.inputs[0]]
                if psc != 1.0 or from_in:
                    raise KdsnnError(f"node {s.name}: deployment-exact training folds one pooling of spikes "
                                     "into the next synaptic layer; not a pooling of the image or of a pooling")
                mod = self.student.nodes[s.name]
                k, st = pair(mod.kernel_size), pair(mod.stride or mod.kernel_size)
                pooled = F.avg_pool2d(t, k, st, divisor_override=1)
                vals[s.name] = (pooled, static, mx * k[0] * k[1], False, 1.0 / (k[0] * k[1]))
            elif s.op == "flatten":
                t, static, mx, from_in, psc = vals[s.inputs[0]]
                vals[s.name] = (t.reshape(t.shape[0], -1), static, mx, from_in, psc)
            else:  # act / readout
                inc = [syn[i] for i in s.inputs]
                sp, v_last = self._population(s, inc, B)
                shape = shapes[s.inputs[0]]
                spikes[s.name] = sp.reshape(T, B, *shape)
                if s.op == "readout":
                    logits = v_last
                else:
                    vals[s.name] = (sp.reshape(T * B, *shape), False, 1.0, False, 1.0)
        assert logits is not None
        return logits, spikes

    def out_scale(self) -> float:
        ro = next(s.name for s in self.student.specs if s.op == "readout")
        return 1.0 / ((1 << self.tg.act_shift) * float(self.plan["populations"][ro]["scale"]) * self.T)

    def forward(self, x: torch.Tensor, return_features: bool | str = False):
        if return_features == "pre":
            raise KdsnnError("deployment-exact training distils spike-rate features (feature points after the "
                             "neurons); pre-activation features are not available")
        z_int, spikes = self.integer_run(x)
        z = (z_int * self.out_scale()).float()
        if not return_features:
            return z
        feats = {k: spikes[k].mean(0).float() for k in self.feature_points if k in spikes}
        return z, feats

    def feature_shapes(self) -> dict[str, tuple[int, ...]]:
        return self.student.feature_shapes()


def _out_shape(mod: nn.Module, t: torch.Tensor) -> tuple[int, ...]:
    if hasattr(mod, "conv"):
        c = mod.conv
        return (c.out_channels, *window_out_hw(tuple(t.shape[2:]), tuple(c.kernel_size), tuple(c.stride),
                                               tuple(c.padding), tuple(c.dilation)))
    return (mod.linear.out_features,)


# ------------------------------------------------------------------ rung 3 exact
def compare_runs(ex: ExactStudent, net: IntNet, x: np.ndarray, batch_size: int = 128,
                 intsim: RunResult | None = None) -> dict[str, Any]:
    """Rung 3 exact: the student's integer forward vs intsim on every sample of x.

    Equal means every layer's spikes at every step and the integer logits are the same.
    `intsim`: a recorded intsim run of x to compare against (spike trains kept), else intsim
    runs here, batch by batch. Returns per-layer fractions of equal samples and of equal
    (sample, step) spike maps, the fraction of samples whose logits are equal, and the first
    difference."""
    names = [p.name for p in net.populations]
    if intsim is not None and (intsim.spike_trains is None or len(intsim.logits) != len(x)
                               or any(k not in intsim.spike_trains for k in names)):
        intsim = None                                   # not recorded: run it here, batch by batch
    exe = IntSimBackend().compile(net, batch_size=batch_size) if intsim is None else None
    dev = next(ex.student.parameters()).device
    n = len(x)
    eq_samples = {k: 0 for k in names}
    eq_steps = {k: 0 for k in names}
    logits_eq = 0
    all_eq = 0
    first: dict[str, Any] | None = None
    preds = np.zeros(n, np.int64)
    was = ex.training
    ex.eval()
    with torch.no_grad():
        for i in range(0, n, batch_size):
            xb = np.asarray(x[i:i + batch_size])
            if exe is not None:
                r = exe.run(xb, record=True)
                r_logits, r_trains = np.asarray(r.logits), r.spike_trains
            else:
                assert intsim is not None and intsim.spike_trains is not None
                r_logits = np.asarray(intsim.logits[i:i + len(xb)])
                r_trains = {k: intsim.spike_trains[k][i:i + len(xb)] for k in names}
            z, sp = ex.integer_run(torch.as_tensor(xb, device=dev))
            zi = z.round().to(torch.int64).cpu().numpy()
            preds[i:i + len(xb)] = zi.argmax(1)
            same = np.ones(len(xb), bool)
            lg = (zi == r_logits).all(1)
            logits_eq += int(lg.sum())
            same &= lg
            for k in names:
                mine = sp[k].transpose(0, 1).reshape(len(xb), ex.T, -1).to(torch.uint8).cpu().numpy()
                theirs = np.asarray(r_trains[k]).reshape(len(xb), ex.T, -1)
                step_eq = (mine == theirs).all(2)
                eq_steps[k] += int(step_eq.sum())
                s_eq = step_eq.all(1)
                eq_samples[k] += int(s_eq.sum())
                same &= s_eq
                if first is None and not s_eq.all():
                    j = int(np.flatnonzero(~s_eq)[0])
                    t = int(np.flatnonzero(~step_eq[j])[0])
                    first = {"sample": i + j, "layer": k, "step": t,
                             "spikes_student": int(mine[j, t].sum()), "spikes_intsim": int(theirs[j, t].sum())}
            if first is None and not lg.all():
                j = int(np.flatnonzero(~lg)[0])
                first = {"sample": i + j, "layer": "logits", "step": ex.T - 1}
            all_eq += int(same.sum())
    ex.train(was)
    return {"kind": "exact", "samples": n, "samples_identical": all_eq,
            "logits_equal": logits_eq / max(n, 1),
            "layers": {k: {"samples_equal": eq_samples[k] / max(n, 1),
                           "steps_equal": eq_steps[k] / max(n * ex.T, 1)} for k in names},
            "first_difference": first, "predictions": preds, "passed": bool(n and all_eq == n)}


def spike_agreement_float(student: nn.Module, net: IntNet, x: np.ndarray, batch_size: int = 128) -> dict[str, Any]:
    """How far a float student is from exact: per layer, the fraction of samples whose spikes
    equal intsim's at every step, and of equal (sample, step) spike maps ("before")."""
    import copy

    exe = IntSimBackend().compile(net, batch_size=batch_size)
    m = copy.deepcopy(student).double().eval()
    ifs = {k: mod for k, mod in m.nodes.items() if isinstance(mod, IFNeuron)}
    for mod in ifs.values():
        mod.record = True
    n, T = len(x), int(m.T)
    eq_samples = {k: 0 for k in ifs}
    eq_steps = {k: 0 for k in ifs}
    with torch.no_grad():
        for i in range(0, n, batch_size):
            xb = np.asarray(x[i:i + batch_size])
            r = exe.run(xb, record=True)
            m(torch.as_tensor(xb, dtype=torch.float64))
            for k, mod in ifs.items():
                mine = mod.last_spikes.transpose(0, 1).reshape(len(xb), T, -1).to(torch.uint8).numpy()
                theirs = np.asarray(r.spike_trains[k]).reshape(len(xb), T, -1)
                step_eq = (mine == theirs).all(2)
                eq_steps[k] += int(step_eq.sum())
                eq_samples[k] += int(step_eq.all(1).sum())
    return {k: {"samples_equal": eq_samples[k] / max(n, 1), "steps_equal": eq_steps[k] / max(n * T, 1)}
            for k in ifs}


def lower_exact(model: nn.Module, config: dict[str, Any], calibration_x: np.ndarray) -> IntNet:
    """The IntNet of a deployment-exact student (its graph carries the plan; the lowering reuses it)."""
    plan = config["deploy_exact"]
    graph = student_to_nir(model, config)
    net = lower(graph, plan_target(plan), calibration_x, T=int(plan["T"]))
    if not net.metadata["lowering"].get("deploy_exact_plan"):
        raise KdsnnError("the lowering did not take the student's deployment-exact plan; "
                         + "; ".join(m for m in net.metadata["lowering"]["log"] if m.startswith("plan:")))
    return net


def rung3_exact(model: nn.Module, config: dict[str, Any] | None, intnet: IntNet, x: np.ndarray, y: np.ndarray,
                intsim: RunResult | None = None, batch_size: int = 128) -> dict[str, Any] | None:
    """Rung 3 exact for a deployment-exact student whose lowering reused its plan, else None
    (the flow then checks the tolerance rung). JSON-ready, with the student's integer accuracy;
    `passed` only when every sample is identical. `intsim`: the flow's recorded intsim run."""
    if not is_exact(config) or not intnet.metadata.get("lowering", {}).get("deploy_exact_plan"):
        return None
    assert config is not None
    r = compare_runs(ExactStudent(model, config["deploy_exact"]), intnet, x, batch_size, intsim=intsim)
    preds = r.pop("predictions")
    labelled = len(preds) and bool(np.all(np.asarray(y)[:len(preds)] >= 0))
    r["accuracy_student_int"] = float((preds == np.asarray(y)[:len(preds)]).mean()) if labelled else None
    r["layers_compared"] = len(r["layers"])
    r["steps_compared"] = int(len(preds) * int(intnet.T))
    r["target"] = config["deploy_exact"].get("target")
    return r


def is_exact(config: dict[str, Any] | None) -> bool:
    return bool(config and isinstance(config.get("deploy_exact"), dict))


def training_forward(model: nn.Module, config: dict[str, Any]) -> nn.Module:
    """The module the training loop runs: ExactStudent for deployment-exact runs, else the model."""
    return ExactStudent(model, config["deploy_exact"]) if is_exact(config) else model


def headroom_note(plan: dict[str, Any]) -> str:
    """One line on the plan: scales per population (for logs)."""
    return ", ".join(f"{k} S={v['scale']:.4g}" for k, v in plan["populations"].items()) + (
        f"; input scale {plan['input']['scale']:.4g} ({plan['input']['bits']} bits)")


__all__ = ["ExactStudent", "make_plan", "compare_runs", "spike_agreement_float", "lower_exact",
           "rung3_exact", "training_forward", "is_exact", "plan_target"]
