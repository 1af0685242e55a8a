"""Training throughput of a kdsnn student vs the same network in snnTorch or SpikingJelly.

One training step = forward + backward + AdamW update, cross entropy, CPU. The peer twin
(bench/twins.py) has the same layers and copies of the same weights; before timing, both
are checked to give the same logits (eval mode). kdsnn runs as `kdsnn distill` trains:
channels-last on the CPU for convolutional nets (kdsnn.speed) unless --layout nchw; the peer
runs the way its users write it (NCHW) unless --peer-layout cl. --precision bf16 runs both
sides under the same bfloat16 autocast. Rounds alternate between the two in this process,
so a noisy machine hurts both alike; each round's ratio is paired, and the min / median /
max of those ratios are printed, by wall clock and by this process's CPU time.

SpikingJelly 2.0 needs Python >= 3.11: run this script from a venv that has it and torch
(e.g. .venv-sj, see bench/RESULTS.md) with the repo on PYTHONPATH, --peer spikingjelly.

    python bench/train_throughput.py [--arch resnet18] [--peer snntorch] [--rounds 5]
        [--steps 2] [--batch 32] [-T 4] [--threads 1] [--precision fp32|bf16] [--json F]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from twins import SnnTorchTwin, SpikingJellyTwin  # noqa: E402

from kdsnn import speed  # noqa: E402
from kdsnn.zoo import build  # noqa: E402

PEERS = {"snntorch": SnnTorchTwin, "spikingjelly": SpikingJellyTwin}


def _stepper(model: nn.Module, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype | None):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()

    def step() -> None:
        ctx = torch.autocast("cpu", dtype=dtype) if dtype else contextlib.nullcontext()
        with ctx:
            z = model(x)
        loss = nn.functional.cross_entropy(z.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _timed(step, steps: int, n: int) -> tuple[float, float]:
    """(samples per wall-clock second, samples per CPU second of this process)."""
    t, c = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return steps * n / (time.perf_counter() - t), steps * n / (time.process_time() - c)


def _mmm(xs: list[float]) -> str:
    return f"{min(xs):.2f} / {statistics.median(xs):.2f} / {max(xs):.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="cnn")
    ap.add_argument("--input", default=None, help="CxHxW (default: 1x28x28 for cnn, else 3x32x32)")
    ap.add_argument("--peer", choices=sorted(PEERS), default="snntorch")
    ap.add_argument("--steps", type=int, default=None, help="steps per round (default cnn 10, else 2)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=None, help="default cnn 64, else 32")
    ap.add_argument("-T", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--layout", choices=["auto", "nchw"], default="auto", help="kdsnn's layout")
    ap.add_argument("--peer-layout", choices=["nchw", "cl"], default="nchw")
    ap.add_argument("--json", default=None, help="append the result as one JSON line to this file")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    small = a.arch == "cnn"
    shape = tuple(int(v) for v in (a.input or ("1x28x28" if small else "3x32x32")).split("x"))
    batch, steps = a.batch or (64 if small else 32), a.steps or (10 if small else 2)
    torch.manual_seed(0)
    ours = build(a.arch, True, 10, shape, T=a.T, neuron={"theta": 1.0, "surrogate": "sigmoid", "slope": 4.0})
    theirs = PEERS[a.peer](ours)
    if a.layout == "auto":
        speed.to_layout(ours, torch.device("cpu"))
    if a.peer_layout == "cl":
        theirs.to(memory_format=torch.channels_last)
    x = torch.randn(batch, *shape)
    y = torch.randint(0, 10, (batch,))
    with torch.no_grad():
        ours.eval()
        theirs.eval()
        d = (ours(x) - theirs(x)).abs().max().item()
    print(f"same weights, eval mode: max |logit difference| = {d:.2e}")
    dtype = torch.bfloat16 if a.precision == "bf16" else None
    so, st = _stepper(ours, x, y, dtype), _stepper(theirs, x, y, dtype)
    so()  # warm-up
    st()
    r_ours, r_theirs = [], []
    for _ in range(a.rounds):
        r_ours.append(_timed(so, steps, batch))
        r_theirs.append(_timed(st, steps, batch))
    load = os.getloadavg()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
          f"Python {platform.python_version()}, torch {torch.__version__}, load average "
          f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    name = f"{a.arch} {'x'.join(map(str, shape))} T={a.T} batch {batch} {a.precision}"
    rec = {"arch": a.arch, "input": list(shape), "T": a.T, "batch": batch, "precision": a.precision,
           "peer": a.peer, "layout": a.layout, "peer_layout": a.peer_layout, "threads": torch.get_num_threads(),
           "load": list(load), "python": platform.python_version(), "torch": torch.__version__,
           "logit_diff": d}
    for i, clock in enumerate(("wall", "cpu")):
        ratios = [o[i] / t[i] for o, t in zip(r_ours, r_theirs, strict=True)]
        mo, mt = statistics.median(r[i] for r in r_ours), statistics.median(r[i] for r in r_theirs)
        print(f"[{clock}] kdsnn     {name}: {mo:7.1f} samples/s (rounds {', '.join(f'{r[i]:.1f}' for r in r_ours)})")
        print(f"[{clock}] {a.peer:<9} {name}: {mt:7.1f} samples/s (rounds "
              f"{', '.join(f'{r[i]:.1f}' for r in r_theirs)})")
        print(f"[{clock}] kdsnn / {a.peer} paired ratio min / median / max: {_mmm(ratios)}")
        rec[clock] = {"kdsnn": mo, "peer": mt, "ratios": ratios}
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
