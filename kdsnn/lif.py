"""Leaky integrate-and-fire neurons for students that deploy as NIR `LIF` (docs/design.md).

The IF neuron (kdsnn.neurons) is the special case beta = 1 with a reset to zero. Forward,
per layer, with the layer's leak beta (one value per layer, v[-1] = 0):

    v[t] = beta * v[t-1] + y[t]             (y: the synaptic layer's output, bias included)
    s[t] = v[t] > theta                     (strict, as NIR and Loihi)
    reset where s[t]:  "zero"      v[t] = 0
                       "subtract"  v[t] = v[t] - theta

This is the forward-Euler common form of compiler/dynamics.py with alpha = 1 (no current
state), gain 1, bias 0 and `beta_dynamics = 1 - beta`; exported with the graph's dt as
`LIF(tau = dt / (1 - beta), r = tau / dt, v_leak = 0)`, snnTorch's convention for its Leaky.

The leak is always on the grid a 12-bit decay can hold, beta = 1 - dv / 4096 with an integer
dv in [0, 4095] (Lava's `dv`, Davies et al. 2018): a fixed --beta/--tau is snapped to it (the
snap is reported), a learned one is rounded onto it in forward with a straight-through
gradient, so the integer chip decays by exactly the trained factor.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from kdsnn.compiler.targets import LOIHI
from kdsnn.neurons import SURROGATES, spike

RESETS = ("zero", "subtract")
DECAY_UNIT = LOIHI.decay_unity   # 4096, the 12-bit decays: beta = 1 - dv / 4096


def beta_on_grid(beta: float) -> float:
    """The nearest leak a 12-bit decay holds (1 - dv/4096, dv integer in [0, 4095])."""
    if not (math.isfinite(beta) and 0.0 < beta <= 1.0):
        raise ValueError(f"beta must be in (0, 1], got {beta}")
    dv = min(DECAY_UNIT - 1, max(0, round((1.0 - beta) * DECAY_UNIT)))
    return 1.0 - dv / DECAY_UNIT


def beta_from_tau(tau: float) -> float:
    """Forward Euler with one step per time unit: beta = 1 - 1/tau (tau in steps, >= 1)."""
    if math.isnan(tau) or tau < 1.0:
        raise ValueError(f"tau must be >= 1 time step, got {tau}")
    return 1.0 if tau == math.inf else 1.0 - 1.0 / tau


class _GridSTE(torch.autograd.Function):
    """Round (1 - beta) onto the 12-bit grid in forward; identity gradient."""

    @staticmethod
    def forward(ctx, beta: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        dv = torch.round((1.0 - beta) * DECAY_UNIT).clamp_(0, DECAY_UNIT - 1)
        return 1.0 - dv / DECAY_UNIT

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return grad


class LIFNeuron(nn.Module):
    """Multi-step LIF neuron on time-folded tensors (T*B, ...), like `IFNeuron`.

    `learn_beta=True` makes the layer's leak a parameter (kept in [beta_min, 1] and on the
    12-bit grid). `record=True` keeps the last forward's spikes in `last_spikes` (T, B, ...).

    Example::

        >>> n = LIFNeuron(theta=1.0, beta=0.5); n.T = 3
        >>> n(torch.tensor([[0.8], [0.8], [0.8]])).flatten().tolist()   # v: 0.8, 1.2 -> 0, 0.8
        [0.0, 1.0, 0.0]
    """

    def __init__(self, theta: float = 1.0, beta: float = 0.9, reset: str = "zero",
                 learn_beta: bool = False, beta_min: float = 0.5, surrogate: str = "sigmoid",
                 slope: float = 4.0, detach_reset: bool = True) -> None:
        super().__init__()
        if surrogate not in SURROGATES:
            raise ValueError(f"unknown surrogate {surrogate!r}; choose one of {', '.join(SURROGATES)}")
        if reset not in RESETS:
            raise ValueError(f"unknown reset {reset!r}; choose one of {', '.join(RESETS)}")
        if not 0.0 < beta_min <= 1.0:
            raise ValueError(f"beta_min must be in (0, 1], got {beta_min}")
        self.theta = float(theta)
        self.reset = reset
        self.learn_beta = bool(learn_beta)
        self.beta_min = float(beta_min)
        self.surrogate = surrogate
        self.slope = float(slope)
        self.detach_reset = detach_reset
        b = torch.tensor(beta_on_grid(float(beta)), dtype=torch.float32)
        if self.learn_beta:
            self.beta_param = nn.Parameter(b)
        else:
            self.register_buffer("beta_param", b)
        self.T = 1
        self.record = False
        self.last_spikes: torch.Tensor | None = None

    @property
    def beta(self) -> float:
        """The leak the layer uses now (on the 12-bit grid)."""
        return float(self._beta().detach())

    def _beta(self) -> torch.Tensor:
        b = self.beta_param.clamp(self.beta_min, 1.0) if self.learn_beta else self.beta_param
        return _GridSTE.apply(b)

    def extra_repr(self) -> str:
        return (f"theta={self.theta}, beta={self.beta:.6g}{' (learned)' if self.learn_beta else ''}, "
                f"reset={self.reset}, surrogate={self.surrogate}, slope={self.slope}")

    def forward(self, y: torch.Tensor, static: bool = False) -> torch.Tensor:
        """Spikes (T*B, ...) for a time-folded input (T*B, ...) or a static input (B, ...)."""
        T = self.T
        if not static and y.shape[0] % T:
            raise ValueError(f"LIFNeuron: leading dim {y.shape[0]} is not a multiple of T={T}")
        ys = y if static else y.reshape(T, y.shape[0] // T, *y.shape[1:])
        if ys.dtype in (torch.bfloat16, torch.float16):  # autocast: integrate in float32
            ys = ys.float()
        beta = self._beta().to(ys.dtype)
        v = torch.zeros_like(ys if static else ys[0])
        out = []
        for t in range(T):
            v = beta * v + (ys if static else ys[t])
            s = spike(v - self.theta, self.surrogate, self.slope)
            r = s.detach() if self.detach_reset else s
            v = v - r * v if self.reset == "zero" else v - r * self.theta
            out.append(s)
        spikes = torch.stack(out).to(y.dtype)  # 0/1: exact in any float dtype
        if self.record:
            self.last_spikes = spikes.detach()
        return spikes.reshape(T * spikes.shape[1], *spikes.shape[2:])
