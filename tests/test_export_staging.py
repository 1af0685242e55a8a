"""A failed or interrupted `kdsnn export` leaves the earlier export exactly as it was: the new
one is staged in `<out>.tmp-<pid>` and swapped in only when every stage has written. `run`
and `report` refuse a folder whose graph.nir and intnet.kdsnn are not the ones parity.json
records (sha256)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from tiny_runs import (
    EXPORT,
    cli,
    folder_digest,
    leftovers,
    make_export,
    make_student,
    one_error_line,
)

from kdsnn import staging


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    return make_student(tmp_path_factory.mktemp("s") / "s")


@pytest.fixture(scope="module")
def first_export(student) -> Path:
    return make_export(student, student.parent.parent / "first")


@pytest.fixture
def export(first_export, tmp_path) -> Path:
    """A fresh copy of one export (T=2); the tests export T=3 over it."""
    return Path(shutil.copytree(first_export, tmp_path / "e"))


def _fail_report(*a, **k):
    raise RuntimeError("the report stage broke")


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_a_late_failure_keeps_the_earlier_export(student, export, monkeypatch, exc) -> None:
    from kdsnn import deploy

    before = folder_digest(export)

    def boom(*a, **k):
        raise exc("the report stage broke")
    monkeypatch.setattr(deploy, "make_report", boom)
    with pytest.raises(exc):   # the CLI would print it; here the exception itself comes back
        deploy.export_command(source=str(student), output=str(export), target="intsim", samples=20,
                              calibration=16, time_steps=3, quiet=True)
    assert folder_digest(export) == before
    assert leftovers(export.parent) == []


def test_parity_failure_keeps_the_earlier_export_and_shows_the_failed_run(student, export, monkeypatch) -> None:
    from kdsnn.backends.base import RunResult

    from kdsnn import stages

    real = stages.run_student
    monkeypatch.setattr(stages, "run_student", lambda *a, **k: (lambda r: RunResult(
        r.logits + 1e-3, r.spike_counts, r.backend, r.T))(real(*a, **k)))
    before = folder_digest(export)
    code, _, err = cli("export", student, *EXPORT, "-T", "3", "-o", export)
    assert code == 3 and "rung 2 failed" in one_error_line(err)
    failed = export.parent / "e.failed"
    assert str(failed / "parity.json") in err
    assert not json.loads((failed / "parity.json").read_text())["passed"]
    assert folder_digest(export) == before
    assert [p for p in leftovers(export.parent) if not p.startswith("e.failed")] == []


def test_export_into_the_training_folder_keeps_its_files(student, tmp_path) -> None:
    run = tmp_path / "run"
    shutil.copytree(student.parent, run)
    own = folder_digest(run)
    make_export(run / "student.pt", run)
    make_export(run / "student.pt", run, "--target", "reference")   # writes no intnet.kdsnn, no report
    after = folder_digest(run)
    assert {k: after[k] for k in own} == own
    assert "intnet.kdsnn" not in after and "report.json" not in after   # the earlier run's: dropped
    assert leftovers(tmp_path) == []


def test_the_log_names_final_paths_not_the_staging_folder(student, tmp_path) -> None:
    """What export prints is where the files end up: no `<out>.tmp-<pid>` in the log."""
    out = tmp_path / "x"
    code, text, err = cli("export", student, *[a for a in EXPORT if a != "-q"], "--progress", "lines", "-o", out)
    assert code == 0, err
    lowered = [line for line in text.splitlines() if line.startswith("lowered for ")]
    assert lowered and lowered[0].endswith(f"-> {(out / 'intnet.kdsnn').as_posix()}")
    assert ".tmp-" not in text + err


def test_without_an_atomic_exchange_the_swap_is_two_renames(student, export, monkeypatch) -> None:
    monkeypatch.setattr(staging, "_exchange", lambda a, b: False)
    code, _, err = cli("export", student, *EXPORT, "-T", "3", "-o", export)
    assert code == 0, err
    assert json.loads((export / "parity.json").read_text())["T"] == 3
    assert leftovers(export.parent) == []


def test_an_interrupted_swap_is_repaired(export) -> None:
    dead = 2 ** 22 + 12345       # above pid_max's default: no such process
    old = export.parent / f"e.old-{dead}"
    before = folder_digest(export)
    os.rename(export, old)       # killed between the two renames: only the old folder is there
    (export.parent / f"e.tmp-{dead}").mkdir()
    notes = staging.recover(export)
    assert folder_digest(export) == before and len(notes) == 2
    assert leftovers(export.parent) == []


def test_run_and_report_refuse_a_mixed_folder(student, export, tmp_path) -> None:
    other = make_export(student, tmp_path / "other", "-T", "3")
    mixed = tmp_path / "mixed"
    shutil.copytree(export, mixed)
    shutil.copy(other / "intnet.kdsnn", mixed / "intnet.kdsnn")    # the new IntNet, the old graph
    code, _, err = cli("run", mixed, "--target", "intsim", "--samples", "5", "-q")
    line = one_error_line(err)
    assert code == 2 and "intnet.kdsnn" in line and "sha256" in line and "re-run `kdsnn export" in line
    code, _, err = cli("report", mixed)
    assert code == 2 and "intnet.kdsnn" in one_error_line(err)
    for name in ("graph.nir", "intnet.kdsnn", "parity.json"):
        shutil.copy(other / name, mixed / name)
    code, _, err = cli("report", mixed)   # the files agree with each other, not with report.json's
    assert code == 2 and "report.json" in one_error_line(err)
    code, out, err = cli("run", export, "--target", "intsim", "--samples", "5", "-q")
    assert code == 0, err
