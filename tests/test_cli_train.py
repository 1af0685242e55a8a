"""`kdsnn distill`, `train-teacher`, `evaluate` from the command line: bad input gives one
line and a non-zero exit; the slow test runs the real thing on mnist5k."""

from __future__ import annotations

import json
import sys

import pytest

from kdsnn.cli import main

TINY = ["--dataset", "digits", "--width", "0.25", "--limit-train", "32", "--batch-size", "16",
        "--epochs", "1", "-q"]


def kdsnn(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["kdsnn", *args])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("args,msg", [
    (["distill", "--dataset", "imagenet", "-o", "{tmp}/a"], "unknown dataset"),
    (["distill", "--arch", "alexnet", "-o", "{tmp}/a"], "unknown architecture"),
    (["distill", "--kd", "logits", "-o", "{tmp}/a"], "logits"),
    (["distill", "--teacher", "{tmp}/missing.pt", "--kd", "response", *TINY, "-o", "{tmp}/a"], "does not exist"),
    (["distill", "--teacher", "{tmp}/junk.pt", "--kd", "response", *TINY, "-o", "{tmp}/a"], "corrupt"),
    (["distill", "--kd", "none", *TINY, "-o", "{tmp}/file/out"], "output"),
    (["distill", "--kd", "none", *TINY, "--resume", "-o", "{tmp}/fresh"], "does not exist"),
    (["distill", "--kd", "none", *TINY, "--device", "tpu", "-o", "{tmp}/a"], "device"),
    (["train-teacher", "--dataset", "nope", "-o", "{tmp}/t"], "unknown dataset"),
    (["evaluate", "{tmp}/junk.pt"], "corrupt"),
    (["evaluate", "{tmp}/missing.pt"], "does not exist"),
])
def test_bad_input_is_one_line(tmp_path, monkeypatch, capsys, args, msg) -> None:
    (tmp_path / "junk.pt").write_bytes(b"\x00not a checkpoint" * 10)
    (tmp_path / "file").write_text("a file, not a folder")
    code, _, err = kdsnn(monkeypatch, capsys, *[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert code == 2
    assert msg in one_error_line(err)


def test_train_teacher_then_distill_then_evaluate(tmp_path, monkeypatch, capsys) -> None:
    code, out, err = kdsnn(monkeypatch, capsys, "train-teacher", *TINY, "-o", str(tmp_path / "t"))
    assert code == 0, err
    assert "teacher.pt" in out and (tmp_path / "t" / "teacher.pt").is_file()
    code, out, err = kdsnn(monkeypatch, capsys, "distill", *TINY, "--kd", "both", "-T", "2",
                           "--teacher", str(tmp_path / "t" / "teacher.pt"), "-o", str(tmp_path / "s"))
    assert code == 0, err
    code, out, err = kdsnn(monkeypatch, capsys, "evaluate", str(tmp_path / "t" / "teacher.pt"),
                           str(tmp_path / "s" / "student.pt"), "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["kind"] for r in rows] == ["teacher", "student"]
    assert all(r["n"] == 360 and 0 <= r["accuracy"] <= 1 for r in rows)  # digits test split
    metrics = [json.loads(x) for x in (tmp_path / "s" / "metrics.jsonl").read_text().splitlines()]
    assert rows[1]["accuracy"] == pytest.approx(max(m["test_acc"] for m in metrics))
    code, out, err = kdsnn(monkeypatch, capsys, "evaluate", str(tmp_path / "s" / "student.pt"),
                           "--samples", "50")
    assert code == 0 and "(" in out and "/50)" in out and "student T=2 kd=both" in out


@pytest.mark.slow
def test_distill_mnist5k_end_to_end(tmp_path, monkeypatch, capsys) -> None:
    """The real command on mnist5k: default teacher trained first, then a KD student."""
    out_dir = tmp_path / "run"
    code, out, err = kdsnn(monkeypatch, capsys, "distill", "--dataset", "mnist5k", "--kd", "both",
                           "--epochs", "1", "--teacher-epochs", "1", "--limit-train", "512", "-q",
                           "-o", str(out_dir))
    assert code == 0, err
    assert "training the default teacher for mnist5k" in out
    for f in ("teacher.pt", "student.pt", "best.pt", "last.pt", "metrics.jsonl"):
        assert (out_dir / f).is_file()
    code, out, err = kdsnn(monkeypatch, capsys, "evaluate", str(out_dir / "student.pt"), "--json")
    r = json.loads(out)
    assert code == 0 and r["n"] == 1000 and r["accuracy"] > 0.5 and r["dataset"] == "mnist5k"
