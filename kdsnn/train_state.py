"""A training run's resumable state (`kdsnn.train`): the checkpoints written after each epoch
(best.pt, last.pt with optimizer, schedule, scaler and RNG states) and `--resume` reading
last.pt back, refusing a run that would not continue the same model and schedule."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdsnn import selection
from kdsnn.checkpoint import graph_of, load_checkpoint, save_checkpoint
from kdsnn.distributed import is_main
from kdsnn.errors import KdsnnError
from kdsnn.io import atomic_path
from kdsnn.metrics_log import append_metrics, sync_metrics
from kdsnn.train_setup import Run, echo


def _rng_state() -> dict[str, Any]:
    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict[str, Any]) -> None:
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def resume_run(run: Run) -> int:
    """With --resume, load out/last.pt into the run (model, connectors, optimizer, schedule,
    AMP scaler, RNG states) and return its epoch; else start a fresh metrics log, return 0."""
    cfg, out = run.cfg, run.out
    if not cfg.get("resume"):
        if is_main():
            with atomic_path(out / "metrics.jsonl") as tmp:  # a fresh run starts a fresh log
                tmp.write_text("")
        return 0
    if not (out / "last.pt").exists():
        raise KdsnnError(f"--resume: {out} holds no last.pt, so there is nothing to resume (it does not exist); "
                         "run without --resume")
    st = load_checkpoint(out / "last.pt", kind=cfg["kind"])
    _check_resume(st["config"], {**cfg, "graph": graph_of(run.model)}, out, int(st["epoch"]))
    if is_main():
        note = sync_metrics(out / "metrics.jsonl", int(st["epoch"]), st.get("metrics"))
        if note:
            echo(f"note: {note}", run.quiet)
    run.model.load_state_dict(st["model"])
    if run.crit.connectors is not None and st.get("connectors") is not None:
        run.crit.connectors.load_state_dict(st["connectors"])
    run.opt.load_state_dict(st["optimizer"])
    run.sched.load_state_dict(st["scheduler"])
    run.scaler.load_state_dict(st["scaler"])
    _set_rng_state(st["rng"])
    run.loader.generator.set_state(st["loader_rng"])
    start, run.best_acc, run.best_epoch = int(st["epoch"]), float(st["best_acc"]), int(st["best_epoch"])
    if (out / "best.pt").exists():  # the selected weights so far (every rank reads them)
        best = load_checkpoint(out / "best.pt", kind=cfg["kind"])
        run.best_state, run.best_val = best["model"], best.get("val")
    old_epochs = int(st["config"]["train"]["epochs"])
    more = (f", extending the planned {old_epochs} epochs to {run.tr['epochs']}"
            if run.tr["epochs"] != old_epochs else "")
    echo(f"resuming {out / 'last.pt'} after epoch {start}{more} (best validation accuracy "
          f"{100 * run.best_acc:.2f}% at epoch {run.best_epoch})", run.quiet)
    return start


def save_epoch(run: Run, ccfg: dict[str, Any], epoch: int, rec: dict[str, Any], improved: bool) -> None:
    """After an epoch (rank 0): append the metrics, write best.pt if it improved and the
    resumable last.pt."""
    out, crit = run.out, run.crit
    state = {"config": ccfg, "model": run.model.state_dict(),
             "connectors": crit.connectors.state_dict() if crit.connectors is not None else None,
             "epoch": epoch, "metrics": rec, "best_acc": run.best_acc, "best_epoch": run.best_epoch,
             "selected_by": "validation accuracy", "val": run.best_val if improved else None}
    if improved:
        save_checkpoint(out / "best.pt", state)
    save_checkpoint(out / "last.pt", {**state, "optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict(),
                                      "scaler": run.scaler.state_dict(), "rng": _rng_state(),
                                      "loader_rng": run.loader.generator.get_state()})
    # the epoch's line only after last.pt holds the epoch: the log never runs ahead of it (a
    # kill between the two loses the line, and --resume puts it back from last.pt)
    append_metrics(out / "metrics.jsonl", rec)


def _check_resume(old: dict[str, Any], new: dict[str, Any], out: Path, done: int = 0) -> None:
    """Resuming must continue the same model and schedule (with more epochs, if asked)."""
    for k in ("kind", "arch", "width", "dataset", "T", "kd", "neuron", "graph"):
        if old.get(k) != new.get(k):
            raise KdsnnError(f"--resume: {out / 'last.pt'} was trained with {k}={old.get(k)!r}, "
                             f"now {k}={new.get(k)!r}; use the same options or another -o")
    if new["train"]["epochs"] != old["train"]["epochs"]:  # --resume --epochs N extends a run
        selection.check_extension(old["train"]["epochs"], new["train"]["epochs"], int(done), out / "last.pt")
    for k in ("batch_size", "optimizer", "lr", "limit_train", "seed", "deterministic"):
        if old["train"].get(k) != new["train"].get(k):
            raise KdsnnError(f"--resume: {out / 'last.pt'} was trained with {k}={old['train'].get(k)!r}, "
                             f"now {k}={new['train'].get(k)!r}; use the same options or another -o")
