"""Inference throughput of the Lava backend vs intsim on a cnn-sized student, and where
Lava's time goes.

Network: the demo student (`runs/demo/student.pt`) when it exists, else the zoo `cnn`
student (mnist5k shape, T=4) with its random initial weights; exported to NIR and lowered
for Loihi with `kdsnn.compiler.lower` on mnist5k calibration images. Measured in one process:

  intsim                 samples/s, batch 256
  lava streamed          N samples through one running network (period P = T), our
                         im2col model for Lava's Conv process (the default)
  lava one run/sample    the same, one Lava run (build, compile, spawn, run, stop) per sample
  lava streamed, Lava's own Conv model (PyConvModelFixed, scipy) on a few samples

Every Lava result is checked bit for bit against intsim (rung 4) before it is reported.
The profile splits a Lava run's wall time into building the processes, Lava's compile +
spawn, stepping and stop, and times each process model's numpy work per step in isolation
(in this process): the rest of a step is Lava's own messaging and synchronisation.

    python bench/lava_throughput.py [--stream 128] [--single 3] [--lava-conv 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch


def student_net(calibration: int = 64, seed: int = 0):
    """(IntNet, x test images, description)."""
    from kdsnn.compiler.export import student_to_nir
    from kdsnn.compiler.lower import lower

    from kdsnn.data import dataset_info, load_arrays

    demo = Path("runs/demo/student.pt")
    if demo.is_file():
        from kdsnn.checkpoint import load_model

        model, cfg = load_model(demo)
        dataset, what = cfg.get("dataset", "mnist5k"), f"demo student {demo}"
    else:
        from kdsnn.zoo import build

        dataset = "mnist5k"
        info = dataset_info(dataset)
        torch.manual_seed(seed)
        model = build("cnn", True, info.num_classes, info.input_shape, T=4).eval()
        cfg = dict(kind="student", arch="cnn", T=4, dataset=dataset, mean=info.mean,
                   std=info.std, class_names=info.class_names, input_shape=info.input_shape,
                   num_classes=info.num_classes)
        what = "zoo cnn student, random initial weights (no runs/demo/student.pt)"
    graph = student_to_nir(model, cfg)
    xc, _ = load_arrays(dataset, "train", calibration, seed=seed)
    x, _ = load_arrays(dataset, "test", 512, seed=seed)
    return lower(graph, "loihi", xc), x, what


def same(a, b) -> bool:
    return np.array_equal(a.logits, b.logits) and all(
        np.array_equal(a.layer_spikes_per_step[k], b.layer_spikes_per_step[k]) for k in a.spike_counts)


def step_kernels(net, x, reps: int = 5) -> dict[str, float]:
    """Seconds per step of each process model's numpy work, run in this process."""
    from kdsnn.backends.intsim import IntSimBackend
    from kdsnn.backends.lava import layout
    from kdsnn.backends.lava.build import dense_effective_weight
    from kdsnn.backends.lava.procs.processes import PyConvModelFixedIm2col as Im2col
    from lava.proc.conv import utils as cu

    r = IntSimBackend().compile(net).run(x[:1], record=True)
    spikes = {k: v[0, 0].reshape(-1) for k, v in r.spike_trains.items()}
    xq = layout.to_lava(net.input.quantize(x[:1]), tuple(net.input.shape))[0]
    out: dict[str, float] = {}

    def timeit(fn) -> float:
        fn()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t0) / reps

    for c in net.connections:
        src = xq if c.src == "input" else layout.to_lava(
            spikes[c.src].reshape(1, *net.shape_of(c.src)), net.shape_of(c.src))[0]
        if c.kind == "conv":
            w = layout.conv_weight(np.asarray(c.weight, np.int32))
            args = (w.shape[1:3], layout.xy(c.stride), layout.xy(c.padding),
                    layout.xy(c.dilation), c.groups)
            s_in = src if c.src == "input" else src.astype(bool)
            m = Im2col.__new__(Im2col)
            m.weight, m.kernel_size = w, np.array(args[0])
            m.stride, m.padding, m.dilation = (np.array(a) for a in args[1:4])
            m.groups, m.num_message_bits = np.array([c.groups]), np.array([24 if c.src == "input" else 0])
            m._plan = None
            out[f"{c.name} (Conv, Lava's scipy model)"] = timeit(
                lambda s_in=s_in, w=w, args=args: cu.conv(s_in, w, *args))
            out[f"{c.name} (Conv, im2col model)"] = timeit(lambda m=m, s_in=s_in: m._conv(s_in))
        else:
            w = dense_effective_weight(c)
            s = src.reshape(-1)
            if c.src == "input":
                out[f"{c.name} (Dense, graded)"] = timeit(lambda w=w, s=s: w.dot(s))
            else:
                b = s.astype(bool)
                out[f"{c.name} (Dense, binary)"] = timeit(lambda w=w, b=b: w[:, b].sum(axis=1))
    from lava.proc.lif.models import PyLifResetModelBitAcc

    for p in net.populations:
        m = PyLifResetModelBitAcc({"reset_interval": net.T, "reset_offset": 0})
        m.u, m.v = np.zeros(p.size, np.int32), np.zeros(p.size, np.int32)
        m.du, m.dv, m.vth = int(p.du), int(p.dv), int(p.vth)
        m.bias_mant = np.asarray(p.bias_mant, np.int16).reshape(-1)
        m.bias_exp = np.full(p.size, p.bias_exp, np.int16)
        m.scale_threshold()
        a_in = np.zeros(p.size, np.int32)

        def lif(m=m, a_in=a_in):                  # one step of Lava's bit-accurate LIF
            m.scale_bias()
            m.subthr_dynamics(activation_in=a_in)
            m.reset_voltage(m.spiking_activation())
        out[f"{p.name} (LIF, {p.size} neurons)"] = timeit(lif)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stream", type=int, default=128, help="samples in the streamed Lava run")
    ap.add_argument("--single", type=int, default=3, help="samples run one Lava run each")
    ap.add_argument("--lava-conv", type=int, default=2,
                    help="samples streamed with Lava's own Conv model (slow)")
    ap.add_argument("--intsim", type=int, default=512, help="samples for intsim")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from kdsnn.backends.intsim import IntSimBackend
    from kdsnn.backends.lava import LavaBackend

    net, x, what = student_net()
    n_int = min(a.intsim, len(x))
    print(f"network: {what}; T={net.T}, populations "
          + ", ".join(f"{p.name}{tuple(p.shape)}" for p in net.populations))
    intsim = IntSimBackend().compile(net, batch_size=256)
    intsim.run(x[:8])
    t0 = time.perf_counter()
    intsim.run(x[:n_int])
    t_int = time.perf_counter() - t0
    sps_int = n_int / t_int
    print(f"intsim: {n_int} samples in {t_int:.3f} s = {sps_int:.1f} samples/s")

    lava = LavaBackend().compile(net)
    res: dict[str, dict] = {}

    def lava_run(name: str, exe, xs, per_sample: bool = False):
        t0 = time.perf_counter()
        outs = [exe.run(xs[i:i + 1]) for i in range(len(xs))] if per_sample else [exe.run(xs)]
        wall = time.perf_counter() - t0                 # Lava only; the checks come after
        if per_sample:
            ok = all(same(intsim.run(xs[i:i + 1]), o) for i, o in enumerate(outs))
        else:
            ok = same(intsim.run(xs), outs[0])
        steps = sum(o.steps for o in outs)
        prof = {k: sum(o.extra[k] for o in outs) for k in ("build_s", "compile_s", "run_s",
                                                              "stop_s", "runs")}
        prof["processes"] = outs[0].extra["processes"]
        res[name] = dict(samples=len(xs), wall_s=wall, samples_per_s=len(xs) / wall, steps=steps,
                         steps_per_s=steps / wall, bit_exact=ok, processes=prof.get("processes"),
                         **{k: prof[k] for k in ("build_s", "compile_s", "run_s", "stop_s", "runs")})
        print(f"{name}: {len(xs)} samples, {steps} steps in {wall:.2f} s = "
              f"{len(xs) / wall:.2f} samples/s, {steps / wall:.1f} steps/s; bit-exact with intsim: {ok}")
        if not ok:
            raise SystemExit(f"{name}: Lava differs from intsim")

    lava_run("lava streamed", lava, x[:a.stream])
    lava_run("lava one run per sample", lava, x[:a.single], per_sample=True)
    if a.lava_conv > 0:
        lava_run("lava streamed, Lava's own Conv model",
                 LavaBackend().compile(net, conv_model="lava"), x[:a.lava_conv])

    long_ = res["lava streamed"]
    per_step = long_["run_s"] / long_["steps"]
    fixed = long_["build_s"] + long_["compile_s"] + long_["stop_s"]
    kernels = step_kernels(net, x)
    compute = sum(v for k, v in kernels.items() if "scipy" not in k)
    print(f"\nprofile of the streamed run ({long_['processes']} Lava processes): "
          f"build {long_['build_s']:.2f} s, compile + spawn {long_['compile_s']:.2f} s, "
          f"stepping {long_['run_s']:.2f} s ({per_step * 1e3:.1f} ms/step), "
          f"stop {long_['stop_s']:.2f} s.\nPer step, the process models' own numpy work sums "
          f"to {compute * 1e3:.1f} ms (processes run in parallel on the cores there are); "
          f"the rest is Lava's channel messaging and step synchronisation:")
    for k, v in kernels.items():
        print(f"  {k:48s} {v * 1e3:8.2f} ms/step")
    ratio = sps_int / long_["samples_per_s"]
    print(f"\nintsim / lava streamed = {ratio:.0f}x;  lava streamed / one run per sample = "
          f"{long_['samples_per_s'] / res['lava one run per sample']['samples_per_s']:.1f}x")
    out = dict(machine=f"{platform.machine()} {platform.processor() or ''}".strip(),
               cpus=__import__("os").cpu_count(), network=what, T=net.T,
               intsim=dict(samples=n_int, wall_s=t_int, samples_per_s=sps_int), lava=res,
               profile=dict(fixed_s_per_run=fixed, s_per_step=per_step,
                            kernels_s_per_step=kernels), intsim_over_lava=ratio,
               load_average=__import__("os").getloadavg())
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
