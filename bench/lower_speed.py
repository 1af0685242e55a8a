"""Lowering time (NIR -> IntNet) and its calibration, pool factored out vs not, in one process.

    python bench/lower_speed.py --arch vgg11 [--calibration 256] [--rounds 3] [--threads 1]

The zoo student (seeded random weights, 3x32x32 for CIFAR-size archs, 1x28x28 for `cnn`) is
exported to NIR and lowered for Loihi with `--calibration` normal images; `lower` is timed
whole, and the calibration simulation (`compiler.passes.calibrate.simulate`) is timed on the
same lowering state with the folded pools factored out (the default) and without, paired per
round; the largest difference of the recorded statistics between the two is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="vgg11")
    ap.add_argument("--calibration", type=int, default=256)
    ap.add_argument("-T", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from kdsnn.compiler.export import student_to_nir
    from kdsnn.compiler.lower import lower, lowering_state
    from kdsnn.compiler.passes.calibrate import simulate

    from kdsnn.zoo import build

    shape = (1, 28, 28) if a.arch == "cnn" else (3, 32, 32)
    torch.manual_seed(0)
    model = build(a.arch, True, 10, shape, T=a.T).eval()
    cfg = {"kind": "student", "arch": a.arch, "T": a.T, "dataset": "synthetic", "mean": [0.0] * shape[0],
           "std": [1.0] * shape[0], "class_names": [str(i) for i in range(10)]}
    graph = student_to_nir(model, cfg)
    xc = np.random.default_rng(0).standard_normal((a.calibration, *shape)).astype(np.float32)
    st = lowering_state(graph, "loihi", xc)
    x64 = np.asarray(xc, np.float64)
    print(f"{a.arch} {shape}, T={a.T}, {a.calibration} calibration images, {torch.get_num_threads()} thread(s), "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}")
    rows = []
    for r in range(a.rounds):
        load = os.getloadavg()[0]
        t = time.perf_counter()
        lower(graph, "loihi", xc)
        t_lower = time.perf_counter() - t
        t = time.perf_counter()
        new = simulate(st, x64)
        t_new = time.perf_counter() - t
        t = time.perf_counter()
        old = simulate(st, x64, factor_pools=False)
        t_old = time.perf_counter() - t
        diff = max(abs(new["stats"][p][k] - old["stats"][p][k]) / max(1e-300, abs(old["stats"][p][k]))
                   for p in old["stats"] for k in old["stats"][p])
        same = all(np.array_equal(new["spike_counts"][k], old["spike_counts"][k]) for k in old["spike_counts"])
        rows.append((t_lower, t_new, t_old))
        print(f"round {r + 1} (load {load:.1f}): lower {t_lower:6.2f} s | calibration pool factored "
              f"{t_new:6.2f} s, folded kernels {t_old:6.2f} s ({t_old / t_new:.2f}x); max relative stat "
              f"difference {diff:.1e}, spike counts identical: {same}")
    ratios = [o / n for _, n, o in rows]
    print(f"lower: min/median/max {min(r[0] for r in rows):.2f} / {statistics.median(r[0] for r in rows):.2f} / "
          f"{max(r[0] for r in rows):.2f} s (goal < 10 s on one core for vgg11 with 256 images)")
    print(f"calibration folded / factored: {min(ratios):.2f} / {statistics.median(ratios):.2f} / {max(ratios):.2f}x")


if __name__ == "__main__":
    main()
