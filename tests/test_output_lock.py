"""One writer per output folder: while a run holds -o, a second `distill`, `train-teacher`,
`export` or `evaluate -o` into it is one `error:` line naming the folder and the owner's pid;
a lock left by a killed run is taken over with a note."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tiny_runs import EXPORT, TINY, cli, make_student, one_error_line

HOLD = textwrap.dedent("""
    import sys, time
    from kdsnn.outlock import output_lock
    with output_lock(sys.argv[1], "distill"):
        print("locked", flush=True)
        time.sleep(120)
""")


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    return make_student(tmp_path_factory.mktemp("s") / "s")


@pytest.fixture
def held(tmp_path):
    """A folder another process holds the lock on: (folder, that process's pid)."""
    folder = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        yield folder, p.pid
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize("command", ["distill", "train-teacher", "export", "evaluate"])
def test_a_second_writer_is_one_line(held, student, command) -> None:
    folder, pid = held
    (folder / "keep.txt").parent.mkdir(exist_ok=True)
    (folder / "keep.txt").write_text("the first run's")
    args = {"distill": ["distill", *TINY], "train-teacher": ["train-teacher", *TINY[:-5], "-q"],
            "export": ["export", student, *EXPORT],
            "evaluate": ["evaluate", student, "--noise", "gaussian:0.1", "--samples", "10", "-q"]}[command]
    t0 = time.perf_counter()
    code, _, err = cli(*args, "-o", folder)
    line = one_error_line(err)
    assert code == 2 and str(folder) in line and f"pid {pid}" in line and "kdsnn distill" in line
    assert time.perf_counter() - t0 < 20          # refused up front, not after training
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"]


def test_a_stale_lock_is_taken_over_with_a_note(student, tmp_path) -> None:
    from kdsnn.outlock import lock_path

    folder = tmp_path / "rob"
    dead = 2 ** 22 + 4321   # above the default pid_max: no such process
    lock = lock_path(folder)
    lock.write_text(json.dumps({"pid": dead, "host": __import__("socket").gethostname(), "started": 0,
                                "command": "evaluate"}))
    code, _, err = cli("evaluate", student, "--noise", "gaussian:0.1", "--samples", "10", "-q", "-o", folder)
    assert code == 0, err
    assert f"took over the lock on {folder}" in err and f"pid {dead}" in err and "no longer running" in err
    assert (folder / "robustness.json").is_file() and not lock.exists()


def _stale(folder: Path) -> int:
    """A lock file on `folder` left by a dead owner: that owner's pid."""
    from kdsnn.outlock import lock_path

    dead = 2 ** 22 + 4322   # above the default pid_max: no such process
    lock_path(folder).write_text(json.dumps({"pid": dead, "host": __import__("socket").gethostname(),
                                             "started": 0, "command": "export"}))
    return dead


def test_a_quiet_take_over_prints_nothing(tmp_path, capfd) -> None:
    from kdsnn.outlock import lock_path, output_lock

    folder = tmp_path / "q"
    _stale(folder)
    with output_lock(folder, "export", quiet=True):
        assert json.loads(lock_path(folder).read_text())["pid"] != 2 ** 22 + 4322   # taken over
    assert capfd.readouterr() == ("", "")
    dead = _stale(folder)
    with output_lock(folder, "export"):
        pass
    assert f"pid {dead}" in capfd.readouterr().err   # the same take-over, not quiet: the note


def test_the_quiet_api_prints_nothing_on_a_take_over(student, tmp_path, capfd) -> None:
    import kdsnn

    folder = tmp_path / "api"
    _stale(folder)
    kdsnn.export(student, folder, target="intsim", samples=20, calibration=16, quiet=True)
    assert capfd.readouterr() == ("", "")
    assert (folder / "intnet.kdsnn").is_file()
