"""`kdsnn finetune STUDENT --hw HW`: short deployment-exact fine-tuning of a student.

The float student is lowered once for HW (the plan: kdsnn.deploy_exact.make_plan); the
plan is checked to reproduce intsim exactly on the calibration samples before any step
is taken; then the training loop runs the student's integer forward (`ExactStudent`) with
the student's own distillation settings (teacher, --kd, alpha, temperature) for a few
epochs at a small learning rate. OUTPUT/student.pt carries the plan in its config, so
`kdsnn export` lowers it on the same grid and checks rung 3 exact. `kdsnn distill
--deploy-exact HW` runs this on the student it just distilled (into OUTPUT/exact/).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from kdsnn.distributed import is_main
from kdsnn.errors import KdsnnError

LR_FACTOR = 0.1            # fine-tuning lr = the student's peak lr times this, unless --lr


def finetune_command(**opts: Any) -> dict[str, Any]:
    """Options: the fields of kdsnn.config.FinetuneConfig (None = the default)."""
    from kdsnn.checkpoint import load_model
    from kdsnn.compiler.targets import load_target
    from kdsnn.config import FinetuneConfig, check_values, from_options
    from kdsnn.data import load_arrays
    from kdsnn.deploy_exact import ExactStudent
    from kdsnn.exact_plan import headroom_note, is_exact, lower_exact, make_plan
    from kdsnn.exact_rung3 import compare_runs, spike_agreement_float
    from kdsnn.io import ensure_dir
    from kdsnn.kd_loss import check_mode
    from kdsnn.train import train_loop

    c = from_options(FinetuneConfig, opts)
    check_values({**asdict(c), "exact_epochs": c.epochs, "epochs": None})
    quiet = bool(c.quiet)

    def echo(msg: str) -> None:
        if is_main() and not quiet:
            click.echo(msg)

    src = Path(c.student)
    if not c.output:
        raise KdsnnError("finetune needs an output folder (-o/--output)")
    load_target(c.hw)                    # an unknown --hw is refused before anything is written
    model, cfg0 = load_model(src, device="cpu", kind="student")
    if is_exact(cfg0):
        echo(f"note: {src} is already deployment-exact (for {cfg0['deploy_exact']['target']}); "
             "its float weights are planned afresh")
    out = Path(c.output)
    if out.exists() and not out.is_dir():
        raise KdsnnError(f"output {out} is a file; -o/--output must be a folder")
    if out.resolve() == src.parent.resolve():
        raise KdsnnError(f"-o {out} is the folder of {src}; fine-tune into another folder")
    ensure_dir(out)
    n_cal, epochs = int(c.calibration), int(c.epochs)
    tr0 = dict(cfg0["train"])
    lr = float(c.lr) if c.lr is not None else float(tr0["lr"]) * LR_FACTOR
    kd = check_mode(c.kd or cfg0.get("kd") or "both")
    teacher = c.teacher or cfg0.get("teacher")
    if kd != "none":
        if not teacher:
            raise KdsnnError(f"--kd {kd} needs a teacher and {src} names none; give --teacher or --kd none")
        tp = Path(str(teacher))
        if str(teacher).endswith(".pt") and not tp.exists() and (src.parent / tp.name).exists():
            teacher = str(src.parent / tp.name)          # the run folder moved with its teacher
    else:
        teacher = None

    t0 = time.perf_counter()
    data_dir, download = c.data_dir or cfg0.get("data_dir"), bool(c.download)
    x_cal, _ = load_arrays(cfg0["dataset"], "train", n_cal, data_dir, download, 0)
    plan = make_plan(model, cfg0, c.hw, x_cal, **c.lowering_options())
    cfg_exact = {**cfg0, "deploy_exact": plan}
    net = lower_exact(model, cfg_exact, x_cal)
    check = compare_runs(ExactStudent(model, plan), net, x_cal)
    if not check["passed"]:
        raise KdsnnError(f"the deployment-exact forward does not reproduce intsim for this network "
                         f"(first difference {check['first_difference']}); please report it")
    before = spike_agreement_float(model, net, x_cal)
    t_plan = time.perf_counter() - t0
    echo(f"deployment-exact plan for {plan['target']} from {n_cal} training samples ({t_plan:.1f}s): "
         f"{headroom_note(plan)}; the integer forward equals intsim on all {n_cal}")

    cfg = {**cfg_exact, "kd": kd, "teacher": teacher, "init_weights": str(src),
           "train": {**tr0, "epochs": epochs, "lr": lr,
                     "seed": int(c.seed) if c.seed is not None else int(tr0.get("seed", 0)),
                     "device": str(c.device or tr0.get("device") or "cpu"),
                     "batch_size": int(c.batch_size or tr0["batch_size"])},
           "output": str(out), "quiet": quiet, "download": download, "resume": bool(c.resume),
           "stop_after": None, "data_dir": data_dir}
    echo(f"fine-tuning {src} deployment-exact for {plan['target']}: kd={kd}, {epochs} epoch(s), lr {lr:g} "
         f"-> {out / 'student.pt'}")
    t1 = time.perf_counter()
    res = train_loop(cfg)
    t_train = time.perf_counter() - t1
    res.update({"plan_s": t_plan, "finetune_s": t_train, "spikes_before": before})
    from kdsnn.selection import result_line

    echo(result_line("deployment-exact student (integer forward)", res["result"], res["path"])
         + f"; {t_train:.1f}s; `kdsnn export {res['path']}` checks rung 3 exact")
    return res
