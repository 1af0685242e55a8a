"""Minimal kdsnn backend plugins for the registry and flow tests: a NIR one that predicts
class 0 with zero spikes, one that is switched off, and an integer one."""

from __future__ import annotations

import numpy as np
from kdsnn.backends.base import Backend, Executable, RunResult
from kdsnn.backends.intsim import IntSimBackend


class _ZeroExecutable(Executable):
    def __init__(self, classes: int, T: int) -> None:
        self.classes, self.T = classes, T

    def run(self, x, record=False, progress=False):
        n = len(x)
        return RunResult(logits=np.zeros((n, self.classes)), spike_counts={}, backend="dummy", T=self.T)


class DummyBackend(Backend):
    name = "dummy"
    accepts = "nir"
    description = "third-party test backend (always predicts class 0)"

    def compile(self, net, **options):
        out = next(n for n in net.nodes.values() if type(n).__name__ == "Output")
        return _ZeroExecutable(int(np.prod(out.output_type["output"])), int(options.get("T", 1)))


class SwitchedOffBackend(DummyBackend):
    name = "dummy_off"

    @classmethod
    def available(cls):
        return False, "needs the DummyChip driver, which is not installed"


class IntegerBackend(IntSimBackend):
    """A third-party integer backend: the IntNet semantics, here by way of intsim's engine."""

    name = "dummy_int"
    description = "third-party integer test backend (intsim's arithmetic under another name)"
    flow_options = ()
    default_samples = 16

    def compile(self, net, **options):
        exe = super().compile(net, **options)
        run = exe.run

        def run_renamed(x, record=False, progress=False):
            r = run(x, record=record, progress=progress)
            r.backend = self.name
            return r

        exe.run = run_renamed
        return exe
