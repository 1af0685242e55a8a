"""Profiler counts checked against hand counts and brute-force enumeration."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kdsnn.compiler.intnet import Connection, InputSpec, IntNet, Population
from kdsnn.compiler.profile.ann import FloatCounts, graphnet_profile
from kdsnn.compiler.profile.build import build_report
from kdsnn.compiler.profile.counting import RunCounts
from kdsnn.compiler.profile.energy import HOROWITZ45, LOIHI, load_energy_model
from kdsnn.compiler.profile.limits import target_limits
from kdsnn.compiler.profile.mapping import map_population
from kdsnn.compiler.profile.synapses import fan_in, fan_out

from kdsnn.errors import KdsnnError


def pop(name, shape, readout=False, depth=1):
    return Population(name, tuple(shape), vth=10, bias_mant=np.zeros(shape, np.int32),
                      readout=readout, depth=depth)


def conv(name, src, dst, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, graded=False):
    return Connection(name, src, dst, "conv", np.asarray(w, np.int32), stride=stride,
                      padding=padding, dilation=dilation, groups=groups, graded=graded)


def dense(name, src, dst, w, graded=False):
    return Connection(name, src, dst, "dense", np.asarray(w, np.int32), graded=graded)


def brute_fan_out(w, src_shape, dst_shape, stride, padding, dilation, groups, nonzero=False):
    """Enumerate every (output neuron, kernel tap) and credit the source it reads."""
    c_out, cin_g, kh, kw = w.shape
    out = np.zeros(src_shape, np.int64)
    _, ho, wo = dst_shape
    for co in range(c_out):
        g = co // (c_out // groups)
        for ci_l in range(cin_g):
            ci = g * cin_g + ci_l
            for oy in range(ho):
                for ox in range(wo):
                    for ky in range(kh):
                        for kx in range(kw):
                            iy = oy * stride[0] - padding[0] + ky * dilation[0]
                            ix = ox * stride[1] - padding[1] + kx * dilation[1]
                            if 0 <= iy < src_shape[1] and 0 <= ix < src_shape[2]:
                                if not nonzero or w[co, ci_l, ky, kx] != 0:
                                    out[ci, iy, ix] += 1
    return out


# ------------------------------------------------------------------------------ fan-out ---
def test_conv_fan_out_stride2_pad1_by_hand():
    # 1x5x5 input, 3x3 kernel, stride 2, padding 1 -> 3x3 output. Along one axis, input i is
    # read by (output o, tap k) with 2o - 1 + k = i: i=0: (0,1); i=1: (0,2),(1,0); i=2: (1,1);
    # i=3: (1,2),(2,0); i=4: (2,1) -> [1, 2, 1, 2, 1]; two output channels double it.
    c = conv("c", "input", "p", np.ones((2, 1, 3, 3)), stride=(2, 2), padding=(1, 1))
    axis = np.array([1, 2, 1, 2, 1])
    np.testing.assert_array_equal(fan_out(c, (1, 5, 5), (2, 3, 3))[0], 2 * np.outer(axis, axis))
    # fan-in of each output: corner 2x2 taps, edge 2x3, centre 3x3
    np.testing.assert_array_equal(fan_in(c, (1, 5, 5), (2, 3, 3))[0], [[4, 6, 4], [6, 9, 6], [4, 6, 4]])
    assert fan_out(c, (1, 5, 5), (2, 3, 3)).sum() == fan_in(c, (1, 5, 5), (2, 3, 3)).sum() == 98


def test_dense_fan_out_and_nonzero():
    w = np.array([[1, 0, 2], [0, 0, 3]])
    c = dense("d", "a", "b", w)
    np.testing.assert_array_equal(fan_out(c, (3,), (2,)), [2, 2, 2])
    np.testing.assert_array_equal(fan_out(c, (3,), (2,), nonzero=True), [1, 0, 2])
    np.testing.assert_array_equal(fan_in(c, (3,), (2,)), [3, 3])


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_conv_fan_out_matches_enumeration(data):
    groups = data.draw(st.sampled_from([1, 2]))
    cin = groups * data.draw(st.integers(1, 2))
    cout = groups * data.draw(st.integers(1, 2))
    k = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    s = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2)))
    p = (data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2)))
    d = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    h, w_ = data.draw(st.integers(3, 7)), data.draw(st.integers(3, 7))
    ho = (h + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    wo = (w_ + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    if ho < 1 or wo < 1:
        return
    seed = data.draw(st.integers(0, 2**16))
    w = np.random.default_rng(seed).integers(-1, 2, (cout, cin // groups, *k))
    c = conv("c", "a", "b", w, stride=s, padding=p, dilation=d, groups=groups)
    src, dst = (cin, h, w_), (cout, ho, wo)
    for nz in (False, True):
        np.testing.assert_array_equal(fan_out(c, src, dst, nonzero=nz),
                                      brute_fan_out(w, src, dst, s, p, d, groups, nonzero=nz))
    assert fan_in(c, src, dst).sum() == fan_out(c, src, dst).sum()


# --------------------------------------------------------------------------- operations ---
def dense_net(T=4):
    inp = InputSpec(shape=(3,), scale=1.0)
    h = pop("h", (2,), depth=1)
    o = pop("o", (2,), readout=True, depth=2)
    c1 = dense("fc1", "input", "h", [[1, 2, 0], [3, 0, 0]], graded=True)
    c2 = dense("fc2", "h", "o", [[1, 0], [1, 1]])
    net = IntNet(inp, [h, o], [c1, c2], T=T)
    net.validate()
    return net


def test_dense_counts_by_hand():
    net = dense_net(T=4)
    # two samples; h's trains (N=2, T=4, 2 neurons)
    tr = np.array([[[1, 0], [1, 0], [1, 0], [1, 0]],      # neuron 0 saturated, neuron 1 silent
                   [[0, 0], [1, 1], [0, 0], [0, 0]]], np.uint8)
    x = np.array([[1.0, 0.0, -2.0], [0.0, 0.0, 3.0]], np.float32)  # non-zero: 2 and 1 values
    rep = build_report(net, RunCounts({"h": tr.sum(axis=(1, 2)), "o": np.zeros(2)}, spike_trains={"h": tr}, x=x),
                       floats=FloatCounts(ann_macs={"h": 6, "o": 4}, ann_params={"h": 8, "o": 6}),
                       energy_models=["horowitz45", "loihi"], raster_neurons=1)
    h, o = rep["layers"]
    # raster of sample 0 with room for one neuron: none varies, so the saturated neuron 0
    # (at every step) before the silent one; uint8 trains
    assert rep["raster"]["layers"] == [{"name": "h", "neurons": [0], "events": [[0, 0], [1, 0], [2, 0], [3, 0]],
                                        "kinds": {"varying": 0, "saturated": 1, "silent": 1}}]
    assert h["spikes"] == (4 + 2) / 2
    assert h["firing_rate"] == 3 / (2 * 4)
    assert h["silent_fraction"] == (0.5 + 0.0) / 2          # sample 0: neuron 1 silent
    assert h["saturated_fraction"] == (0.5 + 0.0) / 2       # sample 0: neuron 0 saturated
    # graded input: each non-zero value reaches n_dst = 2 synapses at each of T = 4 steps.
    # sample 0: 2 non-zero, sample 1: 1 non-zero -> mean 1.5 x 2 x 4 = 12 MACs
    assert h["macs"] == 12 and h["acs"] == 0
    # effective (non-zero weight) fan-out of the inputs: [2, 1, 0]; non-zero rates per
    # position: [0.5, 0, 1] -> (0.5*2 + 0 + 1*0) * 4 = 4
    assert h["eff_macs"] == 4
    # ACs into o: every h spike reaches 2 synapses; 3 spikes -> 6. Effective fan-out of h:
    # [2, 1]; mean per-neuron spikes [2.5, 0.5] -> 5.5
    assert o["acs"] == 6 and o["eff_acs"] == 5.5
    assert o["dense_synops"] == 4 * 4 and h["dense_synops"] == 6 * 4
    assert rep["totals"]["acs"] == 6 and rep["totals"]["macs"] == 12
    assert rep["totals"]["ops_exact"]
    assert o["student_ann_macs"] == 4 and h["student_ann_macs"] == 6
    assert rep["totals"]["ann_macs"] == 10
    # energy: horowitz45 (effective): 0.9 x 5.5 + 4.6 x 4; ANN: 4.6 x 10
    e = rep["energy"]["horowitz45"]
    assert e["snn_pj"] == pytest.approx(0.9 * 5.5 + 4.6 * 4)
    assert e["ann_pj"] == pytest.approx(46.0)
    # loihi (all synapses): 23.6 x (6 + 12) + 81 x 3 spikes + 52 x ((2 + 2) x 4 - 3) idle
    assert rep["energy"]["loihi"]["snn_pj"] == pytest.approx(23.6 * 18 + 81 * 3 + 52 * 13)
    assert rep["energy"]["loihi"]["ann_pj"] is None
    # memory: weights 6 + 4 at 8 bits, biases (13 + 3) bits x 4 neurons, state 2 x 24 bits x 4
    m = rep["memory"]
    assert m["snn_weight_bytes"] == 10 and m["snn_bias_bytes"] == 8 and m["snn_state_bytes"] == 24
    assert m["input_buffer_bytes"] == 3 and m["ann_fp32_bytes"] == 14 * 4
    assert rep["latency"] == {"T": 4, "depth": 2, "intsim_steps": 4, "lava_steps": 6}
    json.dumps(rep)  # JSON-able


def conv_net():
    inp = InputSpec(shape=(1, 5, 5), scale=1.0)
    a = pop("a", (2, 3, 3))
    o = pop("o", (2,), readout=True, depth=2)
    w1 = np.ones((2, 1, 3, 3), np.int32)
    w2 = np.ones((2, 2, 3, 3), np.int32)
    w2[0, 0, 0, 0] = 0
    c1 = conv("c1", "input", "a", w1, stride=(2, 2), padding=(1, 1), graded=True)
    c2 = conv("c2", "a", "b", w2)
    b = pop("b", (2, 1, 1), depth=2)
    c3 = dense("fc", "b", "o", np.ones((2, 2)))
    net = IntNet(inp, [a, b, o], [c1, c2, c3], T=2)
    net.validate()
    return net


def test_conv_counts_by_hand_and_without_trains():
    net = conv_net()
    # one sample; only neuron (0, 0, 0) (a corner) of a fires, at both steps
    tr = np.zeros((1, 2, 2, 3, 3), np.uint8)
    tr[0, :, 0, 0, 0] = 1
    counts = {"a": np.array([2]), "b": np.array([0]), "o": np.array([0])}
    trains = {"a": tr, "b": np.zeros((1, 2, 2, 1, 1), np.uint8)}
    rep = build_report(net, RunCounts(counts, spike_trains=trains), energy_models=["horowitz45"])
    b = rep["layers"][1]
    # c2 is a 3x3 valid conv with groups=1 from (2,3,3) to (2,1,1): the corner (ky=kx=0) feeds
    # both outputs through tap (0, 0); weight of output 0 there is zero -> effective fan-out 1
    assert b["acs"] == 2 * 2 and b["eff_acs"] == 2 * 1 and b["ops_exact"]
    # without trains the conv's mean fan-out is used and the count is flagged
    rep2 = build_report(net, RunCounts(counts), energy_models=["horowitz45"])
    b2 = rep2["layers"][1]
    assert b2["acs"] == 2 * 2  # every source of c2 has fan-out 2 (valid conv onto 1x1)
    assert b2["eff_acs"] == pytest.approx(2 * (35 / 18))  # 17 taps x 2 + 1 over 18 sources
    assert not b2["ops_exact"] and b2["silent_fraction"] is None
    # inputs not given: every graded value counted, fan-out total 98 x T
    assert rep2["layers"][0]["macs"] == 98 * 2
    assert any("inputs not given" in n for n in rep2["notes"])


def test_missing_population_counts_is_an_error():
    net = dense_net()
    with pytest.raises(KdsnnError, match="no spike counts for population h"):
        build_report(net, RunCounts({"o": np.zeros(1)}))


# ------------------------------------------------------------------------------ mapping ---
def test_mapping_neurons_bind():
    net = IntNet(InputSpec((100,), 1.0), [pop("h", (2000,)), pop("o", (2,), readout=True)],
                 [dense("a", "input", "h", np.ones((2000, 100))), dense("b", "h", "o", np.ones((2, 2000)))], T=1)
    m = map_population(net, net.populations[0], target_limits())
    assert m["cores"] == 2 and m["binding_limit"] == "neurons" and m["fits"]


def test_mapping_synaptic_memory_binds():
    # fan-in 4096 at 8 bits = 32768 bits per neuron; 1 Mbit per core -> 32 neurons per core
    net = IntNet(InputSpec((4096,), 1.0), [pop("h", (100,)), pop("o", (1,), readout=True)],
                 [dense("a", "input", "h", np.ones((100, 4096))), dense("b", "h", "o", np.ones((1, 100)))], T=1)
    m = map_population(net, net.populations[0], target_limits())
    assert m["cores"] == 4 and m["binding_limit"] == "synaptic_memory" and m["fits"]
    assert m["synaptic_memory_bits"] == 100 * 4096 * 8


def test_mapping_fan_in_over_limit_does_not_fit():
    net = IntNet(InputSpec((5000,), 1.0), [pop("h", (10,)), pop("o", (1,), readout=True)],
                 [dense("a", "input", "h", np.ones((10, 5000))), dense("b", "h", "o", np.ones((1, 10)))], T=1)
    m = map_population(net, net.populations[0], target_limits())
    assert not m["fits"] and m["binding_limit"] == "fan_in" and m["fan_in_split"] == 2


def test_mapping_conv_input_axons_by_hand():
    # 1x4x5 input, 3x3 valid conv -> 1x2x3. Axon limit 12 per core, packing row-major:
    # (0,0) rows 0-2 x cols 0-2 = 9; (0,1) adds col 3 -> 12; (0,2) would need 15 -> new core:
    # (0,2) 9; (1,0) adds 7 -> 16 > 12 -> new core: (1,0) 9, (1,1) adds 3 -> 12;
    # (1,2) would need 15 -> new core. 4 cores, all closed by fan-in.
    net = IntNet(InputSpec((1, 4, 5), 1.0), [pop("a", (1, 2, 3)), pop("o", (1,), readout=True)],
                 [conv("c", "input", "a", np.ones((1, 1, 3, 3))), dense("d", "a", "o", np.ones((1, 6)))], T=1)
    lim = target_limits({"max_fan_in_per_core": 12})
    m = map_population(net, net.populations[0], lim)
    assert m["cores"] == 4 and m["binding_limit"] == "fan_in"
    assert m["closed_by"] == {"neurons": 0, "synaptic_memory": 0, "fan_in": 3}


def test_target_limits_from_targetspec():
    from kdsnn.compiler.targets import load_target

    lim = target_limits(load_target("loihi"))
    assert (lim["neurons_per_core"], lim["max_fan_in_per_core"], lim["cores_per_chip"]) == (1024, 4096, 128)
    assert lim["synaptic_memory_bits_per_core"] == 128 * 1024 * 8
    with pytest.raises(KdsnnError, match="must be positive"):
        target_limits({"neurons_per_core": 0})


# ------------------------------------------------------------------------------- energy ---
def test_builtin_energy_models():
    assert HOROWITZ45.snn_pj(acs=10, macs=2, active=0, idle=0) == pytest.approx(10 * 0.9 + 2 * 4.6)
    assert HOROWITZ45.ann_pj(100) == pytest.approx(460)
    assert LOIHI.snn_pj(acs=10, macs=2, active=3, idle=5) == pytest.approx(12 * 23.6 + 3 * 81 + 5 * 52)
    assert LOIHI.ann_pj(100) is None
    assert load_energy_model("loihi") is LOIHI


def test_user_energy_model_json_and_toml(tmp_path):
    p = tmp_path / "chip.json"
    p.write_text(json.dumps({"name": "chip", "version": "2", "e_ac_pj": 0.1, "e_mac_pj": 1.0}))
    m = load_energy_model(p)
    assert (m.name, m.version, m.count) == ("chip", "2", "effective")
    assert m.snn_pj(10, 1, 0, 0) == pytest.approx(2.0)
    t = tmp_path / "chip2.toml"
    t.write_text('e_synop_pj = 2.5\ncount = "all"\n')
    m2 = load_energy_model(t)
    assert m2.name == "chip2" and m2.snn_pj(1, 1, 0, 0) == pytest.approx(5.0)
    # a user model flows into the report
    rep = build_report(dense_net(), RunCounts({"h": np.array([2]), "o": np.array([0])}), energy_models=[p])
    assert set(rep["energy"]) == {"chip"}


@pytest.mark.parametrize("content,msg", [
    ('{"e_ac_pj": -1}', "non-negative"),
    ('{"e_ac_pj": 1, "bogus": 2}', "unknown field"),
    ('{"name": "x"}', "prices no event"),
    ("{not json", "not valid JSON"),
    ('{"e_ac_pj": 1, "count": "some"}', "count must be"),
])
def test_bad_energy_model_files(tmp_path, content, msg):
    p = tmp_path / "m.json"
    p.write_text(content)
    with pytest.raises(KdsnnError, match=msg):
        load_energy_model(p)
    with pytest.raises(KdsnnError, match="neither built in"):
        load_energy_model(tmp_path / "missing.json")


# ----------------------------------------------------------------------- float networks ---
def test_graphnet_profile_cnn_by_hand():
    from kdsnn.zoo import build

    m = build("cnn", spiking=False, num_classes=10, input_shape=(1, 28, 28))
    prof = graphnet_profile(m)
    # conv1 3x3 pad 1: 32 x 28 x 28 x 9; pool -> 14; conv2 stride 2: 64 x 7 x 7 x 32 x 9;
    # fc1 3136 x 128; fc2 128 x 10
    assert prof["macs"] == {"act1": 32 * 28 * 28 * 9, "act2": 64 * 7 * 7 * 32 * 9,
                            "act3": 3136 * 128, "readout": 1280}
    assert prof["total_params"] == sum(p.numel() for p in m.parameters())
    # conv1: 288 weights + BN 64 (no conv bias with BN); fc2: 1280 + 10
    assert prof["params"]["act1"] == 288 + 64 and prof["params"]["readout"] == 1290
    s = build("cnn", spiking=True, num_classes=10, input_shape=(1, 28, 28), T=4)
    assert graphnet_profile(s)["macs"] == prof["macs"]


def test_report_from_an_intsim_run_with_teacher_and_student():
    from kdsnn.backends.registry import get_backend
    from kdsnn.compiler.profile.build import report_from_run

    from kdsnn.zoo import build

    net = conv_net()
    x = np.random.default_rng(0).normal(size=(3, 1, 5, 5)).astype(np.float32)
    res = get_backend("intsim").compile(net).run(x, record=True)
    teacher = build("cnn", spiking=False, num_classes=2, input_shape=(1, 6, 6))
    student = build("cnn", spiking=True, num_classes=2, input_shape=(1, 6, 6), T=2)
    rep = report_from_run(net, res, x=x, teacher=teacher, student=student, meta={"accuracy": 0.5})
    tp = graphnet_profile(teacher)
    assert rep["totals"]["ann_macs"] == tp["total_macs"]
    assert rep["memory"]["ann_fp32_bytes"] == 4 * tp["total_params"]
    assert rep["meta"]["backend"] == "intsim" and rep["meta"]["accuracy"] == 0.5
    assert any("no population of the same name" in n for n in rep["notes"])
    counts = {k: float(v.mean()) for k, v in res.spike_counts.items()}
    assert [r["spikes"] for r in rep["layers"]] == [counts["a"], counts["b"], counts["o"]]
