"""Distillation losses (formulas of the issue, checked by hand) and connectors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdsnn.errors import KdsnnError
from kdsnn.kd_loss import (
    Connectors,
    DistillLoss,
    align_teacher,
    check_mode,
    feature_distance,
    match_points,
    response_loss,
    soft_cross_entropy,
)


def test_soft_cross_entropy_by_hand() -> None:
    z_s = torch.tensor([[1.0, 2.0, 0.5]])
    z_t = torch.tensor([[0.0, 3.0, -1.0]])
    tau = 2.0
    p_t = [math.exp(v / tau) for v in (0.0, 3.0, -1.0)]
    p_t = [p / sum(p_t) for p in p_t]
    e_s = [math.exp(v / tau) for v in (1.0, 2.0, 0.5)]
    log_p_s = [math.log(e / sum(e_s)) for e in e_s]
    want = -sum(p * lp for p, lp in zip(p_t, log_p_s, strict=True))
    assert soft_cross_entropy(z_s, z_t, tau).item() == pytest.approx(want, rel=1e-6)


def test_response_loss_formula_and_kl_gradient() -> None:
    torch.manual_seed(0)
    z_s = torch.randn(5, 4, requires_grad=True)
    z_t = torch.randn(5, 4)
    y = torch.randint(0, 4, (5,))
    alpha, tau = 0.7, 3.0
    loss, soft, hard = response_loss(z_s, z_t, y, alpha, tau)
    want = alpha * tau**2 * soft_cross_entropy(z_s, z_t, tau) + (1 - alpha) * F.cross_entropy(z_s, y)
    torch.testing.assert_close(loss, want)
    torch.testing.assert_close(hard, F.cross_entropy(z_s, y))
    # soft CE and KL differ by the teacher entropy only: same gradient
    g1 = torch.autograd.grad(soft_cross_entropy(z_s, z_t, tau), z_s)[0]
    kl = F.kl_div(F.log_softmax(z_s / tau, 1), F.softmax(z_t / tau, 1), reduction="batchmean")
    g2 = torch.autograd.grad(kl, z_s)[0]
    torch.testing.assert_close(g1, g2)


def test_feature_distance_one_sided() -> None:
    s = torch.tensor([-2.0, -0.5, -1.0, 0.5, 1.0, 0.0, 0.3])
    t = torch.tensor([-1.0, -1.0, -1.0, 2.0, -0.5, 0.0, 0.0])
    # S<=T<=0 -> 0 ; else (T-S)^2
    want = [0.0, 0.25, 0.0, 2.25, 2.25, 0.0, 0.09]
    assert feature_distance(s, t).item() == pytest.approx(sum(want) / len(want))
    # gradient: none where the student is already below a non-positive teacher value
    sg = s.clone().requires_grad_(True)
    feature_distance(sg, t).backward()
    assert sg.grad[0] == 0 and sg.grad[2] == 0 and sg.grad[1] > 0 and sg.grad[3] < 0


def test_match_points_in_order_aligned_at_end() -> None:
    assert match_points(["a", "b", "c"], ["x", "y", "z"]) == [("a", "x"), ("b", "y"), ("c", "z")]
    assert match_points(["a", "b", "c"], ["y", "z"]) == [("b", "y"), ("c", "z")]
    assert match_points(["a"], ["x", "y"]) == [("a", "y")]
    assert match_points([], ["x"]) == []


def test_connectors_where_shapes_differ() -> None:
    s_shapes = {"a": (8, 6, 6), "b": (16, 3, 3), "c": (32,), "d": (8, 4, 4)}
    t_shapes = {"A": (8, 12, 12), "B": (24, 3, 3), "C": (64,), "D": (10,)}
    con = Connectors([("a", "A"), ("b", "B"), ("c", "C"), ("d", "D")], s_shapes, t_shapes)
    assert isinstance(con.maps["a"], nn.Identity)  # same channels: only the teacher is pooled
    conv = con.maps["b"][0]
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.out_channels == 24
    assert isinstance(con.maps["b"][1], nn.BatchNorm2d)
    assert isinstance(con.maps["c"][0], nn.Linear) and isinstance(con.maps["c"][1], nn.BatchNorm1d)
    fs = {k: torch.rand(4, *v) for k, v in s_shapes.items()}
    ft = {k: torch.rand(4, *v) for k, v in t_shapes.items()}
    out = con(fs)
    for sname, tname in con.pairs:
        t = align_teacher(ft[tname], out[sname])
        assert t.shape == out[sname].shape
    # the teacher map is adaptive-average-pooled to the student's size
    torch.testing.assert_close(align_teacher(ft["A"], out["a"]), F.avg_pool2d(ft["A"], 2))


def test_distill_loss_modes() -> None:
    torch.manual_seed(0)
    z_s, z_t = torch.randn(6, 3), torch.randn(6, 3)
    y = torch.randint(0, 3, (6,))
    f_s = {"p": torch.rand(6, 4, 2, 2)}
    f_t = {"q": torch.randn(6, 4, 2, 2)}
    con = Connectors([("p", "q")], {"p": (4, 2, 2)}, {"q": (4, 2, 2)})
    a, tau = 0.3, 2.0
    none, parts = DistillLoss("none")(z_s, y)
    torch.testing.assert_close(none, F.cross_entropy(z_s, y))
    assert set(parts) == {"ce"}
    resp, parts = DistillLoss("response", a, tau)(z_s, y, z_t)
    torch.testing.assert_close(resp, response_loss(z_s, z_t, y, a, tau)[0])
    assert set(parts) == {"soft", "ce"}
    feat, parts = DistillLoss("feature", a, tau, con)(z_s, y, z_t, f_s, f_t)
    fd = feature_distance(f_s["p"], f_t["q"])
    torch.testing.assert_close(feat, F.cross_entropy(z_s, y) + a * fd)
    both, parts = DistillLoss("both", a, tau, con)(z_s, y, z_t, f_s, f_t)
    torch.testing.assert_close(both, resp + a * fd)
    assert set(parts) == {"soft", "ce", "feat"}


@pytest.mark.parametrize("kd", ["none", "response", "feature", "both"])
def test_logged_terms_times_their_weights_add_up_to_the_loss(kd) -> None:
    """The loss line prints weighted terms; they must sum to the total it prints."""
    torch.manual_seed(1)
    z_s, z_t = torch.randn(6, 3), torch.randn(6, 3)
    y = torch.randint(0, 3, (6,))
    f_s, f_t = {"p": torch.rand(6, 4, 2, 2)}, {"q": torch.randn(6, 4, 2, 2)}
    con = Connectors([("p", "q")], {"p": (4, 2, 2)}, {"q": (4, 2, 2)})
    crit = DistillLoss(kd, 0.5, 4.0, con if kd in ("feature", "both") else None)
    loss, parts = crit(z_s, y, z_t, f_s, f_t)
    w = crit.weights()
    assert set(w) == set(parts)
    assert abs(sum(w[k] * float(v) for k, v in parts.items()) - float(loss)) < 1e-5
    text = crit.describe({k: float(v) for k, v in parts.items()})
    if kd in ("response", "both"):
        assert f"soft {8 * float(parts['soft']):.4f} (8 x {float(parts['soft']):.4f})" in text


def test_bad_modes_and_parameters() -> None:
    with pytest.raises(KdsnnError, match="unknown --kd"):
        check_mode("logits")
    with pytest.raises(KdsnnError, match="alpha"):
        DistillLoss("response", alpha=1.5)
    with pytest.raises(KdsnnError, match="temperature"):
        DistillLoss("response", tau=0)


def test_connectors_always_learn_a_map() -> None:
    con = Connectors([("a", "A"), ("c", "C")], {"a": (8, 4, 4), "c": (16,)}, {"A": (8, 4, 4), "C": (16,)},
                     always=True)
    assert isinstance(con.maps["a"][0], nn.Conv2d) and isinstance(con.maps["c"][0], nn.Linear)
