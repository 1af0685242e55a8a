"""Training throughput of the kdsnn `cnn` student vs the same network in snnTorch.

Both networks are the zoo's `cnn` (whatever its layers are: the snnTorch twin is built
from the GraphNet's node list with copies of its layers and weights), mean of the readout
over T steps; T=4, batch 64, AdamW, cross entropy, CPU. snnTorch's IF is
`Leaky(beta=1.0, reset_mechanism="zero")` (with `reset_delay=False`, the same-step hard
reset of docs/design.md, "Float semantics") and runs the usual snnTorch loop over time steps. Before timing, the two are checked to compute the same logits with
the same weights (eval mode). Rounds alternate between the two so that a noisy machine
hurts both alike; the median round is reported, by wall clock and by this process's CPU
time (the steadier figure on a shared machine; with --threads 1 it is the work done).

    python bench/train_throughput.py [--steps 10] [--rounds 5] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time

import torch
from torch import nn

from kdsnn.zoo import build


class SnnTorchTwin(nn.Module):
    """A chain-shaped kdsnn GraphNet (the `cnn` student) rebuilt the snnTorch way: the same
    layers and weights, snnTorch IF neurons, one pass through every layer per time step."""

    def __init__(self, net: nn.Module, slope: float = 4.0) -> None:
        import snntorch as snn
        from snntorch import surrogate

        super().__init__()
        self.T = net.T
        sg = surrogate.sigmoid(slope=slope)
        theta = net.neuron.get("theta", 1.0)
        self.names, self.layers = [], nn.ModuleList()
        for spec in net.specs:
            if spec.inputs != [self.names[-1] if self.names else "input"]:
                raise ValueError("the twin is built for chain-shaped networks only")
            mod = net.nodes[spec.name]
            if spec.op == "act":
                mod = snn.Leaky(beta=1.0, threshold=theta, reset_mechanism="zero", reset_delay=False,
                                spike_grad=sg)
            elif spec.op == "readout":
                mod = nn.Identity()
            else:
                mod = copy.deepcopy(mod)  # same layer, same weights (conv/linear + BN, pool, flatten)
            self.names.append(spec.name)
            self.layers.append(mod)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import snntorch as snn

        mems = {i: m.init_leaky() for i, m in enumerate(self.layers) if isinstance(m, snn.Leaky)}
        out = 0.0
        for _ in range(self.T):
            h = x
            for i, m in enumerate(self.layers):
                if i in mems:
                    h, mems[i] = m(h, mems[i])
                else:
                    h = m(h)
            out = out + h
        return out / self.T


def samples_per_s(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> tuple[float, float]:
    """(samples per wall-clock second, samples per CPU second of this process)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()

    def step() -> None:
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    t, c = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    n = steps * x.shape[0]
    return n / (time.perf_counter() - t), n / (time.process_time() - c)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("-T", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    ours = build("cnn", True, 10, (1, 28, 28), T=a.T, neuron={"theta": 1.0, "surrogate": "sigmoid", "slope": 4.0})
    theirs = SnnTorchTwin(ours)
    x = torch.randn(a.batch, 1, 28, 28)
    y = torch.randint(0, 10, (a.batch,))
    with torch.no_grad():
        ours.eval()
        theirs.eval()
        d = (ours(x) - theirs(x)).abs().max().item()
    print(f"same weights, eval mode: max |logit difference| = {d:.2e}")
    r_ours, r_theirs = [], []
    for _ in range(a.rounds):
        r_ours.append(samples_per_s(ours, x, y, a.steps))
        r_theirs.append(samples_per_s(theirs, x, y, a.steps))
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}")
    for i, clock in enumerate(("wall-clock", "CPU-time")):
        mo = statistics.median(r[i] for r in r_ours)
        mt = statistics.median(r[i] for r in r_theirs)
        print(f"[{clock}] kdsnn    cnn student T={a.T} batch {a.batch}: {mo:8.1f} samples/s "
              f"(rounds: {', '.join(f'{r[i]:.0f}' for r in r_ours)})")
        print(f"[{clock}] snnTorch cnn student T={a.T} batch {a.batch}: {mt:8.1f} samples/s "
              f"(rounds: {', '.join(f'{r[i]:.0f}' for r in r_theirs)})")
        print(f"[{clock}] ratio kdsnn / snnTorch: {mo / mt:.2f}x (goal >= 1.5x)")


if __name__ == "__main__":
    main()
