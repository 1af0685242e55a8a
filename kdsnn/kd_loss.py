"""Distillation losses and the training-only feature connectors (the KDSNN method).

Modes (`--kd`):
  none      L = CE(z_s, y)
  response  L = alpha * tau^2 * CE(softmax(z_t/tau), softmax(z_s/tau)) + (1 - alpha) * CE(z_s, y)
            (CE between distributions = soft cross entropy -sum p_t log p_s; its gradient is
            the KL divergence's)
  feature   L = CE(z_s, y) + alpha * L_distill
  both      L = response loss + alpha * L_distill

L_distill = sum over matched feature points of mean_i d(S_i, T_i),
    d(S, T) = 0 if S <= T <= 0 else (T - S)^2
(the one-sided partial L2 of Heo et al. 2019, as in KDSNN). The per-point sum over elements
is divided by the number of elements, so `alpha` does not depend on the feature sizes.
S is the student's firing rate (spikes averaged over T) at a feature point, passed through a
connector where its shape differs from the teacher's: a 1x1 conv + BN (maps) or Linear + BN1d
(vectors); T is the teacher's feature. Feature points are paired in order; if the counts
differ, the lists are aligned at their ends (the deepest points are kept). A teacher map of
another spatial size is adaptive-average-pooled to the student's size; a teacher map against
a student vector is globally pooled first.
Connectors live only in training: they are saved apart from the student (`connectors` in the
checkpoint) and never exported.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdsnn.errors import KdsnnError

KD_MODES = ("none", "response", "feature", "both")


def check_mode(kd: str) -> str:
    if kd not in KD_MODES:
        raise KdsnnError(f"unknown --kd mode {kd!r}; choose one of {', '.join(KD_MODES)}")
    return kd


def soft_cross_entropy(z_s: torch.Tensor, z_t: torch.Tensor, tau: float) -> torch.Tensor:
    """CE(softmax(z_t/tau), softmax(z_s/tau)) = -sum p_t log p_s, averaged over the batch."""
    p_t = F.softmax(z_t.float() / tau, dim=1)
    return -(p_t * F.log_softmax(z_s.float() / tau, dim=1)).sum(1).mean()


def response_loss(z_s: torch.Tensor, z_t: torch.Tensor, y: torch.Tensor, alpha: float,
                  tau: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, soft part, hard CE) of the response-based loss."""
    soft = soft_cross_entropy(z_s, z_t, tau)
    hard = F.cross_entropy(z_s.float(), y)
    return alpha * tau * tau * soft + (1.0 - alpha) * hard, soft, hard


def feature_distance(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """mean_i of 0 where S <= T <= 0, (T - S)^2 elsewhere."""
    s, t = s.float(), t.float()
    d = (t - s) ** 2
    zero = (s <= t) & (t <= 0)
    return torch.where(zero, torch.zeros_like(d), d).mean()


def match_points(student: list[str], teacher: list[str]) -> list[tuple[str, str]]:
    """Pair feature points in order, aligned at the end when the counts differ."""
    n = min(len(student), len(teacher))
    if n == 0:
        return []
    return list(zip(student[len(student) - n:], teacher[len(teacher) - n:], strict=True))


def _connector(s_shape: tuple[int, ...], t_shape: tuple[int, ...], always: bool = False) -> nn.Module:
    """Student-side map from a feature of `s_shape` to the teacher's channels/width."""
    if len(t_shape) == 3 and len(s_shape) == 3:
        if s_shape[0] == t_shape[0] and not always:
            return nn.Identity()
        return nn.Sequential(nn.Conv2d(s_shape[0], t_shape[0], 1, bias=False), nn.BatchNorm2d(t_shape[0]))
    n_t = t_shape[0]
    if len(s_shape) == 3:  # student map against a teacher vector: pool the student map first
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(s_shape[0], n_t, bias=False),
                             nn.BatchNorm1d(n_t))
    if s_shape[0] == n_t and len(t_shape) == 1 and not always:
        return nn.Identity()
    return nn.Sequential(nn.Linear(s_shape[0], n_t, bias=False), nn.BatchNorm1d(n_t))


def align_teacher(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Bring a teacher feature to the student's (connected) feature layout."""
    if t.dim() == 4 and s.dim() == 4 and t.shape[-2:] != s.shape[-2:]:
        return F.adaptive_avg_pool2d(t, s.shape[-2:])
    if t.dim() == 4 and s.dim() == 2:
        return t.mean((2, 3))
    return t


class Connectors(nn.Module):
    """One connector per matched pair (Identity where the shapes already agree, unless
    `always`: then every student feature gets a learned 1x1 conv / linear + BN)."""

    def __init__(self, pairs: list[tuple[str, str]], s_shapes: dict[str, tuple[int, ...]],
                 t_shapes: dict[str, tuple[int, ...]], always: bool = False) -> None:
        super().__init__()
        self.pairs = list(pairs)
        self.maps = nn.ModuleDict()
        for sname, tname in self.pairs:
            s, t = tuple(s_shapes[sname]), tuple(t_shapes[tname])
            if len(t) not in (1, 3) or len(s) not in (1, 3):
                raise KdsnnError(f"cannot match student feature {sname} {s} to teacher feature {tname} {t}")
            self.maps[sname] = _connector(s, t, always)

    def forward(self, fs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {sname: self.maps[sname](fs[sname]) for sname, _ in self.pairs}


class DistillLoss(nn.Module):
    """The `--kd` loss; `forward` returns (loss, {part: float tensor}) for logging."""

    def __init__(self, kd: str, alpha: float = 0.5, tau: float = 4.0,
                 connectors: Connectors | None = None) -> None:
        super().__init__()
        self.kd = check_mode(kd)
        if not 0.0 <= alpha <= (1.0 if kd == "response" else float("inf")):
            raise KdsnnError(f"--alpha must be in [0, 1] for response distillation, got {alpha}")
        if tau <= 0:
            raise KdsnnError(f"--temperature must be > 0, got {tau}")
        self.alpha, self.tau = float(alpha), float(tau)
        self.connectors = connectors

    def weights(self) -> dict[str, float]:
        """The factor of each logged part in the total: loss == sum(weights[k] * parts[k])."""
        if self.kd in ("response", "both"):
            a = min(self.alpha, 1.0)
            w = {"soft": a * self.tau * self.tau, "ce": 1.0 - a}
        else:
            w = {"ce": 1.0}
        if self.uses_features:
            w["feat"] = self.alpha
        return w

    def describe(self, parts: dict[str, float]) -> str:
        """'soft 14.32 (8 x 1.790) + ce 0.07 (0.5 x 0.140) + feat ...': the weighted terms that
        add up to the total, each with its weight and unweighted value."""
        w = self.weights()
        return " + ".join(f"{k} {w[k] * v:.4f} ({w[k]:g} x {v:.4f})" for k, v in parts.items() if k in w)

    @property
    def uses_features(self) -> bool:
        return self.kd in ("feature", "both")

    @property
    def uses_teacher(self) -> bool:
        return self.kd != "none"

    def forward(self, z_s: torch.Tensor, y: torch.Tensor, z_t: torch.Tensor | None = None,
                f_s: dict[str, torch.Tensor] | None = None,
                f_t: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts: dict[str, torch.Tensor] = {}
        if self.kd in ("response", "both"):
            assert z_t is not None
            a = min(self.alpha, 1.0)
            loss, soft, hard = response_loss(z_s, z_t, y, a, self.tau)
            parts["soft"], parts["ce"] = soft.detach(), hard.detach()
        else:
            loss = F.cross_entropy(z_s.float(), y)
            parts["ce"] = loss.detach()
        if self.uses_features:
            assert f_s is not None and f_t is not None and self.connectors is not None
            mapped = self.connectors(f_s)
            feat = z_s.new_zeros((), dtype=torch.float32)
            for sname, tname in self.connectors.pairs:
                s = mapped[sname]
                feat = feat + feature_distance(s, align_teacher(f_t[tname], s))
            parts["feat"] = feat.detach()
            loss = loss + self.alpha * feat
        return loss, parts
