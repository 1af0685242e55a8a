"""intsim against the float reference on the NIR paper's graphs, paired, in one process.

    python bench/nir_paper_intsim.py                 # braille (bias_zero) and the N-MNIST CNN
    python bench/nir_paper_intsim.py --repeats 7 --json

The braille RNN (recurrent CubaLIF, `--reset zero --dt 1e-4`) on random spike trains
(12 channels, p = 0.25), and Sinabs' N-MNIST CNN (`--reset subtract`, loihi2) on sparse
random event frames (2x34x34, about 1000 events per sample): the same graph lowered for the
target and run by intsim, and run by the float reference (float64 PyTorch), on the same
batch. Each repeat times both back to back (after one warm-up run each); the ratio
intsim time / reference time is reported as min / median / max over the repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

PAPER = Path(os.environ.get("KDSNN_NIR_PAPER", "/work/shared/nir-paper"))
CASES = {
    "braille": {"file": "03_rnn/braille_noDelay_bias_zero.nir", "reset": "zero", "dt": 1e-4, "hw": "loihi",
                "shape": (12,), "T": 100, "n": 64},
    "nmnist_cnn": {"file": "02_cnn/cnn_sinabs.nir", "reset": "subtract", "dt": None, "hw": "loihi2",
                   "shape": (2, 34, 34), "T": 20, "n": 16},
}


def _inputs(case: dict, n: int, rng: np.random.Generator) -> np.ndarray:
    shape = (n, case["T"], *case["shape"])
    p = 0.25 if case["shape"] == (12,) else 1000 / (case["T"] * 2 * 34 * 34)
    return (rng.random(shape) < p).astype(np.float32)


def bench(name: str, repeats: int) -> dict:
    from kdsnn.backends.intsim import IntSimBackend
    from kdsnn.backends.reference import ReferenceBackend
    from kdsnn.compiler.lower import lower
    from kdsnn.compiler.nir.read import read_nir

    case = CASES[name]
    rng = np.random.default_rng(0)
    g = read_nir(PAPER / case["file"], dt=case["dt"], reset=case["reset"])
    x = _inputs(case, case["n"], rng)
    net = lower(g, case["hw"], _inputs(case, 16, rng), T=case["T"])
    ref = ReferenceBackend().compile(g, T=case["T"], batch_size=len(x))
    exe = IntSimBackend().compile(net, batch_size=len(x))
    ref.run(x)
    exe.run(x)
    ratios, t_ref, t_int = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ref.run(x)
        t1 = time.perf_counter()
        exe.run(x)
        t2 = time.perf_counter()
        t_ref.append(t1 - t0)
        t_int.append(t2 - t1)
        ratios.append((t2 - t1) / (t1 - t0))
    return {"graph": name, "file": case["file"], "T": case["T"], "samples": len(x), "repeats": repeats,
            "reference_s_median": statistics.median(t_ref), "intsim_s_median": statistics.median(t_int),
            "intsim_over_reference": {"min": min(ratios), "median": statistics.median(ratios), "max": max(ratios)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared machine)")
    ap.add_argument("--graphs", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    load = os.getloadavg()
    out = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "cpus": os.cpu_count(),
           "threads": a.threads, "load_before": [round(v, 2) for v in load],
           "results": [bench(n, a.repeats) for n in a.graphs]}
    out["load_after"] = [round(v, 2) for v in os.getloadavg()]
    if a.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{out['machine']}, {out['cpus']} CPUs, {a.threads} torch thread(s), load {out['load_before']} -> "
          f"{out['load_after']}")
    for r in out["results"]:
        q = r["intsim_over_reference"]
        print(f"  {r['graph']:<11} T={r['T']:<4} {r['samples']} samples: reference {r['reference_s_median']:.3f} s, "
              f"intsim {r['intsim_s_median']:.3f} s (medians); intsim/reference min {q['min']:.2f} "
              f"median {q['median']:.2f} max {q['max']:.2f} over {r['repeats']} paired repeats")


if __name__ == "__main__":
    main()
