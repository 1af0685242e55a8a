"""The memory budget: sizes a file or an option declares are checked before allocating.

A NIR file can declare a 100000x100000 matrix in half a megabyte, and `-T 1000000` or
`--width 1e6` ask for terabytes; letting the allocation fail gives a traceback or an
out-of-memory kill instead of one line. The budget defaults to the machine's physical
memory; `KDSNN_MEMORY_BUDGET` (bytes, or with a K/M/G/T suffix: `64G`) changes it.
"""

from __future__ import annotations

import os

from kdsnn.errors import KdsnnError

ENV = "KDSNN_MEMORY_BUDGET"
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _physical() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not POSIX: assume 16 GiB
        return 16 << 30


def memory_budget() -> int:
    """Bytes one kdsnn process may plan to hold (KDSNN_MEMORY_BUDGET, else physical memory)."""
    raw = os.environ.get(ENV, "").strip().upper().removesuffix("B").removesuffix("I")
    if not raw:
        return _physical()
    unit = raw[-1] if raw[-1] in _UNITS and not raw[-1].isdigit() else ""
    try:
        value = float(raw[:-1] if unit else raw) * _UNITS[unit]
    except ValueError:
        raise KdsnnError(f"{ENV}={os.environ[ENV]!r} is not a size; give bytes or e.g. 64G") from None
    if not value > 0 or value != value:
        raise KdsnnError(f"{ENV}={os.environ[ENV]!r} must be a positive size, e.g. 64G")
    return int(min(value, 1 << 62))


def human(n: float) -> str:
    """Bytes for people: 1.5 GiB, 73 PiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if abs(n) < 1024 or unit == "EiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} EiB"


def check_size(nbytes: float, what: str, fix: str = "") -> None:
    """Refuse `what` (one line: its size, the budget, what to do) if it needs more than the budget."""
    budget = memory_budget()
    if not nbytes <= budget:  # also refuses NaN
        src = f"{ENV}" if os.environ.get(ENV) else f"physical memory; raise it with {ENV}=SIZE"
        raise KdsnnError(f"{what} needs {human(nbytes)}, over the memory budget of {human(budget)} "
                         f"({src}){'; ' + fix if fix else ''}")
