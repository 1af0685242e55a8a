"""Rung 3 on a real (briefly trained) student: lowered accuracy tracks float, intsim is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from kdsnn.backends.intsim import IntSimBackend
from kdsnn.backends.intsim.rung3 import rung3
from kdsnn.backends.reference import ReferenceBackend
from kdsnn.compiler.export import student_to_nir
from kdsnn.compiler.lower import lower
from oracles.intsim_ref import run_scalar

from kdsnn.data import dataset_info, load_arrays
from kdsnn.zoo import build

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained():
    """A cnn student trained for 4 epochs on scikit-learn digits (~5 s on one core)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                                   # small tensors: threads only cost
    torch.manual_seed(0)
    info = dataset_info("digits")
    x, y = load_arrays("digits", "train")
    xt, yt = load_arrays("digits", "test")
    m = build("cnn", True, 10, tuple(info.input_shape), T=4, width=0.5)
    opt = torch.optim.AdamW(m.parameters(), 3e-3)
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        m.train()
        perm = torch.randperm(len(X), generator=g)
        for i in range(0, len(X), 64):
            idx = perm[i:i + 64]
            loss = torch.nn.functional.cross_entropy(m(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    m.eval()
    torch.set_num_threads(threads)
    cfg = {"kind": "student", "arch": "cnn", "T": 4, "dataset": "digits", "mean": list(info.mean),
           "std": list(info.std), "class_names": list(info.class_names), "num_classes": 10,
           "input_shape": list(info.input_shape)}
    return m, cfg, x, xt, yt


def test_trained_student_rung3_and_bit_exactness(trained) -> None:
    m, cfg, x, xt, yt = trained
    graph = student_to_nir(m, cfg)
    net = lower(graph, "loihi", x[:256])
    with torch.no_grad():
        fl = m(torch.from_numpy(xt)).numpy()
    r = IntSimBackend().compile(net).run(xt)
    ref = ReferenceBackend().compile(graph).run(xt)
    rep = rung3(fl, yt, r, ref)
    assert rep["accuracy_float"] > 0.9
    assert abs(rep["delta_points"]) <= 1.5, rep                # 360 samples: 1 sample = 0.28 points
    assert rep["prediction_agreement"] >= 0.97
    for name, lay in rep["layers"].items():
        if lay["spikes_float"] > 1000:
            assert 0.95 <= lay["ratio"] <= 1.05, (name, lay)
            assert lay["correlation"] > 0.8, (name, lay)
    assert all(v["u_wraps"] == 0 and v["v_clips"] == 0 for v in rep["overflow_events"].values())
    assert rep["overflow_events"]["readout"]["readout_spikes"] == 0
    # intsim == the scalar reference, bit for bit, on the samples checked
    idx = np.arange(0, len(xt), 60)
    s = run_scalar(net, xt[idx])
    np.testing.assert_array_equal(r.logits[idx], s["logits"])
    for p in net.populations:
        np.testing.assert_array_equal(r.spike_counts[p.name][idx], s["spikes"][p.name].sum(axis=(1, 2)))


def test_evaluate_deployed_clean_and_noisy(trained, tmp_path, capsys) -> None:
    """`kdsnn evaluate CKPT --target intsim --noise ...`: float and deployed rows, JSON out."""
    import json

    from kdsnn.checkpoint import save_checkpoint
    from kdsnn.errors import KdsnnError
    from kdsnn.evaluate_deployed import evaluate_deployed

    m, cfg, *_ = trained
    ckpt = save_checkpoint(tmp_path / "student.pt", {"config": {**cfg, "width": 0.5, "neuron": {}},
                                                     "model": m.state_dict()})
    res = evaluate_deployed(checkpoints=(str(ckpt),), noise=("gaussian:0.3",), samples=120,
                            calibration=64, as_json=True, output=str(tmp_path / "rob"), quiet=True)
    assert capsys.readouterr().out == ""           # the library prints nothing; the CLI prints the text
    from kdsnn.evaluate import evaluate_text

    printed = json.loads(evaluate_text(res, as_json=True))
    assert printed["target"] == "intsim" and res["conditions"] == ["clean", "gaussian:0.3"]
    labels = [mm["label"] for mm in res["models"]]
    assert any("(float)" in lb for lb in labels) and any("intsim loihi" in lb for lb in labels)
    f, i = res["models"]
    assert abs(f["accuracy"]["clean"] - i["accuracy"]["clean"]) <= 0.03
    assert (tmp_path / "rob" / "robustness.json").is_file()
    with pytest.raises(KdsnnError, match="unknown noise|noise"):
        evaluate_deployed(checkpoints=(str(ckpt),), noise=("fog:0.1",))
