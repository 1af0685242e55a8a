"""The state of one NIR import: where the graph comes from, its dt, and the notes on what
was converted (they end up in the graph's `import_notes` metadata)."""

from __future__ import annotations

from kdsnn.errors import KdsnnError


class ImportContext:
    """Source name for errors, the graph's dt (None when it does not say), notes."""

    def __init__(self, source: str, dt: float | None) -> None:
        self.source = source
        self.dt = dt
        self.notes: list[str] = []

    def at(self, node: str) -> str:
        """The prefix of an error about `node`."""
        return f"{self.source}: node {node!r}: "

    def fail(self, node: str, why: str) -> KdsnnError:
        return KdsnnError(f"{self.at(node)}{why}")
