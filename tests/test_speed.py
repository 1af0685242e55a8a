"""kdsnn.speed: channels-last and bfloat16 change no spike of the IF neuron; threads and
precision options; a tiny bf16 distillation run."""

from __future__ import annotations

import copy

import pytest
import torch

from kdsnn import speed
from kdsnn.errors import KdsnnError
from kdsnn.lif import LIFNeuron
from kdsnn.neurons import IFNeuron
from kdsnn.zoo import build


@pytest.mark.parametrize("static", [False, True])
def test_if_keeps_channels_last_with_the_same_numbers(static: bool) -> None:
    torch.manual_seed(0)
    T, B = 3, 2
    y = torch.randn((B if static else T * B), 4, 5, 5) * 1.5
    yc = y.contiguous(memory_format=torch.channels_last)
    n = IFNeuron()
    n.T = T
    outs, grads = [], []
    for x in (y, yc):
        x = x.clone().requires_grad_()
        s = n(x, static=static)
        outs.append(s)
        (s * torch.arange(s.numel()).reshape(s.shape)).sum().backward()
        grads.append(x.grad)
    assert outs[1].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(outs[0], outs[1])
    # the same formula per element; a vectorized vs a scalar tail loop may differ in the last bit
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-6, atol=0)


def test_channels_last_student_gives_the_same_logits() -> None:
    torch.manual_seed(0)
    a = build("resnet18", True, 10, (3, 8, 8), T=2, width=0.125).eval()
    b = speed.to_layout(copy.deepcopy(a), torch.device("cpu"))
    assert b.nodes["conv1"].conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("neuron", [IFNeuron, LIFNeuron])
def test_bf16_input_integrates_in_float32(neuron) -> None:
    """Under autocast the neuron gets bfloat16 currents: it integrates them in float32 (the
    same spikes as float32 currents of those values) and gives bfloat16 spikes and gradients."""
    torch.manual_seed(1)
    T = 4
    y = (torch.randn(T * 6, 7) * 0.6).to(torch.bfloat16)
    n = neuron()
    n.T = T
    yb = y.clone().requires_grad_()
    sb = n(yb)
    s32 = n(y.float())
    assert sb.dtype == torch.bfloat16 and torch.equal(sb.float(), s32)
    sb.float().sum().backward()
    assert yb.grad is not None and yb.grad.dtype == torch.bfloat16


def test_threads_option() -> None:
    assert speed.resolve_threads(3) == 3 and speed.resolve_threads("2") == 2
    auto = speed.resolve_threads("auto")
    assert auto is None or 1 <= auto
    for bad in (0, -1, "many"):
        with pytest.raises(KdsnnError, match="--threads must be"):
            speed.resolve_threads(bad)


def test_threads_auto_respects_omp_num_threads(monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert speed.resolve_threads("auto") is None


def test_precision_choices() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert speed.autocast_dtype("auto", cpu) is None and speed.autocast_dtype("fp32", cuda) is None
    assert speed.autocast_dtype("auto", cuda) == torch.float16 and speed.uses_scaler("auto", cuda)
    assert speed.autocast_dtype("bf16", cpu) == torch.bfloat16 and not speed.uses_scaler("bf16", cuda)
    with pytest.raises(KdsnnError, match="unknown --precision 'fp8'"):
        speed.check_precision("fp8")


def test_bf16_distill_runs_and_records_it(tmp_path) -> None:
    from kdsnn.checkpoint import load_checkpoint
    from kdsnn.train import train_loop
    from kdsnn.train_config import make_config

    before = torch.get_num_threads()
    cfg = make_config("student", {"dataset": "digits", "arch": "cnn", "width": 0.25, "limit_train": 32,
                                  "batch_size": 16, "epochs": 1, "quiet": True, "kd": "none",
                                  "precision": "bf16", "threads": 1, "output": str(tmp_path)})
    res = train_loop(cfg)
    assert torch.get_num_threads() == before  # --threads holds for the run only
    ck = load_checkpoint(tmp_path / "last.pt")
    assert ck["config"]["train"]["precision"] == "bf16" and ck["config"]["train"]["threads"] == 1
    assert all(v.dtype != torch.bfloat16 for v in ck["model"].values())  # weights stay float32
    assert 0.0 <= res["best_acc"] <= 1.0
