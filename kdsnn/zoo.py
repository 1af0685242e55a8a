"""Model zoo: each architecture is one function over a GraphBuilder.

`build(arch, spiking=...)` gives the ANN teacher (ReLU) or the spiking student (IF) of the
same definition, so teacher and student share node names and feature points.
Students are deployable: Conv/Linear + BatchNorm + IF, AvgPool (no MaxPool), residual sums
(several inputs into one `act` node), global average pooling as an AvgPool over the whole map.

`width` scales every channel count (tests build tiny versions with width=0.125); the CIFAR
networks accept any square input of at least 8x8 (a 2x2 pool is skipped once the map is 1x1).
Feature points (for feature distillation) are the last activation of each stage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kdsnn.errors import KdsnnError
from kdsnn.layers import GraphBuilder, GraphNet

ArchFn = Callable[[GraphBuilder, int, float], list[str]]
ARCHS: dict[str, ArchFn] = {}


def register(name: str) -> Callable[[ArchFn], ArchFn]:
    def deco(fn: ArchFn) -> ArchFn:
        ARCHS[name] = fn
        return fn

    return deco


def _w(c: int, width: float) -> int:
    """Channel count scaled by the width multiplier (at least 1)."""
    return max(1, int(round(c * width)))


def _hw(b: GraphBuilder) -> int:
    return b.shapes[b.last][-1]


def _global_pool(b: GraphBuilder, name: str = "gap") -> None:
    """Global average pooling (an AvgPool over the whole map; skipped when it is 1x1)."""
    c, h, w = b.shapes[b.last]
    if h != w:
        raise KdsnnError(f"input maps must be square for global pooling, got {h}x{w}")
    if h > 1:
        b.avgpool(name, h)


@register("cnn")
def cnn(b: GraphBuilder, num_classes: int, width: float = 1.0) -> list[str]:
    """MNIST-size CNN: 2 conv stages + 1 hidden FC layer. Returns the feature points.

    The second stage downsamples with a stride-2 conv rather than a pool: pooling spikes is
    folded into the next synaptic layer at lowering, and a pool folded into fc1 would give
    each fc1 neuron 64*14*14 = 12,544 inputs, over Loihi's 4,096 input axons per core.
    """
    b.conv("conv1", _w(32, width), 3)
    b.act("act1")
    b.avgpool("pool1", 2)
    b.conv("conv2", _w(64, width), 3, stride=2)
    b.act("act2")
    b.flatten("flatten")
    b.linear("fc1", _w(128, width), bn=True)
    b.act("act3")
    b.linear("fc2", num_classes)
    b.readout("readout")
    return ["act1", "act2", "act3"]


def _vgg(b: GraphBuilder, num_classes: int, width: float, cfg: list[list[int]]) -> list[str]:
    """VGG on CIFAR: conv3x3-BN-act blocks, a 2x2 AvgPool after each stage, GAP, one FC."""
    feats = []
    for si, stage in enumerate(cfg, 1):
        for li, c in enumerate(stage, 1):
            b.conv(f"conv{si}_{li}", _w(c, width), 3)
            b.act(f"act{si}_{li}")
        feats.append(b.last)
        if _hw(b) >= 2 and si < len(cfg):
            b.avgpool(f"pool{si}", 2)
    _global_pool(b)
    b.flatten("flatten")
    b.linear("fc", num_classes)
    b.readout("readout")
    return feats


@register("vgg11")
def vgg11(b: GraphBuilder, num_classes: int, width: float = 1.0) -> list[str]:
    return _vgg(b, num_classes, width, [[64], [128], [256, 256], [512, 512], [512, 512]])


@register("vgg16")
def vgg16(b: GraphBuilder, num_classes: int, width: float = 1.0) -> list[str]:
    return _vgg(b, num_classes, width,
                [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]])


def _basic_block(b: GraphBuilder, name: str, c_out: int, stride: int) -> str:
    """conv3x3-BN-act-conv3x3-BN + shortcut (identity or 1x1 conv-BN), summed into an act."""
    src = b.last
    c_in, h, _ = b.shapes[src]
    if h == 1:
        stride = 1
    b.conv(f"conv_{name}a", c_out, 3, stride=stride, src=src)
    b.act(f"act_{name}a")
    main = b.conv(f"conv_{name}b", c_out, 3)
    short = src
    if stride != 1 or c_in != c_out:
        short = b.conv(f"conv_{name}s", c_out, 1, stride=stride, padding=0, src=src)
    return b.act(f"act_{name}", src=[main, short])


def _resnet(b: GraphBuilder, num_classes: int, stem: int, widths: list[int],
            blocks: list[int]) -> list[str]:
    b.conv("conv1", stem, 3)
    b.act("act1")
    feats = []
    for si, (c, n) in enumerate(zip(widths, blocks, strict=True), 1):
        for bi in range(1, n + 1):
            _basic_block(b, f"s{si}b{bi}", c, 2 if (bi == 1 and si > 1) else 1)
        feats.append(b.last)
    _global_pool(b)
    b.flatten("flatten")
    b.linear("fc", num_classes)
    b.readout("readout")
    return feats


@register("resnet18")
def resnet18(b: GraphBuilder, num_classes: int, width: float = 1.0) -> list[str]:
    w = [_w(c, width) for c in (64, 128, 256, 512)]
    return _resnet(b, num_classes, _w(64, width), w, [2, 2, 2, 2])


@register("resnet34")
def resnet34(b: GraphBuilder, num_classes: int, width: float = 1.0) -> list[str]:
    w = [_w(c, width) for c in (64, 128, 256, 512)]
    return _resnet(b, num_classes, _w(64, width), w, [3, 4, 6, 3])


def _wrn(b: GraphBuilder, num_classes: int, width: float, depth: int, k: int) -> list[str]:
    """Wide ResNet-depth-k (Zagoruyko & Komodakis), post-activation blocks for deployment."""
    n = (depth - 4) // 6
    w = [_w(c * k, width) for c in (16, 32, 64)]
    return _resnet(b, num_classes, _w(16, width), w, [n, n, n])


@register("wrn16_2")
def wrn16_2(b: GraphBuilder, num_classes: int, width: float = 1.0) -> list[str]:
    return _wrn(b, num_classes, width, 16, 2)


@register("wrn28_4")
def wrn28_4(b: GraphBuilder, num_classes: int, width: float = 1.0) -> list[str]:
    return _wrn(b, num_classes, width, 28, 4)


def build(arch: str, spiking: bool, num_classes: int, input_shape: tuple[int, ...],
          T: int = 4, neuron: dict[str, Any] | None = None, width: float = 1.0,
          encoding: dict[str, Any] | None = None) -> GraphNet:
    """Build an architecture of the zoo as teacher (spiking=False) or student."""
    if arch not in ARCHS:
        raise KdsnnError(f"unknown architecture {arch!r}; choose one of {', '.join(sorted(ARCHS))}")
    if not width > 0:
        raise KdsnnError(f"width multiplier must be > 0, got {width}")
    if len(input_shape) != 3:
        raise KdsnnError(f"architecture {arch} needs (C, H, W) images, got input shape {tuple(input_shape)}")
    b = GraphBuilder(tuple(input_shape))
    try:
        feats = ARCHS[arch](b, num_classes, width)
    except ValueError as e:
        raise KdsnnError(f"architecture {arch} cannot be built for input {tuple(input_shape)}: {e}") from None
    net = GraphNet(b.specs, tuple(input_shape), num_classes, spiking=spiking, T=T,
                   neuron=neuron, feature_points=feats, arch=arch, encoding=encoding)
    net.width = float(width)
    return net
