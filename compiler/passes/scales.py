"""Pass `scales`: one integer scale per population, then integer weights, vth and biases.

A population's scale S says how many integer units of `a` one float unit of synaptic
input is. Every connection into the population must produce `a` at that same S (this is
what makes residual sums exact): a connection from a source of scale s_src (the input's
graded scale, or 1 for binary spikes) gets weights W * sigma with sigma * 2^e * s_src = S,
e its weight exponent (dense only; Lava's Conv ignores it, so conv has e = 0).

S is the largest value all of these allow (each is an upper bound, reported by name):
  weights   sigma * max|W| <= the spec's largest weight (loihi: 254 mixed, 255 one-signed),
            using the largest exponent the spec allows for dense connections
  threshold vth = round(S * theta) <= 2^vth_bits - 1 (loihi: 2^17 - 1)
  bias      64 * S * max|b| <= bias_mant_max << bias_exp_max (loihi: 4095 << 7)
  state     u must not wrap and v must not clip (readout: must never reach its
            threshold). Bounded from the weights for *any* input ("worst-case", provable)
            when that costs at most `provable_budget_bits` of scale, else from calibration
            (max |u|, v range) with a `headroom` factor. With a current decay alpha, |u| <=
            |a| * sum_k (1 - alpha)^k over the T steps; with a leak beta, likewise |v|.
Dense connections then take the smallest exponent that keeps their weights in range
(right shifts keep weight precision; their average flooring is compensated in the
bias). Finally the integer bounds are re-checked exactly with the integer weights; if
rounding broke a worst-case bound, S shrinks by 2^-1/4 and the population is redone.
A population is refused when S falls below what keeps `min_weight_bits` of weight
magnitude (or a threshold >= 1): the error names the layer, the binding bound and the
missing headroom in bits. The knobs (`headroom`, `provable_budget_bits`, `min_weight_bits`)
and their defaults are kdsnn.config.LoweringConfig's (`st.config`).

Decays: du = round(alpha * 4096) - 1 (Lava decays u by du + 1), dv = round(beta * 4096),
in [0, 4095]; the float decays they stand for and the error are in the layer's report
(`decay`), and so in parity.json. Resets: a hardware spec without "subtract" in its reset_modes
(loihi) refuses a subtractive layer by name; a non-spiking readout (I, LI, CubaLI) gets
the largest vth and provably never fires, a spiking one (IF, LIF, CubaLIF) is counted.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from kdsnn.compiler.intnet import INPUT, Connection, Population
from kdsnn.compiler.passes.state import FConn, FPop, LoweringState

from kdsnn.errors import KdsnnError

NAME = "scales"


def _sign_mode(w: np.ndarray, allowed: tuple[str, ...]) -> str:
    if w.size and w.min() >= 0 and "excitatory" in allowed:
        return "excitatory"
    if w.size and w.max() <= 0 and "inhibitory" in allowed:
        return "inhibitory"
    return "mixed"


def _row_abs_sum(w: np.ndarray, kind: str) -> np.ndarray:
    a = np.abs(w)
    return a.sum(axis=1) if kind == "dense" else a.reshape(a.shape[0], -1).sum(axis=1)


def geometric(x: float, T: int) -> float:
    """sum_{k<T} (1 - x)^k: how much a per-step input accumulates under a decay x."""
    return float(T) if x <= 0 else (1.0 - (1.0 - x) ** T) / x


def decays(p: FPop, decay_bits: int) -> tuple[int, int, dict[str, float]]:
    """(du, dv) of Lava's 12-bit decays for the population's alpha/beta, and the error."""
    one = 1 << decay_bits
    du = int(min(one - 1, max(0, round(p.alpha * one) - 1)))
    dv = int(min(one - 1, max(0, round(p.beta * one))))
    a_int, b_int = (du + 1) / one, dv / one

    def rel(x: float, y: float) -> float:
        return abs(y - x) / x if x else abs(y - x)
    return du, dv, {"alpha": p.alpha, "alpha_int": a_int, "alpha_rel_error": rel(p.alpha, a_int),
                    "beta": p.beta, "beta_int": b_int, "beta_rel_error": rel(p.beta, b_int)}


def quantize_weights(w: np.ndarray, sigma: float, lo: int, hi: int, step: int) -> np.ndarray:
    """Float weights -> the integer grid of a connection (round to `step`, clip to [lo, hi]).

    The one place float weights become integers: the lowering and the deployment-exact
    training forward (kdsnn.deploy_exact) both call it, so the two cannot drift."""
    q = np.rint(w * sigma / step) * step
    return np.clip(q, lo, hi).astype(np.int64)


def weight_sigma(S: float, e: int, s_src: float) -> float:
    """Float-to-integer weight factor of a connection: sigma * 2^e * s_src = S."""
    return S / (2.0 ** e * s_src)


def floor_correction(e: int) -> float:
    """Bias (v units) compensating the average flooring of a right shift by -e (0 when e >= 0)."""
    if e >= 0:
        return 0.0
    k = -e
    return 64.0 * ((1 << k) - 1) / (1 << (k + 1))


def bias_target(S: float, bias: np.ndarray, floor_corr: float) -> np.ndarray:
    """The float bias (v units) a population's integer bias stands for."""
    return 64.0 * S * bias + floor_corr


def bias_mantissa(b_eff: np.ndarray, bias_exp: int, bias_mant_max: int) -> np.ndarray:
    """int32 mantissas of `b_eff` at `bias_exp`, clipped to the signed mantissa range."""
    return np.clip(np.rint(b_eff / 2 ** bias_exp), -bias_mant_max - 1, bias_mant_max).astype(np.int32)


class _Plan:
    """Integer parameters of one population at one scale."""

    def __init__(self, st: LoweringState, p: FPop, conns: list[FConn], S: float,
                 fixed: dict[str, Any] | None = None) -> None:
        """fixed: p's entry of a deployment-exact plan (exponents, sign modes, bias_exp kept)."""
        tg = st.target
        fixed_c = (fixed or {}).get("connections", {})
        self.S = S
        self.conns: list[Connection] = []
        self.a_bound = 0                                    # provable max |a| (int)
        floor_corr = 0.0
        self.detail: list[dict[str, Any]] = []
        for c in conns:
            s_src = st.input_spec.scale if c.src == INPUT else 1.0
            x_max = st.input_spec.qmax if c.src == INPUT else 1
            fc = fixed_c.get(c.name)
            mode = fc["sign_mode"] if fc else _sign_mode(c.weight, tg.sign_modes)
            lo, hi, step = tg.weight_range(mode)
            w_hi = min(abs(lo), abs(hi)) if mode == "mixed" else max(abs(lo), abs(hi))
            wmax = float(np.abs(c.weight).max()) if c.weight.size else 0.0
            dense_exp = c.kind == "dense" or tg.conv_weight_exp
            e_lo, e_hi = (tg.weight_exp_min, tg.weight_exp_max) if dense_exp else (0, 0)
            if fc:
                e = int(fc["weight_exp"])
            elif wmax > 0:
                e = math.ceil(math.log2(S * wmax / (s_src * w_hi)) - 1e-12)
                e = min(max(e, e_lo), e_hi)
            else:
                e = 0
            sigma = weight_sigma(S, e, s_src)
            wq = quantize_weights(c.weight, sigma, lo, hi, step)
            acc = int(_row_abs_sum(wq, c.kind).max(initial=0)) * x_max
            self.a_bound += (acc << e) if e >= 0 else -((-acc) >> -e)   # ceil for right shifts
            floor_corr += floor_correction(e)
            self.conns.append(Connection(
                name=c.name, src=c.src, dst=c.dst, kind=c.kind, weight=wq.astype(np.int32),
                weight_exp=int(e), num_weight_bits=tg.num_weight_bits, sign_mode=mode,
                stride=tuple(c.stride), padding=tuple(c.padding), dilation=tuple(c.dilation),
                groups=int(c.groups), graded=c.src == INPUT, delay=int(c.delay)))
            self.detail.append({"name": c.name, "src": c.src, "kind": c.kind, "sign_mode": mode,
                                "weight_exp": int(e), "sigma": sigma,
                                "weight_max_int": int(np.abs(wq).max(initial=0)),
                                "weight_bits_used": float(math.log2(np.abs(wq).max(initial=0) + 1)),
                                "origin": list(c.origin)})
        b_eff = bias_target(S, p.bias, floor_corr)
        bmax = float(np.abs(b_eff).max(initial=0.0))
        self.bias_exp = tg.bias_exp_min
        while self.bias_exp < tg.bias_exp_max and bmax / 2 ** self.bias_exp > tg.bias_mant_max + 0.5:
            self.bias_exp += 1
        if fixed is not None:
            self.bias_exp = int(fixed["bias_exp"])
        self.bias_mant = bias_mantissa(b_eff, self.bias_exp, tg.bias_mant_max)
        self.bias_int_max = int(np.abs(self.bias_mant.astype(np.int64) << self.bias_exp).max(initial=0))
        self.bias_pos = int(max(0, (self.bias_mant.astype(np.int64) << self.bias_exp).max(initial=0)))
        self.bias_neg = int(max(0, -(self.bias_mant.astype(np.int64) << self.bias_exp).min(initial=0)))
        never = p.reset == "none"
        self.vth = tg.vth_max if never else int(min(tg.vth_max, max(0, round(S * p.theta))))
        self.du, self.dv, self.decay = decays(p, tg.decay_bits)

    def provable(self, st: LoweringState, p: FPop) -> tuple[bool, str]:
        """Exact integer check that no input whatsoever can wrap u or clip v (Lava's decays
        truncate towards zero, so the geometric sums of the integer decays bound them)."""
        tg = st.target
        M = tg.state_max
        one = tg.decay_unity
        A = self.a_bound << tg.act_shift
        U = math.ceil(A * geometric((self.du + 1) / one, st.T))
        Gv = geometric(self.dv / one, st.T)
        if U >= M:
            return False, f"|u| can reach {U} >= 2^{tg.state_bits - 1} (u wraps)"
        if p.reset == "none":
            lim = tg.vth_max << tg.vth_shift
            worst = math.ceil(Gv * (U + self.bias_int_max))
            if worst > lim:
                return False, f"readout |v| can reach {worst} > {lim} (it would fire or clip)"
            return True, ""
        down = math.ceil(Gv * (U + self.bias_neg))
        up = math.ceil(Gv * (U + self.bias_pos))
        if p.reset == "zero":
            up = min(up, (self.vth << tg.vth_shift) + U + self.bias_pos)
        if max(up, down) > M - 1:
            return False, f"v can reach {max(up, down)} > 2^{tg.state_bits - 1} - 1 (clips)"
        return True, ""


def _bounds(st: LoweringState, p: FPop, conns: list[FConn]) -> tuple[dict[str, float], float, float, float]:
    """Upper bounds on S by name, the worst-case and calibrated state bounds, and S_min."""
    tg = st.target
    ub: dict[str, float] = {}
    s_min = 0.0
    min_bits = float(st.config.min_weight_bits)
    a_wc = 0.0
    for c in conns:
        s_src = st.input_spec.scale if c.src == INPUT else 1.0
        x_max = st.input_spec.qmax / s_src if c.src == INPUT else 1.0
        wmax = float(np.abs(c.weight).max()) if c.weight.size else 0.0
        a_wc += float(_row_abs_sum(c.weight, c.kind).max(initial=0.0)) * x_max
        if wmax == 0:
            continue
        mode = _sign_mode(c.weight, tg.sign_modes)
        lo, hi, _ = tg.weight_range(mode)
        w_hi = min(abs(lo), abs(hi)) if mode == "mixed" else max(abs(lo), abs(hi))
        dense_exp = c.kind == "dense" or tg.conv_weight_exp
        e_hi, e_lo = (tg.weight_exp_max, tg.weight_exp_min) if dense_exp else (0, 0)
        ub[f"weights of {c.name}"] = w_hi * 2.0 ** e_hi * s_src / wmax
        s_min = max(s_min, 2.0 ** min_bits * 2.0 ** e_lo * s_src / wmax)
    never = p.reset == "none"
    if not never and p.theta > 0:
        ub["threshold"] = tg.vth_max / p.theta
        s_min = max(s_min, 1.0 / p.theta)
    bmax = float(np.abs(p.bias).max(initial=0.0))
    if bmax > 0:
        ub["bias"] = (tg.bias_mant_max << tg.bias_exp_max) / (1 << tg.act_shift) / bmax
    M = tg.state_max
    u_lim = M >> tg.act_shift                                  # |u| < 2^23 in units of a << 6
    v_lim = ((tg.vth_max << tg.vth_shift) if never else M - 1) / (1 << tg.act_shift)
    u_wc = a_wc * geometric(p.alpha, st.T)
    v_wc = geometric(p.beta, st.T) * (u_wc + bmax)
    if p.reset == "zero":
        v_wc = max(geometric(p.beta, st.T) * u_wc, min(v_wc, p.theta + u_wc + bmax))
    s_wc = min(u_lim / u_wc if u_wc > 0 else math.inf, v_lim / v_wc if v_wc > 0 else math.inf)
    cal = st.stats[p.name]
    h = float(st.config.headroom)
    v_cal = max(abs(cal["v_min"]), abs(cal["v_max"]))
    s_cal = min(u_lim / (h * cal["u_max"]) if cal["u_max"] > 0 else math.inf,
                v_lim / (h * v_cal) if v_cal > 0 else math.inf)
    return ub, s_wc, s_cal, s_min


def _check_target(st: LoweringState, p: FPop) -> None:
    tg = st.target
    if p.reset == "subtract" and "subtract" not in tg.reset_modes:
        raise KdsnnError(f"node {p.name}: subtractive reset (v -= v_threshold) is not available on hardware "
                         f"spec {tg.name}, whose neurons reset v to 0 ({tg.description or tg.name}); lower for "
                         "a spec with programmable neurons (--hw loihi2), or deploy a network that resets to "
                         "zero (a .nir source trained that way: export --reset zero; a kdsnn student: distil "
                         "it with --reset zero)")
    if p.reset == "none" and not p.readout:
        raise KdsnnError(f"node {p.name}: a non-spiking {p.kind} neuron feeds other layers with its voltage, "
                         "which spikes cannot carry on Loihi; only the readout may be non-spiking")


def _choose(st: LoweringState, p: FPop, conns: list[FConn]) -> tuple[float, str, _Plan, bool, str]:
    """The largest scale every bound allows (module docstring) and its integer plan."""
    tg = st.target
    budget = float(st.config.provable_budget_bits)
    ub, s_wc, s_cal, s_min = _bounds(st, p, conns)
    s_prec = min(ub.values(), default=math.inf)
    provable = s_wc >= min(s_prec, s_cal) / 2.0 ** budget
    if provable:
        S, binding = min(s_prec, s_wc), min(ub, key=ub.get) if ub and s_prec <= s_wc else "state (worst case)"
    else:
        S, binding = min(s_prec, s_cal), min(ub, key=ub.get) if ub and s_prec <= s_cal else "state (calibrated)"
    if not math.isfinite(S):
        S, binding = 1.0, "none (all-zero weights)"
    for _ in range(64):
        plan = _Plan(st, p, conns, S)
        ok, why = plan.provable(st, p)
        if ok or not provable:
            break
        S *= 2.0 ** -0.25
    else:  # pragma: no cover - 64 shrinks = 16 bits
        raise KdsnnError(f"layer {p.name}: no scale makes its integer states provably safe ({why})")
    if S < s_min * (1 - 1e-9):
        missing = math.log2(s_min / S)
        raise KdsnnError(
            f"layer {p.name} cannot fit hardware spec {tg.name}: {missing:.1f} bit(s) of headroom missing "
            f"({binding} limits the scale to {S:.4g}, keeping {st.config.min_weight_bits:g} weight "
            f"bits and a threshold >= 1 needs >= {s_min:.4g}); retrain with smaller weights/thresholds "
            "or lower --min-weight-bits (an option of export, evaluate and finetune)")
    if not provable:
        ok, why = plan.provable(st, p)
    return S, binding, plan, ok, why


def run(st: LoweringState) -> None:
    tg = st.target
    fixed_pops = (st.plan or {}).get("populations", {})
    for p in st.pops:
        _check_target(st, p)
        conns = st.incoming(p.name)
        if p.name in fixed_pops:          # trained on these scales (kdsnn.deploy_exact): keep them
            S, binding = float(fixed_pops[p.name]["scale"]), "deployment-exact plan (trained on it)"
            plan = _Plan(st, p, conns, S, fixed_pops[p.name])
            ok, why = plan.provable(st, p)
        else:
            S, binding, plan, ok, why = _choose(st, p, conns)
        cal = st.stats[p.name]
        M = tg.state_max
        u_cal_int = S * cal["u_max"] * (1 << tg.act_shift)
        v_cal_int = S * max(abs(cal["v_min"]), abs(cal["v_max"])) * (1 << tg.act_shift)
        never = p.reset == "none"
        v_lim = (tg.vth_max << tg.vth_shift) if never else M - 1
        st.scales[p.name] = S
        st.int_conns.extend(plan.conns)
        st.int_pops.append(Population(
            name=p.name, shape=tuple(p.shape), vth=int(plan.vth), bias_mant=plan.bias_mant.reshape(p.shape),
            bias_exp=int(plan.bias_exp), du=plan.du, dv=plan.dv, readout=p.readout,
            out_scale=float(1.0 / ((1 << tg.act_shift) * S * st.T)) if p.readout and never else 1.0,
            reset="zero" if never else p.reset, readout_kind="v" if never else "spikes"))
        st.report[p.name] = {
            "scale": S, "binding": binding, "guarantee": "worst-case" if ok else "calibration",
            "why_not_provable": "" if ok else why, "neuron": p.kind, "reset": p.reset,
            "du": plan.du, "dv": plan.dv, "decay": plan.decay,
            "threshold_rel_error": (abs(plan.vth / S - p.theta) / p.theta
                                    if not never and p.theta > 0 else 0.0),
            "vth": int(plan.vth), "theta": p.theta, "bias_exp": int(plan.bias_exp),
            "u_headroom_bits": float(math.log2(M / u_cal_int)) if u_cal_int > 0 else None,
            "v_headroom_bits": float(math.log2(v_lim / v_cal_int)) if v_cal_int > 0 else None,
            "calibration": dict(cal), "connections": plan.detail,
        }
    st.log.append(f"{NAME}: " + ", ".join(f"{k}={v['scale']:.4g}({v['guarantee']})" for k, v in st.report.items()))
    worst = max(st.report.items(), key=lambda kv: max(kv[1]["decay"]["alpha_rel_error"],
                                                      kv[1]["decay"]["beta_rel_error"]), default=None)
    if worst is not None:
        d = worst[1]["decay"]
        err = max(d["alpha_rel_error"], d["beta_rel_error"])
        if err > 0:
            st.log.append(f"{NAME}: decay quantisation (12-bit du/dv): largest relative error {err:.2e} "
                          f"in {worst[0]} (alpha {d['alpha']:.6g} -> {d['alpha_int']:.6g}, "
                          f"beta {d['beta']:.6g} -> {d['beta_int']:.6g})")
