"""Deployment-exact fine-tuning vs the float student and vs `--kd none` (a small multi-seed study).

Per seed: the float student (`kdsnn distill --arch cnn --kd both --epochs E`), its
deployment-exact fine-tuning (`kdsnn finetune STUDENT --deploy-exact HW`, 1 epoch), and the
`--kd none` baseline at the float student's budget (E epochs). Every student distils from
one teacher (the first seed's default teacher, trained once), so seeds differ only in the
student's initialization and data order. Runs are CLI subprocesses; a finished run is kept.

Measured on the first N test samples (default 1,000, as `kdsnn export`):
  - accuracy: float student (float forward and lowered on intsim), deployment-exact student
    (its integer forward, which equals intsim), kd none (float);
  - spike agreement with intsim, per layer: the fraction of samples whose spike maps are equal
    at every step, and of equal (sample, step) maps ("before": the float student and its
    plain lowering; "after": the deployment-exact student and its plan's lowering);
  - the fine-tuning wall time (training loop only, and plan + check).

    python bench/deploy_exact_study.py -o runs/exact_study [--seeds 0,1,2] [--epochs 3]

Writes OUTPUT/results.json and prints a markdown table (for bench/RESULTS.md) with the
machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(args: list[str], out: Path, log: Path) -> float:
    """`python -m kdsnn ARGS` unless OUT/student.pt exists; returns the wall time (0 if kept)."""
    if (out / "student.pt").exists():
        return 0.0
    t0 = time.time()
    with open(log, "w") as f:
        p = subprocess.run([sys.executable, "-m", "kdsnn", *args], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                           env={**os.environ, "PYTHONHASHSEED": "0"})
    if p.returncode != 0:
        raise SystemExit(f"failed: kdsnn {' '.join(args)}; see {log}")
    return round(time.time() - t0, 1)


def analyse(float_pt: Path, exact_pt: Path, none_pt: Path, n: int) -> dict:
    import numpy as np
    import torch
    from kdsnn.backends.intsim import IntSimBackend
    from kdsnn.compiler.export import student_to_nir
    from kdsnn.compiler.lower import lower

    from kdsnn.checkpoint import load_model
    from kdsnn.data import load_arrays
    from kdsnn.deploy_exact import ExactStudent
    from kdsnn.exact_plan import lower_exact
    from kdsnn.exact_rung3 import compare_runs, spike_agreement_float
    from kdsnn.stages import run_student

    mf, cf = load_model(float_pt, kind="student")
    me, ce = load_model(exact_pt, kind="student")
    mn, _ = load_model(none_pt, kind="student")
    x_cal, _ = load_arrays(cf["dataset"], "train", 256)
    x, y = load_arrays(cf["dataset"], "test", n)
    net_f = lower(student_to_nir(mf, cf), "loihi", x_cal)
    net_e = lower_exact(me, ce, x_cal)
    with torch.no_grad():
        acc = {"float": float((run_student(mf, x).predictions == y).mean()),
               "float_on_intsim": float((IntSimBackend().compile(net_f).run(x).predictions == y).mean()),
               "none": float((run_student(mn, x).predictions == y).mean())}
    after = compare_runs(ExactStudent(me, ce["deploy_exact"]), net_e, x)
    acc["exact"] = float((after.pop("predictions") == y).mean())
    before = spike_agreement_float(mf, net_f, x)
    return {"accuracy": acc, "before": before, "after": after["layers"], "exact_passed": after["passed"],
            "samples": int(len(y)), "prediction_agreement_float_intsim": None if not len(y) else
            float(np.mean(run_student(mf, x).predictions == IntSimBackend().compile(net_f).run(x).predictions))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--exact-epochs", type=int, default=1)
    ap.add_argument("--hw", default="loihi")
    ap.add_argument("--samples", type=int, default=1000)
    a = ap.parse_args()
    out = Path(a.output).resolve()
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in a.seeds.split(",")]
    load0 = os.getloadavg()
    common = ["--dataset", "mnist5k", "--arch", "cnn", "--epochs", str(a.epochs), "-q"]
    teacher = out / f"s{seeds[0]}" / "teacher.pt"
    rows = []
    for s in seeds:
        d = out / f"s{s}"
        t_args = [] if s == seeds[0] else ["--teacher", str(teacher)]
        w_float = run_cli(["distill", *common, "--kd", "both", "--seed", str(s), *t_args, "-o", str(d)], d,
                          logs / f"float{s}.log")
        w_exact = run_cli(["finetune", str(d / "student.pt"), "--deploy-exact", a.hw, "--epochs",
                           str(a.exact_epochs), "-q", "-o", str(d / "exact")], d / "exact", logs / f"exact{s}.log")
        w_none = run_cli(["distill", *common, "--kd", "none", "--seed", str(s), "-o", str(out / f"none{s}")],
                         out / f"none{s}", logs / f"none{s}.log")
        ft = [json.loads(line) for line in (d / "exact" / "metrics.jsonl").read_text().splitlines() if line.strip()]
        r = {"seed": s, "wall_s": {"float": w_float, "exact": w_exact, "none": w_none},
             "finetune_loop_s": sum(m["time_s"] for m in ft),
             **analyse(d / "student.pt", d / "exact" / "student.pt", out / f"none{s}" / "student.pt", a.samples)}
        rows.append(r)
        print(json.dumps({k: r[k] for k in ("seed", "accuracy", "wall_s", "finetune_loop_s", "exact_passed")}),
              flush=True)
    load1 = os.getloadavg()

    def ms(key: str) -> str:
        v = [100 * r["accuracy"][key] for r in rows]
        return f"{statistics.fmean(v):.2f} +- {statistics.stdev(v) if len(v) > 1 else 0.0:.2f}"

    lines = [f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores; "
             f"load average at start {load0[0]:.1f}, at end {load1[0]:.1f}; seeds {seeds}; {a.samples} test samples",
             "", "| student | test accuracy % (mean +- std over seeds) | per seed |", "|---|---|---|"]
    for key, what in (("float", f"float, kd both, {a.epochs} epochs (float forward)"),
                      ("float_on_intsim", "  the same, lowered, on intsim"),
                      ("exact", f"deployment-exact: + {a.exact_epochs} epoch `finetune --deploy-exact` "
                                "(integer forward = intsim)"),
                      ("none", f"float, kd none, {a.epochs} epochs")):
        lines.append(f"| {what} | {ms(key)} | " + ", ".join(f"{100 * r['accuracy'][key]:.1f}" for r in rows) + " |")
    lines += ["", "| layer | spike maps equal to intsim, before (samples / sample-steps) | after |", "|---|---|---|"]
    for layer in rows[0]["before"]:
        b = [r["before"][layer] for r in rows]
        e = [r["after"][layer] for r in rows]
        lines.append(f"| {layer} | {statistics.fmean(v['samples_equal'] for v in b):.3f} / "
                     f"{statistics.fmean(v['steps_equal'] for v in b):.3f} | "
                     f"{statistics.fmean(v['samples_equal'] for v in e):.3f} / "
                     f"{statistics.fmean(v['steps_equal'] for v in e):.3f} |")
    lines += ["", "fine-tuning wall time per seed (training loop / whole command): "
              + ", ".join(f"{r['finetune_loop_s']:.0f} s / {r['wall_s']['exact']:.0f} s" for r in rows)]
    table = "\n".join(lines)
    print(table)
    (out / "results.json").write_text(json.dumps({"rows": rows, "load": [load0, load1], "table": table}, indent=1))


if __name__ == "__main__":
    main()
