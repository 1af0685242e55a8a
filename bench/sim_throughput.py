"""Samples/s of intsim (exact integer arithmetic) vs the float student in PyTorch.

Same network, same T, same batches, one process, CPU:

    python bench/sim_throughput.py                        # zoo cnn student on mnist5k, T=4
    python bench/sim_throughput.py --checkpoint runs/demo/student.pt --batches 8

Goal (issue 4): intsim within 1.5x of the float PyTorch time. The student is lowered for
Loihi with 256 calibration images; both run `--batches` batches of `--batch-size` test
images after one warm-up batch each; the best of `--repeats` timings is reported.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="student .pt (default: a zoo cnn, random weights)")
    ap.add_argument("-T", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)

    from kdsnn.backends.intsim import IntSimBackend
    from kdsnn.compiler.export import student_to_nir
    from kdsnn.compiler.lower import lower

    from kdsnn.data import dataset_info, load_arrays

    if a.checkpoint:
        from kdsnn.checkpoint import load_model
        model, cfg = load_model(a.checkpoint, "cpu")
        model.set_time_steps(a.T)
        cfg = dict(cfg, T=a.T)
        ds = cfg["dataset"]
    else:
        from kdsnn.zoo import build
        ds = "mnist5k"
        info = dataset_info(ds)
        torch.manual_seed(0)
        model = build("cnn", True, info.num_classes, tuple(info.input_shape), T=a.T)
        cfg = {"kind": "student", "arch": "cnn", "T": a.T, "dataset": ds, "mean": list(info.mean),
               "std": list(info.std), "class_names": list(info.class_names)}
    model.eval()
    n = a.batch_size * (a.batches + 1)
    x, _ = load_arrays(ds, "test", n)
    xc, _ = load_arrays(ds, "train", 256)
    net = lower(student_to_nir(model, cfg), "loihi", xc)
    exe = IntSimBackend().compile(net, batch_size=a.batch_size)
    batches = [x[i:i + a.batch_size] for i in range(0, len(x), a.batch_size)]
    warm, timed = batches[0], batches[1:]
    n_timed = sum(len(b) for b in timed)

    def run_float() -> float:
        with torch.no_grad():
            model(torch.from_numpy(warm))
            t0 = time.perf_counter()
            for b in timed:
                model(torch.from_numpy(b))
            return time.perf_counter() - t0

    def run_int() -> float:
        exe.run(warm)
        t0 = time.perf_counter()
        for b in timed:
            exe.run(b)
        return time.perf_counter() - t0

    tf = min(run_float() for _ in range(a.repeats))
    ti = min(run_int() for _ in range(a.repeats))
    res = {"network": f"{cfg.get('arch')} ({'checkpoint ' + a.checkpoint if a.checkpoint else 'random weights'})",
           "dataset": ds, "T": a.T, "batch_size": a.batch_size, "samples": n_timed,
           "threads": torch.get_num_threads(), "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
           "float_samples_per_s": n_timed / tf, "intsim_samples_per_s": n_timed / ti,
           "intsim_time_over_float_time": ti / tf, "goal": "<= 1.5"}
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{res['network']}, T={a.T}, batch {a.batch_size}, {n_timed} samples, {res['threads']} thread(s)")
        print(f"  float student (PyTorch): {res['float_samples_per_s']:8.1f} samples/s")
        print(f"  intsim (exact integer):  {res['intsim_samples_per_s']:8.1f} samples/s")
        print(f"  intsim time / float time = {res['intsim_time_over_float_time']:.2f}  (goal <= 1.5)")


if __name__ == "__main__":
    main()
