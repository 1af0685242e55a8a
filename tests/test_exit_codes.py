"""Every exit code the README documents is true: 0 success, 2 bad input (one `error:` line),
3 a failed parity rung (rung 3 included), 130 interrupted; tolerances compare with an epsilon."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from kdsnn.backends.base import RunResult


def _student(path, scale: float):
    """An untrained digits student whose weights are scaled so its IF neurons fire."""
    from kdsnn.checkpoint import graph_of, save_checkpoint
    from kdsnn.zoo import build

    torch.manual_seed(0)
    neuron = {"theta": 1.0, "surrogate": "sigmoid", "slope": 4.0}
    net = build("cnn", True, 10, (1, 8, 8), T=2, neuron=neuron, width=0.25)
    with torch.no_grad():
        for n, p in net.named_parameters():
            if n.endswith("weight") and p.dim() > 1:
                p.mul_(scale)
    cfg = {"kind": "student", "arch": "cnn", "width": 0.25, "num_classes": 10, "input_shape": [1, 8, 8],
           "T": 2, "neuron": neuron, "dataset": "digits", "mean": [0.0], "std": [1.0],
           "class_names": list("0123456789"), "kd": "none", "kdsnn_version": "0.1.0", "graph": graph_of(net)}
    return save_checkpoint(path, {"config": cfg, "model": net.state_dict(), "connectors": None})


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    from kdsnn.cli import main

    monkeypatch.setattr(sys, "argv", ["kdsnn", *args])
    with pytest.raises(SystemExit) as e:
        main()
        sys.exit(0)
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def test_failed_rung3_exits_3_with_outputs_written(tmp_path, monkeypatch, capsys) -> None:
    """Weights of 2 bits move most predictions: rung 3 fails, the export is complete, exit 3."""
    src = _student(tmp_path / "s.pt", 4.0)
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps({"name": "tiny", "base": "loihi", "weight_bits": 2, "num_weight_bits": 2}))
    out = tmp_path / "e"
    code, stdout, err = _main(monkeypatch, capsys, "export", str(src), "--target", "intsim", "--hw", str(spec),
                              "--min-weight-bits", "1", "--samples", "100", "--calibration", "32", "-q",
                              "-o", str(out))
    doc = json.loads((out / "parity.json").read_text())
    r3 = next(r for r in doc["rungs"] if r["rung"] == 3)
    assert r3["passed"] is False and doc["passed"] is False
    assert code == 3, (stdout, err)
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "rung 3" in errors[0] and "Traceback" not in err
    assert (out / "report.json").is_file() and (out / "intnet.kdsnn").is_file()
    assert "FAIL" in stdout and "(> 0.5)" in stdout


def _run(pred: np.ndarray) -> RunResult:
    logits = np.eye(10)[pred]
    return RunResult(logits=logits, spike_counts={}, backend="intsim", T=1, steps=1, wall_s=0.0)


@pytest.mark.parametrize("n", [200, 1000, 600])
def test_exactly_the_tolerance_passes(n: int) -> None:
    """0.5 points on n samples is computed as 0.5000000000000004 etc.: it passes a 0.5 tolerance."""
    from kdsnn.backends.intsim.rung3 import rung3

    k = n // 200                                    # k samples of n = exactly 0.5 points
    y = np.zeros(n, np.int64)
    fl = np.zeros(n, np.int64)
    it = fl.copy()
    it[:k] = 1
    r = rung3(np.eye(10)[fl], y, _run(it), tolerance_points=0.5)
    assert r["passed"], r["delta_points"]
    it[: k + 1] = 1                                 # one more sample: over
    assert not rung3(np.eye(10)[fl], y, _run(it), tolerance_points=0.5)["passed"]


def test_readme_documents_the_codes() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for phrase in ("3 for a failed parity rung", "130"):
        assert phrase in readme, phrase


def test_bad_option_exits_2_and_interrupt_130(tmp_path, monkeypatch, capsys) -> None:
    code, _, err = _main(monkeypatch, capsys, "run", str(tmp_path), "--samples", "0")
    assert code == 2 and err.count("error:") == 1

    def interrupted(**_):
        raise KeyboardInterrupt

    import kdsnn.rerun

    monkeypatch.setattr(kdsnn.rerun, "run_command", interrupted)
    code, _, err = _main(monkeypatch, capsys, "run", str(tmp_path))
    assert code == 130 and "interrupted" in err and "error:" not in err
