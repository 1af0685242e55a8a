"""Backend plugins and their registry over the entry-point group `kdsnn.backends`."""

from __future__ import annotations

from kdsnn.backends.base import Backend, Executable, RunResult

__all__ = ["Backend", "Executable", "RunResult"]
