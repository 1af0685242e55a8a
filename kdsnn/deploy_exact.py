"""Deployment-exact students: a PyTorch forward that is the chip's integer run, spike for spike.

The plan (kdsnn.exact_plan.make_plan) is the float student lowered once: the lowering's
own passes choose the input grid, each population's scale S and bias exponent and each
connection's weight exponent and sign mode (`compiler.lower.plan_from_state`). It is stored
in the checkpoint config and the exported graph's metadata, and the lowering reuses it
(compiler/lower.py), so training and deployment share one integer grid.

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

The integer pieces with their straight-through gradients are in kdsnn.exact_ops; rung 3
exact (kdsnn.exact_rung3.compare_runs: every layer's spikes at every step and the integer
logits, student forward vs intsim, on every sample) in kdsnn.exact_rung3.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kdsnn.backends.intsim.arith import STATE_MAX, bias_effective, lava_dense_weights
from kdsnn.backends.intsim.kernels import F32_EXACT, no_nnpack
from kdsnn.compiler.export import fold_bn_torch
from kdsnn.compiler.geometry import pair, window_out_hw
from kdsnn.compiler.intnet import InputSpec
from kdsnn.compiler.passes.scales import (
    bias_mantissa,
    bias_target,
    floor_correction,
    quantize_weights,
    weight_sigma,
)
from kdsnn.errors import KdsnnError
from kdsnn.exact_ops import IntNeurons, absmax, straight, wrap
from kdsnn.exact_plan import is_exact, plan_target
from kdsnn.lif import DECAY_UNIT, LIFNeuron
from kdsnn.neurons import SURROGATES

__all__ = ["ExactStudent", "training_forward"]


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
                                     "`kdsnn finetune STUDENT --hw HW`")
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
            if absmax(acc.detach()) >= STATE_MAX:                 # Lava's Conv: 24-bit wrap
                acc = straight(acc, wrap(acc.detach(), 24))
        else:
            acc = (src.reshape(src.shape[0], -1).to(dt) @ wi.T).to(torch.float64)
            y = acc * 2.0 ** e
            acc = y if e >= 0 else straight(y, torch.floor(y.detach()))
            if absmax(acc.detach()) >= 1 << 31:                   # int32 Dense output
                acc = straight(acc, wrap(acc.detach(), 32))
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
        return IntNeurons.apply(a, b_int, self.T, is_static, int(pp["du"]), int(pp["dv"]), int(pp["vth"]),
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


def training_forward(model: nn.Module, config: dict[str, Any]) -> nn.Module:
    """The module the training loop runs: ExactStudent for deployment-exact runs, else the model."""
    return ExactStudent(model, config["deploy_exact"]) if is_exact(config) else model
