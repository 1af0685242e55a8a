"""`torchrun --nproc_per_node 2 -m kdsnn ...` on CPU (gloo), against the same command in
one process: it finishes, rank 0 alone writes, the weights match, evaluation totals are exact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ARGS = ["distill", "--dataset", "digits", "--kd", "both", "--epochs", "1", "--teacher-epochs", "1",
        "--limit-train", "128", "--batch-size", "32", "-T", "2", "-q"]


def _run(cmd: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(v, None)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                       cwd=Path(__file__).resolve().parents[1])
    assert p.returncode == 0, f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr[-3000:]}"
    return p


def kdsnn(*args: str) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "kdsnn", *args])


def torchrun(*args: str) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                 "-m", "kdsnn", *args])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_torchrun_distill_matches_one_process_and_writes_once(tmp_path: Path) -> None:
    from kdsnn.checkpoint import load_checkpoint, load_model
    from kdsnn.evaluate import evaluate_model

    one, two = tmp_path / "one", tmp_path / "two"
    kdsnn(*ARGS, "-o", str(one))
    p = torchrun(*ARGS, "-o", str(two))

    # finished; every file written once, by rank 0 alone
    for name in ("teacher.pt", "student.pt", "best.pt", "last.pt", "metrics.jsonl"):
        assert (two / name).is_file(), name
    assert not [f.name for f in two.rglob(".*")]  # no temp files left by a second writer
    assert len((two / "metrics.jsonl").read_text().splitlines()) == 1
    assert len((two / "teacher" / "metrics.jsonl").read_text().splitlines()) == 1
    assert p.stdout.count("selected by validation accuracy") == 2, p.stdout  # teacher, student: once each

    # same global batch and seed: the same training as one process (teacher, student, connectors)
    for name in ("teacher.pt", "student.pt"):
        a, b = load_checkpoint(one / name), load_checkpoint(two / name)
        assert a["model"].keys() == b["model"].keys()
        for k, v in a["model"].items():
            torch.testing.assert_close(b["model"][k], v, rtol=1e-4, atol=1e-5, msg=f"{name}: {k}")
    ca, cb = load_checkpoint(one / "last.pt")["connectors"], load_checkpoint(two / "last.pt")["connectors"]
    assert ca is not None and ca.keys() == cb.keys()
    for k, v in ca.items():
        torch.testing.assert_close(cb[k], v, rtol=1e-4, atol=1e-5, msg=f"connector {k}")
    m1 = [json.loads(line) for line in (one / "metrics.jsonl").read_text().splitlines()][0]
    m2 = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines()][0]
    assert m2["loss"] == pytest.approx(m1["loss"], rel=1e-5)
    assert m2["val_acc"] == m1["val_acc"]

    # distributed evaluation: totals equal the single-process ones exactly
    model, cfg = load_model(two / "student.pt")
    single = evaluate_model(model, cfg, "digits")
    r = json.loads(torchrun("evaluate", str(two / "student.pt"), "--json", "-q", "--batch-size", "50").stdout)
    assert (r["correct"], r["n"]) == (single["correct"], single["n"]) == (r["correct"], 360)
    assert r["loss"] == pytest.approx(single["loss"], rel=1e-6)

    # resume: every rank loads last.pt (and the teacher); nothing is trained or appended twice
    p = torchrun(*[a for a in ARGS if a != "-q"], "-o", str(two), "--resume")
    assert p.stdout.count("resuming") == 1, p.stdout
    assert len((two / "metrics.jsonl").read_text().splitlines()) == 1
