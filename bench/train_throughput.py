"""Training throughput of the kdsnn `cnn` student vs the same network in snnTorch.

Both networks: conv3x3(32)+BN, IF, avgpool2, conv3x3(64)+BN, IF, avgpool2, flatten,
fc(128)+BN1d, IF, fc(classes), mean of the readout over T steps; T=4, batch 64, AdamW,
cross entropy, CPU. snnTorch's IF is `Leaky(beta=1.0, reset_mechanism="zero")` (with
`reset_delay=False`, the same-step hard reset of DESIGN §3) and runs the usual snnTorch
loop over time steps. Before timing, the two are checked to compute the same logits with
the same weights (eval mode). Rounds alternate between the two so that a noisy machine
hurts both alike; the median round is reported, by wall clock and by this process's CPU
time (the steadier figure on a shared machine; with --threads 1 it is the work done).

    python bench/train_throughput.py [--steps 10] [--rounds 5] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from torch import nn

from kdsnn.zoo import build


class SnnTorchCNN(nn.Module):
    """The kdsnn `cnn` student written the snnTorch way (one pass per time step)."""

    def __init__(self, T: int, num_classes: int = 10, slope: float = 4.0) -> None:
        import snntorch as snn
        from snntorch import surrogate

        super().__init__()
        self.T = T
        sg = surrogate.sigmoid(slope=slope)
        lif = dict(beta=1.0, threshold=1.0, reset_mechanism="zero", reset_delay=False, spike_grad=sg)
        self.conv1, self.bn1 = nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)
        self.conv2, self.bn2 = nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64)
        self.fc1, self.bn3 = nn.Linear(64 * 7 * 7, 128, bias=False), nn.BatchNorm1d(128)
        self.fc2 = nn.Linear(128, num_classes)
        self.lif1, self.lif2, self.lif3 = (snn.Leaky(**lif) for _ in range(3))
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m1, m2, m3 = self.lif1.init_leaky(), self.lif2.init_leaky(), self.lif3.init_leaky()
        out = 0.0
        for _ in range(self.T):
            s1, m1 = self.lif1(self.bn1(self.conv1(x)), m1)
            s2, m2 = self.lif2(self.bn2(self.conv2(self.pool(s1))), m2)
            s3, m3 = self.lif3(self.bn3(self.fc1(self.pool(s2).flatten(1))), m3)
            out = out + self.fc2(s3)
        return out / self.T

    def load_from_kdsnn(self, net: nn.Module) -> None:
        n = net.nodes
        pairs = [(self.conv1, n["conv1"].conv), (self.bn1, n["conv1"].bn), (self.conv2, n["conv2"].conv),
                 (self.bn2, n["conv2"].bn), (self.fc1, n["fc1"].linear), (self.bn3, n["fc1"].bn),
                 (self.fc2, n["fc2"].linear)]
        for mine, theirs in pairs:
            mine.load_state_dict(theirs.state_dict())


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
    theirs = SnnTorchCNN(a.T)
    theirs.load_from_kdsnn(ours)
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
