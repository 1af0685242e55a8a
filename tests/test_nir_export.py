"""Student -> NIR export: BN folding, canonical form, metadata, and rung 2 for every zoo arch."""

from __future__ import annotations

import copy

import nir
import numpy as np
import pytest
import torch
from kdsnn.backends.reference import ReferenceBackend
from kdsnn.compiler.export import fold_bn, student_to_nir
from kdsnn.compiler.nir.canonicalize import canonicalize
from kdsnn.compiler.nir.meta import graph_meta, graph_summary
from kdsnn.compiler.nir.read import read_nir
from kdsnn.compiler.nir.write import write_nir

from kdsnn.errors import KdsnnError
from kdsnn.zoo import ARCHS, build

torch.set_num_threads(1)


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so folding really matters."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.2)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.3 + 0.3)
    return model.eval()


def student(arch: str, T: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    shape = (1, 12, 12) if arch == "cnn" else (3, 16, 16)
    return randomize_bn(build(arch, True, 10, shape, T=T, width=0.125), seed), shape


CONFIG = {"kind": "student", "dataset": "digits", "mean": [0.3], "std": [0.4],
          "class_names": [f"c{i}" for i in range(10)]}


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_every_arch_exports_reimports_and_passes_rung2(arch, tmp_path):
    model, shape = student(arch)
    g = student_to_nir(model, {**CONFIG, "T": 3})
    path = write_nir(g, tmp_path / "graph.nir")
    back = read_nir(path)
    # node names are the GraphNet's; one IF per act node over the layer's full shape
    acts = [s.name for s in model.specs if s.op == "act"]
    assert [k for k, v in back.nodes.items() if isinstance(v, nir.IF)] == acts
    x = torch.randn(6, *shape) * 1.5
    with torch.no_grad():
        want = copy.deepcopy(model).double()(x.double()).numpy()
    res = ReferenceBackend().compile(back, batch_size=4).run(x.numpy())
    assert res.logits.shape == (6, 10)
    assert np.abs(res.logits - want).max() <= 1e-4
    assert (res.predictions == want.argmax(1)).all()
    assert sum(int(c.sum()) for c in res.spike_counts.values()) > 0, "the test net must spike"
    assert set(res.spike_counts) == set(acts)
    assert all(v.shape == (6, 3) for v in res.layer_spikes_per_step.values())


def test_bn_folding_matches_conv_then_bn():
    torch.manual_seed(1)
    from kdsnn.layers import ConvBN

    m = ConvBN(3, 5, 3, padding=1)
    randomize_bn(m)
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    w, b = fold_bn(m.conv.weight, m.conv.bias, m.bn)
    with torch.no_grad():
        want = m.double()(x)
    got = torch.nn.functional.conv2d(x, torch.from_numpy(w), torch.from_numpy(b), padding=1)
    assert torch.allclose(got, want, atol=1e-12)
    assert not np.allclose(w, m.conv.weight.detach().numpy()), "BN must change the weights"


def test_export_structure_metadata_and_roundtrip(tmp_path):
    model, _ = student("cnn", T=5)
    g = student_to_nir(model, {**CONFIG, "T": 5, "arch": "cnn"})
    types = {k: type(v).__name__ for k, v in g.nodes.items()}
    assert types["conv1"] == "Conv2d" and types["fc1"] == "Affine" and types["readout"] == "I"
    assert types["flatten"] == "Flatten" and types["pool1"] == "AvgPool2d"
    assert tuple(g.nodes["conv1"].input_shape) == (12, 12)
    act = g.nodes["act1"]
    assert act.v_threshold.shape == act.r.shape == (4, 12, 12)
    assert np.all(act.r == 1) and np.all(act.v_reset == 0)
    assert g.nodes["flatten"].start_dim == 0
    back = read_nir(write_nir(g, tmp_path / "g.nir"))
    meta = graph_meta(back)
    assert meta["T"] == 5 and meta["dataset"] == "digits" and meta["encoding"] == "direct"
    assert meta["class_names"] == CONFIG["class_names"] and meta["mean"] == [0.3]
    assert meta["input_shape"] == (1, 12, 12) and meta["num_classes"] == 10
    assert meta["kdsnn_version"]
    for k, v in g.nodes.items():  # parameters survive the file bit for bit
        for attr in ("weight", "bias", "v_threshold"):
            if hasattr(v, attr):
                assert np.array_equal(getattr(v, attr), getattr(back.nodes[k], attr))
    s = graph_summary(back)
    assert s["neurons"] == 4 * 12 * 12 + 8 * 3 * 3 + 16 and s["readout"] == 10


def test_canonicalize_is_idempotent():
    model, _ = student("resnet18")
    g = student_to_nir(model, {"T": 2})
    g2 = canonicalize(g)
    assert list(g2.nodes) == list(g.nodes) and sorted(g2.edges) == sorted(g.edges)


def test_residual_sums_are_several_edges_into_one_node():
    model, _ = student("resnet18")
    g = student_to_nir(model, {"T": 2})
    fan_in = {k: sum(1 for _, b in g.edges if b == k) for k in g.nodes}
    summed = [k for k, n in fan_in.items() if n == 2]
    assert summed and all(isinstance(g.nodes[k], nir.IF) for k in summed)


def test_teacher_is_refused():
    teacher = build("cnn", False, 10, (1, 12, 12))
    with pytest.raises(KdsnnError, match="student"):
        student_to_nir(teacher, {"kind": "teacher"})
    model, _ = student("cnn")
    with pytest.raises(KdsnnError, match="teacher"):
        student_to_nir(model, {"kind": "teacher"})


def test_theta_is_exported():
    torch.manual_seed(0)
    model = build("cnn", True, 10, (1, 12, 12), T=2, neuron={"theta": 0.5}, width=0.125).eval()
    g = student_to_nir(model, {"T": 2})
    assert all(np.all(n.v_threshold == 0.5) for n in g.nodes.values() if isinstance(n, nir.IF))
