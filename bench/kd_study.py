"""Does knowledge distillation help the spiking student? A small multi-seed study.

For every seed, each teacher of `--teachers` is trained once (`kdsnn train-teacher`, on the
full training split) and then reused by every student of that seed. Every student is a
`kdsnn distill` run for each (training-set size, teacher, KD mode) cell; `--kd none` does not
use a teacher, so it runs once per (size, seed). Runs are CLI subprocesses with one torch
thread each, `--jobs` at a time. A finished run (its result.json is there for the planned epochs) is not run
again, so an interrupted study resumes where it stopped.

Reported per cell, over seeds, from each run's result.json (kdsnn.selection): the test
accuracy of the model selected on the validation split (`final`: the test set is evaluated
once, on that model, so no choice is made on it) and that model's validation accuracy
(`best`), mean +- sample std; and the paired difference of `final` to `--kd none` with the
same seed and size (same student initialization and data order), mean +- standard error.
A difference counts as clear only when its |mean| > 2 standard errors.

    python bench/kd_study.py -o runs/kd_study [--dataset mnist5k] [--seeds 0,1,2] [--epochs 5]
        [--limit-train 0,1000] [--modes none,response,feature,both]
        [--teachers cnn=cnn:1:8,cnn_w2=cnn:2:8] [--response-variants 0.9:4,0.5:2] [--jobs 2]

Writes OUTPUT/results.json (every run and the summary), OUTPUT/table.md and OUTPUT/kd_study.png.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class TeacherSpec:
    name: str
    arch: str
    width: float
    epochs: int


@dataclass
class Run:
    """One CLI invocation and what it measured."""

    kind: str  # "teacher" | "student"
    seed: int
    out: str
    args: list[str]
    epochs: int
    cell: dict = field(default_factory=dict)
    final: float | None = None
    best: float | None = None
    best_epoch: int | None = None
    wall_s: float | None = None
    skipped: bool = False


def parse_teachers(text: str) -> list[TeacherSpec]:
    """`name=arch:width:epochs,...` -> specs."""
    specs = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, _, rest = item.partition("=")
        arch, width, epochs = rest.split(":")
        specs.append(TeacherSpec(name, arch, float(width), int(epochs)))
    return specs


def execute(run: Run, log_dir: Path) -> Run:
    """Run `run` unless its output already holds all epochs; fill in its accuracies."""
    out = Path(run.out)
    final_pt = out / ("teacher.pt" if run.kind == "teacher" else "student.pt")
    if not (final_pt.exists() and (out / "result.json").exists()
            and json.loads((out / "result.json").read_text())["epochs"] == run.epochs):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
        cmd = [sys.executable, "-m", "kdsnn", *run.args]
        t0 = time.time()
        log = log_dir / (out.relative_to(log_dir.parent).as_posix().replace("/", "__") + ".log")
        with open(log, "w") as f:
            p = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
        run.wall_s = round(time.time() - t0, 1)
        if p.returncode != 0:
            raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}; see {log}")
    else:
        run.skipped = True
    res = json.loads((out / "result.json").read_text())  # selected on val, test evaluated once
    run.final, run.best, run.best_epoch = res["test"]["accuracy"], res["val"]["accuracy"], res["epoch"]
    cell = " ".join(f"{k}={v}" for k, v in run.cell.items())
    print(f"  {'(kept) ' if run.skipped else ''}{run.kind} {cell} seed {run.seed}: "
          f"test {100 * run.final:.2f}% (val {100 * run.best:.2f}%, epoch {run.best_epoch})"
          + (f" [{run.wall_s:.0f}s]" if run.wall_s else ""), flush=True)
    return run


def mean_std(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def summarize(students: list[Run], seeds: list[int]) -> list[dict]:
    """One row per cell: mean/std of final and best, paired difference to kd=none."""
    cells: dict[tuple, list[Run]] = {}
    for r in students:
        key = (r.cell["limit_train"], r.cell["teacher"], r.cell["kd"], r.cell["alpha"], r.cell["tau"])
        cells.setdefault(key, []).append(r)
    base = {(r.cell["limit_train"], r.seed): r for r in students if r.cell["kd"] == "none"}
    rows = []
    for key, runs in cells.items():
        limit, teacher, kd, alpha, tau = key
        fm, fs = mean_std([r.final for r in runs])
        bm, bs = mean_std([r.best for r in runs])
        row = {"limit_train": limit, "teacher": teacher, "kd": kd, "alpha": alpha, "tau": tau,
               "n": len(runs), "final_mean": fm, "final_std": fs, "best_mean": bm, "best_std": bs,
               "final_by_seed": {r.seed: r.final for r in runs}}
        if kd != "none":
            d = [r.final - base[(limit, r.seed)].final for r in runs if (limit, r.seed) in base]
            if len(d) > 1:
                dm, ds = mean_std(d)
                se = ds / len(d) ** 0.5
                row.update(diff_mean=dm, diff_se=se, clear=abs(dm) > 2 * se)
        rows.append(row)
    return rows


def fmt_table(rows: list[dict], teacher_acc: dict[str, list[float]]) -> str:
    lines = ["| train samples | teacher (test acc) | kd | alpha | tau | test acc % (val-selected) | its val acc % "
             "| final - none (pts, mean +- SE) | clear? |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = r["teacher"]
        tacc = (f"{t} ({100 * mean_std(teacher_acc[t])[0]:.2f} +- {100 * mean_std(teacher_acc[t])[1]:.2f})"
                if t in teacher_acc else "-")
        diff = (f"{100 * r['diff_mean']:+.2f} +- {100 * r['diff_se']:.2f}" if "diff_mean" in r else "-")
        clear = ("yes" if r.get("clear") else "no") if "diff_mean" in r else "-"
        lines.append(f"| {r['limit_train'] or 'all'} | {tacc} | {r['kd']} | "
                     f"{r['alpha'] if r['kd'] != 'none' else '-'} | "
                     f"{r['tau'] if r['kd'] in ('response', 'both') else '-'} | "
                     f"{100 * r['final_mean']:.2f} +- {100 * r['final_std']:.2f} | "
                     f"{100 * r['best_mean']:.2f} +- {100 * r['best_std']:.2f} | {diff} | {clear} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    limits = sorted({r["limit_train"] for r in rows}, key=lambda v: -(v or 10**9))  # "all" first
    fig, axes = plt.subplots(1, len(limits), figsize=(6 * len(limits), 4.5), squeeze=False)
    for ax, limit in zip(axes[0], limits, strict=True):
        sub = [r for r in rows if r["limit_train"] == limit]
        labels = [r["kd"] if r["kd"] == "none" else
                  f"{r['kd']}\n{r['teacher']}" + (f"\na{r['alpha']} t{r['tau']}" if r["kd"] == "response" else "")
                  for r in sub]
        means = [100 * r["final_mean"] for r in sub]
        stds = [100 * r["final_std"] for r in sub]
        colors = ["gray" if r["kd"] == "none" else f"C{['response', 'feature', 'both'].index(r['kd'])}"
                  for r in sub]
        ax.bar(range(len(sub)), means, yerr=stds, color=colors, capsize=3)
        for i, r in enumerate(sub):  # every seed as a dot
            ys = [100 * v for v in r["final_by_seed"].values()]
            ax.scatter([i] * len(ys), ys, color="k", s=8, zorder=3)
        lo = min(min(100 * v for v in r["final_by_seed"].values()) for r in sub)
        hi = max(max(100 * v for v in r["final_by_seed"].values()) for r in sub)
        ax.set_ylim(max(0.0, lo - 1.0), min(100.0, hi + 0.5))
        ax.set_xticks(range(len(sub)), labels, fontsize=7)
        ax.set_ylabel("test accuracy % of the val-selected model (mean +- std, dots: seeds)")
        ax.set_title(f"train samples: {limit or 'all'}")
        ax.axhline(100 * sub[0]["final_mean"] if sub[0]["kd"] == "none" else 0, color="gray", ls="--", lw=0.8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", required=True, help="Folder for runs, results.json, table.md, kd_study.png.")
    ap.add_argument("--dataset", default="mnist5k", help="An offline dataset (mnist5k, digits).")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=5, help="Student epochs.")
    ap.add_argument("--limit-train", default="0,1000", help="Student training-set sizes; 0 = all.")
    ap.add_argument("--modes", default="none,response,feature,both")
    ap.add_argument("--teachers", default="cnn=cnn:1:8,cnn_w2=cnn:2:8",
                    help="name=arch:width:epochs,... (trained on the full training split, once per seed).")
    ap.add_argument("--response-variants", default="",
                    help="Extra response-KD cells as alpha:tau,... (with every teacher).")
    ap.add_argument("--alpha", type=float, default=0.5, help="alpha of the main grid.")
    ap.add_argument("--temperature", type=float, default=4.0, help="tau of the main grid.")
    ap.add_argument("--jobs", type=int, default=2, help="Runs in parallel (each one torch thread).")
    ap.add_argument("--extra", default="", help="Extra CLI options for every student run, e.g. '-T 4'.")
    a = ap.parse_args()

    out = Path(a.output).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in a.seeds.split(",")]
    limits = [int(v) for v in a.limit_train.split(",")]
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    teachers = parse_teachers(a.teachers)
    variants = [tuple(float(x) for x in v.split(":")) for v in a.response_variants.split(",") if v.strip()]
    common = ["--dataset", a.dataset, "-q"]
    t_start = time.time()

    truns = [Run("teacher", s, str(out / "teachers" / t.name / f"seed{s}"),
                 ["train-teacher", *common, "--arch", t.arch, "--width", str(t.width), "--epochs", str(t.epochs),
                  "--seed", str(s), "-o", str(out / "teachers" / t.name / f"seed{s}")], t.epochs,
                 {"teacher": t.name}) for t in teachers for s in seeds] if set(modes) - {"none"} else []
    print(f"{len(truns)} teacher runs", flush=True)
    with ThreadPoolExecutor(a.jobs) as ex:
        truns = list(ex.map(lambda r: execute(r, out / "logs"), truns))
    teacher_acc: dict[str, list[float]] = {}
    for r in truns:
        teacher_acc.setdefault(r.cell["teacher"], []).append(r.final)

    sruns = []
    for limit in limits:
        for s in seeds:
            cells = []
            for kd in modes:
                if kd == "none":
                    cells.append(("-", kd, a.alpha, a.temperature))
                else:
                    cells += [(t.name, kd, a.alpha, a.temperature) for t in teachers]
            cells += [(t.name, "response", al, tau) for t in teachers for al, tau in variants]
            for tname, kd, alpha, tau in cells:
                tag = f"n{limit or 'all'}/{kd}" + (f"_{tname}_a{alpha:g}_t{tau:g}" if kd != "none" else "")
                d = out / "students" / tag / f"seed{s}"
                args = ["distill", *common, "--kd", kd, "--epochs", str(a.epochs), "--seed", str(s),
                        "--alpha", str(alpha), "--temperature", str(tau), "-o", str(d), *a.extra.split()]
                if limit:
                    args += ["--limit-train", str(limit)]
                if kd != "none":
                    args += ["--teacher", str(out / "teachers" / tname / f"seed{s}" / "teacher.pt")]
                sruns.append(Run("student", s, str(d), args, a.epochs,
                                 {"limit_train": limit, "teacher": tname, "kd": kd, "alpha": alpha, "tau": tau}))
    print(f"{len(sruns)} student runs", flush=True)
    with ThreadPoolExecutor(a.jobs) as ex:
        sruns = list(ex.map(lambda r: execute(r, out / "logs"), sruns))

    rows = summarize(sruns, seeds)
    table = fmt_table(rows, teacher_acc)
    cmd = "python bench/kd_study.py " + " ".join(sys.argv[1:])
    head = (f"{a.dataset}, seeds {seeds}, student cnn T=4 {a.epochs} epochs; teachers "
            + ", ".join(f"{t.name}={t.arch} width {t.width:g} {t.epochs} ep" for t in teachers)
            + f"; {platform.machine()} {os.cpu_count()} cores")
    print("\n" + head + "\n" + table, flush=True)
    (out / "table.md").write_text(f"`{cmd}`\n\n{head}\n\n{table}\n")
    plot(rows, out / "kd_study.png", head)
    res = {"command": cmd, "args": vars(a), "machine": {"machine": platform.machine(), "cpus": os.cpu_count(),
                                                        "processor": platform.processor()},
           "wall_s": round(time.time() - t_start, 1), "teacher_acc": teacher_acc, "summary": rows,
           "teachers": [asdict(r) for r in truns], "students": [asdict(r) for r in sruns]}
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(res, indent=1, default=str))
    tmp.replace(out / "results.json")
    print(f"-> {out / 'results.json'}, {out / 'table.md'}, {out / 'kd_study.png'} "
          f"({res['wall_s']:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
