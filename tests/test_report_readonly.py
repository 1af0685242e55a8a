"""`kdsnn report` on an export folder it may not write: `-o DIR` writes the re-rendered
report there (the folder untouched); without it, one line saying to give `-o DIR`."""

from __future__ import annotations

import os
from pathlib import Path

from kdsnn.compiler.profile.report import write_reports
from test_report import make_report
from tiny_runs import cli, folder_digest, one_error_line


def _read_only(monkeypatch, folder: Path) -> None:
    """os.access as on a read-only mount (root ignores a 0555 mode, so chmod cannot show it)."""
    real = os.access

    def access(path, mode, *a, **k):
        if Path(path).resolve() == folder.resolve() and mode & os.W_OK:
            return False
        return real(path, mode, *a, **k)
    monkeypatch.setattr(os, "access", access)


def test_report_writes_to_o_and_leaves_the_folder(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "export"
    write_reports(make_report(), folder)
    before = folder_digest(folder)
    _read_only(monkeypatch, folder)
    code, out, err = cli("report", folder, "-o", tmp_path / "rendered")
    assert code == 0, err
    assert folder_digest(folder) == before
    for name in ("report.md", "report.json", "plots/firing_rate.png"):
        assert (tmp_path / "rendered" / name).is_file(), name
    assert out.strip().splitlines()[-1].startswith(f"wrote {(tmp_path / 'rendered').as_posix()}/: ")


def test_report_on_a_read_only_folder_says_to_give_o(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "export"
    write_reports(make_report(), folder)
    before = folder_digest(folder)
    _read_only(monkeypatch, folder)
    code, _, err = cli("report", folder)
    line = one_error_line(err)
    assert code == 2 and "read-only" in line and f"kdsnn report {folder} -o " in line
    assert folder_digest(folder) == before
