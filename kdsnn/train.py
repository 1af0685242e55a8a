"""Training: ANN teachers (`kdsnn train-teacher`) and distilled spiking students (`kdsnn distill`).

One function, `train_loop(cfg)`, trains either kind, with or without torchrun: every file
write and progress bar goes through `distributed.is_main()`, every per-epoch metric through
`distributed.all_reduce_sum()`, and the model is DDP-wrapped in one place
(`distributed.wrap_ddp`); in one process these are no-ops. It runs in four steps: `_setup`
(data, model, loss, optimizer), `_resume`, `_train_epoch`, `_checkpoint`, then `_finish`;
the run's configuration comes from `kdsnn.train_config.make_config`. Model selection is on
the validation split; the test split is evaluated once, on the selected model
(kdsnn.selection).

Output folder of a run:
  last.pt        resumable state after the last finished epoch (model, connectors,
                 optimizer, scheduler, AMP scaler, RNG states, loader generator)
  best.pt        the epoch with the best validation accuracy so far
  student.pt / teacher.pt   the selected (best validation) model, written when the run ends
  metrics.jsonl  one JSON object per epoch (loss parts and their weights, train and
                 validation accuracy with their sample counts, lr, time)
  result.json    the selected epoch, its validation and its (one) test accuracy
  training.png   weighted loss terms, train/validation accuracy per epoch, the test point
All written atomically (kdsnn.io); a failure (NaN loss, Ctrl-C) leaves the earlier files.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
from torch.utils.data import Subset

from kdsnn import determinism, distributed, progress, selection, speed
from kdsnn.checkpoint import build_from_config, graph_of, load_checkpoint, save_checkpoint
from kdsnn.deploy_exact import training_forward
from kdsnn.device import resolve_device
from kdsnn.distributed import is_main
from kdsnn.errors import KdsnnError
from kdsnn.evaluate import evaluate_model
from kdsnn.event_data import is_event_dataset, teacher_view
from kdsnn.io import atomic_path, ensure_dir
from kdsnn.kd_loss import Connectors, DistillLoss, match_points
from kdsnn.train_config import DEFAULTS, checkpoint_config, make_config


def _echo(msg: str, quiet: bool = False) -> None:
    if is_main() and not quiet:
        click.echo(msg)


# ------------------------------------------------------------------ reproducibility
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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


# ------------------------------------------------------------------ the loop
def _teacher_for(cfg: dict[str, Any], device: torch.device):
    from kdsnn.data import dataset_info
    from kdsnn.teachers import load_teacher

    info = dataset_info(cfg["dataset"])
    # the torchvision-only options; load_teacher ignores them for the other teachers
    teacher = load_teacher(cfg["teacher"], device=device, feature_names=cfg.get("teacher_features"),
                           weights=cfg.get("teacher_weights"), num_classes=info.num_classes,
                           input_shape=tuple(info.input_shape), download=cfg.get("download", False))
    teacher.check(tuple(info.input_shape), info.num_classes, list(info.mean), list(info.std))
    return teacher


@dataclass
class _Run:
    """What one training run holds: its config, data, model, loss, teacher and optimizer."""

    cfg: dict[str, Any]
    out: Path
    device: torch.device
    loader: Any
    val_ds: Any                          # model selection, every epoch
    test_ds: Any                         # evaluated once, on the selected model
    model: torch.nn.Module
    net: torch.nn.Module                 # the model, DDP-wrapped under torchrun
    crit: DistillLoss
    teacher: Any
    opt: torch.optim.Optimizer
    sched: Any
    scaler: Any
    background: torch.Tensor             # the normalized value of a black pixel
    best_acc: float = -1.0
    best_epoch: int = 0
    best_state: dict[str, Any] | None = None   # the selected weights, on every rank
    best_val: dict[str, Any] | None = None
    epochs_run: int = 0
    stopped_early: bool = False

    @property
    def tr(self) -> dict[str, Any]:
        return self.cfg["train"]

    @property
    def precision(self) -> str:
        return str(self.tr.get("precision") or "auto")

    @property
    def quiet(self) -> bool:
        return bool(self.cfg.get("quiet", False))

    @property
    def progress(self) -> str:
        return str(self.cfg.get("progress") or ("none" if self.quiet else "lines"))


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
    run = _setup(cfg)
    start = _resume(run)
    ccfg = {**checkpoint_config(cfg), "graph": graph_of(run.model)}
    summary: dict[str, Any] = {}
    # stop_after: end this invocation after that epoch of the schedule (a later --resume goes on)
    tr = run.tr
    last_epoch = min(tr["epochs"], int(cfg.get("stop_after") or tr["epochs"]))
    run.epochs_run = start
    if start >= tr["epochs"]:
        _echo(f"{out_name(run)} has finished all {tr['epochs']} epochs; give --resume --epochs N with N > "
              f"{tr['epochs']} to train it longer", run.quiet)
    for epoch in range(start + 1, last_epoch + 1):
        if selection.stop_early(epoch - 1, run.best_epoch, tr.get("patience")):
            run.stopped_early = True
            _echo(f"stopping early: no better validation accuracy for {tr['patience']} epochs "
                  f"(--patience), best at epoch {run.best_epoch}", run.quiet)
            break
        t0 = time.time()
        tot = _train_epoch(run, epoch)
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
            _checkpoint(run, ccfg, epoch, rec, improved)
        terms = run.crit.describe({k: v / n for k, v in tot.items() if k != "loss"})
        _echo(selection.epoch_line(cfg["kind"], epoch, tr["epochs"], tot["loss"] / n, terms, correct / n, int(n),
                                   ev, dt, improved), run.quiet)
        summary = rec
    final, result = _finish(run)
    return {"best_acc": run.best_acc, "best_epoch": run.best_epoch, "last": summary, "path": str(final),
            "result": result, "written": _written(run.out, final)}


def out_name(run: _Run) -> str:
    return str(run.out / "last.pt")


def _written(out: Path, final: Path) -> list[Path]:
    """What a run leaves in its folder, in the order a person looks for it."""
    return [final, out / "best.pt", out / "last.pt", out / "metrics.jsonl", out / selection.RESULT_FILE,
            out / "training.png"]


def _setup(cfg: dict[str, Any]) -> _Run:
    """Output folder, device (joining torchrun's group, if any), seeded data, model, loss
    (with the teacher and connectors it needs), optimizer and schedule."""
    from kdsnn import data

    tr = cfg["train"]
    out = Path(cfg["output"])
    if is_main():
        ensure_dir(out)
    device = distributed.init(resolve_device(tr["device"]))  # joins torchrun's group, if any
    determinism.apply(tr)  # --deterministic: deterministic kernels, fixed threads
    if not tr.get("deterministic"):
        speed.apply_threads(tr.get("threads"))  # --threads (auto: the free cores)
    seed_everything(tr["seed"])
    with distributed.local_main_first():  # one download per node; the other ranks then read it
        # event data: T frames for a student, the frames summed over time for a teacher
        steps = {"time_steps": cfg["T"] if cfg["kind"] == "student" else None} \
            if is_event_dataset(cfg["dataset"]) else {}
        train_ds = data.load_dataset(cfg["dataset"], "train", data_dir=cfg.get("data_dir"),
                                     download=cfg.get("download", False), augment=tr["augment"], **steps)
        val_ds = data.load_dataset(cfg["dataset"], "val", data_dir=cfg.get("data_dir"),
                                   download=cfg.get("download", False), **steps)
        test_ds = data.load_dataset(cfg["dataset"], "test", data_dir=cfg.get("data_dir"),
                                    download=cfg.get("download", False), **steps)
    if tr.get("limit_train"):
        train_ds = Subset(train_ds, range(min(int(tr["limit_train"]), len(train_ds))))
    # --batch-size is the global batch: each torchrun process loads its slice of every global
    # batch, so a run with N processes steps through the same batches as one process
    loader = data.make_loader(train_ds, distributed.local_batch_size(tr["batch_size"]), shuffle=True,
                              seed=tr["seed"], sampler=distributed.make_sampler(
                                  train_ds, tr["batch_size"], shuffle=True, seed=tr["seed"]))

    model = speed.to_layout(build_from_config(cfg).to(device), device)  # channels-last on the CPU
    if cfg.get("init_weights"):  # fine-tuning (kdsnn finetune) starts from an existing student
        model.load_state_dict(load_checkpoint(cfg["init_weights"], kind=cfg["kind"])["model"])
    crit = DistillLoss(cfg["kd"], tr["alpha"], tr["temperature"])
    teacher = None
    if crit.uses_teacher:
        if not cfg.get("teacher"):
            raise KdsnnError(f"--kd {cfg['kd']} needs a teacher; give --teacher or use --kd none")
        teacher = _teacher_for(cfg, device)
        if crit.uses_features:
            pairs = match_points(model.feature_points, list(teacher.feature_names))
            if not pairs:
                raise KdsnnError(f"--kd {cfg['kd']} needs teacher features, but teacher {cfg['teacher']} "
                                 "names none (for ONNX teachers give --teacher-features)")
            crit.connectors = Connectors(pairs, model.feature_shapes(), teacher.feature_shapes,
                                         always=tr.get("connector") == "always").to(device)
    params = list(model.parameters()) + (list(crit.connectors.parameters()) if crit.connectors else [])
    if tr["optimizer"] == "sgd":
        opt = torch.optim.SGD(params, lr=tr["lr"], momentum=0.9, nesterov=True, weight_decay=tr["weight_decay"])
    else:
        opt = torch.optim.AdamW(params, lr=tr["lr"], weight_decay=tr["weight_decay"])
    steps = tr["epochs"] * len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps)))
    scaler = torch.amp.GradScaler("cuda", enabled=speed.uses_scaler(tr.get("precision") or "auto", device))
    net = distributed.wrap_ddp(training_forward(model, cfg), device)  # DDP + synchronized BatchNorm under torchrun
    # the normalized value of a black pixel: what a shifted image is padded with
    background = (-torch.tensor(cfg["mean"]) / torch.tensor(cfg["std"])).view(1, -1, 1, 1).to(device)
    if crit.connectors is not None:  # called inside the loss: replicated, gradients averaged below
        crit.connectors = distributed.replicate(crit.connectors, device)
    return _Run(cfg, out, device, loader, val_ds, test_ds, model, net, crit, teacher, opt, sched, scaler, background)


def _resume(run: _Run) -> int:
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
    _echo(f"resuming {out / 'last.pt'} after epoch {start}{more} (best validation accuracy "
          f"{100 * run.best_acc:.2f}% at epoch {run.best_epoch})", run.quiet)
    return start


def _train_epoch(run: _Run, epoch: int) -> dict[str, float]:
    """One epoch over the training batches; the loss terms, correct and n summed over every
    process."""
    cfg, tr, device, crit = run.cfg, run.tr, run.device, run.crit
    show = is_main() and progress.bars(run.progress)  # a bar and its postfix: terminal, rank 0
    run.net.train()
    if crit.connectors is not None:
        crit.connectors.train()
    distributed.set_epoch(run.loader.sampler, epoch)
    sums: dict[str, float] = {"loss": 0.0, "correct": 0.0, "n": 0.0}
    bar = progress.bar(run.loader, mode=run.progress if show else "none",
                       desc=f"{cfg['kind']} epoch {epoch}/{tr['epochs']}", unit="batch")
    for bi, (x, y) in enumerate(bar):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if tr.get("shift"):
            x = random_shift(x, tr["shift"], run.background)
        with speed.autocast(run.precision, device):  # --precision (kdsnn.speed)
            z_t = f_t = None
            if run.teacher is not None:
                z_t, f_t = run.teacher(teacher_view(x, tuple(cfg["input_shape"])))
            if crit.uses_features:
                z, f_s = run.net(x, return_features=True)
            else:
                z, f_s = run.net(x), None
            z, z_t, f_s, f_t = _float32(z, z_t, f_s, f_t)  # the loss in float32 whatever the autocast
            loss, parts = crit(z, y, z_t, f_s, f_t)
        if not torch.isfinite(loss):
            raise KdsnnError(f"loss became {float(loss.detach())} at epoch {epoch}, batch {bi + 1}; lower --lr "
                             f"(now {tr['lr']}); earlier checkpoints in {run.out} are kept")
        run.opt.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        distributed.average_gradients(crit.connectors)
        run.scaler.step(run.opt)
        run.scaler.update()
        run.sched.step()
        b = y.shape[0]
        sums["loss"] += float(loss.detach()) * b
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v) * b
        sums["correct"] += float((z.detach().argmax(1) == y).sum())
        sums["n"] += b
        if show and bi % 10 == 0:
            bar.set_postfix(loss=f"{sums['loss'] / sums['n']:.3f}", acc=f"{sums['correct'] / sums['n']:.3f}")
    bar.close()
    return distributed.all_reduce_sum(sums)


def _float32(*xs: Any) -> tuple[Any, ...]:
    """Tensors (or dicts of them) in float32; None stays None (a no-op in an fp32 run)."""
    return tuple(x.float() if isinstance(x, torch.Tensor) else
                 ({k: v.float() for k, v in x.items()} if isinstance(x, dict) else x) for x in xs)


def _checkpoint(run: _Run, ccfg: dict[str, Any], epoch: int, rec: dict[str, Any], improved: bool) -> None:
    """After an epoch (rank 0): append the metrics, write best.pt if it improved and the
    resumable last.pt."""
    out, crit = run.out, run.crit
    state = {"config": ccfg, "model": run.model.state_dict(),
             "connectors": crit.connectors.state_dict() if crit.connectors is not None else None,
             "epoch": epoch, "metrics": rec, "best_acc": run.best_acc, "best_epoch": run.best_epoch,
             "selected_by": "validation accuracy", "val": run.best_val if improved else None}
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")
    if improved:
        save_checkpoint(out / "best.pt", state)
    save_checkpoint(out / "last.pt", {**state, "optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict(),
                                      "scaler": run.scaler.state_dict(), "rng": _rng_state(),
                                      "loader_rng": run.loader.generator.get_state()})


def _finish(run: _Run) -> tuple[Path, dict[str, Any]]:
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


def random_shift(x: torch.Tensor, max_shift: int, background: torch.Tensor) -> torch.Tensor:
    """Translate each image by a random (dy, dx) in [-max_shift, max_shift]^2, filling with
    `background` (the MNIST-style augmentation; uses the global torch RNG, so it is seeded
    and resumable)."""
    b, c, h, w = x.shape
    p = int(max_shift)
    xp = torch.nn.functional.pad(x - background, (p, p, p, p)) + background
    dy = torch.randint(0, 2 * p + 1, (b,)).to(x.device)
    dx = torch.randint(0, 2 * p + 1, (b,)).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])[:, None, None, :]
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return xp[bi, ci, rows, cols]


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
    from kdsnn.outputs import echo_written

    cfg = make_config("teacher", opts)
    _check_data(cfg)
    _check_output(cfg["output"])
    _echo(f"training ANN teacher {cfg['arch']} on {cfg['dataset']} for {cfg['train']['epochs']} epochs "
          f"-> {Path(cfg['output']) / 'teacher.pt'}", cfg["quiet"])
    res = train_loop(cfg)
    _echo(selection.result_line(f"teacher {cfg['arch']}", res["result"], res["path"]), cfg["silent"])
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
    from kdsnn.outputs import echo_written

    cfg = make_config("student", opts)
    _check_data(cfg)
    out = _check_output(cfg["output"])
    written: list[Path] = []
    if cfg["kd"] != "none" and not cfg.get("teacher"):
        cfg["teacher"] = str(_default_teacher(cfg, opts, written))
    elif cfg["kd"] == "none" and cfg.get("teacher"):
        _echo("note: --kd none trains without the teacher; --teacher is ignored", cfg["quiet"])
        cfg["teacher"] = None
    tr = cfg["train"]
    _echo(f"distilling spiking {cfg['arch']} (T={cfg['T']}, IF theta={cfg['neuron']['theta']}, "
          f"{cfg['neuron']['surrogate']} surrogate) on {cfg['dataset']}, kd={cfg['kd']}"
          + (f" from {cfg['teacher']}" if cfg.get("teacher") else "")
          + f", {tr['epochs']} epochs -> {out / 'student.pt'}", cfg["quiet"])
    res = train_loop(cfg)
    _echo(selection.result_line(f"student {cfg['arch']} (kd={cfg['kd']})", res["result"], res["path"]),
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
        _echo(f"--resume: using the teacher trained earlier, {dest}", cfg["silent"])
        return dest
    d = DEFAULTS.get(cfg["dataset"], DEFAULTS["mnist5k"])
    topts = {**opts, "arch": d["teacher"], "epochs": opts.get("teacher_epochs") or d["teacher_epochs"],
             "output": str(out / "teacher"), "width": d.get("teacher_width", 1.0), "teacher": None,
             "resume": bool(cfg.get("resume") and (out / "teacher" / "last.pt").exists())}
    tcfg = make_config("teacher", topts)
    _echo(f"no --teacher given: training the default teacher for {cfg['dataset']}, an ANN {tcfg['arch']} "
          f"(width {tcfg['width']:g}, {tcfg['train']['epochs']} epochs) in {out / 'teacher'}, used as {dest}",
          cfg["silent"])
    res = train_loop(tcfg)
    if is_main():
        with atomic_path(dest) as tmp:
            shutil.copyfile(res["path"], tmp)
    distributed.barrier()  # every rank loads dest as its teacher next
    _echo(selection.result_line(f"default teacher {tcfg['arch']}", res["result"], dest), cfg["silent"])
    written += [dest, *res["written"]]
    return dest
