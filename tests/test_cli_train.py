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
    (["distill", "--dataset", "imagenet", "-o", "{tmp}/a"], "'imagenet' is not one of 'mnist5k', 'digits'"),
    (["distill", "--arch", "alexnet", "-o", "{tmp}/a"], "'alexnet' is not one of 'cnn'"),
    (["distill", "--progress", "fancy", "-o", "{tmp}/a"], "'fancy' is not one of 'auto', 'bars'"),
    (["distill", "--kd", "logits", "-o", "{tmp}/a"], "logits"),
    (["distill", "--teacher", "{tmp}/missing.pt", "--kd", "response", *TINY, "-o", "{tmp}/a"], "does not exist"),
    (["distill", "--teacher", "{tmp}/junk.pt", "--kd", "response", *TINY, "-o", "{tmp}/a"], "corrupt"),
    (["distill", "--kd", "none", *TINY, "-o", "{tmp}/file/out"], "output"),
    (["distill", "--kd", "none", *TINY, "--resume", "-o", "{tmp}/fresh"], "does not exist"),
    (["distill", "--kd", "none", *TINY, "--device", "tpu", "-o", "{tmp}/a"], "device"),
    (["train-teacher", "--dataset", "nope", "-o", "{tmp}/t"], "'nope' is not one of"),
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
    result = json.loads((tmp_path / "s" / "result.json").read_text())  # the one test evaluation
    assert rows[1]["accuracy"] == result["test"]["accuracy"] and result["test"]["n"] == 360
    code, out, err = kdsnn(monkeypatch, capsys, "evaluate", str(tmp_path / "s" / "student.pt"),
                           "--samples", "50")
    assert code == 0 and "(" in out and "/50)" in out and "student T=2 kd=both" in out


def test_output_says_what_it_measured_on_and_what_it_wrote(tmp_path, monkeypatch, capsys) -> None:
    """--progress lines: one line per epoch (no bar frames in a log); -q: only the result and
    the list of files; every accuracy names its samples and split."""
    args = [a for a in TINY if a != "-q"]
    code, out, err = kdsnn(monkeypatch, capsys, "distill", *args, "--kd", "none", "-T", "2", "--epochs", "2",
                           "--progress", "lines", "-o", str(tmp_path / "a"))
    assert code == 0, err
    assert "\r" not in out + err and "it/s" not in err  # no tqdm frames
    epochs = [x for x in out.splitlines() if x.startswith("student epoch")]
    assert len(epochs) == 2 and "(32 train samples)" in epochs[0] and "(144 val samples)" in epochs[0]
    assert "loss " in epochs[0] and " = ce " in epochs[0] and "(1 x " in epochs[0]
    last = out.strip().splitlines()
    assert "selected by validation accuracy" in last[-2] and "(360 test samples), evaluated once" in last[-2]
    assert last[-1] == (f"wrote {(tmp_path / 'a').as_posix()}/: student.pt, best.pt, last.pt, metrics.jsonl, "
                        "result.json, training.png")
    code, out, err = kdsnn(monkeypatch, capsys, "distill", *TINY, "--kd", "none", "-T", "2",
                           "-o", str(tmp_path / "b"))
    assert code == 0 and len(out.strip().splitlines()) == 2 and not err.strip(), out + err


def test_missing_data_fails_before_anything_is_trained_or_made(tmp_path, monkeypatch, capsys) -> None:
    code, out, err = kdsnn(monkeypatch, capsys, "distill", "--dataset", "cifar10", "--data-dir",
                           str(tmp_path / "nodata"), "-o", str(tmp_path / "run"))
    assert code == 2 and "dataset cifar10 not found" in one_error_line(err)
    assert "teacher" not in out and not (tmp_path / "run").exists()


def test_resume_epochs_extends_from_the_command_line(tmp_path, monkeypatch, capsys) -> None:
    o = str(tmp_path / "r")
    assert kdsnn(monkeypatch, capsys, "distill", *TINY, "--kd", "none", "-T", "2", "-o", o)[0] == 0
    code, out, err = kdsnn(monkeypatch, capsys, "distill", *[a for a in TINY if a != "-q"], "--kd", "none",
                           "-T", "2", "--resume", "--epochs", "2", "--progress", "lines", "-o", o)
    assert code == 0, err
    assert "extending the planned 1 epochs to 2" in out and "student epoch 2/2" in out


@pytest.mark.slow
def test_distill_mnist5k_end_to_end(tmp_path, monkeypatch, capsys) -> None:
    """The real command on mnist5k: default teacher trained first, then a KD student."""
    out_dir = tmp_path / "run"
    code, out, err = kdsnn(monkeypatch, capsys, "distill", "--dataset", "mnist5k", "--kd", "both",
                           "--epochs", "1", "--teacher-epochs", "1", "--limit-train", "512", "-q",
                           "-o", str(out_dir))
    assert code == 0, err
    assert "training the default teacher for mnist5k" in out
    for f in ("teacher.pt", "student.pt", "best.pt", "last.pt", "metrics.jsonl", "result.json",
              "teacher/result.json"):
        assert (out_dir / f).is_file()
    code, out, err = kdsnn(monkeypatch, capsys, "evaluate", str(out_dir / "student.pt"), "--json")
    r = json.loads(out)
    assert code == 0 and r["n"] == 1000 and r["accuracy"] > 0.5 and r["dataset"] == "mnist5k"
