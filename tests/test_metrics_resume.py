"""metrics.jsonl never runs ahead of last.pt: a run killed at any point of an epoch's end, then
`--resume`d, logs epochs 1, 2, 3 exactly once (and training.png plots each once)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_runs import TINY, cli

from kdsnn import train_state
from kdsnn.curves import read_metrics

ARGS = [a for a in TINY if a not in ("--epochs", "1")] + ["--epochs", "3"]


def _epochs(folder: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_kill_around_last_pt_then_resume_logs_each_epoch_once(tmp_path, monkeypatch, when) -> None:
    """Killed (Ctrl-C) at epoch 2 just before or just after last.pt is written."""
    real = train_state.save_checkpoint

    def killed(path, ckpt):
        if Path(path).name == "last.pt" and ckpt["epoch"] == 2:
            if when == "after":
                real(path, ckpt)
            raise KeyboardInterrupt
        return real(path, ckpt)
    monkeypatch.setattr(train_state, "save_checkpoint", killed)
    out = tmp_path / "run"
    code, _, err = cli("distill", *ARGS, "-o", out)
    assert code == 130, err
    monkeypatch.setattr(train_state, "save_checkpoint", real)
    code, _, err = cli("distill", *ARGS, "--resume", "-o", out)
    assert code == 0, err
    assert _epochs(out) == [1, 2, 3]
    assert [r["epoch"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2, 3]   # what training.png plots
    assert (out / "training.png").is_file()


def test_resume_truncates_a_log_that_ran_ahead(tmp_path) -> None:
    out = tmp_path / "run"
    code, _, err = cli("distill", *ARGS[:-1], "2", "-o", out)
    assert code == 0, err
    log = out / "metrics.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join([*lines, lines[-1].replace('"epoch": 2', '"epoch": 3'), "{half a li"]) + "\n")
    code, _, err = cli("distill", *ARGS, "--resume", "-o", out)
    assert code == 0, err
    assert _epochs(out) == [1, 2, 3]
