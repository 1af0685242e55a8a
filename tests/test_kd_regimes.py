"""bench/kd_regimes.py's arithmetic: gains are paired by regime and seed, the stronger-teacher
regime is paired with the base's `--kd none`, and the verdict needs every seed to agree."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location("kd_regimes", Path(__file__).parents[1] / "bench" / "kd_regimes.py")
kr = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(kr)


def runs(regime: str, mode: str, accs: list[float]) -> dict:
    return {("student", regime, mode, s): {"kind": "student", "regime": regime, "mode": mode, "seed": s, "test": a}
            for s, a in enumerate(accs)}


def test_paired_gains_and_verdicts():
    done = {**runs("base", "none", [0.90, 0.95, 0.92]), **runs("base", "feature", [0.92, 0.97, 0.94]),
            **runs("base", "both", [0.91, 0.94, 0.93]), **runs("strong", "response", [0.89, 0.94, 0.91]),
            ("teacher", "default", "-", 0): {"kind": "teacher", "regime": "default", "test": 0.98}}
    rows = {(r["regime"], r["mode"]): r for r in kr.summarize(done)}
    feat = rows[("base", "feature")]
    # +2 points on every seed: the seeds' spread of `none` (2.5 points) is far larger than
    # that of the paired gain (0), which is what pairing buys
    assert feat["gain_mean"] == pytest.approx(0.02) and feat["gain_std"] == pytest.approx(0.0, abs=1e-12)
    assert rows[("strong", "none")]["test_mean"] == rows[("base", "none")]["test_mean"]
    assert rows[("strong", "response")]["gain_mean"] == pytest.approx(-0.01)
    table = kr.fmt_table(list(rows.values()), done)      # sets each row's none_std
    assert kr.verdict(rows[("base", "both")]) == "within spread"   # seeds disagree in sign
    assert kr.verdict(rows[("strong", "response")]) == "within spread"  # -1 on every seed, < none's std
    assert "default (98.00)" in table and "| helps |" not in table
    rows[("base", "feature")]["none_std"] = 0.01
    assert kr.verdict(rows[("base", "feature")]) == "helps"
