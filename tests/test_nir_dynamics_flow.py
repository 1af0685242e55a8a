"""Foreign graphs end to end on the float side: --dt, --reset, --input, --expect (rung 0)
with snnTorch's real exporter, N-MNIST files in the real format, and the issue's defects."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from kdsnn.backends.reference import ReferenceBackend
from kdsnn.compiler.nir.canonicalize import canonicalize
from kdsnn.compiler.nir.read import read_nir
from nir_files import write_foreign
from nmnist_files import write_events

import kdsnn.deploy as flow
from kdsnn import nmnist
from kdsnn.errors import KdsnnError, ParityError
from kdsnn.inputs import fit_input, load_npz_inputs

torch.set_num_threads(1)
RNG = np.random.default_rng(3)


def opts(source, out, **kw):
    base = {"source": str(source), "target": "reference", "output": str(out), "calibration": 8,
            "batch_size": 8, "quiet": True}
    return {**base, **kw}


def if_mlp(input_name="input", r=1.0, n_in=12, shape=None, n_out=3):
    shape = shape or (n_in,)
    nodes = {input_name: nir.Input(input_type={"input": np.array(shape)}),
             "fc1": nir.Affine(weight=RNG.normal(0, 0.8, (16, n_in)), bias=np.zeros(16)),
             "if1": nir.IF(r=np.full(16, r), v_threshold=np.ones(16)),
             "fc2": nir.Affine(weight=RNG.normal(0, 0.8, (n_out, 16)), bias=np.zeros(n_out)),
             "output": nir.Output(output_type={"output": np.array([n_out])})}
    edges = [(input_name, "fc1"), ("fc1", "if1"), ("if1", "fc2"), ("fc2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={}, type_check=False)


# ------------------------------------------------------------------------------ the six defects
def test_spikingjelly_r_is_one_over_dt(tmp_path):
    """IF r = 1/dt (SpikingJelly) is unit gain, not a 1e4 times lower threshold."""
    g = read_nir(write_foreign(tmp_path / "sj.nir", if_mlp("input_1", r=1e4)), dt=1e-4)
    assert np.allclose(g.nodes["if1"].v_threshold, 1.0)
    with pytest.raises(KdsnnError, match=r"node 'if1'.*r=10000.*pass --dt.*SpikingJelly write graphs for dt = 1e-4"):
        read_nir(tmp_path / "sj.nir")


def test_old_nir_without_v_reset_needs_reset(tmp_path):
    p = write_foreign(tmp_path / "old.nir", if_mlp(), version="0.2.0", drop=("v_reset",))
    with pytest.raises(KdsnnError, match=r"node 'if1': IF without v_reset.*nir 0\.2\.0.*--reset zero or --reset subtract"):
        read_nir(p)
    g = read_nir(p, reset="subtract")
    assert g.metadata["reset_modes"] == {"if1": "subtract"}
    x = RNG.normal(1.0, 1.0, (5, 12))
    sub = ReferenceBackend().compile(g, T=6).run(x)
    zero = ReferenceBackend().compile(read_nir(p, reset="zero"), T=6).run(x)
    assert sub.spike_counts["if1"].sum() > zero.spike_counts["if1"].sum()   # subtract keeps the excess
    p2 = write_foreign(tmp_path / "new.nir", if_mlp(), drop=("v_reset",))   # nir >= 1.0.6: v_reset = 0
    assert read_nir(p2).metadata["reset_modes"] == {"if1": "zero"}


def test_input_node_of_any_name_lowers(tmp_path):
    """SpikingJelly names its Input `input_1`: it used to be a KeyError in calibration."""
    from kdsnn.compiler.lower import lower
    from kdsnn.compiler.targets import load_target

    g = read_nir(write_foreign(tmp_path / "g.nir", if_mlp("input_1")))
    assert "input" in g.nodes and "input_1" not in g.nodes
    g.metadata["T"] = 4
    net = lower(g, load_target("loihi"), RNG.normal(0, 1, (8, 12)), T=4)
    assert net.populations


def test_flat_input_against_image_dataset(tmp_path):
    """A flat (64,) Input runs on the 1x8x8 `digits` images (C-order flatten, said in the notes)."""
    p = write_foreign(tmp_path / "flat.nir", if_mlp(n_in=64, shape=(1, 64), n_out=10))
    ctx = flow.export_command(**opts(p, tmp_path / "out", dataset="digits", time_steps=3, samples=10))
    assert ctx.samples.x.shape == (10, 64)
    assert "C order" in ctx.samples.note
    assert ctx.rung(2).passed


def test_several_inputs_refused():
    g = if_mlp()
    g.nodes["input2"] = nir.Input(input_type={"input": np.array([12])})
    g.edges.append(("input2", "fc1"))
    with pytest.raises(KdsnnError, match=r"2 Input nodes \(input, input2\)"):
        canonicalize(g)


def test_cycle_error_names_only_the_cycle(tmp_path):
    """A loop of synapses alone (fc2 <-> fc3) is refused naming that loop, not the nodes
    before it (input, fc1, if1 used to be listed)."""
    g = if_mlp()
    g.nodes["fc3"] = nir.Linear(weight=RNG.normal(0, 0.1, (16, 3)))
    g.nodes["fc2"] = nir.Affine(weight=RNG.normal(0, 0.8, (3, 16)), bias=np.zeros(3))
    g.edges += [("fc2", "fc3"), ("fc3", "fc2")]
    with pytest.raises(KdsnnError, match=r"cycle through (fc2 -> fc3 -> fc2|fc3 -> fc2 -> fc3) with no neuron") as e:
        read_nir(write_foreign(tmp_path / "loop.nir", g))
    assert not any(k in str(e.value).split("cycle through")[1].split("with no")[0] for k in ("input", "fc1", "if1"))


def test_subgraph_files_with_dangling_edges_refused():
    for f in ("braille_noDelay_bias_zero_subgraph.nir", "braille_noDelay_noBias_subtract_subgraph.nir"):
        with pytest.raises(KdsnnError, match=r"edge 'lif1.lif' -> 'lif1.lin'.*does not exist"):
            read_nir(f"/work/shared/nir-paper/03_rnn/extras/{f}")


# ------------------------------------------------------------------------------ inputs
def test_npz_inputs_and_shapes(tmp_path):
    x = np.zeros((4, 5, 2, 3), np.float32)
    np.savez(tmp_path / "a.npz", x=x)
    got, y = load_npz_inputs(tmp_path / "a.npz")
    assert got.shape == x.shape and y is None
    assert fit_input(got, (2, 3), 5)[1] is True
    assert fit_input(got, (6,), 5)[0].shape == (4, 5, 6)
    with pytest.raises(KdsnnError, match="have 5 steps but the run has T=7"):
        fit_input(got, (2, 3), 7)
    np.savez(tmp_path / "b.npz", z=x)
    with pytest.raises(KdsnnError, match="no array 'x'"):
        load_npz_inputs(tmp_path / "b.npz")
    (tmp_path / "c.npz").write_bytes(b"not a zip")
    with pytest.raises(KdsnnError, match="not a readable .npz"):
        load_npz_inputs(tmp_path / "c.npz")


def test_nmnist_real_format_roundtrip(tmp_path):
    """Events written in the dataset's 40-bit format are read back and binned by tonic."""
    for digit in (0, 1):
        d = tmp_path / "NMNIST" / "Test" / str(digit)
        d.mkdir(parents=True)
        for k in range(2):
            n = 300
            xs, ys = RNG.integers(0, 34, n), RNG.integers(0, 34, n)
            ts, ps = np.sort(RNG.integers(0, 300_000, n)), RNG.integers(0, 2, n)
            write_events(d / f"{k:05d}.bin", xs, ys, ts, ps)
    ev = nmnist.read_events(tmp_path / "NMNIST" / "Test" / "0" / "00000.bin")
    assert len(ev) == 300 and ev["x"].max() < 34 and set(np.unique(ev["p"])) <= {0, 1}
    x, y = nmnist.load(tmp_path, "test", None, 10)
    assert x.shape == (4, 10, 2, 34, 34) and y.tolist() == [0, 1, 0, 1]
    # every event lands in one frame (tonic's time bins leave out the events at the last timestamp)
    assert all(299 <= c <= 300 for c in x.sum(axis=(1, 2, 3, 4)).tolist())
    with pytest.raises(KdsnnError, match="no N-MNIST Train folder"):
        nmnist.load(tmp_path, "train", 2, 10)


# ------------------------------------------------------------------------------ snnTorch, rung 0
def _snntorch_net(beta, reset="zero"):
    import snntorch as snn

    torch.manual_seed(0)
    n = 10   # vector beta and threshold: snnTorch's scalar ones fail nir 1.0.8's shape checks
    net = torch.nn.Sequential(
        torch.nn.Linear(12, n), snn.Leaky(beta=torch.full((n,), beta), threshold=torch.ones(n), init_hidden=True,
                                          reset_mechanism=reset),
        torch.nn.Linear(n, 3), snn.Leaky(beta=torch.full((3,), beta), threshold=torch.ones(3), init_hidden=True,
                                         output=True, reset_mechanism=reset))
    with torch.no_grad():
        for m in net:
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(3.0)
    return net


def _snntorch_run(net, x):
    import snntorch.utils

    out = []
    with torch.no_grad():
        for n in range(len(x)):
            snntorch.utils.reset(net)
            out.append(torch.stack([net(torch.tensor(x[n, t][None]))[0][0] for t in range(x.shape[1])]))
    return torch.stack(out).numpy()


@pytest.mark.parametrize("beta", [0.8, 1.0])
def test_snntorch_export_matches_reference_exactly(tmp_path, beta):
    """snnTorch's own exporter and simulator (Leaky, reset to zero) == kdsnn's reference,
    spike for spike, via `kdsnn export --input --expect` (rung 0)."""
    from snntorch.export_nir import export_to_nir

    net = _snntorch_net(beta)
    x = (RNG.random((6, 20, 12)) < 0.3).astype(np.float32) * 2.0
    spikes = _snntorch_run(net, x)
    g = export_to_nir(net, torch.zeros(12))
    p = tmp_path / "snn.nir"
    nir.write(p, g)
    np.savez(tmp_path / "x.npz", x=x)
    np.savez(tmp_path / "peer.npz", output_spikes=spikes)
    ctx = flow.export_command(**opts(p, tmp_path / "out", dt=1e-4, input=str(tmp_path / "x.npz"),
                                     expect=str(tmp_path / "peer.npz")))
    r0 = ctx.rung(0)
    assert r0.passed and r0.details["argmax_agreement"] == 1.0
    o = r0.details["output_spikes"]
    assert o["equal_fraction"] == 1.0 and o["peer_spikes"] > 0
    bad = np.zeros_like(spikes)   # a peer that picks another class fails rung 0
    bad[np.arange(len(x)), :, (spikes.sum(1).argmax(1) + 1) % 3] = 1
    np.savez(tmp_path / "bad.npz", output_spikes=bad)
    with pytest.raises(ParityError, match="rung 0 failed"):
        flow.export_command(**opts(p, tmp_path / "out2", dt=1e-4, input=str(tmp_path / "x.npz"),
                                   expect=str(tmp_path / "bad.npz")))


def test_snntorch_subtract_reset_differs_by_its_timing(tmp_path):
    """snnTorch subtracts the threshold after the next decay (v = beta v + x - thr s[t-1]);
    NIR, Lava and kdsnn subtract at the spike, before the decay: measured, not hidden."""
    from snntorch.export_nir import export_to_nir

    net = _snntorch_net(0.8, reset="subtract")
    x = (RNG.random((6, 30, 12)) < 0.4).astype(np.float32) * 2.0
    spikes = _snntorch_run(net, x)
    nir.write(tmp_path / "s.nir", export_to_nir(net, torch.zeros(12)))
    g = read_nir(tmp_path / "s.nir", dt=1e-4, reset="subtract")
    assert any("overrides the stated v_reset=0" in n for n in g.metadata["import_notes"])
    ours = ReferenceBackend().compile(g, T=30).run(x, record=True)
    name = [k for k in ours.spike_trains if ours.spike_trains[k].shape[-1] == 3][0]
    assert ours.spike_trains[name].sum() >= spikes.sum()   # earlier subtraction of less decayed charge
