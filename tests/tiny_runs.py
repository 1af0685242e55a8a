"""A tiny digits student and its intsim export made through the CLI in this process, and
helpers the output-safety tests share (hash a folder, limit file sizes, run the CLI)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import resource
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

TINY = ["--dataset", "digits", "--width", "0.25", "--limit-train", "32", "--batch-size", "16",
        "--epochs", "1", "-T", "2", "--kd", "none", "-q"]
EXPORT = ["--target", "intsim", "--samples", "20", "--calibration", "16", "-q"]


def cli(*args: str) -> tuple[int, str, str]:
    """`kdsnn ARGS` in this process: (exit code, stdout, stderr)."""
    from kdsnn.cli import main

    out, err, argv = io.StringIO(), io.StringIO(), sys.argv
    sys.argv = ["kdsnn", *map(str, args)]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as e:
        code = int(e.code or 0)
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


def one_error_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def folder_digest(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones too) -> sha256 and mode: what "unchanged" means."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            out[p.relative_to(folder).as_posix()] = (hashlib.sha256(p.read_bytes()).hexdigest()
                                                     + f" {p.stat().st_mode:o}")
    return out


def leftovers(parent: Path) -> list[str]:
    """Temporary files or staging folders anywhere under `parent`."""
    return sorted(p.relative_to(parent).as_posix() for p in parent.rglob("*")
                  if p.name.startswith(".") or ".tmp-" in p.name
                  or ".old-" in p.name)


@contextlib.contextmanager
def file_size_limit(nbytes: int) -> Iterator[None]:
    """RLIMIT_FSIZE for this process (SIGXFSZ ignored): writing past `nbytes` of any file fails
    with EFBIG, as a full disk fails with ENOSPC, from the kernel, without root."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)


def make_student(out: Path) -> Path:
    code, _, err = cli("distill", *TINY, "-o", out)
    assert code == 0, err
    return out / "student.pt"


def make_export(student: Path, out: Path, *extra: str) -> Path:
    code, _, err = cli("export", student, *EXPORT, *extra, "-o", out)
    assert code == 0, err
    return out
