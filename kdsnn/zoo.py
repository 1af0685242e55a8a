"""Model zoo: each architecture is one function over a GraphBuilder.

`build(arch, spiking=...)` gives the ANN teacher (ReLU) or the spiking student (IF) of the
same definition, so teacher and student share node names and feature points.
Students are deployable: Conv/Linear + BatchNorm + IF, AvgPool (no MaxPool), residual sums.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kdsnn.errors import KdsnnError
from kdsnn.layers import GraphBuilder, GraphNet

ArchFn = Callable[[GraphBuilder, int], list[str]]
ARCHS: dict[str, ArchFn] = {}


def register(name: str) -> Callable[[ArchFn], ArchFn]:
    def deco(fn: ArchFn) -> ArchFn:
        ARCHS[name] = fn
        return fn

    return deco


@register("cnn")
def cnn(b: GraphBuilder, num_classes: int) -> list[str]:
    """MNIST-size CNN: 2 conv stages + 1 hidden FC layer. Returns the feature points."""
    b.conv("conv1", 32, 3)
    b.act("act1")
    b.avgpool("pool1", 2)
    b.conv("conv2", 64, 3)
    b.act("act2")
    b.avgpool("pool2", 2)
    b.flatten("flatten")
    b.linear("fc1", 128, bn=True)
    b.act("act3")
    b.linear("fc2", num_classes)
    b.readout("readout")
    return ["act1", "act2", "act3"]


def build(arch: str, spiking: bool, num_classes: int, input_shape: tuple[int, ...],
          T: int = 4, neuron: dict[str, Any] | None = None) -> GraphNet:
    """Build an architecture of the zoo as teacher (spiking=False) or student."""
    if arch not in ARCHS:
        raise KdsnnError(f"unknown architecture {arch!r}; choose one of {', '.join(sorted(ARCHS))}")
    b = GraphBuilder(tuple(input_shape))
    feats = ARCHS[arch](b, num_classes)
    return GraphNet(b.specs, tuple(input_shape), num_classes, spiking=spiking, T=T,
                    neuron=neuron, feature_points=feats, arch=arch)
