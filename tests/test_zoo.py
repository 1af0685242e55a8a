"""Model zoo: every architecture builds as teacher and student, runs forward and backward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdsnn.errors import KdsnnError
from kdsnn.layers import ConvBN, LinearBN
from kdsnn.neurons import IFNeuron
from kdsnn.zoo import ARCHS, build

ALL = ["cnn", "vgg11", "vgg16", "resnet18", "resnet34", "wrn16_2", "wrn28_4"]


def test_registry_has_every_architecture() -> None:
    assert set(ALL) <= set(ARCHS)


@pytest.mark.parametrize("arch", ALL)
def test_builds_and_trains_tiny(arch: str) -> None:
    torch.manual_seed(0)
    shape = (1, 12, 12) if arch == "cnn" else (3, 16, 16)
    teacher = build(arch, False, 5, shape, width=0.125)
    student = build(arch, True, 5, shape, T=2, width=0.125)
    # one definition: same nodes, same feature points, same parameter shapes
    assert [s.name for s in teacher.specs] == [s.name for s in student.specs]
    assert teacher.feature_points == student.feature_points and len(student.feature_points) >= 3
    assert {k: v.shape for k, v in teacher.state_dict().items()} == \
        {k: v.shape for k, v in student.state_dict().items()}
    x = torch.randn(3, *shape)
    for net in (teacher, student):
        z, feats = net(x, return_features=True)
        assert z.shape == (3, 5)
        assert list(feats) == net.feature_points
        z.sum().backward()
        assert all(p.grad is not None for p in net.parameters())
    # deployable student: IF neurons, no MaxPool/ReLU, BN after every conv
    mods = list(student.modules())
    assert any(isinstance(m, IFNeuron) for m in mods)
    assert not any(isinstance(m, (nn.MaxPool2d, nn.ReLU)) for m in mods)
    assert all(m.bn is not None for m in mods if isinstance(m, ConvBN))
    # firing rates are in [0, 1] in steps of 1/T
    _, f = student(x, return_features=True)
    for v in f.values():
        assert ((v * 2).round() == v * 2).all() and v.min() >= 0 and v.max() <= 1


@pytest.mark.parametrize("arch", ["resnet18", "wrn16_2"])
def test_residual_sums_into_act_nodes(arch: str) -> None:
    net = build(arch, True, 10, (3, 16, 16), width=0.125)
    merges = [s for s in net.specs if len(s.inputs) > 1]
    assert merges and all(s.op == "act" for s in merges)
    assert any(s.op == "conv" and s.args["stride"] == 2 for s in net.specs)  # downsampling


def test_full_size_shapes() -> None:
    """CIFAR sizes reach a global pool over the last map; parameter counts are in range."""
    net = build("resnet18", False, 10, (3, 32, 32))
    assert 10e6 < sum(p.numel() for p in net.parameters()) < 12e6
    assert net.feature_shapes()["act_s4b2"] == (512, 4, 4)
    vgg = build("vgg16", False, 100, (3, 32, 32))
    assert vgg.feature_shapes()["act5_3"] == (512, 2, 2)
    wrn = build("wrn28_4", False, 10, (3, 32, 32))
    assert wrn.feature_shapes()["act_s3b4"] == (256, 8, 8)
    cnn = build("cnn", True, 10, (1, 28, 28))
    assert isinstance(cnn.nodes["fc1"], LinearBN) and cnn.feature_shapes()["act3"] == (128,)


def test_width_scales_channels() -> None:
    small = build("vgg11", False, 10, (3, 32, 32), width=0.25)
    assert small.nodes["conv1_1"].conv.out_channels == 16
    assert small.width == 0.25


def test_bad_requests() -> None:
    with pytest.raises(KdsnnError, match="unknown architecture"):
        build("alexnet", True, 10, (1, 28, 28))
    with pytest.raises(KdsnnError, match="width"):
        build("cnn", True, 10, (1, 28, 28), width=0)
    with pytest.raises(KdsnnError, match="input shape"):
        build("cnn", True, 10, (784,))


def test_same_seed_same_weights() -> None:
    torch.manual_seed(3)
    a = build("resnet18", True, 10, (3, 16, 16), width=0.125).state_dict()
    torch.manual_seed(3)
    b = build("resnet18", True, 10, (3, 16, 16), width=0.125).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_static_prefix_matches_time_folded_run() -> None:
    """Computing everything before the first IF once is exact: compare with running every
    node on the input repeated T times (time-folded from the start)."""
    torch.manual_seed(0)
    net = build("cnn", True, 10, (1, 12, 12), T=3, width=0.25).eval()
    x = torch.randn(4, 1, 12, 12)
    with torch.no_grad():
        z = net(x)
        h = x.repeat(3, 1, 1, 1)
        for spec in net.specs:  # cnn is a chain: each node takes the previous one
            h = net.nodes[spec.name](h)
    torch.testing.assert_close(z, h)
