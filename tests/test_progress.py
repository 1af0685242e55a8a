"""Progress modes (bars only on a terminal), the wrote-list and accuracy wording of every command."""

from __future__ import annotations

import io

import pytest

from kdsnn import progress
from kdsnn.errors import KdsnnError
from kdsnn.outputs import fmt_accuracy, written_line


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_draws_bars_only_on_a_terminal():
    assert progress.resolve("auto", stream=_Tty()) == "bars"
    assert progress.resolve("auto", stream=io.StringIO()) == "lines"   # a log file, a pipe
    assert progress.resolve(None, stream=io.StringIO()) == "lines"
    assert progress.resolve("bars", stream=io.StringIO()) == "bars"    # asked for: given
    assert progress.resolve("lines", stream=_Tty()) == "lines"
    assert progress.resolve("bars", quiet=True) == "none"              # -q is none
    with pytest.raises(KdsnnError, match="--progress"):
        progress.resolve("fancy")


def test_bar_is_silent_outside_bars_mode():
    b = progress.bar(range(3), mode="lines")
    assert b.disable and list(b) == [0, 1, 2]
    assert not progress.bar(range(3), mode="bars", file=io.StringIO()).disable
    assert progress.lines("lines") and progress.lines("bars") and not progress.lines("none")


def test_written_line_lists_files_relative_to_their_folder(tmp_path):
    (tmp_path / "plots").mkdir()
    for name in ("a.pt", "plots/r.png"):
        (tmp_path / name).write_text("x")
    line = written_line([tmp_path / "a.pt", tmp_path / "plots/r.png", tmp_path / "a.pt", tmp_path / "gone"])
    assert line == f"wrote {tmp_path.as_posix()}/: a.pt, plots/r.png"
    assert written_line([]) == "wrote nothing"


def test_accuracy_says_how_many_samples_of_which_split():
    assert fmt_accuracy(0.968, 1000, "test") == "96.80 % (1,000 test samples)"
    assert fmt_accuracy(0.98, 200, "test", first=True) == "98.00 % (first 200 test samples)"
