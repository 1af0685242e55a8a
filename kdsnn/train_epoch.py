"""One training epoch of a run (`kdsnn.train`): forward with the teacher, the distillation
loss in float32, the optimizer step, the sums every process reduces; and the random shift
augmentation it applies."""

from __future__ import annotations

from typing import Any

import torch

from kdsnn import ddp, distributed, progress, speed
from kdsnn.distributed import is_main
from kdsnn.errors import KdsnnError
from kdsnn.event_data import teacher_view
from kdsnn.train_setup import Run


def train_epoch(run: Run, epoch: int) -> dict[str, float]:
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
        ddp.average_gradients(crit.connectors)
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
