"""kdsnn.distributed in one process: sharding arithmetic and the single-process fallbacks
that let the same training code run with and without torchrun."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from kdsnn import ddp
from kdsnn import distributed as D
from kdsnn.errors import KdsnnError


@given(n=st.integers(0, 10_000), world=st.integers(1, 64))
def test_shards_partition_range_without_padding(n: int, world: int) -> None:
    shards = [D.shard_indices(n, r, world) for r in range(world)]
    assert [i for s in shards for i in s] == list(range(n))  # disjoint, covering, in order
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1


def _rank_batches(n: int, B: int, seed: int, epoch: int, r: int, w: int) -> list[list[int]]:
    """What a DataLoader(batch_size=B // w) yields on rank r of w."""
    smp = D.GlobalBatchSampler(n, B, seed=seed, rank_=r, world=w)
    smp.set_epoch(epoch)
    idx = list(smp)
    assert len(idx) == len(smp)
    b = B // w
    return [idx[i:i + b] for i in range(0, len(idx), b)]


@given(n=st.integers(1, 300), b=st.integers(1, 16), w=st.sampled_from([1, 2, 3, 4]),
       seed=st.integers(0, 5), epoch=st.integers(0, 3))
def test_global_batches_do_not_depend_on_world_size(n: int, b: int, w: int, seed: int, epoch: int) -> None:
    B = b * w
    single = _rank_batches(n, B, seed, epoch, 0, 1)
    ranks = [_rank_batches(n, B, seed, epoch, r, w) for r in range(w)]
    assert len({len(rb) for rb in ranks}) == 1  # every rank takes the same number of steps
    for step, batch in enumerate(single):
        got = [i for rb in ranks for i in rb[step]]
        if len(batch) >= w:
            assert sorted(got) == sorted(batch)  # same global batch, nothing padded
        else:
            assert set(batch) <= set(got) and len(got) == w
    assert sorted(i for bt in single for i in bt) == list(range(n))  # one epoch = a permutation


def test_sampler_shuffles_per_epoch_and_checks_divisibility() -> None:
    a, b = _rank_batches(50, 10, 0, 0, 0, 1), _rank_batches(50, 10, 0, 1, 0, 1)
    assert a != b and a == _rank_batches(50, 10, 0, 0, 0, 1)
    with pytest.raises(KdsnnError, match="divisible"):
        D.GlobalBatchSampler(10, 5, rank_=0, world=2)


def test_shard_indices_rejects_bad_rank() -> None:
    with pytest.raises(ValueError):
        D.shard_indices(10, 2, 2)
    with pytest.raises(ValueError):
        D.shard_indices(-1, 0, 1)


def test_single_process_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):   # torchrun's
        monkeypatch.delenv(v, raising=False)
    assert not D.launched()
    assert D.init("cpu") == torch.device("cpu")
    assert not torch.distributed.is_initialized()
    assert (D.rank(), D.world_size(), D.local_rank(), D.is_main(), D.is_dist()) == (0, 1, 0, True, False)
    assert D.all_reduce_sum(3) == 3 and isinstance(D.all_reduce_sum(3), int)
    assert D.all_reduce_sum({"a": 1.5}) == {"a": 1.5}
    assert D.gather_totals({"correct": 7, "total": torch.tensor(9)}) == {"correct": 7, "total": 9}
    with pytest.raises(TypeError):
        D.gather_totals({"correct": 0.5})
    D.set_epoch(None, 3)
    assert D.local_batch_size(33) == 33
    assert list(D.shard(torch.arange(5))) == [0, 1, 2, 3, 4]
    m = nn.Linear(2, 2)
    assert ddp.wrap_ddp(m) is m
    D.barrier()
    D.cleanup()


def test_evaluate_model_single_process_counts() -> None:
    from torch.utils.data import TensorDataset

    from kdsnn.evaluate import evaluate_model

    torch.manual_seed(0)
    m = nn.Linear(4, 3)
    x, y = torch.randn(11, 4), torch.randint(0, 3, (11,))
    with torch.no_grad():
        p = m(x).argmax(1)
    r = evaluate_model(m, None, TensorDataset(x, y), batch_size=4)
    assert r["correct"] == int((p == y).sum()) and r["n"] == 11


def test_incomplete_torchrun_env_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(KdsnnError, match="MASTER_ADDR"):
        D.init("cpu")


def test_gloo_sync_bn_is_plain_bn_outside_a_group() -> None:
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3)
    sbn = ddp.GlooSyncBatchNorm(3)
    sbn.load_state_dict(bn.state_dict())
    x = torch.randn(5, 3, 4, 4)
    torch.testing.assert_close(sbn(x), bn(x))
    torch.testing.assert_close(sbn.running_var, bn.running_var)
