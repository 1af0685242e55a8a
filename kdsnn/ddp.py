"""The model side of distributed training: DDP wrapping, synchronized BatchNorm, replicas.

Under torchrun the student is DDP-wrapped with synchronized BatchNorm (nn.SyncBatchNorm on
GPUs, `GlooSyncBatchNorm` on CPU, which PyTorch's own refuses), so each step sees the
global batch's statistics; modules called inside the loss (the feature connectors) are
`replicate`d and `average_gradients`d. In one process every helper returns its input
unchanged. The process group, reductions and sharding are kdsnn/distributed.py's.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from kdsnn.distributed import comm_device, is_dist, world_size


class _AllReduceSum(torch.autograd.Function):
    """Differentiable all-reduce: the gradient of a summed statistic is summed back."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        return x

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        g = g.clone()
        dist.all_reduce(g, op=dist.ReduceOp.SUM)
        return g


class GlooSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm with global-batch statistics over all ranks, for CPU (gloo) processes.

    PyTorch's `nn.SyncBatchNorm` refuses CPU tensors; this is the same computation
    (two-pass mean/variance over the global batch, gradients through the reduction) in
    plain autograd. Outside a process group, or in eval mode, it is an ordinary BatchNorm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_dist()):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        n_local = x.numel() // x.shape[1]
        cnt_sum = _AllReduceSum.apply(torch.cat([x.new_tensor([float(n_local)]), x.sum(dims)]))
        n, mean = cnt_sum[0].detach(), cnt_sum[1:] / cnt_sum[0].detach()
        xc = x - mean.reshape(shape)
        var = _AllReduceSum.apply((xc * xc).sum(dims)) / n
        y = xc * torch.rsqrt(var + self.eps).reshape(shape)
        if self.affine:
            y = y * self.weight.reshape(shape) + self.bias.reshape(shape)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                     else self.momentum)
                unbiased = var.detach() * (n / (n - 1)) if n > 1 else var.detach()
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
        return y


def convert_sync_batchnorm(module: nn.Module, device: torch.device | str | None = None) -> nn.Module:
    """Replace every BatchNorm by its synchronized form: nn.SyncBatchNorm on GPUs,
    GlooSyncBatchNorm on CPU (same parameters and buffers). A no-op in one process."""
    if not is_dist():
        return module
    dev = torch.device(device) if device is not None else next(
        (p.device for p in module.parameters()), torch.device("cpu"))
    cls = GlooSyncBatchNorm if dev.type == "cpu" else nn.SyncBatchNorm
    return _swap_bn(module, lambda m: cls if not isinstance(m, (nn.SyncBatchNorm, GlooSyncBatchNorm)) else None)


def _swap_bn(module: nn.Module, choose) -> nn.Module:
    """Rebuild every BatchNorm for which `choose(m)` gives a class, sharing its tensors."""
    out = module
    cls = choose(module) if isinstance(module, nn.modules.batchnorm._BatchNorm) else None
    if cls is not None:
        out = cls(module.num_features, module.eps, module.momentum, module.affine,
                  module.track_running_stats)
        if module.affine:
            out.weight = module.weight
            out.bias = module.bias
        out.running_mean = module.running_mean
        out.running_var = module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.training = module.training
        out._kdsnn_dims = getattr(module, "_kdsnn_dims",  # type: ignore[attr-defined]
                                  1 if isinstance(module, nn.BatchNorm1d) else 2)
    for name, child in module.named_children():
        out.add_module(name, _swap_bn(child, choose))
    return out


def wrap_ddp(module: nn.Module, device: torch.device | str | None = None,
             sync_bn: bool = True, find_unused_parameters: bool = False) -> nn.Module:
    """DDP-wrap a trainable module (already on `device`) with synchronized BatchNorm.

    In one process the module is returned unchanged. Get the bare model back with
    `.module` to save it or call its own methods (its state_dict keys are the plain ones).
    """
    if not is_dist():
        return module
    dev = torch.device(device) if device is not None else next(
        (p.device for p in module.parameters()), torch.device("cpu"))
    if sync_bn:
        module = convert_sync_batchnorm(module, dev)
    if not any(p.requires_grad for p in module.parameters()):
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else None
    return DDP(module, device_ids=ids, find_unused_parameters=find_unused_parameters)


def replicate(module: nn.Module, device: torch.device | str | None = None) -> nn.Module:
    """Make a trainable module that is not DDP-wrapped (e.g. the feature connectors,
    called from inside the loss) a replica: synchronized BatchNorm, rank 0's weights.
    Pair it with `average_gradients(module)` after every backward."""
    if not is_dist():
        return module
    module = convert_sync_batchnorm(module, device)
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            c = t.detach().to(comm_device())
            dist.broadcast(c, src=0)
            t.copy_(c.to(t.device))
    return module


def average_gradients(module: nn.Module | None) -> None:
    """Average the gradients of a `replicate`d module over ranks (what DDP does for its
    module), in one flat all-reduce. Gradients scaled by an AMP GradScaler stay scaled."""
    if module is None or not is_dist():
        return
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params]).to(comm_device())
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size()
    i = 0
    for p in params:
        n = p.grad.numel()
        p.grad.copy_(flat[i:i + n].view_as(p.grad))
        i += n
