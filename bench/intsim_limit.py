"""intsim (exact integers) vs the machine's limit, the float student and snnTorch inference.

One process, paired rounds (each round times every contender once, in turn), min / median /
max of the per-round ratios, 1 torch thread by default:

    python bench/intsim_limit.py --checkpoint /tmp/student/student.pt     # trained mnist cnn
    python bench/intsim_limit.py --arch vgg11                             # seeded, 3x32x32

Printed per round: intsim samples/s at its automatic batch (`auto_batch`), the float student
(`GraphNet.forward`, no_grad) and its snnTorch twin (bench/train_throughput.py's
`SnnTorchTwin`, IF = Leaky(beta=1), one pass per time step) each at their faster of batch 256
and intsim's batch; intsim's achieved GFLOP/s (2 x the multiply-adds it really runs: pool-
factored kernels, the static input layer once, the others T times) next to a float32 matmul
yardstick (1024 x 1024 x 1024, this process, this thread count) measured in the same round.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # its bench helper (train_throughput), when imported

import numpy as np  # noqa: E402
import torch  # noqa: E402


def intsim_flops(exe) -> int:
    """2 x multiply-adds per sample of the connections as intsim computes them."""
    net, total = exe.net, 0
    for lst in exe.conns.values():
        for k in lst:
            if k.c.kind == "conv":
                macs = int(np.prod(net.shape_of(k.c.dst))) * int(k.wt[0].numel())
            else:
                macs = int(k.wt.numel())
            total += 2 * macs * (1 if k.src_static else net.T)
    return total


def matmul_gflops(n: int = 1024, reps: int = 3) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(reps))
    return 2 * n ** 3 / best / 1e9


def _timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def batched(f, x: np.ndarray, bs: int) -> float:
    """Seconds for f over x in batches of bs (after one warm-up batch)."""
    f(x[:bs])
    t = time.perf_counter()
    for i in range(0, len(x), bs):
        f(x[i:i + bs])
    return time.perf_counter() - t


def setup(a):
    from kdsnn.compiler.export import student_to_nir
    from kdsnn.compiler.lower import lower

    from kdsnn.data import dataset_info, load_arrays
    from kdsnn.zoo import build

    if a.checkpoint:
        from kdsnn.checkpoint import load_model
        model, cfg = load_model(a.checkpoint, "cpu")
        what = f"{cfg.get('arch')} student {a.checkpoint}"
        x, _ = load_arrays(cfg["dataset"], "test", a.samples)
        xc, _ = load_arrays(cfg["dataset"], "train", 256)
    else:
        shape = (1, 28, 28) if a.arch == "cnn" else (3, 32, 32)
        torch.manual_seed(0)
        model = build(a.arch, True, 10, shape, T=a.T)
        info = dataset_info("mnist5k")
        cfg = {"kind": "student", "arch": a.arch, "T": a.T, "dataset": "synthetic", "mean": [0.0] * shape[0],
               "std": [1.0] * shape[0], "class_names": list(info.class_names)}
        g = np.random.default_rng(0)
        x = g.standard_normal((a.samples, *shape)).astype(np.float32)
        xc = g.standard_normal((a.calibration, *shape)).astype(np.float32)
        what = f"{a.arch} student, seeded random weights, {shape} normal inputs"
    model.eval()
    t = time.perf_counter()
    net = lower(student_to_nir(model, cfg), "loihi", xc)
    return model, net, x, what, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--arch", default="cnn", help="zoo arch with seeded random weights (no --checkpoint)")
    ap.add_argument("-T", type=int, default=4)
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--calibration", type=int, default=256, help="calibration images (seeded archs)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-snntorch", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from kdsnn.backends.intsim import IntSimBackend

    model, net, x, what, t_lower = setup(a)
    exe = IntSimBackend().compile(net)
    bs = exe.batch_size
    twin = None
    if not a.no_snntorch:
        from train_throughput import SnnTorchTwin
        twin = SnnTorchTwin(model).eval()
        with torch.no_grad():
            xb = torch.from_numpy(x[:8])
            d = float((model(xb) - twin(xb)).abs().max())
        print(f"snnTorch twin: max |logit difference| vs the student = {d:.2e}")
    flops = intsim_flops(exe)
    print(f"{what}; lowered in {t_lower:.1f} s; intsim batch {bs} (auto), {flops / 1e6:.1f} MFLOP/sample; "
          f"{torch.get_num_threads()} thread(s), {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}")

    def fwd(m):
        def f(xb):
            with torch.no_grad():
                m(torch.from_numpy(xb))
        return f

    rows = []
    for r in range(a.rounds):
        load = os.getloadavg()[0]
        ti = batched(exe.run, x, bs)
        tf = min(batched(fwd(model), x, b) for b in sorted({bs, 256}))
        ts = min(batched(fwd(twin), x, b) for b in sorted({bs, 256})) if twin is not None else float("nan")
        mm = matmul_gflops()
        gf = flops * len(x) / ti / 1e9
        rows.append((tf / ti, ts / ti, gf / mm))
        print(f"round {r + 1} (load {load:.1f}): intsim {len(x) / ti:7.1f}/s  float {len(x) / tf:7.1f}/s  "
              f"snnTorch {len(x) / ts:7.1f}/s  intsim {gf:5.1f} GFLOP/s vs matmul {mm:5.1f} GFLOP/s")

    def mmm(i: int) -> str:
        v = [row[i] for row in rows]
        return f"{min(v):.2f} / {statistics.median(v):.2f} / {max(v):.2f}"

    print(f"float time / intsim time     (min/median/max): {mmm(0)}  (goal >= 2 on the mnist cnn)")
    if twin is not None:
        print(f"snnTorch time / intsim time  (min/median/max): {mmm(1)}  (goal >= 3 on the mnist cnn)")
    print(f"intsim GFLOP/s / matmul      (min/median/max): {mmm(2)}  (goal >= 0.40 on conv-heavy nets)")


if __name__ == "__main__":
    main()
