"""The state of one NIR import: where the graph comes from, its dt, how resets are read,
and the notes on what was converted (they end up in the graph's `import_notes` metadata)."""

from __future__ import annotations

from kdsnn.errors import KdsnnError


class ImportContext:
    """Source name for errors, the graph's dt (None when unknown), the --reset override,
    the writer's nir version, the neurons whose file held no v_reset, and the results:
    notes, reset modes per spiking node, readout gains still to fold."""

    def __init__(self, source: str, dt: float | None, reset: str | None = None,
                 version: tuple[int, ...] | None = None, v_reset_missing: frozenset[str] = frozenset(),
                 reset_modes: dict[str, str] | None = None) -> None:
        self.source = source
        self.dt = dt
        self.reset = reset
        self.version = version
        self.v_reset_missing = v_reset_missing
        self.stated_modes = dict(reset_modes or {})   # from a canonical graph's metadata
        self.notes: list[str] = []
        self.reset_modes: dict[str, str] = {}
        self.readout_gain: dict[str, float] = {}

    def at(self, node: str) -> str:
        """The prefix of an error about `node`."""
        return f"{self.source}: node {node!r}: "

    def fail(self, node: str, why: str) -> KdsnnError:
        return KdsnnError(f"{self.at(node)}{why}")
