"""Atomic file output: write to a temp file in the same folder, then rename.

A failed or interrupted run therefore never leaves a half-written artifact and never
destroys the previous one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kdsnn.errors import KdsnnError


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
    """Yield a temporary path next to `path`; rename it onto `path` only on success."""
    dest = Path(path)
    ensure_dir(dest.parent if str(dest.parent) else ".")
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix or dest.suffix or ".tmp",
                               dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


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
