"""Every option of every command is checked up front, before any data is read or anything
trained or written: one `error:` line naming the option, exit 2, and no output folder."""

from __future__ import annotations

import sys
import time

import pytest
import torch

BAD_TRAINING = [
    (["--weight-decay", "nan"], "--weight-decay"),
    (["--weight-decay", "-1"], "--weight-decay"),
    (["--shift", "-2"], "--shift"),
    (["--temperature", "nan"], "--temperature"),
    (["--temperature", "0"], "--temperature"),
    (["--alpha", "5", "--kd", "both"], "--alpha"),
    (["--alpha", "-0.5"], "--alpha"),
    (["--alpha", "nan"], "--alpha"),
    (["--lr", "inf"], "--lr"),
    (["--theta", "nan"], "--theta"),
    (["--width", "0"], "--width"),
    (["--width", "nan"], "--width"),
    pytest.param(["--width", "1e6"], "memory budget"),
    pytest.param(["-T", "1000000"], "memory budget"),
    (["-T", "0"], "-T"),
    (["--batch-size", "0"], "--batch-size"),
    (["--epochs", "0"], "--epochs"),
    (["--teacher-epochs", "0"], "--teacher-epochs"),
    (["--teacher-weights", "{tmp}/w.pth"], "--teacher-weights"),
    (["--teacher", "{tmp}/t.pt", "--teacher-weights", "{tmp}/w.pth"], "--teacher-weights"),
    (["--beta", "1.5", "--neuron", "lif"], "--beta"),
    (["--slope", "-inf"], "--slope"),
]
BAD_EXPORT = [
    ["-T", "-1"], ["-T", "0"], ["-T", "1000000"], ["--samples", "0"], ["--eval-samples", "0"],
    ["--batch-size", "0"], ["--calibration", "0"], ["--headroom", "nan"], ["--min-weight-bits", "nan"],
    ["--provable-budget-bits", "nan"], ["--provable-budget-bits", "-1"], ["--input-bits", "0"],
    ["--input-bits", "99"], ["--dt", "nan"], ["--dt", "-1"], ["--device", "tpu"],
]
BAD_RUN = [["--samples", "0"], ["--batch-size", "0"], ["-T", "0"], ["-T", "100000000"], ["--dt", "0"],
           ["--device", "tpu"]]
BAD_EVALUATE = [["--samples", "0"], ["--batch-size", "0"], ["--device", "tpu"], ["--calibration", "0"],
                ["--headroom", "inf"]]


def _main(monkeypatch, capsys, args: list[str]) -> tuple[int, str]:
    from kdsnn.cli import main

    monkeypatch.setattr(sys, "argv", ["kdsnn", *args])
    with pytest.raises(SystemExit) as e:
        main()
    return int(e.value.code or 0), capsys.readouterr().err


def _refused(monkeypatch, capsys, args: list[str], must: str, out) -> None:
    t0 = time.perf_counter()
    code, err = _main(monkeypatch, capsys, args)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (args, err)
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, (args, err)
    assert must in lines[0], (args, lines[0])
    assert not out.exists(), (args, "output written before the options were checked")
    assert time.perf_counter() - t0 < 20, "checked only after work began"


@pytest.fixture
def student(tmp_path):
    from test_exit_codes import _student

    return _student(tmp_path / "s.pt", 1.0)


@pytest.mark.parametrize("cmd", ["distill", "train-teacher"])
@pytest.mark.parametrize("extra,must", BAD_TRAINING)
def test_training_options(tmp_path, monkeypatch, capsys, cmd, extra, must) -> None:
    if cmd == "train-teacher" and any(a.startswith(("--teacher", "--alpha", "--temperature", "--theta", "--beta",
                                                    "--slope", "-T", "--kd")) for a in extra):
        pytest.skip("a student option")
    (tmp_path / "w.pth").write_bytes(b"x")
    (tmp_path / "t.pt").write_bytes(b"x")
    out = tmp_path / "out"
    # a check that is missing must not start minutes of training: tiny runs unless refused
    tiny = ["--epochs", "1", "--limit-train", "8", "--batch-size", "8"]
    if cmd == "distill":
        tiny += ["--teacher-epochs", "1", "-T", "2"]
    args = [cmd, "--dataset", "digits", *tiny, *[a.replace("{tmp}", str(tmp_path)) for a in extra], "-o", str(out)]
    _refused(monkeypatch, capsys, args, must, out)


@pytest.mark.parametrize("extra", BAD_EXPORT)
def test_export_options(tmp_path, monkeypatch, capsys, student, extra) -> None:
    out = tmp_path / "e"
    _refused(monkeypatch, capsys, ["export", str(student), "--target", "intsim", *extra, "-o", str(out)],
             extra[0].lstrip("-")[:4], out)


@pytest.mark.parametrize("extra", BAD_RUN)
def test_run_options(tmp_path, monkeypatch, capsys, extra) -> None:
    _refused(monkeypatch, capsys, ["run", str(tmp_path / "nothing"), *extra], extra[0].lstrip("-")[:4],
             tmp_path / "nothing")


@pytest.mark.parametrize("extra", BAD_EVALUATE)
def test_evaluate_options(tmp_path, monkeypatch, capsys, student, extra) -> None:
    _refused(monkeypatch, capsys, ["evaluate", str(student), *extra], extra[0].lstrip("-")[:4],
             tmp_path / "nothing")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("cmd", ["export", "evaluate", "distill"])
def test_cuda_without_gpu(tmp_path, monkeypatch, capsys, student, cmd) -> None:
    out = tmp_path / "o"
    args = {"export": ["export", str(student), "--target", "intsim", "-o", str(out)],
            "evaluate": ["evaluate", str(student)],
            "distill": ["distill", "--dataset", "digits", "-o", str(out)]}[cmd]
    _refused(monkeypatch, capsys, [*args, "--device", "cuda"], "cuda", out)
