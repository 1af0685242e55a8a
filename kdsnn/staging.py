"""Staged output folders: a command writes into a sibling `<out>.tmp-<pid>` and the result
replaces `<out>` only when every stage that writes has finished.

Until then the earlier folder is untouched, so a failed or interrupted `kdsnn export` leaves
the previous export exactly as it was (docs/design.md, "Outputs"). The swap is one
`renameat2(RENAME_EXCHANGE)` where the file system has it (Linux >= 3.15: ext4, xfs, btrfs,
tmpfs): atomic, `<out>` always names a complete folder. Elsewhere it is two renames through
`<out>.old-<pid>`; a run interrupted between them is repaired by the next (`recover`).

Files in `<out>` that the new run does not write and that are not the command's own (a
student.pt exported next to, the folder's lock file) are carried into the new folder as hard
links (copies where links fail) before the swap.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from kdsnn.errors import KdsnnError
from kdsnn.io import dir_mode, ensure_dir, write_error_of, write_failure

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def stage_path(out: Path, pid: int | None = None) -> Path:
    return out.parent / f"{out.name}.tmp-{os.getpid() if pid is None else pid}"


def _siblings(out: Path, tag: str) -> list[tuple[Path, int]]:
    """(path, pid) of `<out>.<tag>-<pid>` folders next to `out`."""
    found = []
    if not out.parent.is_dir():
        return found
    for p in out.parent.iterdir():
        head, _, pid = p.name.rpartition(f".{tag}-")
        if head == out.name and pid.isdigit():
            found.append((p, int(pid)))
    return found


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(out: Path) -> list[str]:
    """Repair what an interrupted run of a dead process left next to `out`; returns notes.

    `<out>.old-<pid>` with no `<out>`: the swap stopped between its renames, the old folder
    is put back. With `<out>`: the swap finished, the old copy is removed. `<out>.tmp-<pid>`:
    an unfinished run's staging folder, removed."""
    notes = []
    for old, pid in _siblings(out, "old"):
        if _alive(pid):
            continue
        if not out.exists():
            os.rename(old, out)
            notes.append(f"restored {out} from {old.name}, left by an interrupted run (pid {pid})")
        else:
            shutil.rmtree(old, ignore_errors=True)
    for tmp, pid in _siblings(out, "tmp"):
        if not _alive(pid):
            shutil.rmtree(tmp, ignore_errors=True)
            notes.append(f"removed {tmp.name}, the staging folder of an interrupted run (pid {pid})")
    return notes


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (renameat2 RENAME_EXCHANGE); False where unsupported."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    import errno

    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def _carry(src: Path, dst: Path) -> None:
    """`src` into `dst` as hard links (copies where the file system refuses links)."""
    if src.is_dir() and not src.is_symlink():
        shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(str(src), str(dst))


def _link_or_copy(src: str, dst: str) -> None:
    if os.path.islink(src):
        os.symlink(os.readlink(src), dst)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def commit(stage: Path, out: Path, owned: Iterable[str]) -> None:
    """Make `stage` the folder `out`. Entries of an existing `out` whose top-level names are
    in `owned` (what the command writes) are dropped with the old folder: a file of an earlier
    run that this one did not write would not belong to the new results. Others are carried."""
    owned = set(owned)
    if out.exists():
        if not out.is_dir():
            raise KdsnnError(f"{out} is a file; -o/--output must be a folder")
        for entry in out.iterdir():
            if entry.name not in owned and not (stage / entry.name).exists():
                _carry(entry, stage / entry.name)
        if _exchange(stage, out):
            shutil.rmtree(stage, ignore_errors=True)   # now the old folder
            return
        old = out.parent / f"{out.name}.old-{os.getpid()}"
        os.rename(out, old)
        os.rename(stage, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(stage, out)


@contextlib.contextmanager
def staged(out: str | os.PathLike, owned: Iterable[str]) -> Iterator[Path]:
    """Yield an empty staging folder next to `out`; on a normal exit swap it in (`commit`),
    on any exception remove it and leave `out` as it was."""
    out = Path(out)
    ensure_dir(out.parent if str(out.parent) else ".")
    recover(out)
    stage = stage_path(out)
    shutil.rmtree(stage, ignore_errors=True)
    try:
        stage.mkdir()
        os.chmod(stage, dir_mode())
    except OSError as e:
        err = write_error_of(e)
        if err is not None:
            raise write_failure(stage, err) from None
        raise
    try:
        yield stage
        commit(stage, out, owned)
    except BaseException as e:
        shutil.rmtree(stage, ignore_errors=True)
        err = write_error_of(e) if not isinstance(e, KdsnnError) else None
        if err is not None:
            raise write_failure(out, err) from None
        raise
