"""Strict import of foreign NIR graphs: snnTorch and Sinabs conventions, refusals, bad files.

Graphs are built with `nir` directly in the shapes those exporters write (snnTorch:
`_extract_snntorch_module` + nirtorch's `extract_nir_graph`: batch dim kept in Input and
Output, scalar neuron parameters, LIF with tau = dt/(1-beta), r = tau/dt, so beta = 1 gives
tau = r = inf; Flatten start_dim shifted to batch-free; Conv2d input_shape None. Sinabs:
IF with r = ones(layer), threshold broadcast, SumPool2d, Affine with a zero bias, older
Flatten with a batched dummy input_type (0, 0, 0, 0) and start_dim = 1).
"""

from __future__ import annotations

import h5py
import nir
import numpy as np
import pytest
import torch
from kdsnn.backends.reference import ReferenceBackend
from kdsnn.compiler.nir.canonicalize import canonicalize
from kdsnn.compiler.nir.meta import graph_meta
from kdsnn.compiler.nir.read import read_nir
from kdsnn.compiler.nir.write import write_nir
from nir_files import write_foreign

from kdsnn.errors import KdsnnError

torch.set_num_threads(1)
RNG = np.random.default_rng(0)
INF = np.float32(np.inf)


def w(*shape, scale=0.5):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def snntorch_lif(beta=1.0, thr=1.0, dt=1e-4):
    """What snnTorch's exporter writes for snn.Leaky(beta, threshold): 0-d parameters."""
    beta = np.asarray(beta, dtype=np.float32)
    with np.errstate(divide="ignore"):
        tau = np.asarray(dt / (1 - beta), dtype=np.float32)
    return nir.LIF(tau=tau, v_threshold=np.asarray(thr, np.float32), v_leak=np.zeros_like(beta),
                   r=np.asarray(tau / dt, np.float32), v_reset=np.zeros_like(beta))


def snntorch_mlp(beta=1.0):
    nodes = {
        "input": nir.Input(input_type={"input": np.array([1, 1, 8, 8])}),
        "0": nir.Flatten(input_type={"input": np.array([1, 8, 8])}, start_dim=0, end_dim=-1),
        "1": nir.Affine(weight=w(20, 64), bias=w(20)),
        "2": snntorch_lif(beta),
        "3": nir.Affine(weight=w(10, 20), bias=w(10)),
        "4": snntorch_lif(beta),
        "output": nir.Output(output_type={"output": np.array([1, 10])}),
    }
    edges = [("input", "0"), ("0", "1"), ("1", "2"), ("2", "3"), ("3", "4"), ("4", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={}, type_check=False)


def sinabs_cnn(old_flatten=True):
    sh = (4, 8, 8)
    flat = (nir.Flatten(input_type={"input": np.array([0, 0, 0, 0])}, start_dim=1, end_dim=-1)
            if old_flatten else nir.Flatten(input_type=None, start_dim=0, end_dim=-1))
    nodes = {
        "input": nir.Input(input_type={"input": np.array([1, 8, 8])}),
        "conv": nir.Conv2d(input_shape=None, weight=w(4, 1, 3, 3), stride=1, padding=1, dilation=1,
                           groups=1, bias=np.zeros(4, np.float32)),
        "iaf1": nir.IF(r=np.ones(sh, np.float32), v_threshold=np.full(sh, 0.8, np.float32)),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "flat": flat,
        "fc": nir.Affine(weight=w(10, 64), bias=np.zeros(10, np.float32)),
        "output": nir.Output(output_type={"output": np.array([10])}),
    }
    edges = [("input", "conv"), ("conv", "iaf1"), ("iaf1", "pool"), ("pool", "flat"), ("flat", "fc"),
             ("fc", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={}, type_check=False)


def roundtrip(graph, tmp_path, name="g.nir"):
    """Write the graph as the foreign framework would and read it with kdsnn."""
    p = tmp_path / name
    write_foreign(p, graph)
    return read_nir(p)


# ------------------------------------------------------------------------------ accepted
def test_snntorch_if_network_imports_and_matches_snntorch(tmp_path):
    snn = pytest.importorskip("snntorch")
    g = snntorch_mlp()
    c = roundtrip(g, tmp_path)
    types = {k: type(v).__name__ for k, v in c.nodes.items()}
    assert types["2"] == types["4"] == "IF" and types["readout"] == "I" and types["readout_fc"] == "Linear"
    assert tuple(c.nodes["input"].input_type["input"]) == (1, 8, 8)
    assert any("batch" in n for n in c.metadata["import_notes"])
    # the same network in snnTorch (beta=1, hard reset to zero in the same step)
    fc1, fc2 = torch.nn.Linear(64, 20), torch.nn.Linear(20, 10)
    with torch.no_grad():
        for fc, k in ((fc1, "1"), (fc2, "3")):
            fc.weight.copy_(torch.from_numpy(g.nodes[k].weight))
            fc.bias.copy_(torch.from_numpy(g.nodes[k].bias))
    l1 = snn.Leaky(beta=1.0, reset_mechanism="zero", reset_delay=False)
    l2 = snn.Leaky(beta=1.0, reset_mechanism="zero", reset_delay=False)
    x = torch.from_numpy(RNG.standard_normal((16, 1, 8, 8)).astype(np.float32)) * 2
    T = 5
    m1, m2 = l1.init_leaky(), l2.init_leaky()
    count = torch.zeros(16, 10)
    with torch.no_grad():
        for _ in range(T):
            s1, m1 = l1(fc1(x.flatten(1)), m1)
            s2, m2 = l2(fc2(s1), m2)
            count += s2
    res = ReferenceBackend().compile(c, T=T, dtype="float32").run(x.numpy())
    assert count.sum() > 0
    np.testing.assert_allclose(res.logits, count.numpy() / T, atol=1e-6)


def test_sinabs_cnn_imports_with_old_batched_flatten(tmp_path):
    for old in (True, False):
        g = sinabs_cnn(old)
        c = roundtrip(g, tmp_path, f"s{old}.nir")
        assert tuple(c.nodes["conv"].input_shape) == (8, 8)
        assert isinstance(c.nodes["readout"], nir.I)
        assert c.nodes["flat"].start_dim == 0 and c.nodes["flat"].end_dim == 2
        assert np.all(c.nodes["iaf1"].v_threshold == np.float32(0.8))
    x = RNG.standard_normal((5, 1, 8, 8))
    res = ReferenceBackend().compile(c, T=3).run(x)
    # by hand: conv -> IF(0.8) -> 2x2 sum pool -> fc, logits = mean over steps
    y = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(g.nodes["conv"].weight).double(), padding=1)
    v, acc = torch.zeros_like(y), 0
    for _ in range(3):
        v = v + y
        s = (v > np.float32(0.8)).double()
        v = v * (1 - s)
        p = torch.nn.functional.avg_pool2d(s, 2) * 4
        acc = acc + p.flatten(1) @ torch.from_numpy(g.nodes["fc"].weight).double().T
    np.testing.assert_allclose(res.logits, (acc / 3).numpy(), atol=1e-9)


def test_if_gain_r_is_folded_into_threshold():
    """r != 1 is continuous (gain dt*r): SpikingJelly's r = 1/dt is unit gain; r = 2/dt is 2."""
    g = sinabs_cnn(False)
    g.nodes["iaf1"] = nir.IF(r=np.full((4, 8, 8), 2e4), v_threshold=np.full((4, 8, 8), 1.6))
    g.metadata = {"dt": 1e-4}
    c = canonicalize(g)
    assert np.all(c.nodes["iaf1"].r == 1) and np.allclose(c.nodes["iaf1"].v_threshold, 0.8)
    g.nodes["iaf1"] = nir.IF(r=np.full((4, 8, 8), 1e4), v_threshold=np.full((4, 8, 8), 1.6))
    assert np.allclose(canonicalize(g).nodes["iaf1"].v_threshold, 1.6)
    g.metadata = {}
    refuse(g, r"node 'iaf1': r=10000 integrates continuously.*does not state dt; pass --dt.*SpikingJelly")


def test_readout_gain_is_folded_into_weights():
    g = sinabs_cnn(False)
    g.nodes["li"] = nir.I(r=np.full(10, 0.5))
    g.edges = [e for e in g.edges if e != ("fc", "output")] + [("fc", "li"), ("li", "output")]
    g.metadata = {"dt": 1.0}
    before = g.nodes["fc"].weight.copy()
    c = canonicalize(g)
    assert np.all(c.nodes["li"].r == 1) and np.allclose(c.nodes["fc"].weight, before * 0.5)


def test_nested_subgraph_is_inlined(tmp_path):
    inner = nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([20])}),
        "lif": snntorch_lif(),
        "output": nir.Output(output_type={"output": np.array([20])})},
        edges=[("input", "lif"), ("lif", "output")], type_check=False)
    g = snntorch_mlp()
    g.nodes["2"] = inner
    c = roundtrip(g, tmp_path)
    assert isinstance(c.nodes["2.lif"], nir.IF) and ("1", "2.lif") in c.edges and ("2.lif", "3") in c.edges


def test_cubalif_with_memoryless_synapse_needs_dt(tmp_path):
    def graph(md):
        g = snntorch_mlp()
        dt = 1e-4  # snnTorch Synaptic(alpha=0, beta=1): tau_syn = dt, w_in = 1, tau_mem = r = inf
        g.nodes["2"] = nir.CubaLIF(tau_syn=np.float32(dt), tau_mem=INF, r=INF, v_leak=np.float32(0),
                                   v_threshold=np.float32(1), w_in=np.float32(1))
        g.metadata = md
        return g
    assert isinstance(canonicalize(graph({"dt": np.float32(1e-4)})).nodes["2"], nir.IF)
    assert isinstance(canonicalize(graph({}), dt=1e-4).nodes["2"], nir.IF)
    with pytest.raises(KdsnnError, match="'2'.*tau_syn=0.0001 s is a time constant.*does not state dt"):
        canonicalize(graph({}))
    with pytest.raises(KdsnnError, match="states dt=0.0001 s but --dt 0.001"):
        canonicalize(graph({"dt": 1e-4}), dt=1e-3)


def test_graph_meta_T_required_or_overridden():
    c = canonicalize(sinabs_cnn())
    with pytest.raises(KdsnnError, match="time-steps"):
        graph_meta(c)
    assert graph_meta(c, T=7)["T"] == 7 and graph_meta(c, T=7)["num_classes"] == 10


# ------------------------------------------------------------------------------ refused
def refuse(g, match, **kw):
    with pytest.raises(KdsnnError, match=match):
        canonicalize(g, **kw)


def test_leaky_neurons_need_dt_and_are_kept():
    refuse(snntorch_mlp(beta=0.9), r"node '2'.*tau=0.001 s is a time constant.*--dt SECONDS \(snnTorch")
    c = canonicalize(snntorch_mlp(beta=0.9), dt=1e-4)
    assert isinstance(c.nodes["2"], nir.LIF) and c.nodes["2"].tau.shape == (20,)
    assert c.metadata["dt"] == 1e-4 and c.metadata["reset_modes"] == {"2": "zero", "4": "zero"}
    g = sinabs_cnn()  # Sinabs LIF: tau in steps, r = 1
    g.nodes["iaf1"] = nir.LIF(tau=np.full((4, 8, 8), 20.0), r=np.ones((4, 8, 8)), v_leak=np.zeros((4, 8, 8)),
                              v_threshold=np.ones((4, 8, 8)))
    refuse(g, "node 'iaf1'.*tau=20 s is a time constant")
    assert isinstance(canonicalize(g, dt=1.0).nodes["iaf1"], nir.LIF)
    g = snntorch_mlp()
    g.nodes["2"] = nir.LIF(tau=INF, r=np.float32(1), v_leak=np.float32(0), v_threshold=np.float32(1))
    refuse(g, "node '2'.*never integrates")
    g = sinabs_cnn()  # Sinabs ExpLeak readout
    g.nodes["li"] = nir.LI(tau=np.full(10, 10.0), r=np.ones(10), v_leak=np.zeros(10))
    g.edges = [e for e in g.edges if e != ("fc", "output")] + [("fc", "li"), ("li", "output")]
    refuse(g, "node 'li'.*tau=10 s is a time constant")
    assert isinstance(canonicalize(g, dt=1.0).nodes["li"], nir.LI)
    g.nodes["li"] = nir.LI(tau=np.full(10, 0.5), r=np.ones(10), v_leak=np.zeros(10))
    refuse(g, "node 'li'.*exceeds a time constant.*smaller --dt", dt=1.0)


def test_reset_and_threshold_conventions_are_refused():
    g = sinabs_cnn()
    g.nodes["iaf1"] = nir.IF(r=np.ones((4, 8, 8)), v_threshold=np.ones((4, 8, 8)), v_reset=np.full((4, 8, 8), -1.0))
    assert np.all(canonicalize(g).nodes["iaf1"].v_reset == -1)   # the float side resets to it
    th = np.ones((4, 8, 8))
    th[0] = 2
    g.nodes["iaf1"] = nir.IF(r=np.ones((4, 8, 8)), v_threshold=th)
    refuse(g, "node 'iaf1'.*per-neuron thresholds differ")
    g.nodes["iaf1"] = nir.IF(r=np.ones((4, 8, 8)), v_threshold=np.zeros((4, 8, 8)))
    refuse(g, "node 'iaf1'.*threshold 0")
    g.nodes["iaf1"] = nir.IF(r=np.ones((3, 8, 8)), v_threshold=np.ones((3, 8, 8)))
    refuse(g, "node 'iaf1'.*shape")


def test_structure_errors():
    g = sinabs_cnn()
    g.edges.append(("fc", "nowhere"))
    refuse(g, "dangling edge")
    g = sinabs_cnn()
    g.nodes["fc"] = nir.Affine(weight=w(64, 64), bias=w(64))
    g.nodes["fc_out"] = nir.Affine(weight=w(10, 64), bias=w(10))
    g.nodes["fc_back"] = nir.Linear(weight=w(64, 64))
    g.edges = [e for e in g.edges if e != ("fc", "output")] + [("fc", "fc_back"), ("fc_back", "fc"),
                                                               ("fc", "fc_out"), ("fc_out", "output")]
    refuse(g, r"cycle through fc -> fc_back -> fc with no neuron")   # only the nodes on the cycle
    g = sinabs_cnn()
    g.nodes["fc"] = nir.Affine(weight=w(10, 63), bias=w(10))
    refuse(g, r"node 'fc'.*expects input shape \(63,\)")
    g = sinabs_cnn()
    g.nodes["output"] = nir.Output(output_type={"output": np.array([11])})
    refuse(g, "node 'output'.*declares shape")
    g = sinabs_cnn()
    g.nodes["out2"] = nir.Output(output_type={"output": np.array([10])})
    g.edges.append(("fc", "out2"))
    refuse(g, "2 Output nodes")
    g = sinabs_cnn()
    g.nodes["pool"] = nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([1, 1]))
    refuse(g, "node 'pool'.*padding")
    g = sinabs_cnn()
    g.nodes["extra"] = nir.Affine(weight=w(10, 64), bias=w(10))
    g.edges.append(("flat", "extra"))
    refuse(g, "node 'extra'.*no outgoing edge")


def test_recurrent_subgraph_is_read(tmp_path):
    """snnTorch's RLeaky exports an LIF <-> Linear cycle inside a subgraph: the edge that
    closes it (w_rec -> lif) carries a one-step delay."""
    sub = nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([20])}),
        "lif": nir.LIF(tau=np.full(20, INF), r=np.full(20, INF), v_leak=np.zeros(20), v_threshold=np.ones(20)),
        "w_rec": nir.Linear(weight=w(20, 20)),
        "output": nir.Output(output_type={"output": np.array([20])})},
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")], type_check=False)
    g = snntorch_mlp()
    g.nodes["2"] = sub
    c = roundtrip(g, tmp_path)
    assert ("2.w_rec", "2.lif") in c.edges and isinstance(c.nodes["2.lif"], nir.IF)


def test_unsupported_node_named_in_file(tmp_path):
    g = sinabs_cnn()
    g.nodes["scale"] = nir.Scale(scale=np.ones(10))
    g.edges = [e for e in g.edges if e != ("fc", "output")] + [("fc", "scale"), ("scale", "output")]
    p = tmp_path / "d.nir"
    write_foreign(p, g)
    with pytest.raises(KdsnnError, match="node 'scale' is a Scale.*Scale is not supported"):
        read_nir(p)


def test_delays_in_whole_steps(tmp_path):
    g = sinabs_cnn()
    g.nodes["delay"] = nir.Delay(delay=np.full(10, 2e-3))
    g.edges = [e for e in g.edges if e != ("fc", "output")] + [("fc", "delay"), ("delay", "output")]
    p = tmp_path / "d.nir"
    write_foreign(p, g)
    with pytest.raises(KdsnnError, match="node 'delay': a Delay is given in seconds.*--dt"):
        read_nir(p)
    assert isinstance(read_nir(p, dt=1e-3).nodes["delay"], nir.Delay)
    with pytest.raises(KdsnnError, match="node 'delay': Delay 0.002 s is not a whole number of steps"):
        read_nir(p, dt=3e-4)


def test_bad_files(tmp_path):
    good = tmp_path / "good.nir"
    write_nir(canonicalize(sinabs_cnn()), good)
    assert read_nir(good)
    with pytest.raises(KdsnnError, match="does not exist"):
        read_nir(tmp_path / "missing.nir")
    (tmp_path / "text.nir").write_text("not a nir file")
    with pytest.raises(KdsnnError, match="not HDF5"):
        read_nir(tmp_path / "text.nir")
    trunc = tmp_path / "trunc.nir"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(KdsnnError, match="trunc.nir"):
        read_nir(trunc)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("x", data=np.arange(3))
    with pytest.raises(KdsnnError, match="not a NIR graph"):
        read_nir(tmp_path / "other.h5")


def test_metadata_survives_write(tmp_path):
    g = canonicalize(sinabs_cnn())
    g.metadata.update({"T": 6, "class_names": ["a", "b"], "mean": [0.5], "dataset": "digits"})
    back = read_nir(write_nir(g, tmp_path / "m.nir"))
    m = graph_meta(back)
    assert (m["T"], m["class_names"], m["mean"], m["dataset"]) == (6, ["a", "b"], [0.5], "digits")
    assert back.metadata["import_notes"]
