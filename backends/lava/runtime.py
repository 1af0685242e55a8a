"""Importing Lava's runtime, which must happen before any other Lava import (build.py and
procs/processes.py call it first)."""

from __future__ import annotations

import sys

_LAVA_MP = "lava.magma.runtime.message_infrastructure.multiprocessing"


def import_lava() -> None:
    """Import Lava's runtime. Lava calls `multiprocessing.set_start_method('fork')` when
    imported, which raises once anything has fixed the start method (even a bare
    `multiprocessing.get_start_method()`); Lava needs fork, so force it for that call."""
    import multiprocessing as mp

    if _LAVA_MP in sys.modules or mp.get_start_method(allow_none=True) is None:
        import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401
        return
    orig = mp.set_start_method
    mp.set_start_method = lambda method, force=False: orig(method, force=True)  # type: ignore[assignment]
    try:
        import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401,F811
    finally:
        mp.set_start_method = orig  # type: ignore[assignment]
