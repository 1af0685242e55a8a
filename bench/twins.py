"""A kdsnn GraphNet rebuilt in a peer framework, the way that framework's users write it, for
the training benchmarks: the same layers with copies of the same weights, the peer's own IF
neuron (reset to zero, same step, detached reset, sigmoid surrogate of the same slope).

- snnTorch: `Leaky(beta=1, reset_mechanism="zero", reset_delay=False)`, the usual loop over
  time steps with every layer run once per step on (B, ...).
- SpikingJelly (2.0, activation_based): multi-step mode, `IFNode(step_mode="m",
  detach_reset=True)` on (T, B, ...), synaptic layers in `SeqToANNContainer` (one call on
  (T*B, ...)), the image repeated T times at the input, `functional.reset_net` after each
  forward.

Both accept DAGs (residual sums): a node receives the sum of its inputs, as in GraphNet.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def _layers(net: nn.Module, make_neuron) -> tuple[list, nn.ModuleDict]:
    mods = nn.ModuleDict()
    for spec in net.specs:
        if spec.op == "act":
            mods[spec.name] = make_neuron()
        elif spec.op != "readout":
            mods[spec.name] = copy.deepcopy(net.nodes[spec.name])  # same layer, same weights
    return list(net.specs), mods


class SnnTorchTwin(nn.Module):
    """The GraphNet in snnTorch, one pass through the graph per time step."""

    def __init__(self, net: nn.Module) -> None:
        import snntorch as snn
        from snntorch import surrogate

        super().__init__()
        self.T = net.T
        sg = surrogate.sigmoid(slope=net.neuron.get("slope", 4.0))
        theta = net.neuron.get("theta", 1.0)
        self.specs, self.mods = _layers(net, lambda: snn.Leaky(
            beta=1.0, threshold=theta, reset_mechanism="zero", reset_delay=False, spike_grad=sg))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        acts = {s.name for s in self.specs if s.op == "act"}
        mems = {n: self.mods[n].init_leaky() for n in acts}
        out = 0.0
        for _ in range(self.T):
            vals = {"input": x}
            for s in self.specs:
                h = vals[s.inputs[0]]
                for i in s.inputs[1:]:
                    h = h + vals[i]
                if s.name in acts:
                    h, mems[s.name] = self.mods[s.name](h, mems[s.name])
                elif s.op != "readout":
                    h = self.mods[s.name](h)
                vals[s.name] = h
            out = out + h
        return out / self.T


class SpikingJellyTwin(nn.Module):
    """The GraphNet in SpikingJelly's multi-step mode, one pass over (T, B, ...) tensors."""

    def __init__(self, net: nn.Module) -> None:
        from spikingjelly.activation_based import layer, neuron, surrogate

        super().__init__()
        self.T = net.T
        slope, theta = net.neuron.get("slope", 4.0), net.neuron.get("theta", 1.0)
        self.specs, mods = _layers(net, lambda: neuron.IFNode(
            v_threshold=theta, v_reset=0.0, surrogate_function=surrogate.Sigmoid(alpha=slope),
            detach_reset=True, step_mode="m"))
        self.mods = nn.ModuleDict({k: (m if isinstance(m, neuron.IFNode) else layer.SeqToANNContainer(m))
                                   for k, m in mods.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from spikingjelly.activation_based import functional

        vals = {"input": x.unsqueeze(0).repeat(self.T, *([1] * x.dim()))}
        for s in self.specs:
            h = vals[s.inputs[0]]
            for i in s.inputs[1:]:
                h = h + vals[i]
            vals[s.name] = h.mean(0) if s.op == "readout" else self.mods[s.name](h)
        functional.reset_net(self)
        return vals[self.specs[-1].name]  # the readout
