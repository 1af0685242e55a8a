"""Which stages a target's export runs, from what its backend accepts (docs/design.md, "Data flow").

`plan_for(target)` asks the registry (kdsnn.backends.registry) for the backend and reads
its `accepts` ("nir": the float graph, "intnet": the lowered integer network) and its
`default_samples`; `kdsnn.deploy.export`, `kdsnn.rerun.rerun` and `kdsnn evaluate --target`
build their pipelines from the `Plan` it returns, so a plugin backend deploys like a
built-in one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kdsnn.errors import KdsnnError
from kdsnn.parity import GRAPH_FILE
from kdsnn.stages import EVAL_SAMPLES

__all__ = ["Plan", "REMOVED_TARGETS", "plan_for"]

REMOVED_TARGETS = {"nir": "--target nir was removed: every export writes graph.nir; --target reference "
                          "writes it and checks it (rungs 1 and 2) without lowering"}


@dataclass(frozen=True)
class Plan:
    """Which stages a target runs, from what its backend accepts."""

    target: str
    accepts: Literal["nir", "intnet"]
    default_samples: int

    @property
    def lowers(self) -> bool:
        return self.accepts == "intnet"

    @property
    def extra_backend(self) -> str | None:
        """The target when it is not one of the ladder's own backends (reference, intsim)."""
        return None if self.target in ("reference", "intsim") else self.target

    def sample_counts(self, samples: int | None, eval_samples: int | None) -> tuple[int, int]:
        """(samples the target runs, samples the float and intsim rungs run)."""
        n = int(samples or self.default_samples)
        if self.extra_backend is None:
            return n, n
        return n, max(n, int(eval_samples or EVAL_SAMPLES))

    def stages(self) -> list[str]:
        out = ["source", GRAPH_FILE, "rung 1", "rung 2"]
        if self.accepts == "nir" and self.extra_backend:
            out.append(f"{self.target} (float)")
        if self.lowers:
            out += ["lower", "intsim", "rung 3"]
            if self.extra_backend:
                out += [self.target, "rung 4"]
            out.append("report")
        return out


def plan_for(target: str) -> Plan:
    """The plan of a registered, available backend (else a KdsnnError saying why not)."""
    from kdsnn.backends.registry import backend_info

    if target in REMOVED_TARGETS:
        raise KdsnnError(REMOVED_TARGETS[target])
    info = backend_info(target)
    return Plan(target, info.accepts, int(getattr(info.cls, "default_samples", 1000)))  # type: ignore[arg-type]
