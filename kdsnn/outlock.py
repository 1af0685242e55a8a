"""One writer per output folder: `distill`, `train-teacher`, `finetune`, `export` and
`evaluate -o` hold a lock on their -o while they write.

The lock is `filelock`'s flock on `.<name>.kdsnn.lock` next to the folder (beside it, not in
it, so an export's staged folder can replace the folder while the lock stays held). The lock
file records the owner (pid, host, start time, command); a second writer gets one line naming
the folder and that owner. The kernel drops a flock when its process dies, so a lock file left
by a killed run is taken over, with a note naming the dead owner (none when the caller is
quiet: library code prints nothing then). The lock file is removed on
release (filelock re-checks, after locking, that the file it locked still has a name).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kdsnn.errors import KdsnnError
from kdsnn.io import ensure_dir

_HELD: dict[str, list[Any]] = {}   # lock path -> [FileLock, depth]: a process nests its own locks


def lock_path(folder: str | os.PathLike) -> Path:
    f = Path(os.path.abspath(folder))
    return f.parent / f".{f.name}.kdsnn.lock"


def _owner(path: Path) -> dict[str, Any] | None:
    try:
        rec = json.loads(path.read_text() or "null")
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and isinstance(rec.get("pid"), int) else None


def _describe(rec: dict[str, Any] | None) -> str:
    if rec is None:
        return "owner unknown"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rec.get("started", 0)))
    return f"kdsnn {rec.get('command', '?')}, pid {rec['pid']} on {rec.get('host', '?')}, started {started}"


def _alive(rec: dict[str, Any]) -> bool:
    if rec.get("host") != socket.gethostname():
        return True   # cannot tell from here
    try:
        os.kill(int(rec["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike | None, command: str, *, quiet: bool = False) -> Iterator[None]:
    """Hold the lock on `folder` (created if missing) for the block; one KdsnnError naming
    the folder and the owner when another process holds it. No folder (`None`): no lock.
    `quiet`: the caller prints nothing (the Python API's quiet), so no take-over note either."""
    import filelock

    from kdsnn.distributed import is_main

    if folder is None or not is_main():                # nothing written / rank 0 holds it for all
        yield
        return
    path = lock_path(folder)
    key = str(path)
    if key in _HELD:                                   # this process already writes there
        _HELD[key][1] += 1
        try:
            yield
        finally:
            _HELD[key][1] -= 1
        return
    ensure_dir(path.parent)
    previous = _owner(path)
    lock = filelock.FileLock(key, timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise KdsnnError(f"{folder} is being written by another run ({_describe(_owner(path) or previous)}); "
                         "wait for it to finish or choose another -o/--output") from None
    except OSError as e:
        raise KdsnnError(f"cannot lock output folder {folder} ({path}: {e.strerror}); choose a writable "
                         "-o/--output") from None
    try:
        if previous is not None and not _alive(previous) and not quiet:
            print(f"note: took over the lock on {folder} left by {_describe(previous)}, which is no longer "
                  "running", file=sys.stderr)
        with open(path, "w") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                       "command": command, "argv": sys.argv[1:]}, f)
        _HELD[key] = [lock, 1]
        yield
    finally:
        _HELD.pop(key, None)
        with contextlib.suppress(OSError):
            path.unlink()          # still held: a waiter that locks the unlinked file retries
        lock.release()
