"""A write that fails (a full disk, a file size limit, a read-only folder) is one `error:`
line naming the file; the earlier file is as it was and no temporary file is left.

The full disk is the kernel's: RLIMIT_FSIZE makes every write past N bytes fail with EFBIG,
the way ENOSPC fails it, without root.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch
from tiny_runs import (
    cli,
    file_size_limit,
    folder_digest,
    leftovers,
    make_export,
    make_student,
    one_error_line,
)

from kdsnn.checkpoint import save_checkpoint
from kdsnn.errors import KdsnnError
from kdsnn.io import write_json


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    student = make_student(root / "s")
    return {"student": student, "export": make_export(student, root / "e")}


def test_checkpoint_on_a_full_disk_keeps_the_old_one(tmp_path) -> None:
    save_checkpoint(tmp_path / "c.pt", {"config": {"kind": "student"}, "model": {"w": torch.zeros(4)}})
    before = folder_digest(tmp_path)
    with file_size_limit(4096), pytest.raises(KdsnnError, match=r"cannot write .*c\.pt: File too large"):
        save_checkpoint(tmp_path / "c.pt", {"config": {"kind": "student"}, "model": {"w": torch.zeros(10_000)}})
    assert folder_digest(tmp_path) == before and leftovers(tmp_path) == []


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EACCES, errno.EROFS])
def test_json_write_errors_name_the_file(tmp_path, monkeypatch, err) -> None:
    write_json(tmp_path / "r.json", {"old": 1})
    before = folder_digest(tmp_path)
    real = os.replace

    def fail(src, dst):
        raise OSError(err, os.strerror(err))
    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(KdsnnError, match=rf"cannot write .*r\.json: {os.strerror(err)}"):
        write_json(tmp_path / "r.json", {"new": 2})
    monkeypatch.setattr(os, "replace", real)
    assert folder_digest(tmp_path) == before and leftovers(tmp_path) == []


def test_distill_on_a_full_disk_is_one_line(tmp_path) -> None:
    with file_size_limit(30_000):
        code, _, err = cli("distill", "--dataset", "digits", "--width", "0.25", "--limit-train", "32",
                           "--batch-size", "16", "--epochs", "1", "-T", "2", "--kd", "none", "-q",
                           "-o", tmp_path / "d")
    assert code != 0
    assert "cannot write" in one_error_line(err) and ".pt" in err
    assert leftovers(tmp_path) == []


def test_export_on_a_full_disk_keeps_the_earlier_export(runs) -> None:
    folder = runs["export"]
    before = folder_digest(folder)
    with file_size_limit(50_000):   # graph.nir is larger: the first big file fails
        code, _, err = cli("export", runs["student"], "--target", "intsim", "--samples", "20",
                           "--calibration", "16", "-q", "-o", folder)
    assert code != 0
    assert "graph.nir" in one_error_line(err) and "File too large" in err
    assert folder_digest(folder) == before
    assert leftovers(folder.parent) == []


def test_evaluate_and_report_on_a_full_disk_are_one_line(runs, tmp_path) -> None:
    with file_size_limit(2_000):
        code, _, err = cli("evaluate", runs["student"], "--noise", "gaussian:0.1", "--samples", "20",
                           "-q", "-o", tmp_path / "rob")
    assert code != 0 and "cannot write" in one_error_line(err)
    folder = runs["export"]
    before = folder_digest(folder)
    with file_size_limit(2_000):
        code, _, err = cli("report", folder)
    assert code != 0 and "cannot write" in one_error_line(err)
    assert folder_digest(folder) == before
    assert leftovers(tmp_path) == [] and leftovers(folder) == []
