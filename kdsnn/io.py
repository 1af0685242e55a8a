"""Atomic file output: write to a temp file in the same folder, then rename.

A failed or interrupted run therefore never leaves a half-written artifact and never
destroys the previous one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kdsnn.errors import KdsnnError

# errno values that mean "this file cannot be written here" (a full disk, a quota, a file
# size limit, permissions, a read-only mount, a failing device)
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM,
                          errno.EROFS, errno.EIO})


def umask() -> int:
    """The process's umask, read without changing it where Linux says it (/proc), else by
    setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def file_mode() -> int:
    """The mode `open()` would give a new file (0o644 under umask 022); mkstemp gives 0o600."""
    return 0o666 & ~umask()


def dir_mode() -> int:
    return 0o777 & ~umask()


def write_error_of(exc: BaseException) -> OSError | None:
    """The OSError behind `exc` when it is a failed write (torch.save wraps the file object's
    OSError in a RuntimeError; h5py in its own errors), else None."""
    seen = 0
    e: BaseException | None = exc
    while e is not None and seen < 8:
        if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
            return e
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


def write_failure(dest: str | os.PathLike, e: OSError) -> KdsnnError:
    """One line naming the file, the reason and what to do."""
    name = errno.errorcode.get(e.errno or 0, "")
    reason = f"{e.strerror or e} ({name})" if name else str(e.strerror or e)
    hint = {errno.ENOSPC: "free space there or choose another -o/--output",
            errno.EDQUOT: "free space in your quota or choose another -o/--output",
            errno.EFBIG: "the file exceeds the size limit (ulimit -f); raise it or choose another -o/--output",
            errno.EROFS: "the file system is read-only; choose another -o/--output",
            errno.EACCES: "you may not write there; choose another -o/--output",
            errno.EPERM: "you may not write there; choose another -o/--output"}.get(
                e.errno or 0, "check the device or choose another -o/--output")
    return KdsnnError(f"cannot write {dest}: {reason}; {hint} (earlier files there are unchanged)")


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create an output folder or fail with a clear message."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise KdsnnError(f"cannot create output folder {p}: {e.strerror}; choose a writable -o/--output") from None
    if not os.access(p, os.W_OK):
        raise KdsnnError(f"output folder {p} is not writable; choose a writable -o/--output")
    return p


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success give it the umask's mode, flush it
    to disk and rename it onto `path`. On any failure the temporary file is removed and
    `path` is as it was; a failed write (a full disk, EACCES, EROFS, ...) becomes one
    KdsnnError naming `path`."""
    dest = Path(path)
    ensure_dir(dest.parent if str(dest.parent) else ".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix or dest.suffix or ".tmp",
                                   dir=dest.parent)
    except OSError as e:
        if e.errno in WRITE_ERRNOS:
            raise write_failure(dest, e) from None
        raise
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, file_mode())
        _fsync(tmp_path)   # a delayed ENOSPC (or EIO) shows here, before the old file is replaced
        os.replace(tmp_path, dest)
    except KdsnnError:
        raise
    except BaseException as e:
        err = write_error_of(e)
        if err is not None:
            raise write_failure(dest, err) from None
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """`data` to `path` atomically (what is built in memory first: NIR's HDF5, for one)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return Path(path)


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], Any]) -> Path:
    """Call `writer(tmp_path)` and move the result onto `path` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, np.floating):
            return float(o)
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_table(path: str | os.PathLike, what: str) -> Any:
    """A user's JSON (or TOML) settings file; `what` names it in errors ("target spec ...").

    TOML needs Python >= 3.11 (tomllib) or the tomli package; JSON always works.
    """
    path = Path(path)
    text = path.read_text()
    if path.suffix.lower() == ".toml":
        try:
            import tomllib as toml  # type: ignore[import-not-found]
        except ModuleNotFoundError:
            try:
                import tomli as toml  # type: ignore[no-redef]
            except ModuleNotFoundError:
                raise KdsnnError(f"{what} {path}: reading TOML needs Python >= 3.11 or the 'tomli' "
                                 "package; write it as JSON instead") from None
        try:
            return toml.loads(text)
        except Exception as e:  # noqa: BLE001 - any parse error is the user's file
            raise KdsnnError(f"{what} {path} is not valid TOML ({e})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise KdsnnError(f"{what} {path} is not valid JSON ({e.msg} at line {e.lineno})") from None
