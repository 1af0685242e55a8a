"""The backend plugin interface (docs/design.md, "Backends are plugins").

A backend compiles a network (an IntNet for integer backends, a NIR graph for float ones)
into an `Executable`, which runs a batch of N normalized inputs for T steps and returns a
`RunResult`. Backends are found through the entry-point group `kdsnn.backends`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np


@dataclass(repr=False)
class RunResult:
    """What every backend returns for a batch of N samples.

    logits: (N, classes); integer backends give the readout's integer v (int64),
        float backends float logits.
    spike_counts: {population/IF node name: (N,) total spikes of that layer per sample}.
    layer_spikes_per_step: optional {name: (N, T) spikes of the layer at each step}.
    spike_trains: optional {name: (N, T, *shape) uint8} when recording was asked for.
    """

    logits: np.ndarray
    spike_counts: dict[str, np.ndarray]
    backend: str
    T: int
    steps: int = 0                                   # simulated steps (incl. pipeline fill)
    wall_s: float = 0.0
    layer_spikes_per_step: dict[str, np.ndarray] | None = None
    spike_trains: dict[str, np.ndarray] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def predictions(self) -> np.ndarray:
        return np.asarray(self.logits).argmax(axis=1)

    def __repr__(self) -> str:
        spikes = sum(float(np.mean(c)) for c in self.spike_counts.values()) if len(self.logits) else 0.0
        return (f"RunResult({self.backend}, {len(self.logits)} samples, T={self.T}, logits "
                f"{'x'.join(map(str, np.shape(self.logits)))}, {len(self.spike_counts)} layers, "
                f"{spikes:.1f} spikes/sample)")


class Executable(ABC):
    """A compiled network, ready to run batches."""

    @abstractmethod
    def run(self, x: np.ndarray, record: bool = False, progress: bool = False) -> RunResult:
        """Run N normalized inputs (N, *input_shape) float32 for the network's T steps."""


class Backend(ABC):
    """A backend plugin. Subclasses set the class attributes and implement `compile`."""

    name: ClassVar[str]
    accepts: ClassVar[Literal["nir", "intnet"]]
    description: ClassVar[str] = ""
    # Which of the flow's settings `compile` takes as options (of "batch_size", "device");
    # a NIR backend is always given T. Others get no options: an IntNet carries its T.
    flow_options: ClassVar[tuple[str, ...]] = ()
    # Test samples `kdsnn export/run --target NAME` runs when --samples is not given.
    default_samples: ClassVar[int] = 1000

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """(True, "") when usable here, else (False, reason)."""
        return True, ""

    @abstractmethod
    def compile(self, net: Any, **options: Any) -> Executable:
        """Compile an IntNet (accepts == "intnet") or a NIR graph (accepts == "nir")."""
