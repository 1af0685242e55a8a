"""The intsim backend: IntNets run on the bit-accurate integer simulator. Feed-forward IF
networks take the batched, time-folded path (`fast`); recurrence, delays, other resets and
spike-train inputs run step by step (`steps`)."""

from __future__ import annotations

from typing import Any

from kdsnn.backends.base import Backend
from kdsnn.backends.intsim.fast import IntSimExecutable
from kdsnn.backends.intsim.steps import StepSimExecutable
from kdsnn.compiler.intnet import IntNet
from kdsnn.compiler.targets import check_simulable

from kdsnn.errors import KdsnnError


class IntSimBackend(Backend):
    name = "intsim"
    accepts = "intnet"
    description = "bit-accurate integer IF simulator (Lava fixed-point arithmetic, zero delay), batched"
    flow_options = ("batch_size",)

    def compile(self, net: Any, **options: Any) -> IntSimExecutable:
        if not isinstance(net, IntNet):
            raise KdsnnError(f"intsim runs an IntNet (lower the NIR graph first), got {type(net).__name__}")
        check_simulable(net.metadata.get("arithmetic"), "intsim", net.target)
        if not net.feed_forward_if:         # recurrence, delays, resets, spike trains: step by step
            return StepSimExecutable(net, **options)
        return IntSimExecutable(net, **options)
