"""Where does distillation pay? KD modes against `--kd none`, one factor at a time.

A base student (mnist5k, zoo `cnn`, width 1, T = 4, IF neurons, direct input, all 3,600
training digits, the dataset's default teacher) and regimes that change one thing each:
few time steps (T = 1, 2), narrow students (--width 0.25, 0.5), little data (1,000 digits),
LIF neurons, and a stronger (wider, longer-trained) teacher. Each regime runs every KD mode
(none/response/feature/both) for every seed; the gain of a mode is paired with `--kd none` of
the same regime and seed (same initialization and data order), reported as mean, sample std
and min/max over seeds.

Each teacher is trained once (seed 0, full training split) and reused by every student
(`--teacher PATH`). Every run is a `kdsnn distill` CLI subprocess with one torch thread, one
at a time; every finished run is appended to OUTPUT/runs.jsonl with its wall time and the
load average, so an interrupted study resumes where it stopped and `--report` tabulates
whatever is there. Accuracies come from each run's result.json: the test accuracy of the
model selected on the validation split (test evaluated once, on that model).

    nice -n 5 python bench/kd_regimes.py -o runs/kd_regimes [--seeds 0,1,2] [--epochs 3]
        [--regimes base,n1000,T1,w0.25,lif,strong,T2,w0.5] [--report]

Writes OUTPUT/runs.jsonl, OUTPUT/table.md and OUTPUT/summary.json.
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
MODES = ("none", "response", "feature", "both")
# teacher name -> (train-teacher options); both on all 3,600 training digits, seed 0
TEACHERS = {
    "default": ["--arch", "cnn", "--width", "1"],          # the dataset's default (8 epochs)
    "strong": ["--arch", "cnn", "--width", "2", "--epochs", "15"],
}
# regime -> (what it changes, student options, teacher), in the order the study runs them
REGIMES = {
    "base": ("base: width 1, T=4, IF, 3,600 digits", [], "default"),
    "n1000": ("1,000 training digits", ["--limit-train", "1000"], "default"),
    "T1": ("T = 1", ["-T", "1"], "default"),
    "w0.25": ("--width 0.25", ["--width", "0.25"], "default"),
    "lif": ("LIF student (beta 0.9, reset to zero)", ["--neuron", "lif"], "default"),
    "strong": ("stronger teacher (cnn width 2, 15 epochs)", [], "strong"),
    "T2": ("T = 2", ["-T", "2"], "default"),
    "w0.5": ("--width 0.5", ["--width", "0.5"], "default"),
}


def load() -> float:
    return os.getloadavg()[0]


def run_cli(args: list[str], log: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    t0 = time.time()
    with open(log, "w") as f:
        p = subprocess.run([sys.executable, "-m", "kdsnn", *args], cwd=ROOT, env=env,
                           stdout=f, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): kdsnn {' '.join(args)}; see {log}")
    return round(time.time() - t0, 1)


def read_result(folder: Path) -> dict:
    res = json.loads((folder / "result.json").read_text())
    return {"test": res["test"]["accuracy"], "test_n": res["test"].get("n"),
            "val": res["val"]["accuracy"], "epoch": res["epoch"]}


def done_runs(jsonl: Path) -> dict[tuple, dict]:
    if not jsonl.exists():
        return {}
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    return {(r["kind"], r["regime"], r["mode"], r["seed"]): r for r in rows}


def append(jsonl: Path, row: dict) -> None:
    with open(jsonl, "a") as f:
        f.write(json.dumps(row) + "\n")


def teacher(out: Path, name: str, dataset: str, done: dict, jsonl: Path) -> Path:
    folder = out / "teachers" / name
    key = ("teacher", name, "-", 0)
    if key not in done:
        la = load()
        wall = run_cli(["train-teacher", "--dataset", dataset, "-q", "--seed", "0", *TEACHERS[name],
                        "-o", str(folder)], out / "logs" / f"teacher_{name}.log")
        row = {"kind": "teacher", "regime": name, "mode": "-", "seed": 0, **read_result(folder),
               "wall_s": wall, "load1_start": la, "load1_end": load(), "options": TEACHERS[name]}
        append(jsonl, row)
        done[key] = row
        print(f"teacher {name}: test {100 * row['test']:.2f}% [{wall:.0f}s, load {la:.1f}]", flush=True)
    return folder / "teacher.pt"


def student(out: Path, regime: str, mode: str, seed: int, a: argparse.Namespace,
            done: dict, jsonl: Path) -> None:
    key = ("student", regime, mode, seed)
    if key in done:
        return
    if regime == "strong" and mode == "none":  # no teacher: the base run is the same run
        return
    _, opts, tname = REGIMES[regime]
    folder = out / "students" / regime / mode / f"seed{seed}"
    args = ["distill", "--dataset", a.dataset, "-q", "--kd", mode, "--epochs", str(a.epochs),
            "--seed", str(seed), *opts, "-o", str(folder)]
    if mode != "none":
        args += ["--teacher", str(teacher(out, tname, a.dataset, done, jsonl))]
    la = load()
    wall = run_cli(args, out / "logs" / f"{regime}_{mode}_seed{seed}.log")
    row = {"kind": "student", "regime": regime, "mode": mode, "seed": seed, **read_result(folder),
           "wall_s": wall, "load1_start": la, "load1_end": load(), "args": args[:-2]}
    append(jsonl, row)
    done[key] = row
    print(f"{regime:7s} {mode:8s} seed {seed}: test {100 * row['test']:.2f}% "
          f"(val {100 * row['val']:.2f}%, epoch {row['epoch']}) [{wall:.0f}s, load {la:.1f}]", flush=True)


def summarize(done: dict) -> list[dict]:
    """One row per (regime, mode): test mean/std and the paired gain over none."""
    stud = [r for r in done.values() if r["kind"] == "student"]
    none = {(r["regime"], r["seed"]): r["test"] for r in stud if r["mode"] == "none"}
    rows = []
    for regime in REGIMES:
        for mode in MODES:
            runs = sorted((r for r in stud if r["regime"] == regime and r["mode"] == mode),
                          key=lambda r: r["seed"])
            if regime == "strong" and mode == "none":
                runs = sorted((r for r in stud if r["regime"] == "base" and r["mode"] == "none"),
                              key=lambda r: r["seed"])
            if not runs:
                continue
            accs = [r["test"] for r in runs]
            row = {"regime": regime, "mode": mode, "seeds": [r["seed"] for r in runs],
                   "test_mean": statistics.fmean(accs),
                   "test_std": statistics.stdev(accs) if len(accs) > 1 else None}
            base_key = "base" if regime == "strong" else regime
            gains = [r["test"] - none[(base_key, r["seed"])] for r in runs
                     if mode != "none" and (base_key, r["seed"]) in none]
            if gains:
                row.update(gain_mean=statistics.fmean(gains),
                           gain_std=statistics.stdev(gains) if len(gains) > 1 else None,
                           gain_min=min(gains), gain_max=max(gains), gain_n=len(gains))
            rows.append(row)
    return rows


def verdict(row: dict) -> str:
    """'helps' only when every seed gains and the mean gain exceeds the std of the gains and
    of `none`'s accuracies (the seed spread); 'hurts' symmetrically; else 'within spread'."""
    if row.get("gain_n", 0) < 2:
        return "-"
    spread = max(row["gain_std"] or 0.0, row.get("none_std") or 0.0)
    if row["gain_min"] > 0 and row["gain_mean"] > spread:
        return "helps"
    if row["gain_max"] < 0 and -row["gain_mean"] > spread:
        return "hurts"
    return "within spread"


def fmt_table(rows: list[dict], done: dict) -> str:
    tacc = {r["regime"]: r["test"] for r in done.values() if r["kind"] == "teacher"}
    none_std = {r["regime"]: r["test_std"] for r in rows if r["mode"] == "none"}
    none_std["strong"] = none_std.get("base")
    lines = ["| regime | teacher (test %) | kd | seeds | test % (val-selected), mean +- std "
             "| gain over none, pts: mean +- std [min, max] | verdict |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        r["none_std"] = none_std.get(r["regime"])
        tname = REGIMES[r["regime"]][2]
        t = f"{tname} ({100 * tacc[tname]:.2f})" if tname in tacc and r["mode"] != "none" else "-"
        std = f" +- {100 * r['test_std']:.2f}" if r["test_std"] is not None else ""
        if "gain_mean" in r:
            gstd = f" +- {100 * r['gain_std']:.2f}" if r["gain_std"] is not None else ""
            gain = f"{100 * r['gain_mean']:+.2f}{gstd} [{100 * r['gain_min']:+.2f}, {100 * r['gain_max']:+.2f}]"
        else:
            gain = "-"
        lines.append(f"| {REGIMES[r['regime']][0]} | {t} | {r['mode']} | {len(r['seeds'])} | "
                     f"{100 * r['test_mean']:.2f}{std} | {gain} | {verdict(r) if 'gain_mean' in r else '-'} |")
    return "\n".join(lines)


def report(out: Path, a: argparse.Namespace, wall: float | None) -> None:
    done = done_runs(out / "runs.jsonl")
    rows = summarize(done)
    table = fmt_table(rows, done)
    stud = [r for r in done.values() if r["kind"] == "student"]
    loads = [r["load1_start"] for r in done.values()]
    head = (f"{a.dataset}, {a.epochs} student epochs, {len(stud)} student runs; machine: "
            f"{platform.machine()} {os.cpu_count()} cores; 1-min load at run starts "
            + (f"{min(loads):.1f}..{max(loads):.1f} (median {statistics.median(loads):.1f})" if loads else "-")
            + (f"; run time {sum(r['wall_s'] for r in done.values()) / 60:.0f} min" if done else ""))
    print(head + "\n\n" + table, flush=True)
    (out / "table.md").write_text(f"`python bench/kd_regimes.py {' '.join(sys.argv[1:])}`\n\n{head}\n\n{table}\n")
    (out / "summary.json").write_text(json.dumps({"head": head, "rows": rows, "wall_s": wall}, indent=1))
    print(f"-> {out / 'table.md'}, {out / 'summary.json'}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", required=True, help="Folder for the runs, runs.jsonl and table.md.")
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=3, help="Student epochs.")
    ap.add_argument("--regimes", default=",".join(REGIMES), help=f"Comma list of {', '.join(REGIMES)}.")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--report", action="store_true", help="Only tabulate OUTPUT/runs.jsonl.")
    a = ap.parse_args()
    out = Path(a.output).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    if a.report:
        report(out, a, None)
        return
    regimes = [r for r in a.regimes.split(",") if r]
    unknown = set(regimes) - set(REGIMES)
    if unknown:
        raise SystemExit(f"error: unknown regimes {sorted(unknown)}; valid: {', '.join(REGIMES)}")
    jsonl = out / "runs.jsonl"
    done = done_runs(jsonl)
    t0 = time.time()
    for regime in regimes:  # regime-major, in priority order: a cut study drops whole regimes
        for seed in (int(s) for s in a.seeds.split(",")):
            for mode in a.modes.split(","):
                student(out, regime, mode, seed, a, done, jsonl)
    report(out, a, round(time.time() - t0, 1))


if __name__ == "__main__":
    main()
