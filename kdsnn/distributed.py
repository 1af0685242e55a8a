"""Distributed training and evaluation on PyTorch's own engine (torchrun + DDP).

One code path serves both launches: under `torchrun` (env vars RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT) `init()` joins the process group (gloo on CPU,
nccl on CUDA); a plain `python -m kdsnn ...` has no group and every helper below reduces
to the single-process answer (rank 0 of a world of 1). So training code calls these
helpers unconditionally and needs no `if distributed:` branches.

Conventions:
- `--batch-size` is the *global* batch; `GlobalBatchSampler` gives each rank its slice of
  every global batch (one (seed, epoch) permutation), so the same command line makes the
  same optimisation steps with or without torchrun (DDP averages the gradients, synchronized
  BatchNorm sees the global batch; weights agree to float rounding).
- The teacher is loaded on every rank (eval mode, no DDP); the student is DDP-wrapped; the
  feature connectors, called inside the loss, are `replicate`d and `average_gradients`d
  (the model side lives in kdsnn/ddp.py).
- Only rank 0 writes files and shows progress bars (`is_main()`).
- Evaluation shards the test set into contiguous, disjoint slices (`shard_indices`) with no
  padding or duplicates, and sums exact int64 totals (`gather_totals`), so the accuracy is
  the same number a single process computes.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from kdsnn.errors import KdsnnError


# ----------------------------------------------------------------------------- process group
def launched() -> bool:
    """True when this process was started by torchrun (or an equivalent launcher)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def is_dist() -> bool:
    """True inside an initialized process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if launched() else 0


def is_main() -> bool:
    """Rank 0 writes checkpoints, logs and progress bars; the others stay silent.

    Before `init()` (e.g. messages printed while parsing options) a torchrun-launched
    process already knows its rank from RANK, so only one copy is printed.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0") or 0) == 0 if launched() else True


def init(device: str | torch.device = "cpu", timeout_s: float = 1800.0) -> torch.device:
    """Join the torchrun process group if launched by torchrun; return this rank's device.

    CUDA ranks use `cuda:LOCAL_RANK` with nccl; CPU ranks use gloo. Without torchrun (or
    with a world of 1) nothing is initialized and `device` is returned as given.
    Idempotent: a second call returns the device again.
    """
    dev = torch.device(device)
    if not launched():
        return dev
    try:
        ws = int(os.environ["WORLD_SIZE"])
        lr = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise KdsnnError("torchrun environment variables WORLD_SIZE/LOCAL_RANK are not integers; "
                         "start kdsnn with `torchrun --nproc_per_node N -m kdsnn ...`") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise KdsnnError("--device cuda was given but no CUDA device is visible on this node; "
                             "use --device cpu (gloo) or check CUDA_VISIBLE_DEVICES")
        if lr >= torch.cuda.device_count():
            raise KdsnnError(f"LOCAL_RANK {lr} has no GPU: this node has {torch.cuda.device_count()}; "
                             "use --nproc_per_node <= the number of GPUs per node")
        dev = torch.device("cuda", lr)
        torch.cuda.set_device(dev)
    if ws <= 1 or (dist.is_available() and dist.is_initialized()):
        return dev
    if not dist.is_available():
        raise KdsnnError("this PyTorch build has no torch.distributed; run without torchrun")
    backend = "nccl" if dev.type == "cuda" else "gloo"
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise KdsnnError(f"torchrun environment incomplete (missing {', '.join(missing)}); "
                         "start kdsnn with `torchrun --nproc_per_node N -m kdsnn ...`")
    kwargs: dict[str, Any] = {"backend": backend, "timeout": datetime.timedelta(seconds=timeout_s)}
    if dev.type == "cuda":
        kwargs["device_id"] = dev
    dist.init_process_group(**kwargs)
    atexit.register(cleanup)
    return dev


def cleanup() -> None:
    """Leave the process group (safe to call when none exists)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_dist():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


@contextlib.contextmanager
def local_main_first() -> Iterator[None]:
    """Run the body on each node's local rank 0 first, then on the other ranks (e.g. a
    dataset download into a shared cache: one writer, then readers)."""
    first = local_rank() == 0
    if not first:
        barrier()
    yield
    if first:
        barrier()


def comm_device() -> torch.device:
    """Tensors given to collectives must live on the backend's device."""
    if is_dist() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# ----------------------------------------------------------------------------- reductions
def all_reduce_sum(value: Any) -> Any:
    """Sum over ranks of a number, tensor or {name: number} (identity in one process).

    Floats are reduced in float64, ints in int64 (exact); a tensor keeps its dtype/device.
    """
    if isinstance(value, Mapping):
        keys = list(value)
        vals = [value[k] for k in keys]
        if all(isinstance(v, (int, np.integer, bool)) for v in vals):
            out = all_reduce_sum(torch.tensor([int(v) for v in vals], dtype=torch.int64))
            return {k: int(v) for k, v in zip(keys, out.tolist(), strict=True)}
        out = all_reduce_sum(torch.tensor([float(_item(v)) for v in vals], dtype=torch.float64))
        return dict(zip(keys, out.tolist(), strict=True))
    if isinstance(value, torch.Tensor):
        if not is_dist():
            return value
        t = value.detach().to(comm_device()).clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.to(value.device)
    if isinstance(value, (int, np.integer, bool)):
        return int(all_reduce_sum(torch.tensor([int(value)], dtype=torch.int64)).item())
    return float(all_reduce_sum(torch.tensor([float(_item(value))], dtype=torch.float64)).item())


def _item(v: Any) -> float:
    return v.item() if isinstance(v, torch.Tensor) else v


# ----------------------------------------------------------------------------- data
def local_batch_size(global_batch: int) -> int:
    """Per-rank batch for a global `--batch-size` (must divide evenly)."""
    w = world_size()
    if global_batch % w:
        raise KdsnnError(f"--batch-size {global_batch} is the global batch and must be divisible by "
                         f"the {w} processes; use a multiple of {w}")
    return global_batch // w


class GlobalBatchSampler(torch.utils.data.Sampler[int]):
    """Training order that does not depend on the number of processes.

    Each epoch draws one permutation of the dataset from (seed, epoch), cuts it into
    global batches of `global_batch`, and gives rank r the r-th contiguous slice of every
    global batch. A DataLoader with batch_size `global_batch // world` over this sampler
    therefore sees, summed over the ranks, exactly the batches one process sees with the
    same seed: the same command line trains the same way with or without torchrun.
    A last, short global batch is split as evenly as possible; if it has fewer samples
    than ranks it is topped up from the start of the permutation (every rank must step).
    """

    def __init__(self, n: int, global_batch: int, shuffle: bool = True, seed: int = 0,
                 rank_: int | None = None, world: int | None = None) -> None:
        self.n, self.global_batch, self.shuffle, self.seed = int(n), int(global_batch), shuffle, int(seed)
        self.rank = rank() if rank_ is None else rank_
        self.world = world_size() if world is None else world
        if self.global_batch % self.world:
            raise KdsnnError(f"--batch-size {self.global_batch} is the global batch and must be "
                             f"divisible by the {self.world} processes; use a multiple of {self.world}")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def _slices(self) -> Iterator[range]:
        B, w, r = self.global_batch, self.world, self.rank
        for start in range(0, self.n, B):
            m = min(B, self.n - start)
            if m >= w:
                yield range(start + m * r // w, start + m * (r + 1) // w)
            else:  # too short to give every rank a sample: one each, wrapping around
                yield range(start + r, start + r + 1)

    def __iter__(self) -> Iterator[int]:
        order = self._order()
        for sl in self._slices():
            for i in sl:
                yield order[i % self.n]

    def __len__(self) -> int:
        return sum(len(sl) for sl in self._slices())


def make_sampler(dataset: Sequence, global_batch: int, shuffle: bool = True,
                 seed: int = 0) -> GlobalBatchSampler:
    """The training sampler (with or without torchrun); load with
    batch_size=`local_batch_size(global_batch)` and call `set_epoch` every epoch."""
    return GlobalBatchSampler(len(dataset), global_batch, shuffle=shuffle, seed=seed)


def set_epoch(sampler: Any, epoch: int) -> None:
    if sampler is not None and hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


def shard_indices(n: int, rank_: int | None = None, world: int | None = None) -> range:
    """This rank's contiguous slice of range(n): disjoint, covering, no padding.

    Sizes differ by at most one; concatenating the shards in rank order gives range(n), so
    gathered predictions come back in the original order.
    """
    r = rank() if rank_ is None else rank_
    w = world_size() if world is None else world
    if n < 0 or w < 1 or not 0 <= r < w:
        raise ValueError(f"shard_indices: bad n={n}, rank={r}, world={w}")
    return range(n * r // w, n * (r + 1) // w)


def shard(data: Any) -> Any:
    """This rank's contiguous slice of an array, tensor, list or Dataset (all of it in one
    process)."""
    if not is_dist():
        return data
    idx = shard_indices(len(data))
    if isinstance(data, (np.ndarray, torch.Tensor, list, tuple, range)):
        return data[idx.start:idx.stop]
    return torch.utils.data.Subset(data, list(idx))


def gather_totals(totals: Mapping[str, int]) -> dict[str, int]:
    """Exact global totals (int64 sums) of per-rank counts such as correct / total."""
    for k, v in totals.items():
        if not isinstance(v, (int, np.integer, bool)) and not (
                isinstance(v, torch.Tensor) and not v.is_floating_point()):
            raise TypeError(f"gather_totals: {k} must be an integer count, got {type(v).__name__}")
    return all_reduce_sum({k: int(_item(v)) for k, v in totals.items()})
