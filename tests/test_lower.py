"""Lowering canonical NIR graphs to IntNets: folding exactness, scales, errors."""

from __future__ import annotations

import math

import nir
import numpy as np
import pytest
from kdsnn.backends.intsim import IntSimBackend
from kdsnn.backends.intsim.arith import lava_dense_weights
from kdsnn.backends.reference import ReferenceBackend
from kdsnn.compiler.intnet import INPUT
from kdsnn.compiler.lower import describe, lower, lowering_state
from kdsnn.compiler.passes.calibrate import simulate
from kdsnn.compiler.targets import LOIHI
from oracles.intsim_ref import run_scalar

from kdsnn.errors import KdsnnError


def _if(shape, theta=1.0):
    return nir.IF(r=np.ones(shape), v_threshold=np.full(shape, theta), v_reset=np.zeros(shape))


def _conv(rng, c_in, c_out, hw, k=3, stride=1, pad=1, groups=1, scale=0.4):
    return nir.Conv2d(input_shape=hw, weight=rng.normal(0, scale, (c_out, c_in // groups, k, k)),
                      stride=(stride, stride), padding=(pad, pad), dilation=(1, 1), groups=groups,
                      bias=rng.normal(0, 0.05, c_out))


def _graph(nodes: dict, edges: list, T: int = 4) -> nir.NIRGraph:
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"T": T, "dt": 1.0, "class_names": ["a", "b", "c"]},
                        type_check=False)


def conv_graph(seed: int = 0, pool: str = "avg", hw: int = 8) -> nir.NIRGraph:
    """input -> conv -> IF -> pool -> conv -> IF -> pool -> flatten -> affine -> IF -> affine -> I"""
    rng = np.random.default_rng(seed)
    P = nir.AvgPool2d if pool == "avg" else nir.SumPool2d
    sc = 1.0 if pool == "avg" else 0.25
    h2, h3 = hw // 2, hw // 4
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, hw, hw])}),
        "conv1": _conv(rng, 2, 4, (hw, hw), scale=0.5),
        "act1": _if((4, hw, hw)),
        "pool1": P(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "conv2": _conv(rng, 4, 6, (h2, h2), scale=0.5 * sc),
        "act2": _if((6, h2, h2)),
        "pool2": P(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "flatten": nir.Flatten(input_type={"input": np.array([6, h3, h3])}, start_dim=0, end_dim=-1),
        "fc1": nir.Affine(weight=rng.normal(0, 0.3 * sc, (12, 6 * h3 * h3)), bias=rng.normal(0, 0.05, 12)),
        "act3": _if((12,)),
        "fc2": nir.Affine(weight=rng.normal(0, 0.4, (3, 12)), bias=rng.normal(0, 0.05, 3)),
        "readout": nir.I(r=np.ones(3)),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    order = list(nodes)
    return _graph(nodes, list(zip(order[:-1], order[1:], strict=True)))


def residual_graph(seed: int = 0) -> nir.NIRGraph:
    """act1 -> conv2a -> act2a -> conv2b --+--> act2 (sum) ; act1 --(identity)--+ ; pool -> act (depthwise)"""
    rng = np.random.default_rng(seed)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([3, 6, 6])}),
        "conv1": _conv(rng, 3, 4, (6, 6)),
        "act1": _if((4, 6, 6)),
        "conv2a": _conv(rng, 4, 4, (6, 6)),
        "act2a": _if((4, 6, 6)),
        "conv2b": _conv(rng, 4, 4, (6, 6)),
        "act2": _if((4, 6, 6)),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "act3": _if((4, 3, 3), theta=2.0),
        "flat": nir.Flatten(input_type={"input": np.array([4, 3, 3])}, start_dim=0, end_dim=-1),
        "fc": nir.Linear(weight=rng.normal(0, 0.3, (3, 36))),
        "readout": nir.I(r=np.full(3, 2.0)),   # gain dt*r = 2 at the dt = 1 s below
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    edges = [("input", "conv1"), ("conv1", "act1"), ("act1", "conv2a"), ("conv2a", "act2a"),
             ("act2a", "conv2b"), ("conv2b", "act2"), ("act1", "act2"), ("act2", "pool"),
             ("pool", "act3"), ("act3", "flat"), ("flat", "fc"), ("fc", "readout"), ("readout", "output")]
    g = _graph(nodes, edges, T=3)
    g.metadata["dt"] = 1.0
    return g


def mlp_graph(seed: int = 0) -> nir.NIRGraph:
    rng = np.random.default_rng(seed)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([10])}),
        "fc1": nir.Affine(weight=rng.normal(0, 0.6, (16, 10)), bias=rng.normal(0, 0.1, 16)),
        "act1": _if((16,)),
        "fc2": nir.Affine(weight=rng.normal(0, 0.5, (3, 16)), bias=rng.normal(0, 0.1, 3)),
        "readout": nir.I(r=np.ones(3)),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    order = list(nodes)
    return _graph(nodes, list(zip(order[:-1], order[1:], strict=True)))


def _x(graph: nir.NIRGraph, n: int, seed: int = 1) -> np.ndarray:
    shape = tuple(int(d) for d in graph.nodes["input"].input_type["input"])
    return np.random.default_rng(seed).normal(0.3, 1.0, size=(n, *shape))


GRAPHS = {"conv_avg": lambda: conv_graph(0, "avg"), "conv_sum": lambda: conv_graph(1, "sum"),
          "residual": residual_graph, "mlp": mlp_graph}


def test_passes_are_listed() -> None:
    names = [n for n, _ in describe()]
    assert names == ["import_nir", "fold_flatten", "fold_pool", "connections", "calibrate",
                     "quantize_input", "scales", "depth"]
    assert all(doc for _, doc in describe())


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_folding_is_exact_against_the_reference_backend(name: str) -> None:
    """The float graph after folding (what is quantized) equals the NIR graph run by `reference`."""
    g = GRAPHS[name]()
    x = _x(g, 40)
    st = lowering_state(g, "loihi", x[:20])
    ours = simulate(st, x)
    ref = ReferenceBackend().compile(g).run(x)
    np.testing.assert_allclose(ours["logits"], ref.logits, rtol=1e-9, atol=1e-9)
    for p in st.pops:
        if p.name in ref.spike_counts:
            np.testing.assert_array_equal(ours["spike_counts"][p.name], ref.spike_counts[p.name])


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_lowered_nets_respect_the_target_and_track_float(name: str) -> None:
    g = GRAPHS[name]()
    x = _x(g, 200)
    st = lowering_state(g, "loihi", x[:100])
    net = lower(g, "loihi", x[:100])
    lo, hi, _ = LOIHI.weight_range("mixed")
    for c in net.connections:
        assert c.weight.dtype == np.int32
        # weights are already in Lava's representable set: its clip/truncate changes nothing
        np.testing.assert_array_equal(lava_dense_weights(c.weight, c.sign_mode, c.num_weight_bits), c.weight)
        assert lo <= c.weight.min() and c.weight.max() <= 255
        if c.kind == "conv":
            assert c.weight_exp == 0
        assert LOIHI.weight_exp_min <= c.weight_exp <= LOIHI.weight_exp_max
    for p in net.populations:
        assert 0 <= p.vth <= LOIHI.vth_max and 0 <= p.bias_exp <= 7
        assert np.abs(p.bias_mant).max(initial=0) <= 4096 and p.du == 4095 and p.dv == 0
    assert net.readout.vth == LOIHI.vth_max and net.readout.name == "readout"
    r = IntSimBackend().compile(net).run(x)
    for name_, d in r.extra["overflow"].items():            # calibration-range data never overflows
        assert d["u_wraps"] == 0 and d["v_clips"] == 0, name_
    assert r.extra["overflow"]["readout"]["readout_spikes"] == 0
    fl = simulate(st, x)
    # random (untrained) nets sit near their thresholds; trained students are tested in
    # test_lower_student.py. Here: spike totals within 3 %, predictions mostly equal.
    agree = (r.predictions == fl["logits"].argmax(1)).mean()
    assert agree >= 0.8, agree
    for k, c in r.spike_counts.items():
        tot = fl["spike_counts"][k].sum()
        if tot > 1000:
            assert abs(c.sum() - tot) <= 0.03 * tot, (k, c.sum(), tot)
    deq = r.logits * net.readout.out_scale
    err = np.abs(deq - fl["logits"]).mean() / (np.abs(fl["logits"]).mean() + 1e-9)
    assert err < 0.5, err
    ref = run_scalar(net, x[:2])
    np.testing.assert_array_equal(r.logits[:2], ref["logits"])


def test_residual_populations_share_one_scale() -> None:
    g = residual_graph()
    x = _x(g, 30)
    st = lowering_state(g, "loihi", x)
    into = [c for c in st.int_conns if c.dst == "act2"]
    assert {c.src for c in into} == {"act1", "act2a"}
    S = st.scales["act2"]
    floats = {c.name: c for c in st.conns}
    for c in into:
        f = floats[c.name]
        s_src = st.input_spec.scale if c.src == INPUT else 1.0
        sigma = S / (2.0 ** c.weight_exp * s_src)
        _, _, step = LOIHI.weight_range(c.sign_mode)
        assert np.abs(c.weight - f.weight * sigma).max() <= step / 2 + 1e-9
    # identity shortcut = 1x1 depthwise conv with one weight value; the pool = a 2x2 depthwise conv
    ident = next(c for c in into if c.src == "act1")
    assert ident.kind == "conv" and ident.groups == 4 and len(np.unique(ident.weight)) == 1
    pool = next(c for c in st.int_conns if c.dst == "act3")
    assert pool.kind == "conv" and pool.weight.shape == (4, 1, 2, 2) and pool.stride == (2, 2)
    net = lower(g, "loihi", x)
    assert {p.name: p.depth for p in net.populations} == {"act1": 1, "act2a": 2, "act2": 3, "act3": 4,
                                                          "readout": 5}


def test_readout_is_provably_safe_and_logits_dequantize() -> None:
    g = mlp_graph()
    x = _x(g, 50)
    st = lowering_state(g, "loihi", x)
    rep = st.report["readout"]
    assert rep["guarantee"] == "worst-case"
    net = lower(g, "loihi", x)
    # even the most extreme inputs cannot make the readout fire or clip
    r = IntSimBackend().compile(net).run(np.concatenate([x * 100, -x * 100]))
    assert r.extra["overflow"]["readout"]["readout_spikes"] == 0
    assert r.extra["overflow"]["readout"]["v_clips"] == 0
    assert math.isclose(net.readout.out_scale, 1 / (64 * st.scales["readout"] * net.T))


def test_layer_that_cannot_fit_names_layer_and_bits() -> None:
    rng = np.random.default_rng(0)
    g = conv_graph(0)
    g.nodes["act1"] = _if((4, 8, 8), theta=1e6)               # threshold >> weights: vth overflows
    with pytest.raises(KdsnnError, match=r"layer act1 cannot fit hardware spec loihi: \d+\.\d bit"):
        lower(g, "loihi", _x(g, 10))
    del rng


def test_lowering_options_come_from_lowering_config() -> None:
    """kdsnn.config.LoweringConfig is the one place the knobs' defaults live: no options lower
    as LoweringConfig() does, an unknown one is refused with the known ones, and errors print
    the value in use."""
    from dataclasses import asdict

    from kdsnn.config import LoweringConfig

    g = conv_graph(0)
    x = _x(g, 10)
    st = lowering_state(g, "loihi", x)
    assert st.config == LoweringConfig()
    assert lower(g, "loihi", x).metadata["lowering"]["options"] == asdict(LoweringConfig())
    with pytest.raises(KdsnnError, match="unknown LoweringConfig option.*headrom; known: headroom, input_bits"):
        lower(g, "loihi", x, headrom=3.0)
    g.nodes["act1"] = _if((4, 8, 8), theta=1e6)
    with pytest.raises(KdsnnError, match=r"keeping 2\.5 weight bits.*--min-weight-bits \(an option of export, "
                                         r"evaluate and finetune\)"):
        lower(g, "loihi", x, min_weight_bits=2.5)


def test_unsupported_nodes_are_refused_by_name() -> None:
    g = mlp_graph()
    g.nodes["act1"] = nir.IF(r=np.ones(16), v_threshold=np.ones(16), v_reset=np.full(16, 0.5))
    with pytest.raises(KdsnnError, match="node act1: v_reset = 0.5 != 0 cannot be represented"):
        lower(g, "loihi", _x(g, 4))
    g = mlp_graph()
    g.nodes["act1"] = nir.LIF(tau=np.linspace(2, 3, 16), r=np.ones(16), v_leak=np.zeros(16),
                              v_threshold=np.ones(16), v_reset=np.zeros(16))
    with pytest.raises(KdsnnError, match="node act1: the voltage decay .* differs between neurons"):
        lower(g, "loihi", _x(g, 4))
    g = mlp_graph()
    g.nodes["act1"] = nir.Scale(scale=np.ones(16))
    with pytest.raises(KdsnnError, match="node act1: NIR Scale cannot be lowered"):
        lower(g, "loihi", _x(g, 4))


def test_per_neuron_thresholds_and_leaky_neurons_lower_exactly_in_float() -> None:
    """Per-neuron thresholds are normalised into the weights, LIF decays kept: the folded
    float graph spikes exactly as the unfolded one (calibrate.simulate vs the graph itself)."""
    g = mlp_graph()
    g.nodes["act1"] = _if((16,))
    g.nodes["act1"].v_threshold = np.linspace(1, 2, 16)
    x = _x(g, 30)
    st = lowering_state(g, "loihi", x)
    act1 = st.pop("act1")
    assert act1.theta == 1.0
    fc, th = g.nodes["fc1"], g.nodes["act1"].v_threshold
    a = x.reshape(len(x), -1) @ fc.weight.T + fc.bias
    v, n_spikes = np.zeros_like(a), np.zeros(len(x))
    for _ in range(st.T):                                  # IF, reset to zero, per-neuron theta
        v = v + a
        s = v > th
        n_spikes += s.sum(axis=1)
        v[s] = 0
    np.testing.assert_array_equal(simulate(st, x)["spike_counts"]["act1"], n_spikes)
    g = mlp_graph()
    g.nodes["act1"] = nir.LIF(tau=np.full(16, 4.0), r=np.full(16, 4.0), v_leak=np.zeros(16),
                              v_threshold=np.ones(16), v_reset=np.zeros(16))
    net = lower(g, "loihi", x)
    p = net.population("act1")
    assert (p.du, p.dv) == (4095, 1024)                    # beta = dt / tau = 1/4 -> 1024 / 4096
    assert net.metadata["lowering"]["layers"]["act1"]["decay"]["beta_int"] == 0.25


def test_bad_calibration_and_T() -> None:
    g = mlp_graph()
    with pytest.raises(KdsnnError, match="calibration data must be"):
        lower(g, "loihi", np.zeros((4, 3)))
    with pytest.raises(KdsnnError, match="NaN"):
        lower(g, "loihi", np.full((4, 10), np.nan))
    g.metadata = {}
    with pytest.raises(KdsnnError, match="no T"):
        lower(g, "loihi", _x(g, 4))
    assert lower(g, "loihi", _x(g, 4), T=2).T == 2


def test_unfoldable_pool_is_refused() -> None:
    g = conv_graph(0, hw=9)          # 9x9 -> pool 2 drops a row the folded conv would read
    g.nodes["conv1"] = _conv(np.random.default_rng(0), 2, 4, (9, 9))
    g.nodes["act1"] = _if((4, 9, 9))
    with pytest.raises(KdsnnError, match="cannot fold pooling pool1 into conv conv2"):
        lower(g, "loihi", np.zeros((2, 2, 9, 9)))


def test_lowered_net_saves_and_keeps_metadata(tmp_path) -> None:
    from kdsnn.compiler.intnet import IntNet
    g = conv_graph(2)
    net = lower(g, "loihi", _x(g, 10))
    back = IntNet.load(net.save(tmp_path / "n.intnet"))
    assert back.metadata["lowering"]["passes"][0] == "import_nir"
    assert set(back.metadata["lowering"]["layers"]) == {"act1", "act2", "act3", "readout"}
    assert back.class_names == ["a", "b", "c"]
