"""Ending a Lava run on Ctrl-C, SIGTERM or a failure within seconds, leaving no process, no
/dev/shm segment and no temporary folder behind.

Lava runs every process model and its runtime service in forked OS processes, plus a
shared-memory manager (lava/magma/runtime/message_infrastructure/). A terminal's Ctrl-C
reaches all of them: the workers died mid-protocol, `Runtime.stop()` then waited forever for
their answer, and the workers left alive (with Python's resource tracker, whose pipe they
kept open) held the segments after kdsnn was killed.

So, while a run is in a `LavaSession`:
- kdsnn's main process handles SIGINT and SIGTERM (main thread only; the old handlers come
  back afterwards): the first one raises `LavaInterrupted` where the run is, signals during
  the stop that follows are only recorded;
- every process forked from this one ignores SIGINT and SIGTERM (a terminal's Ctrl-C or a
  scheduler's SIGTERM to the whole group: only kdsnn reacts, and stops the others through
  Lava's protocol) and gets PR_SET_PDEATHSIG = SIGKILL (Linux): it dies with kdsnn even if
  kdsnn is killed -9 (the resource tracker then frees the segments).
`LavaSession.stop` calls Lava's `stop()` in a thread and waits a bounded time; if it hangs or
fails, the workers, the manager and any other child forked during the run are killed by pid,
and the segments Lava created (its own list of them: only ours) are unlinked.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import shutil
import signal
import threading
import time
from types import FrameType
from typing import Any

STOP_TIMEOUT_S = 5.0          # Lava's stop() after an interrupt or a failure
DONE_TIMEOUT_S = 60.0         # after a finished run (joining many processes on a busy machine)
_PR_SET_PDEATHSIG = 1
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_active = 0
_forker = 0


class LavaInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a Lava run; the message says what was stopped. The CLI prints
    `interrupted: <message>` and exits 128 + the signal's number."""

    def __init__(self, signum: int, detail: str = "") -> None:
        super().__init__(detail)
        self.signum = int(signum)
        self.exit_code = 128 + self.signum


def _before_fork() -> None:
    global _forker
    _forker = os.getpid()


def _in_child() -> None:
    if not _active:
        return
    for s in _SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != _forker:            # kdsnn died before prctl took effect
        os._exit(1)


os.register_at_fork(before=_before_fork, after_in_child=_in_child)


class LavaSession:
    """One Lava run's signal handling and clean-up (see the module docstring)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.stopping = False
        self.detail = ""
        self._old: dict[int, Any] = {}
        self._children0: set[int] = set()

    def __enter__(self) -> LavaSession:
        global _active
        self._children0 = {p.pid for p in mp.active_children() if p.pid}
        if threading.current_thread() is threading.main_thread():
            for s in _SIGNALS:
                self._old[s] = signal.signal(s, self._on_signal)
        _active += 1
        return self

    def __exit__(self, *exc: object) -> None:
        global _active
        _active -= 1
        for s, old in self._old.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)
        self._old.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        if not self.stopping:
            self.stopping = True
            raise LavaInterrupted(signum, f"{signal.Signals(signum).name}; no Lava process was running")

    def interruption(self) -> LavaInterrupted | None:
        """The interrupt to raise after `stop`, or None when no signal came."""
        if self.signum is None:
            return None
        name = signal.Signals(self.signum).name
        return LavaInterrupted(self.signum, f"{name} during the Lava run; {self.detail}")

    def stop(self, anchor: Any, failed: bool = False) -> None:
        """Lava's `stop()` with a bounded wait, then whatever is left killed by pid. Raises
        the stop's own error only when the run had not `failed` and no signal came."""
        self.stopping = True
        runtime = getattr(anchor, "runtime", None)
        mi = getattr(runtime, "_messaging_infrastructure", None)
        n_procs = len(getattr(mi, "actors", None) or []) + (getattr(mi, "smm", None) is not None)
        n_shm = len(_handles(mi))
        box: dict[str, BaseException] = {}

        def _stop() -> None:
            try:
                anchor.stop()
            except BaseException as e:  # noqa: BLE001 - reported below
                box["error"] = e

        timeout = STOP_TIMEOUT_S if failed or self.signum is not None else DONE_TIMEOUT_S
        t0 = time.monotonic()
        t = threading.Thread(target=_stop, name="kdsnn-lava-stop", daemon=True)
        t.start()
        t.join(timeout)
        hung = t.is_alive()
        if hung or "error" in box:
            force_stop(runtime)
        n_procs += _kill_new_children(self._children0)
        how = (f"killed: Lava's stop() did not answer within {timeout:g} s" if hung
               else "killed: Lava's stop() failed" if "error" in box
               else f"stopped by Lava in {time.monotonic() - t0:.1f} s")
        self.detail = f"its {n_procs} processes ended, {n_shm} shared-memory segments freed ({how})"
        self.stopping = False
        if failed or self.signum is not None:
            return
        if "error" in box:
            raise box["error"]
        if hung:
            from kdsnn.errors import KdsnnError

            raise KdsnnError(f"the Lava runtime did not stop within {timeout:g} s; its processes "
                             "were killed and its shared memory freed")


def _handles(mi: Any) -> list[Any]:
    smm = getattr(mi, "smm", None)
    return list(getattr(smm, "_shared_memory_handles", None) or [])


def force_stop(runtime: Any) -> None:
    """Kill a runtime's workers and shared-memory manager by pid, unlink the segments Lava
    created, and mark the runtime stopped (so Lava's `__del__` does not wait on it again)."""
    mi = getattr(runtime, "_messaging_infrastructure", None)
    if mi is None:
        return
    procs = list(getattr(mi, "actors", None) or [])
    smm = getattr(mi, "smm", None)
    manager = getattr(getattr(smm, "_manager", None), "_process", None)
    address = getattr(getattr(smm, "_manager", None), "address", None)
    if manager is not None:
        procs.append(manager)
    for p in procs:
        _kill(getattr(p, "pid", None))
    for p in procs:
        with contextlib.suppress(Exception):
            mp.Process.join(p, 2.0)             # reap; Lava's own join would wait for a message
    for h in _handles(mi):
        with contextlib.suppress(Exception):
            h.close()
        with contextlib.suppress(FileNotFoundError):
            h.unlink()                          # also unregisters it from the resource tracker
    _remove_listener(address)
    if smm is not None:
        smm._manager = None
        smm._shared_memory_handles.clear()
    runtime._is_started = runtime._is_running = False


def _remove_listener(address: Any) -> None:
    """A killed manager's socket, and the `pymp-*` folder it made for it (its clean exit
    would have removed both; this process's own folder goes when this process exits)."""
    if not isinstance(address, str) or not os.path.isabs(address):
        return
    with contextlib.suppress(OSError):
        os.unlink(address)
    folder = os.path.dirname(address)
    if (os.path.basename(folder).startswith("pymp-")
            and folder != mp.current_process()._config.get("tempdir")):
        shutil.rmtree(folder, ignore_errors=True)


def _kill_new_children(keep: set[int]) -> int:
    """Children forked during the run and still alive (what Lava did not list)."""
    n = 0
    for p in mp.active_children():
        if p.pid and p.pid not in keep:
            n += _kill(p.pid)
            with contextlib.suppress(Exception):
                p.join(2.0)
    return n


def _kill(pid: int | None) -> int:
    if not pid or pid == os.getpid():
        return 0
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return 0
    return 1
