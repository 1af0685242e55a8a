"""Deployment-exact students: the PyTorch forward equals intsim spike for spike (rung 3 exact)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from kdsnn.backends.intsim import IntSimBackend
from kdsnn.compiler.export import student_to_nir
from kdsnn.compiler.lower import lower

from kdsnn import deploy_exact as de
from kdsnn.data import dataset_info, load_arrays
from kdsnn.errors import KdsnnError
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
    return de.lower_exact(m, {**cfg, "deploy_exact": plan}, x_cal)


def test_forward_equals_intsim_and_lowering_reuses_plan(small) -> None:
    m, cfg, x, _ = small
    plan = de.make_plan(m, cfg, "loihi", x[:128])
    net = _exact_net(m, cfg, x[:128], plan)
    assert net.metadata["lowering"]["deploy_exact_plan"]
    ex = de.ExactStudent(m, plan)
    rep = de.compare_runs(ex, net, x[128:384])
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
    plan = de.make_plan(m, cfg, "loihi", x[:128])
    ex = de.ExactStudent(m, plan).train()
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
    rep = de.compare_runs(de.ExactStudent(m, plan), net, x[256:512])
    assert rep["passed"], rep["first_difference"]


def test_exact_through_clipping_and_wrapping(small) -> None:
    """A plan with 64x the scales saturates weights and clips v: the forward follows Lava there too."""
    m, cfg, x, _ = small
    plan = de.make_plan(m, cfg, "loihi", x[:128])
    for p in plan["populations"].values():
        p["scale"] *= 64.0
        p["vth"] = int(min((1 << 17) - 1, p["vth"] * 64))
    net = _exact_net(m, cfg, x[:128], plan)
    diag = IntSimBackend().compile(net).run(x[128:256]).extra["overflow"]
    assert sum(d["v_clips"] + d["u_wraps"] for d in diag.values()) > 0      # the hostile case happens
    rep = de.compare_runs(de.ExactStudent(m, plan), net, x[128:256])
    assert rep["passed"], rep["first_difference"]


def test_plan_for_other_target_or_T_is_not_reused(small, tmp_path) -> None:
    m, cfg, x, _ = small
    plan = de.make_plan(m, cfg, "loihi", x[:64])
    spec = tmp_path / "chip.json"
    spec.write_text('{"name": "chip", "base": "loihi", "vth_bits": 16}')
    g = student_to_nir(m, {**cfg, "deploy_exact": plan})
    other = lower(g, str(spec), x[:64])
    assert not other.metadata["lowering"]["deploy_exact_plan"]
    assert any("not this" in line for line in other.metadata["lowering"]["log"])
    m8 = copy.deepcopy(m)
    m8.set_time_steps(8)
    with pytest.raises(KdsnnError, match="T=4"):
        de.ExactStudent(m8, plan)


def test_float_student_is_not_spike_exact(small) -> None:
    """The 'before' number: a float student's spike maps differ from intsim's somewhere."""
    m, cfg, x, _ = small
    net = lower(student_to_nir(m, cfg), "loihi", x[:128])
    agr = de.spike_agreement_float(m, net, x[128:256])
    assert set(agr) == {"act1", "act2", "act3"}
    assert min(v["samples_equal"] for v in agr.values()) < 1.0
    assert np.isfinite([v["steps_equal"] for v in agr.values()]).all()
