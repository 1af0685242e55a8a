"""Training: ANN teachers (`kdsnn train-teacher`) and distilled spiking students (`kdsnn distill`).

One function, `train_loop(cfg)`, trains either kind, with or without torchrun: every file
write and progress bar goes through `distributed.is_main()`, every per-epoch metric through
`distributed.all_reduce_sum()`, and the model is DDP-wrapped in one place
(`ddp.wrap_ddp`); in one process these are no-ops. It runs in four steps: set-up
(`kdsnn.train_setup`: data, model, loss, optimizer), resume and checkpoint
(`kdsnn.train_state`), each epoch (`kdsnn.train_epoch`), then `_finish`;
the run's configuration comes from `kdsnn.train_config.make_config`. Model selection is on
the validation split; the test split is evaluated once, on the selected model
(kdsnn.selection).

Output folder of a run:
  last.pt        resumable state after the last finished epoch (model, connectors,
                 optimizer, scheduler, AMP scaler, RNG states, loader generator)
  best.pt        the epoch with the best validation accuracy so far
  student.pt / teacher.pt   the selected (best validation) model, written when the run ends
  metrics.jsonl  one JSON object per epoch (loss parts and their weights, train and
                 validation accuracy with their sample counts, lr, time), appended after
                 last.pt holds the epoch; --resume cuts it back to last.pt's (kdsnn.metrics_log)
  result.json    the selected epoch, its validation and its (one) test accuracy
  training.png   weighted loss terms, train/validation accuracy per epoch, the test point
All written atomically (kdsnn.io; docs/design.md, "Outputs"); a failure (NaN loss, Ctrl-C)
leaves the earlier files.
"""


from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import torch

from kdsnn import distributed, selection
from kdsnn.checkpoint import graph_of, load_checkpoint, save_checkpoint
from kdsnn.deploy_exact import training_forward
from kdsnn.distributed import is_main
from kdsnn.errors import KdsnnError
from kdsnn.evaluate import evaluate_model
from kdsnn.io import atomic_path, ensure_dir
from kdsnn.outlock import output_lock
from kdsnn.train_config import DEFAULTS, checkpoint_config, make_config
from kdsnn.train_epoch import train_epoch
from kdsnn.train_setup import Run, echo, setup_run
from kdsnn.train_state import resume_run, save_epoch


def train_loop(cfg: dict[str, Any]) -> dict[str, Any]:
    """Train the model `cfg` describes into cfg["output"]; returns a summary dict. The torch
    thread count of --threads holds for the run only (--deterministic keeps its 1 thread)."""
    threads = torch.get_num_threads()
    try:
        return _loop(cfg)
    finally:
        if not cfg["train"].get("deterministic"):
            torch.set_num_threads(threads)


def _loop(cfg: dict[str, Any]) -> dict[str, Any]:
    run = setup_run(cfg)
    start = resume_run(run)
    ccfg = {**checkpoint_config(cfg), "graph": graph_of(run.model)}
    summary: dict[str, Any] = {}
    # stop_after: end this invocation after that epoch of the schedule (a later --resume goes on)
    tr = run.tr
    last_epoch = min(tr["epochs"], int(cfg.get("stop_after") or tr["epochs"]))
    run.epochs_run = start
    if start >= tr["epochs"]:
        echo(f"{out_name(run)} has finished all {tr['epochs']} epochs; give --resume --epochs N with N > "
              f"{tr['epochs']} to train it longer", run.quiet)
    for epoch in range(start + 1, last_epoch + 1):
        if selection.stop_early(epoch - 1, run.best_epoch, tr.get("patience")):
            run.stopped_early = True
            echo(f"stopping early: no better validation accuracy for {tr['patience']} epochs "
                  f"(--patience), best at epoch {run.best_epoch}", run.quiet)
            break
        t0 = time.time()
        tot = train_epoch(run, epoch)
        n = max(tot.pop("n"), 1.0)
        correct = tot.pop("correct")
        ev = evaluate_model(training_forward(run.model, cfg), cfg, run.val_ds, batch_size=256, device=run.device)
        dt = time.time() - t0
        rec = {"epoch": epoch, **{k: v / n for k, v in tot.items()}, "weights": run.crit.weights(),
               "train_acc": correct / n, "train_n": int(n), "val_acc": ev["accuracy"], "val_loss": ev["loss"],
               "val_n": ev["n"], "lr": run.opt.param_groups[0]["lr"],
               "time_s": round(dt, 3), "samples_per_s": round(n / dt, 1)}
        improved = ev["accuracy"] > run.best_acc
        if improved:
            run.best_acc, run.best_epoch, run.best_val = ev["accuracy"], epoch, ev
            run.best_state = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
        run.epochs_run = epoch
        if is_main():
            save_epoch(run, ccfg, epoch, rec, improved)
        terms = run.crit.describe({k: v / n for k, v in tot.items() if k != "loss"})
        echo(selection.epoch_line(cfg["kind"], epoch, tr["epochs"], tot["loss"] / n, terms, correct / n, int(n),
                                   ev, dt, improved), run.quiet)
        summary = rec
    final, result = _finish(run)
    return {"best_acc": run.best_acc, "best_epoch": run.best_epoch, "last": summary, "path": str(final),
            "result": result, "written": _written(run.out, final)}


def out_name(run: Run) -> str:
    return str(run.out / "last.pt")


def _written(out: Path, final: Path) -> list[Path]:
    """What a run leaves in its folder, in the order a person looks for it."""
    return [final, out / "best.pt", out / "last.pt", out / "metrics.jsonl", out / selection.RESULT_FILE,
            out / "training.png"]


def _finish(run: Run) -> tuple[Path, dict[str, Any]]:
    """The selected (best validation) model: its one test evaluation (every rank takes part),
    then, on rank 0, the run's final file, result.json and the training curves; every rank
    waits for them."""
    cfg, out = run.cfg, run.out
    final = out / ("student.pt" if cfg["kind"] == "student" else "teacher.pt")
    if run.best_state is None:
        raise KdsnnError(f"no finished epoch in {out}; nothing to write")
    run.model.load_state_dict(run.best_state)
    test = evaluate_model(training_forward(run.model, cfg), cfg, run.test_ds, batch_size=256, device=run.device)
    val = run.best_val or {"accuracy": run.best_acc, "n": len(run.val_ds)}
    result = selection.result_record(cfg, run.best_epoch, run.epochs_run, val, test, run.stopped_early)
    if is_main():
        best = load_checkpoint(out / "best.pt", kind=cfg["kind"])
        save_checkpoint(final, {**best, "result": result})
        from kdsnn.io import write_json

        write_json(out / selection.RESULT_FILE, result)
        from kdsnn.curves import plot_training

        plot_training(out / "metrics.jsonl", out / "training.png",
                      title=f"{cfg['kind']} {cfg.get('arch', '')} on {cfg.get('dataset', '')}"
                            + (f", kd={cfg['kd']}" if cfg["kind"] == "student" else ""), result=result)
    distributed.barrier()  # the other ranks may read the final file next (default teacher)
    return final, result


# ------------------------------------------------------------------ commands
def _check_output(output: str) -> Path:
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise KdsnnError(f"output {out} is a file; -o/--output must be a folder")
    return ensure_dir(out)


def _check_data(cfg: dict[str, Any]) -> None:
    """Every split of the dataset is there (or downloaded) before any training starts or any
    folder is made: a missing dataset is one error line and leaves nothing behind."""
    from kdsnn import data

    if distributed.local_rank() == 0:  # under torchrun the node's other ranks read it later
        data.check_available(cfg["dataset"], cfg.get("data_dir"), cfg.get("download", False))


def train_teacher_command(**opts: Any) -> dict[str, Any]:
    """`kdsnn train-teacher`: an ANN of the zoo on a dataset -> OUTPUT/teacher.pt."""

    cfg = make_config("teacher", opts)
    _check_data(cfg)
    _check_output(cfg["output"])
    with output_lock(cfg["output"], "train-teacher", quiet=cfg["silent"]):   # one writer per folder (kdsnn.outlock)
        return _train_teacher(cfg, opts)


def _train_teacher(cfg: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    from kdsnn.outputs import echo_written

    echo(f"training ANN teacher {cfg['arch']} on {cfg['dataset']} for {cfg['train']['epochs']} epochs "
          f"-> {Path(cfg['output']) / 'teacher.pt'}", cfg["quiet"])
    res = train_loop(cfg)
    echo(selection.result_line(f"teacher {cfg['arch']}", res["result"], res["path"]), cfg["silent"])
    written = list(res["written"])
    if opts.get("onnx") and is_main():
        from kdsnn.checkpoint import load_model
        from kdsnn.export_onnx import export_onnx

        model, mcfg = load_model(res["path"], "cpu", kind="teacher")
        path = export_onnx(model, Path(cfg["output"]) / "teacher.onnx", config=mcfg)
        res["onnx"] = str(path)
        written.append(Path(path))
    echo_written(written, cfg["output"], silent=cfg["silent"])
    return res


def distill_command(**opts: Any) -> dict[str, Any]:
    """`kdsnn distill`: train a spiking student, distilling from --teacher (or a default one)."""

    cfg = make_config("student", opts)
    _check_data(cfg)
    out = _check_output(cfg["output"])
    with output_lock(out, "distill", quiet=cfg["silent"]):   # one writer per folder (kdsnn.outlock), the default teacher's too
        return _distill(cfg, opts, out)


def _distill(cfg: dict[str, Any], opts: dict[str, Any], out: Path) -> dict[str, Any]:
    from kdsnn.outputs import echo_written

    written: list[Path] = []
    if cfg["kd"] != "none" and not cfg.get("teacher"):
        cfg["teacher"] = str(_default_teacher(cfg, opts, written))
    elif cfg["kd"] == "none" and cfg.get("teacher"):
        echo("note: --kd none trains without the teacher; --teacher is ignored", cfg["quiet"])
        cfg["teacher"] = None
    tr = cfg["train"]
    echo(f"distilling spiking {cfg['arch']} (T={cfg['T']}, IF theta={cfg['neuron']['theta']}, "
          f"{cfg['neuron']['surrogate']} surrogate) on {cfg['dataset']}, kd={cfg['kd']}"
          + (f" from {cfg['teacher']}" if cfg.get("teacher") else "")
          + f", {tr['epochs']} epochs -> {out / 'student.pt'}", cfg["quiet"])
    res = train_loop(cfg)
    echo(selection.result_line(f"student {cfg['arch']} (kd={cfg['kd']})", res["result"], res["path"]),
          cfg["silent"])
    echo_written(list(res["written"]) + written, out, silent=cfg["silent"])
    return res


def _default_teacher(cfg: dict[str, Any], opts: dict[str, Any], written: list[Path]) -> Path:
    """Train the dataset's default teacher into OUTPUT/teacher/ and copy it to OUTPUT/teacher.pt
    (its files are added to `written`)."""
    out = Path(cfg["output"])
    dest = out / "teacher.pt"
    if cfg.get("resume") and dest.exists():
        load_checkpoint(dest, kind="teacher")
        echo(f"--resume: using the teacher trained earlier, {dest}", cfg["silent"])
        return dest
    d = DEFAULTS.get(cfg["dataset"], DEFAULTS["mnist5k"])
    topts = {**opts, "arch": d["teacher"], "epochs": opts.get("teacher_epochs") or d["teacher_epochs"],
             "output": str(out / "teacher"), "width": d.get("teacher_width", 1.0), "teacher": None,
             "resume": bool(cfg.get("resume") and (out / "teacher" / "last.pt").exists())}
    tcfg = make_config("teacher", topts)
    echo(f"no --teacher given: training the default teacher for {cfg['dataset']}, an ANN {tcfg['arch']} "
          f"(width {tcfg['width']:g}, {tcfg['train']['epochs']} epochs) in {out / 'teacher'}, used as {dest}",
          cfg["silent"])
    res = train_loop(tcfg)
    if is_main():
        with atomic_path(dest) as tmp:
            shutil.copyfile(res["path"], tmp)
    distributed.barrier()  # every rank loads dest as its teacher next
    echo(selection.result_line(f"default teacher {tcfg['arch']}", res["result"], dest), cfg["silent"])
    written += [dest, *res["written"]]
    return dest
