"""`kdsnn export --target reference` and `kdsnn run --target reference`, end to end on
the offline `digits` dataset with a small random student (non-trivial BatchNorm)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
from kdsnn.backends.base import RunResult
from kdsnn.compiler.nir.meta import graph_meta
from kdsnn.compiler.nir.read import read_nir
from kdsnn.compiler.nir.write import write_nir

import kdsnn.deploy as flow
import kdsnn.rerun as rerun
from kdsnn.checkpoint import save_checkpoint
from kdsnn.data import dataset_info
from kdsnn.errors import KdsnnError, ParityError
from kdsnn.zoo import build

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def make_checkpoint(path: Path, kind: str = "student", T: int = 3) -> Path:
    info = dataset_info("digits")
    torch.manual_seed(0)
    m = build("cnn", kind == "student", info.num_classes, info.input_shape, T=T, width=0.25)
    g = torch.Generator().manual_seed(0)
    for mod in m.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            n = mod.num_features
            mod.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
            mod.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.2)
            mod.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            mod.bias.data.copy_(torch.randn(n, generator=g) * 0.3 + 0.5)
    cfg = {"kind": kind, "arch": "cnn", "width": 0.25, "num_classes": info.num_classes,
           "input_shape": list(info.input_shape), "T": T,
           "neuron": {"theta": 1.0, "surrogate": "sigmoid", "slope": 4.0}, "dataset": "digits",
           "mean": list(info.mean), "std": list(info.std), "class_names": list(info.class_names),
           "kd": "none", "kdsnn_version": "0.1.0"}
    return save_checkpoint(path, {"config": cfg, "model": m.state_dict(), "connectors": None, "epoch": 0,
                                  "metrics": {}, "best_acc": 0.0})


def opts(source, out, **kw):
    base = {"source": str(source), "target": "reference", "output": str(out), "samples": 40, "calibration": 16,
            "dataset": None, "data_dir": None, "download": False, "time_steps": None, "hw": "loihi",
            "batch_size": 16, "device": "cpu", "seed": 0, "quiet": True}
    return {**base, **kw}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "student.pt")


def test_export_nir_writes_graph_and_parity(ckpt, tmp_path, capsys):
    out = tmp_path / "exp"
    ctx = flow.export_command(**opts(ckpt, out))
    assert capsys.readouterr().out == ""  # quiet: the library prints nothing
    printed = "\n".join(ctx.summary_lines())
    assert "graph.nir: 12 nodes" in printed and "rung 2" in printed and "PASS" in printed
    par = json.loads((out / "parity.json").read_text())
    assert par["passed"] and par["samples"] == 40 and par["T"] == 3 and par["dataset"] == "digits"
    r1, r2 = par["rungs"]
    assert r1["rung"] == 1 and r2["rung"] == 2 and r2["same_predictions"] and r2["passed"]
    assert r2["max_abs_logit_diff"] <= 1e-4 and r2["accuracy"] == r1["accuracy"]
    assert r2["spikes"]["equal"] and r2["spikes"]["layers_compared"] == 3
    assert sum(r2["spikes_per_sample"].values()) > 0
    g = read_nir(out / "graph.nir")
    meta = graph_meta(g)
    assert meta["T"] == 3 and meta["dataset"] == "digits" and meta["class_names"][0] == "0"
    with np.load(out / "predictions.npz") as z:
        assert z["labels"].shape == (40,) and z["reference/logits"].shape == (40, 10)
        np.testing.assert_array_equal(z["reference/predictions"], z["rung1/predictions"])
    assert ctx.rung(2)["passed"]


def test_export_reference_with_T_override_then_run(ckpt, tmp_path, capsys):
    out = tmp_path / "ref"
    flow.export_command(**opts(ckpt, out, target="reference", time_steps=2, samples=24))
    assert json.loads((out / "parity.json").read_text())["T"] == 2
    capsys.readouterr()
    ctx = rerun.run_command(artifact=str(out), target="reference", samples=24, data_dir=None, batch_size=8,
                           seed=0, quiet=True, dataset=None, time_steps=None, device="cpu")
    assert capsys.readouterr().out == ""
    printed = "\n".join(ctx.summary_lines())
    assert "reference on digits (first 24 test samples, T=2): accuracy" in printed and "act1" in printed
    with np.load(out / "predictions.npz") as z:
        np.testing.assert_array_equal(ctx.results["reference"].logits, z["reference/logits"])


def test_foreign_nir_source_needs_T_and_dataset(ckpt, tmp_path):
    g = read_nir(flow.export_command(**opts(ckpt, tmp_path / "a")).graph_path)
    g.metadata = {}  # what a foreign framework writes: no T, no dataset
    src = write_nir(g, tmp_path / "foreign.nir")
    with pytest.raises(KdsnnError, match="time-steps"):
        flow.export_command(**opts(src, tmp_path / "b"))
    with pytest.raises(KdsnnError, match="--dataset"):
        flow.export_command(**opts(src, tmp_path / "b", time_steps=3))
    ctx = flow.export_command(**opts(src, tmp_path / "b", time_steps=3, dataset="digits"))
    assert ctx.rung(2)["passed"] and "source graph" in ctx.rung(1)["name"]
    meta = graph_meta(read_nir(tmp_path / "b" / "graph.nir"))
    assert meta["T"] == 3 and meta["dataset"] == "digits" and meta["mean"] == list(dataset_info("digits").mean)


def test_bad_inputs(ckpt, tmp_path):
    teacher = make_checkpoint(tmp_path / "teacher.pt", kind="teacher")
    with pytest.raises(KdsnnError, match="teacher checkpoint"):
        flow.export_command(**opts(teacher, tmp_path / "t"))
    with pytest.raises(KdsnnError, match=r"dataset mnist5k has inputs of shape \(1, 28, 28\)"):
        flow.export_command(**opts(ckpt, tmp_path / "m", dataset="mnist5k"))
    with pytest.raises(KdsnnError, match="unknown backend 'foo'.*kdsnn targets"):
        flow.export_command(**opts(ckpt, tmp_path / "f", target="foo"))
    with pytest.raises(KdsnnError, match="--target nir was removed.*--target reference"):
        flow.export_command(**opts(ckpt, tmp_path / "f", target="nir"))
    with pytest.raises(KdsnnError, match="no graph.nir"):
        rerun.run_command(artifact=str(tmp_path), target="reference")
    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"\x89HDF\r\n")
    with pytest.raises(KdsnnError, match="bad.nir is not a NIR file"):
        flow.export_command(**opts(bad, tmp_path / "x", dataset="digits", time_steps=2))


def test_rung2_failure_is_a_parity_error(ckpt, tmp_path, monkeypatch):
    from kdsnn import stages

    real = stages.run_student

    def off_by_a_bit(*a, **k):  # a student whose logits differ from the graph's by 1e-3
        r = real(*a, **k)
        return RunResult(r.logits + 1e-3, r.spike_counts, r.backend, r.T)

    monkeypatch.setattr(stages, "run_student", off_by_a_bit)
    with pytest.raises(ParityError, match="rung 2 failed: 40 of 40 samples.*first: sample 0"):
        flow.export_command(**opts(ckpt, tmp_path / "p"))
    par = json.loads((tmp_path / "p.failed" / "parity.json").read_text())   # -o keeps no half export
    assert not (tmp_path / "p").exists()
    assert not par["passed"] and not par["rungs"][1]["passed"]


@pytest.mark.slow
def test_cli_exit_codes(ckpt, tmp_path):
    exe = [sys.executable, "-c", "import cli; cli.main()"]
    r = subprocess.run([*exe, "export", str(ckpt), "--target", "reference", "-o", str(tmp_path / "o"),
                        "--samples", "20", "-q"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "PASS" in r.stdout and (tmp_path / "o" / "graph.nir").exists()
    r = subprocess.run([*exe, "export", str(tmp_path / "missing.pt"), "--target", "reference", "-o",
                        str(tmp_path / "o2")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "does not exist" in r.stderr
    assert isinstance(read_nir(tmp_path / "o" / "graph.nir").nodes["act1"], nir.IF)
