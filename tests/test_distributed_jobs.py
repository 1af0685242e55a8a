"""Real 2-process CPU jobs (gloo): reductions, sharded evaluation, DDP + synchronized BN.

The processes join through the same torchrun environment variables kdsnn reads in
production (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

WORLD = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _student(seed: int = 0) -> nn.Module:
    from kdsnn.zoo import build

    torch.manual_seed(seed)
    return build("cnn", spiking=True, num_classes=10, input_shape=(1, 8, 8), T=2).double()


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 1, 8, 8, generator=g, dtype=torch.float64) * 2.0,
            torch.randint(0, 10, (n,), generator=g))


def _sgd_steps(model: nn.Module, batches, lo: int, hi: int) -> None:
    """A few SGD+momentum steps, each on rows [lo, hi) of the global batch."""
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    model.train()
    for x, y in batches:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x[lo:hi]), y[lo:hi])
        loss.backward()
        opt.step()


def _job(r: int, port: int) -> None:
    os.environ.update(RANK=str(r), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(r),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from torch.utils.data import TensorDataset

    from kdsnn import ddp as P
    from kdsnn import distributed as D
    from kdsnn.evaluate import evaluate_model
    from kdsnn.layers import GraphNet

    dev = D.init("cpu")
    try:
        assert D.is_dist() and D.world_size() == WORLD and D.rank() == r
        assert D.is_main() == (r == 0) and dev == torch.device("cpu")

        # --- reductions
        assert D.all_reduce_sum(r + 1) == 3
        assert D.all_reduce_sum(0.5 * (r + 1)) == pytest.approx(1.5)
        assert D.all_reduce_sum({"a": r, "b": 10}) == {"a": 1, "b": 20}
        t = torch.tensor([1.0, float(r)])
        assert torch.equal(D.all_reduce_sum(t), torch.tensor([2.0, 1.0]))
        assert torch.equal(t, torch.tensor([1.0, float(r)]))  # input untouched
        assert D.local_batch_size(64) == 32
        with pytest.raises(D.KdsnnError):
            D.local_batch_size(63)

        # --- sharded evaluation == single process, exactly (odd n: uneven shards)
        net = _student(1)
        x, y = _data(37, 5)
        with torch.no_grad():
            full = net.eval()(x)
        full_pred = full.argmax(1)
        y[::3] = full_pred[::3]  # some right, some wrong
        single = {"correct": int((full_pred == y).sum()), "n": 37}
        assert 0 < single["correct"] < 37
        shard = D.shard_indices(37)
        assert len(shard) == [18, 19][r]
        res = evaluate_model(net, None, TensorDataset(x, y), batch_size=5)  # what `kdsnn evaluate` runs
        assert {k: res[k] for k in ("correct", "n")} == single
        assert res["accuracy"] == single["correct"] / 37
        assert res["loss"] == pytest.approx(float(nn.functional.cross_entropy(full.float(), y)), rel=1e-6)
        assert D.gather_totals({"n": len(shard)}) == {"n": 37}

        # --- DDP + synchronized BN == one process on the same global batch
        batches = [_data(16, 100 + i) for i in range(3)]
        ref = _student(2)
        _sgd_steps(ref, batches, 0, 16)
        lo, hi = 8 * r, 8 * (r + 1)

        ddp = P.wrap_ddp(_student(2))
        assert isinstance(ddp, nn.parallel.DistributedDataParallel)
        assert any(isinstance(m, P.GlooSyncBatchNorm) for m in ddp.modules())
        _sgd_steps(ddp, batches, lo, hi)
        got = ddp.module.state_dict()
        want = ref.state_dict()
        assert got.keys() == want.keys()
        for k, v in want.items():
            torch.testing.assert_close(got[k], v, rtol=1e-9, atol=1e-10, msg=f"{k} (rank {r})")

        # the same job with per-rank BN statistics drifts away: the check above can fail
        local = P.wrap_ddp(_student(2), sync_bn=False)
        _sgd_steps(local, batches, lo, hi)
        drift = max((local.module.state_dict()[k].double() - v.double()).abs().max().item()
                    for k, v in want.items() if v.is_floating_point())
        assert drift > 1e-6

        # the trained model's state dict (what a checkpoint stores) loads into a fresh student
        # with plain BatchNorm and computes what the synchronized one computes in eval mode
        fresh = _student(3)
        assert isinstance(fresh, GraphNet)
        fresh.load_state_dict(ddp.module.state_dict())
        assert not any(isinstance(m, P.GlooSyncBatchNorm) for m in fresh.modules())
        with torch.no_grad():
            torch.testing.assert_close(fresh.eval()(x), ddp.module.eval()(x))
        D.barrier()
    finally:
        D.cleanup()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_two_process_gloo_job() -> None:
    """Reductions, exact sharded evaluation and DDP weight equivalence in one 2-rank job."""
    mp.start_processes(_job, args=(free_port(),), nprocs=WORLD, join=True, start_method="spawn")
