"""Integrate-and-fire neurons with surrogate gradients (docs/design.md, "Float semantics").

Forward (exact, what every backend must reproduce):
    v[t] = v[t-1] + y[t];  s[t] = (v[t] > theta);  v[t] = 0 where s[t]   (v[-1] = 0)
Backward: the Heaviside step is replaced by the derivative of a smooth surrogate.
Tensors are time-major and time-folded: (T*B, ...) with the T steps of one batch stacked,
so synaptic layers run once over all steps.
"""

from __future__ import annotations

import math

import torch
from torch import nn

SURROGATES = ("sigmoid", "arctan")


class _SpikeFn(torch.autograd.Function):
    """Heaviside(x > 0) forward, surrogate derivative backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, kind: int, slope: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.kind, ctx.slope = kind, slope
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * _surrogate_grad(x, ctx.kind, ctx.slope), None, None


def spike(x: torch.Tensor, surrogate: str = "sigmoid", slope: float = 4.0) -> torch.Tensor:
    """Heaviside of `x` (strictly > 0) with the named surrogate gradient."""
    if surrogate not in SURROGATES:
        raise ValueError(f"unknown surrogate {surrogate!r}; choose one of {', '.join(SURROGATES)}")
    return _SpikeFn.apply(x, SURROGATES.index(surrogate), float(slope))


class IFNeuron(nn.Module):
    """Multi-step IF neuron, hard reset to zero, strict threshold.

    Input and output are time-folded tensors of shape (T*B, ...); `T` is set by the owning
    network before each forward (`net.set_time_steps`). With `record=True` the last
    forward's spikes stay in `self.last_spikes` (T, B, ...) for inspection.
    """

    def __init__(self, theta: float = 1.0, surrogate: str = "sigmoid", slope: float = 4.0,
                 detach_reset: bool = True) -> None:
        super().__init__()
        if surrogate not in SURROGATES:
            raise ValueError(f"unknown surrogate {surrogate!r}; choose one of {', '.join(SURROGATES)}")
        self.theta = float(theta)
        self.surrogate = surrogate
        self.slope = float(slope)
        self.detach_reset = detach_reset
        self.T = 1
        self.record = False
        self.last_spikes: torch.Tensor | None = None

    def extra_repr(self) -> str:
        return f"theta={self.theta}, surrogate={self.surrogate}, slope={self.slope}"

    def forward(self, y: torch.Tensor, static: bool = False) -> torch.Tensor:
        """Spikes (T*B, ...) for a time-folded input (T*B, ...), or for a static input
        (B, ...) that is the same at every step (direct encoding: no T-fold copy needed)."""
        T = self.T
        if static:
            ys = y
        else:
            if y.shape[0] % T:
                raise ValueError(f"IFNeuron: leading dim {y.shape[0]} is not a multiple of T={T}")
            ys = y.reshape(T, y.shape[0] // T, *y.shape[1:])
        if self.detach_reset:
            spikes = _IFMultiStep.apply(ys, T, static, self.theta, SURROGATES.index(self.surrogate), self.slope)
        else:
            spikes = self._forward_autograd(ys.unsqueeze(0).expand(T, *ys.shape) if static else ys)
        if self.record:
            self.last_spikes = spikes.detach()
        return spikes.reshape(T * spikes.shape[1], *spikes.shape[2:])

    def _forward_autograd(self, ys: torch.Tensor) -> torch.Tensor:
        """Step-by-step version through autograd, (T, B, ...) -> (T, B, ...) (also used when
        the reset is not detached)."""
        v = torch.zeros_like(ys[0])
        out = []
        for t in range(ys.shape[0]):
            v = v + ys[t]
            s = spike(v - self.theta, self.surrogate, self.slope)
            keep = 1.0 - (s.detach() if self.detach_reset else s)
            v = v * keep
            out.append(s)
        return torch.stack(out)


def _surrogate_grad(x: torch.Tensor, kind: int, a: float) -> torch.Tensor:
    """Derivative of the smooth surrogate of Heaviside(x):
    sigmoid: d/dx sigmoid(a x) = a s (1 - s);  arctan: d/dx (1/pi) atan(pi/2 a x) = (a/2) / (1 + (pi/2 a x)^2)."""
    if kind == 0:
        s = torch.sigmoid(a * x)
        return a * s * (1.0 - s)
    return (a / 2.0) / (1.0 + (math.pi / 2.0 * a * x) ** 2)


def steps_like(y: torch.Tensor, T: int, static: bool) -> torch.Tensor:
    """An empty (T, ...) buffer whose steps have the memory layout of `y` (a (T, B, ...) input,
    or a static (B, ...) one): a channels-last network stays channels-last through its
    neurons, so its convolutions never reorder (kdsnn.speed)."""
    if not static:
        return torch.empty_like(y)  # preserve_format keeps a dense input's strides
    fmt = (torch.channels_last if y.dim() == 4 and not y.is_contiguous()
           and y.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format)
    return torch.empty((T * y.shape[0], *y.shape[1:]), dtype=y.dtype, device=y.device,
                       memory_format=fmt).view(T, *y.shape)


class _IFMultiStep(torch.autograd.Function):
    """All T steps of the IF neuron in one autograd node (detached reset).

    Same numbers as the step-by-step version, without T small autograd graphs and with few
    passes over memory (the IF layers are memory-bound): forward keeps the pre-reset
    potentials v[t] and the spike masks; backward runs the recurrence
        g[t] = dL/ds[t] * sg(v[t] - theta) + g[t+1] * (1 - s[t]),   dL/dy[t] = g[t]
    (for a static input, dL/dy = sum_t g[t]).
    """

    @staticmethod
    def forward(ctx, y: torch.Tensor, T: int, static: bool, theta: float, kind: int,  # type: ignore[override]
                slope: float) -> torch.Tensor:
        # low-precision inputs (autocast) integrate in float32; spikes (0/1) keep y's dtype
        yf = y.float() if y.dtype in (torch.bfloat16, torch.float16) else y
        vpre, spikes = steps_like(yf, T, static), steps_like(y, T, static)
        v: torch.Tensor | None = None  # potential after the reset of the previous step
        for t in range(T):
            yt = yf if static else yf[t]
            if v is None:
                vpre[0].copy_(yt)
            else:
                torch.add(v, yt, out=vpre[t])
            torch.gt(vpre[t], theta, out=spikes[t])
            # hard reset: v - v * s is exactly 0 where s = 1 and exactly v where s = 0
            v = torch.addcmul(vpre[t], vpre[t], spikes[t], value=-1.0) if t < T - 1 else None
        ctx.save_for_backward(vpre, spikes)
        ctx.theta, ctx.kind, ctx.slope, ctx.static, ctx.dtype = theta, kind, slope, static, y.dtype
        return spikes

    @staticmethod
    def backward(ctx, gs: torch.Tensor):  # type: ignore[override]
        vpre, spikes = ctx.saved_tensors
        gs = gs.to(vpre.dtype)
        a_ = ctx.slope
        if ctx.kind == 0:  # a * sig(a x) * (1 - sig(a x)), sig'(.) fused by sigmoid_backward
            sig = torch.sub(vpre, ctx.theta).mul_(a_).sigmoid_()
            g = torch.ops.aten.sigmoid_backward(gs, sig).mul_(a_)
        else:  # (a/2) / (1 + (pi/2 a x)^2)
            g = torch.sub(vpre, ctx.theta).mul_(math.pi / 2.0 * a_).square_().add_(1.0).reciprocal_()
            g.mul_(gs).mul_(a_ / 2.0)
        for t in range(g.shape[0] - 2, -1, -1):  # g[t] += g[t+1] * (1 - s[t]), exact for s in {0, 1}
            g[t].add_(torch.addcmul(g[t + 1], g[t + 1], spikes[t], value=-1.0))
        if ctx.static:
            g = g.sum(0)
        return g.to(ctx.dtype), None, None, None, None, None
