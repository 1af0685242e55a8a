"""Deployment-exact students: the PyTorch forward equals intsim spike for spike (rung 3 exact)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from kdsnn.backends.intsim import IntSimBackend
from kdsnn.compiler.export import student_to_nir
from kdsnn.compiler.lower import lower

from kdsnn.data import dataset_info, load_arrays
from kdsnn.deploy_exact import ExactStudent
from kdsnn.errors import KdsnnError
from kdsnn.exact_plan import lower_exact, make_plan
from kdsnn.exact_rung3 import compare_runs, spike_agreement_float
from kdsnn.zoo import build


@pytest.fixture(scope="module")
def small():
    """A small cnn student on the 8x8 digits, briefly trained so that every layer spikes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    info = dataset_info("digits")
    x, y = load_arrays("digits", "train")
    m = build("cnn", True, 10, tuple(info.input_shape), T=4, width=0.25)
    opt = torch.optim.AdamW(m.parameters(), 5e-3)
    X, Y = torch.from_numpy(x[:512]), torch.from_numpy(y[:512])
    for i in range(0, 512, 64):
        loss = torch.nn.functional.cross_entropy(m(X[i:i + 64]), Y[i:i + 64])
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    torch.set_num_threads(threads)
    cfg = {"kind": "student", "arch": "cnn", "T": 4, "dataset": "digits", "mean": list(info.mean),
           "std": list(info.std), "class_names": list(info.class_names), "num_classes": 10,
           "input_shape": list(info.input_shape)}
    return m, cfg, x, y


def _exact_net(m, cfg, x_cal, plan):
    return lower_exact(m, {**cfg, "deploy_exact": plan}, x_cal)


def test_forward_equals_intsim_and_lowering_reuses_plan(small) -> None:
    m, cfg, x, _ = small
    plan = make_plan(m, cfg, "loihi", x[:128])
    net = _exact_net(m, cfg, x[:128], plan)
    assert net.metadata["lowering"]["deploy_exact_plan"]
    ex = ExactStudent(m, plan)
    rep = compare_runs(ex, net, x[128:384])
    assert rep["passed"], rep["first_difference"]
    assert rep["logits_equal"] == 1.0
    with torch.no_grad():
        _, spikes = ex.integer_run(torch.from_numpy(x[128:384]))
    assert all(float(s.sum()) > 0 for k, s in spikes.items() if k != "readout")   # not vacuous
    # a plain lowering of the float student (no plan in the graph) is not spike-exact
    plain = lower(student_to_nir(m, cfg), "loihi", x[:128])
    assert not plain.metadata["lowering"]["deploy_exact_plan"]


def test_exact_after_training_steps_and_gradients(small) -> None:
    """Straight-through training changes the weights; the plan still lowers them exactly."""
    m0, cfg, x, y = small
    m = copy.deepcopy(m0)
    plan = make_plan(m, cfg, "loihi", x[:128])
    ex = ExactStudent(m, plan).train()
    opt = torch.optim.AdamW(m.parameters(), 1e-3)
    X, Y = torch.from_numpy(x[:256]), torch.from_numpy(y[:256])
    before = [p.detach().clone() for p in m.parameters()]
    for i in range(0, 256, 64):
        z, f = ex(X[i:i + 64], return_features=True)
        loss = torch.nn.functional.cross_entropy(z, Y[i:i + 64]) + sum(v.mean() for v in f.values())
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
        opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, m.parameters(), strict=True))
    m.eval()
    net = _exact_net(m, cfg, x[:128], plan)
    rep = compare_runs(ExactStudent(m, plan), net, x[256:512])
    assert rep["passed"], rep["first_difference"]


def test_exact_through_clipping_and_wrapping(small) -> None:
    """A plan with 64x the scales saturates weights and clips v: the forward follows Lava there too."""
    m, cfg, x, _ = small
    plan = make_plan(m, cfg, "loihi", x[:128])
    for p in plan["populations"].values():
        p["scale"] *= 64.0
        p["vth"] = int(min((1 << 17) - 1, p["vth"] * 64))
    net = _exact_net(m, cfg, x[:128], plan)
    diag = IntSimBackend().compile(net).run(x[128:256]).extra["overflow"]
    assert sum(d["v_clips"] + d["u_wraps"] for d in diag.values()) > 0      # the hostile case happens
    rep = compare_runs(ExactStudent(m, plan), net, x[128:256])
    assert rep["passed"], rep["first_difference"]


def test_plan_for_other_target_or_T_is_not_reused(small, tmp_path) -> None:
    m, cfg, x, _ = small
    plan = make_plan(m, cfg, "loihi", x[:64])
    spec = tmp_path / "chip.json"
    spec.write_text('{"name": "chip", "base": "loihi", "vth_bits": 16}')
    g = student_to_nir(m, {**cfg, "deploy_exact": plan})
    other = lower(g, str(spec), x[:64])
    assert not other.metadata["lowering"]["deploy_exact_plan"]
    assert any("not this" in line for line in other.metadata["lowering"]["log"])
    m8 = copy.deepcopy(m)
    m8.set_time_steps(8)
    with pytest.raises(KdsnnError, match="T=4"):
        ExactStudent(m8, plan)


def test_float_student_is_not_spike_exact(small) -> None:
    """The 'before' number: a float student's spike maps differ from intsim's somewhere."""
    m, cfg, x, _ = small
    net = lower(student_to_nir(m, cfg), "loihi", x[:128])
    agr = spike_agreement_float(m, net, x[128:256])
    assert set(agr) == {"act1", "act2", "act3"}
    assert min(v["samples_equal"] for v in agr.values()) < 1.0
    assert np.isfinite([v["steps_equal"] for v in agr.values()]).all()


# ------------------------------------------------------------------ kdsnn export: rung 3 exact
def _save(m, cfg, path, plan=None):
    from kdsnn.checkpoint import graph_of, save_checkpoint

    c = {**cfg, "width": 0.25, "graph": graph_of(m), "kd": "none", "neuron": m.neuron,
         **({"deploy_exact": plan} if plan is not None else {})}
    return save_checkpoint(path, {"config": c, "model": m.state_dict(), "connectors": None, "epoch": 0,
                                  "metrics": {}, "best_acc": 0.0})


def _export_opts(src, out, **kw):
    return {"source": str(src), "target": "intsim", "output": str(out), "samples": 160, "calibration": 64,
            "batch_size": 64, "quiet": True, **kw}


@pytest.mark.slow
def test_export_runs_rung3_exact_for_a_deploy_exact_student(small, tmp_path) -> None:
    from kdsnn.deploy import export_command

    m, cfg, x, _ = small
    plan = make_plan(m, cfg, "loihi", x[:128])
    src = _save(m, cfg, tmp_path / "exact.pt", plan)
    d = export_command(**_export_opts(src, tmp_path / "exp"))
    par = json.loads((tmp_path / "exp" / "parity.json").read_text())
    r3 = next(r for r in par["rungs"] if r["rung"] == 3)
    assert r3["kind"] == "exact" and r3["passed"] and par["passed"]
    assert r3["samples_compared"] == 160 == r3["samples_identical"]
    assert r3["layers_compared"] == 4 and r3["steps_compared"] == 160 * 4 and r3["logits_equal"] == 1.0
    line = next(s for s in d.summary_lines() if s.startswith("rung 3"))
    assert line.startswith("rung 3 exact") and "160 of 160 samples identical" in line and "PASS" in line
    # an ordinary student keeps the tolerance rung
    d2 = export_command(**_export_opts(_save(m, cfg, tmp_path / "float.pt"), tmp_path / "exp2"))
    r3f = d2.rung(3).to_json()
    assert "kind" not in r3f and "tolerance_points" in r3f
    assert not next(s for s in d2.summary_lines() if s.startswith("rung 3")).startswith("rung 3 exact")


def test_rung3_exact_mismatch_fails_the_export(small, tmp_path, monkeypatch) -> None:
    """One spike moved in the student's forward: exit 3 (ParityError), parity.json names it."""
    from kdsnn.deploy import export_command
    from kdsnn.errors import ParityError

    m, cfg, x, _ = small
    plan = make_plan(m, cfg, "loihi", x[:128])
    src = _save(m, cfg, tmp_path / "exact.pt", plan)
    run = ExactStudent.integer_run

    def moved(self, xb, features=False):
        z, sp = run(self, xb, features)
        if len(xb) > 5:
            sp["act2"][1, 5].view(-1)[0] = 1.0 - sp["act2"][1, 5].view(-1)[0]
        return z, sp

    monkeypatch.setattr(ExactStudent, "integer_run", moved)
    with pytest.raises(ParityError, match="rung 3 exact failed") as e:
        export_command(**_export_opts(src, tmp_path / "exp"))
    assert e.value.exit_code == 3
    assert not (tmp_path / "exp").exists()                       # no earlier export: nothing left in -o
    par = json.loads((tmp_path / "exp.failed" / "parity.json").read_text())
    r3 = next(r for r in par["rungs"] if r["rung"] == 3)
    assert not r3["passed"] and not par["passed"]
    assert r3["first_difference"] == {**r3["first_difference"], "sample": 5, "layer": "act2", "step": 1}


def test_plan_fingerprint_is_the_arithmetic_only(small, tmp_path) -> None:
    m, cfg, x, _ = small
    plan = make_plan(m, cfg, "loihi", x[:64])
    g = student_to_nir(m, {**cfg, "deploy_exact": plan})
    cosmetic = tmp_path / "cosmetic" / "loihi.json"
    cosmetic.parent.mkdir()
    cosmetic.write_text('{"base": "loihi", "description": "renamed", "neurons_per_core": 512, '
                        '"energy_pj": {"synaptic_op": 1.0}}')
    assert lower(g, str(cosmetic), x[:64]).metadata["lowering"]["deploy_exact_plan"]
    changed = tmp_path / "loihi.json"
    changed.write_text('{"base": "loihi", "vth_bits": 16}')
    with pytest.raises(KdsnnError, match=r"arithmetic changed .*vth_bits 17 -> 16.*kdsnn finetune"):
        lower(g, str(changed), x[:64])
    with pytest.raises(KdsnnError, match="vth_bits 17 -> 16"):
        ExactStudent(m, {**plan, "target": str(changed)})


def test_every_spec_field_is_arithmetic_or_cosmetic() -> None:
    """A new TargetSpec field must be classified: the plan fingerprint hashes only arithmetic."""
    from dataclasses import fields

    from kdsnn.compiler.targets import ARITHMETIC_FIELDS, COSMETIC_FIELDS, TargetSpec

    names = {f.name for f in fields(TargetSpec)}
    assert set(ARITHMETIC_FIELDS) | set(COSMETIC_FIELDS) == names
    assert not set(ARITHMETIC_FIELDS) & set(COSMETIC_FIELDS)


@pytest.mark.slow
@pytest.mark.parametrize("reset,hw", [("zero", "loihi"), ("subtract", "loihi2")])
def test_lif_student_is_exact_with_12_bit_decays(reset: str, hw: str) -> None:
    """LIF (beta 0.875: dv = 512) through training steps: the forward equals intsim's LIF."""
    torch.manual_seed(1)
    info = dataset_info("digits")
    x, y = load_arrays("digits", "train")
    m = build("cnn", True, 10, tuple(info.input_shape), T=4, width=0.25,
              neuron={"model": "lif", "beta": 0.875, "reset": reset})
    cfg = {"kind": "student", "arch": "cnn", "T": 4, "dataset": "digits", "mean": list(info.mean),
           "std": list(info.std), "class_names": list(info.class_names), "num_classes": 10,
           "input_shape": list(info.input_shape), "neuron": m.neuron}
    opt = torch.optim.AdamW(m.parameters(), 5e-3)
    X, Y = torch.from_numpy(x[:512]), torch.from_numpy(y[:512])
    for i in range(0, 512, 64):                                  # float first: every layer spikes
        loss = torch.nn.functional.cross_entropy(m(X[i:i + 64]), Y[i:i + 64])
        opt.zero_grad()
        loss.backward()
        opt.step()
    plan = make_plan(m, cfg, hw, x[:128])
    assert {p["dv"] for k, p in plan["populations"].items() if k != "readout"} == {512}
    assert {p["reset"] for k, p in plan["populations"].items() if k != "readout"} == {reset}
    ex = ExactStudent(m, plan).train()
    opt = torch.optim.AdamW(m.parameters(), 1e-3)
    for i in range(0, 128, 64):                                  # then the integer forward
        loss = torch.nn.functional.cross_entropy(ex(X[i:i + 64]), Y[i:i + 64])
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    net = _exact_net(m, cfg, x[:128], plan)
    assert {(p.dv, p.reset) for p in net.populations if not p.readout} == {(512, reset)}
    rep = compare_runs(ExactStudent(m, plan), net, x[512:768])
    assert rep["passed"], rep["first_difference"]
    with torch.no_grad():
        _, spikes = ExactStudent(m, plan).integer_run(torch.from_numpy(x[512:768]))
    assert all(float(s.sum()) > 0 for k, s in spikes.items() if k != "readout")   # not vacuous
    other = copy.deepcopy(plan)
    other["populations"]["act1"]["dv"] = 256
    with pytest.raises(KdsnnError, match="act1: the LIF leak"):
        ExactStudent(m, other)


@pytest.mark.slow
def test_distill_deploy_exact_then_export_is_exact_to_lava(tmp_path) -> None:
    """The CLI path: distill --deploy-exact (the finetune command), export --target lava."""
    import subprocess
    import sys

    def kdsnn(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "kdsnn", *args], capture_output=True, text=True, timeout=600)

    out = tmp_path / "s"
    p = kdsnn("distill", "--dataset", "digits", "--kd", "none", "--epochs", "1", "-T", "2", "--width", "0.25",
              "--deploy-exact", "loihi", "-q", "-o", str(out))
    assert p.returncode == 0, p.stderr
    p = kdsnn("export", str(out / "exact" / "student.pt"), "--target", "lava", "--samples", "8",
              "--eval-samples", "100", "-o", str(tmp_path / "e"))
    assert p.returncode == 0, p.stderr
    assert "rung 3 exact" in p.stdout and "100 of 100 samples identical" in p.stdout
    rungs = {r["rung"]: r for r in json.loads((tmp_path / "e" / "parity.json").read_text())["rungs"]}
    assert rungs[3]["kind"] == "exact" and rungs[3]["passed"] and rungs[4]["identical_to_rung3"]
