"""Setting up a training run (`kdsnn.train`): output folder, device, seeded data, model, loss
with its teacher and connectors, optimizer, schedule, all held in one `Run`."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
from torch.utils.data import Subset

from kdsnn import ddp, determinism, distributed, speed
from kdsnn.checkpoint import build_from_config, load_checkpoint
from kdsnn.deploy_exact import training_forward
from kdsnn.device import resolve_device
from kdsnn.distributed import is_main
from kdsnn.errors import KdsnnError
from kdsnn.event_data import is_event_dataset
from kdsnn.io import ensure_dir
from kdsnn.kd_loss import Connectors, DistillLoss, match_points


def echo(msg: str, quiet: bool = False) -> None:
    """Print on the main process only, unless quiet."""
    if is_main() and not quiet:
        click.echo(msg)


# ------------------------------------------------------------------ reproducibility
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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
class Run:
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


def setup_run(cfg: dict[str, Any]) -> Run:
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
    net = ddp.wrap_ddp(training_forward(model, cfg), device)  # DDP + synchronized BatchNorm under torchrun
    # the normalized value of a black pixel: what a shifted image is padded with
    background = (-torch.tensor(cfg["mean"]) / torch.tensor(cfg["std"])).view(1, -1, 1, 1).to(device)
    if crit.connectors is not None:  # called inside the loss: replicated, gradients averaged below
        crit.connectors = ddp.replicate(crit.connectors, device)
    return Run(cfg, out, device, loader, val_ds, test_ds, model, net, crit, teacher, opt, sched, scaler, background)
