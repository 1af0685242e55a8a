"""The float semantics of NIR dynamics in discrete time: one discretisation, one place.

NIR states its neurons in continuous time (nir/ir/neuron.py). kdsnn runs them in steps of
`dt` seconds with ONE forward-Euler discretisation, the one snnTorch, Norse and Lava's CUBA
LIF compute. Every backend takes it from here: the float executors (the reference backend,
the lowering's calibration) step it with `TensorNeuron`, its one implementation on torch
tensors; the integer lowering maps a `DiscreteNeuron` 1:1 onto Lava's CUBA LIF (du = alpha,
dv = beta, bias, vth), so float and integer cannot drift apart in their reading of a graph.
All six NIR neurons take one common form, per neuron and step t (zero state at the start of
a sample; a[t] = the summed synaptic input arriving at step t):

    u[t] = (1 - alpha) * u[t-1] + gain * a[t]          current     (alpha = 1: no current state)
    v[t] = (1 - beta)  * v[t-1] + u[t] + bias          voltage     (beta = 0: no leak)
    s[t] = v[t] > v_threshold                          spike       (strict >, as NIR and Lava)
    reset where s[t]:  "zero"      v[t] = v_reset
                       "subtract"  v[t] = v[t] - v_threshold
                       "none"      never fires (LI, CubaLI, I: v_threshold = +inf)

Forward Euler of NIR's equations with step dt (r: resistance, w_in: input weight):

    IF       dv/dt = r I              alpha=1, beta=0, gain = 1 if r == 1 else dt*r
    I        dv/dt = r I              as IF, never fires
    LIF      tau dv/dt = v_leak - v + r I
                                      alpha=1, beta=dt/tau, gain=dt*r/tau, bias=dt*v_leak/tau
    LI       as LIF, never fires
    CubaLIF  tau_syn dI/dt = -I + w_in S ;  tau_mem dv/dt = v_leak - v + r I
                                      alpha=dt/tau_syn, beta=dt/tau_mem,
                                      gain=(dt/tau_syn)*w_in*(dt*r/tau_mem)  (the membrane's input
                                      factor dt*r/tau_mem is folded into u: exact, linear),
                                      bias=dt*v_leak/tau_mem
    CubaLI   as CubaLIF, never fires

Conventions the exporters rely on, kept exactly:
- IF/I `r == 1` means "add the input once per step" (v += a): kdsnn's, Sinabs' and the NIR
  paper's IF graphs. Any other r is continuous (v += dt*r*a): SpikingJelly writes r = 1/dt,
  which is then unit gain again. A continuous r needs dt.
- tau = r = inf (snnTorch's beta = 1, written as tau = dt/(1-beta), r = tau/dt) is a unit-gain,
  non-leaky integrator: the ratio r/tau is 1/dt by that convention, so gain = 1 without dt.
  Likewise tau_syn = w_in = inf (snnTorch's alpha = 1) is a non-decaying current of unit gain.
  tau = inf with a finite r (input term r*I/tau = 0) is refused: the neuron never integrates.
- snnTorch's beta and alpha are exactly 1 - beta_kdsnn and 1 - alpha_kdsnn here (its graphs
  use dt = 1e-4 s; Norse and Rockpool 1e-3 s; SpikingJelly 1e-4 s).

Exact-exponential frameworks (Rockpool, Sinabs' LIF, NIR's `lif_exact.csv`) decay by
exp(-dt/tau) per step instead of 1 - dt/tau; the two differ by (dt/tau)^2 / 2 per step
relative (8e-4 at dt/tau = 0.04, the NIR paper's LIF), see docs/design.md, "Float semantics".

Time structure (`closing_edges`, `DiscreteDelay`): an edge that closes a cycle carries a
one-step delay (its target reads the source's value of step t-1, zero at t = 0), as on
Loihi and in snnTorch's RLeaky/RSynaptic; a NIR `Delay` of d seconds is d/dt whole steps,
y[t] = x[t - d/dt] (zero before the sample starts); any other delay is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import nir
import numpy as np

from kdsnn.errors import KdsnnError

if TYPE_CHECKING:
    import torch

RESETS = ("zero", "subtract")
NEURONS = (nir.IF, nir.I, nir.LIF, nir.LI, nir.CubaLIF, nir.CubaLI)
SPIKING = (nir.IF, nir.LIF, nir.CubaLIF)
EXPORTER_DT = "snnTorch and SpikingJelly write graphs for dt = 1e-4 s, Norse and Rockpool for 1e-3 s"
LAST_SUBTRACTIVE_NIR = (1, 0, 5)
SNAP = 1e-6   # a decay this close to 1 is float32 rounding of tau == dt (it is set to 1)   # nir <= 1.0.5 specified IF/LIF reset as subtractive


@dataclass(frozen=True, eq=False)
class DiscreteNeuron:
    r"""A NIR neuron node discretised at dt (module docstring: the common form).

    Per-neuron float64 arrays of the node's (batch-free) shape:
    alpha, beta  fraction of u and v that decays per step (alpha = 1: u holds no state)
    gain         input weight of u (w_in, r and the dt/tau factors folded in)
    bias         constant added to v per step (v_leak folded in)
    v_threshold  +inf for the non-firing LI, CubaLI, I
    v_reset      the value "zero" resets to (unused by "subtract")
    reset        "zero", "subtract" or "none"
    kind         the NIR class name it came from; notes: what the discretisation assumed.
    """

    kind: str
    alpha: np.ndarray
    beta: np.ndarray
    gain: np.ndarray
    bias: np.ndarray
    v_threshold: np.ndarray
    v_reset: np.ndarray
    reset: str
    notes: tuple[str, ...] = field(default=())

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.v_threshold.shape)

    @property
    def spiking(self) -> bool:
        return self.reset != "none"

    @property
    def has_current(self) -> bool:
        """True where u carries state between steps (some alpha != 1)."""
        return bool(np.any(self.alpha != 1.0))

    @property
    def leaks(self) -> bool:
        return bool(np.any(self.beta != 0.0))

    def tensors(self, tensor: Callable[[np.ndarray], torch.Tensor]) -> TensorNeuron:
        """This neuron's step on torch tensors; `tensor` converts each float64 parameter
        array (the caller's dtype and device)."""
        return TensorNeuron(keep_u=tensor(1 - self.alpha), keep_v=tensor(1 - self.beta), gain=tensor(self.gain),
                            bias=tensor(self.bias), v_threshold=tensor(self.v_threshold),
                            v_reset=tensor(self.v_reset), reset=self.reset)


@dataclass(frozen=True, eq=False)
class TensorNeuron:
    """The common form's step on torch tensors: the one implementation the float executors
    run (the reference backend, via `DiscreteNeuron.tensors`; the lowering's calibration,
    on its folded populations). Parameters broadcast against the (B, *shape) state, or are
    one float for the layer; the dtype is the caller's (no conversion here).

    keep_u, keep_v  1 - alpha, 1 - beta; keep_u None: u holds no state (u = gain * a)
    gain            None: the input arrives weighted (u = keep_u * u + a)
    reset           "zero" (v = v_reset), "subtract" (v -= v_threshold), "none" (never fires)
    """

    keep_u: torch.Tensor | float | None
    keep_v: torch.Tensor | float
    gain: torch.Tensor | None
    bias: torch.Tensor | float
    v_threshold: torch.Tensor | float
    v_reset: torch.Tensor | float
    reset: str

    @property
    def spiking(self) -> bool:
        return self.reset != "none"

    def charge(self, u: torch.Tensor, v: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(u[t], v[t] before reset) from u[t-1], v[t-1] and the input a[t]."""
        ga = a if self.gain is None else self.gain * a
        u = ga if self.keep_u is None else self.keep_u * u + ga
        return u, self.keep_v * v + u + self.bias

    def fire(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(v after reset, spikes s = v > v_threshold as bool; None for a non-spiking neuron)."""
        if self.reset == "none":
            return v, None
        import torch  # here, not at the top: reading and discretising a graph needs no torch

        s = v > self.v_threshold
        if self.reset == "zero":
            return torch.where(s, self.v_reset, v), s
        return torch.where(s, v - self.v_threshold, v), s

    def step(self, u: torch.Tensor, v: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                             torch.Tensor | None]:
        """One step of the common form: (u, v after reset, s)."""
        u, v = self.charge(u, v, a)
        v, s = self.fire(v)
        return u, v, s


@dataclass(frozen=True, eq=False)
class DiscreteDelay:
    """A NIR `Delay` in whole steps: y[t] = x[t - steps] (zero before the sample starts).
    `steps` has the node's shape (one delay per element)."""

    steps: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.steps.shape)


# ------------------------------------------------------------------------------ dt
def needs_dt(node: nir.NIRNode, where: str = "") -> str | None:
    """Why `node`'s meaning depends on dt (None when it does not): any finite tau, any
    IF/I r other than 1, any delay. `where` prefixes a refusal (the node's name)."""
    if isinstance(node, nir.Delay):
        return "a Delay is given in seconds"
    if isinstance(node, (nir.IF, nir.I)):
        r = _a(node.r, where, "r")
        return None if np.all(r == 1.0) else f"r={_first(r[r != 1.0]):g} integrates continuously (v += dt*r*I)"
    taus = {"LIF": ("tau",), "LI": ("tau",), "CubaLIF": ("tau_mem", "tau_syn"), "CubaLI": ("tau_mem", "tau_syn")}
    for what in taus.get(type(node).__name__, ()):
        tau = _a(getattr(node, what), where, what)
        if not np.all(np.isposinf(tau)):
            return f"{what}={_first(tau[~np.isposinf(tau)]):g} s is a time constant"
    return None


def dt_required(name: str, node: nir.NIRNode, dt: float | None, source: str = "") -> None:
    """Refuse a dt-dependent node when no dt is known (one line: node, reason, what to do)."""
    why = needs_dt(node, f"{source + ': ' if source else ''}node {name!r}")
    if why is not None and dt is None:
        raise KdsnnError(f"{source + ': ' if source else ''}node {name!r}: {why}, and the graph does not state "
                         f"dt; pass --dt SECONDS ({EXPORTER_DT})")


def check_dt(dt: float | None, what: str = "dt") -> float | None:
    if dt is None:
        return None
    try:
        dt = float(dt)
    except (TypeError, ValueError):
        raise KdsnnError(f"{what} {dt!r} is not a number of seconds") from None
    if not (math.isfinite(dt) and dt > 0):
        raise KdsnnError(f"{what} must be a positive number of seconds, got {dt}")
    return dt


# ------------------------------------------------------------------------------ resets
def parse_version(v: object) -> tuple[int, ...] | None:
    """The `version` dataset of a .nir file ('0.2.0', b'1.0.5') as a tuple, None if absent/odd."""
    if v is None:
        return None
    if isinstance(v, bytes):
        v = v.decode("utf8", "replace")
    parts = []
    for p in str(v).strip().split("."):
        digits = "".join(c for c in p if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
        if not p.isdigit():
            break
    return tuple(parts) or None


def reset_is_ambiguous(version: tuple[int, ...] | None) -> bool:
    """nir <= 1.0.5 specified IF/LIF resets as subtractive while exporters wrote
    reset-to-zero networks into that version: a missing v_reset there means nothing sure."""
    return version is not None and version <= LAST_SUBTRACTIVE_NIR


def resolve_reset(name: str, node: nir.NIRNode, override: str | None, v_reset_stated: bool,
                  version: tuple[int, ...] | None, source: str = "") -> tuple[str, str | None]:
    """The reset mode of a spiking node: ("zero" | "subtract", a note or None).

    `override` is --reset; `v_reset_stated` says whether the file held v_reset (nir fills a
    missing one with zeros). Refuses an ambiguous old file without --reset."""
    if override is not None and override not in RESETS:
        raise KdsnnError(f"--reset {override!r}: choose zero or subtract")
    where = f"{source + ': ' if source else ''}node {name!r}"
    if not v_reset_stated:
        if override is None and reset_is_ambiguous(version):
            vs = ".".join(map(str, version or ()))
            raise KdsnnError(f"{where}: {type(node).__name__} without v_reset in a file written by nir {vs}, "
                             "whose spec made the reset subtractive while exporters wrote reset-to-zero "
                             "networks; pass --reset zero or --reset subtract")
        return (override or "zero"), None
    if override == "subtract":
        vr = _a(node.v_reset, where, "v_reset")
        return "subtract", (f"{name}: --reset subtract overrides the stated v_reset={_first(vr):g} "
                            "(snnTorch writes v_reset = 0 whatever its reset mechanism)")
    return "zero", None


# ------------------------------------------------------------------------------ discretise
def discretise(node: nir.NIRNode, dt: float | None, reset_override: str | None = None,
               name: str = "", source: str = "") -> DiscreteNeuron:
    """The common form of one NIR neuron node at step dt (seconds; None where the node does
    not depend on it). `reset_override`: "zero" | "subtract" | None (the node's own: reset to
    its v_reset). Refusals name the node and the reason."""
    if not isinstance(node, NEURONS):
        raise KdsnnError(f"node {name!r}: {type(node).__name__} is not a neuron")
    dt_required(name, node, dt, source)
    where = f"{source + ': ' if source else ''}node {name!r}"
    kind = type(node).__name__
    notes: list[str] = []
    shape = _shape(node)

    def p(v: object, what: str) -> np.ndarray:
        a = _a(v, where, what)
        if a.size == 1:
            a = np.full(shape, float(np.ravel(a)[0]))
        if tuple(a.shape) != shape:
            raise KdsnnError(f"{where}: {what} has shape {tuple(a.shape)}, the neuron has {shape}")
        if np.isnan(a).any():
            raise KdsnnError(f"{where}: {what} contains NaN")
        return a

    ones, zeros = np.ones(shape), np.zeros(shape)
    if isinstance(node, (nir.IF, nir.I)):
        r = p(node.r, "r")
        gain = np.where(r == 1.0, 1.0, r * (dt if dt is not None else 1.0))
        alpha, beta, bias = ones, zeros, zeros
        if np.any(r != 1.0):
            notes.append(f"{name}: r={_first(r[r != 1.0]):g} read as continuous, gain dt*r={_first(gain[r != 1.0]):g}")
    else:
        tau_name = "tau" if isinstance(node, (nir.LIF, nir.LI)) else "tau_mem"
        tau, r = p(getattr(node, tau_name), tau_name), p(node.r, "r")
        beta, m_gain = _euler(where, tau_name, tau, r, dt, "r")
        bias = beta * p(node.v_leak, "v_leak")
        if isinstance(node, (nir.CubaLIF, nir.CubaLI)):
            tau_s, w_in = p(node.tau_syn, "tau_syn"), p(node.w_in, "w_in")
            alpha, s_gain = _euler(where, "tau_syn", tau_s, w_in, dt, "w_in")
            gain = s_gain * m_gain
        else:
            alpha, gain = ones, m_gain
    if np.any(beta < 0) or np.any(beta > 1) or np.any(alpha < 0) or np.any(alpha > 1):
        norse = (f" (a LIF/LI written by Norse 1.1, whose to_nir stores tau = dt * tau_mem, norse/norse#411: "
                 f"if {dt:g} s is Norse's dt, --dt {dt * dt:g} gives Norse's own per-step decay)"
                 if isinstance(node, (nir.LIF, nir.LI)) and dt is not None else "")
        raise KdsnnError(f"{where}: dt={dt:g} s exceeds a time constant (decay per step outside [0, 1]); "
                         f"forward Euler would oscillate. Pass a smaller --dt{norse}")
    if isinstance(node, SPIKING):
        vth = p(node.v_threshold, "v_threshold")
        vr = p(node.v_reset if node.v_reset is not None else 0.0, "v_reset")
        reset = reset_override if reset_override is not None else "zero"
        if reset not in RESETS:
            raise KdsnnError(f"{where}: reset {reset!r}: choose zero or subtract")
        if not np.all(np.isfinite(vth)):
            raise KdsnnError(f"{where}: v_threshold is not finite")
    else:
        vth, vr, reset = np.full(shape, np.inf), zeros, "none"
    return DiscreteNeuron(kind=kind, alpha=alpha, beta=beta, gain=gain, bias=bias, v_threshold=vth,
                          v_reset=vr, reset=reset, notes=tuple(notes))


def discretise_delay(node: nir.Delay, dt: float | None, name: str = "", source: str = "") -> DiscreteDelay:
    """A NIR Delay (seconds) in whole steps of dt; non-whole or negative delays are refused."""
    dt_required(name, node, dt, source)
    assert dt is not None
    where = f"{source + ': ' if source else ''}node {name!r}"
    d = _a(node.delay, where, "delay")
    if np.isnan(d).any() or np.any(d < 0) or not np.all(np.isfinite(d)):
        raise KdsnnError(f"{where}: Delay {d.ravel()[:4].tolist()} s is not a finite delay >= 0")
    steps = d / dt
    whole = np.round(steps)
    if np.any(np.abs(steps - whole) > 1e-6 * np.maximum(1.0, whole)):
        bad = _first(d[np.abs(steps - whole) > 1e-6 * np.maximum(1.0, whole)])
        raise KdsnnError(f"{where}: Delay {bad:g} s is not a whole number of steps of dt={dt:g} s; "
                         "kdsnn delays by whole steps only")
    return DiscreteDelay(steps=whole.astype(np.int64).reshape(d.shape if d.ndim else (1,)))


def _euler(where: str, tau_name: str, tau: np.ndarray, r: np.ndarray, dt: float | None,
           r_name: str) -> tuple[np.ndarray, np.ndarray]:
    """(decay dt/tau, input gain dt*r/tau) with the tau = r = inf convention (gain 1)."""
    inf_t, inf_r = np.isposinf(tau), np.isposinf(r)
    if np.any(tau <= 0):
        raise KdsnnError(f"{where}: {tau_name}={_first(tau[tau <= 0]):g} is not a positive time constant")
    if np.any(inf_t & ~inf_r):
        raise KdsnnError(f"{where}: {tau_name}=inf with finite {r_name}={_first(r[inf_t & ~inf_r]):g}: the input "
                         f"term {r_name}*I/{tau_name} vanishes and the neuron never integrates; only "
                         f"{r_name}=inf (the exporters' {r_name} = {tau_name}/dt convention) means unit gain")
    if np.any(inf_r & ~inf_t):
        raise KdsnnError(f"{where}: {r_name}=inf with finite {tau_name}: infinite input gain")
    step = dt if dt is not None else 1.0   # dt only missing where every tau is inf
    with np.errstate(divide="ignore", invalid="ignore"):
        decay = np.where(inf_t, 0.0, step / np.where(inf_t, 1.0, tau))
        gain = np.where(inf_t, 1.0, step * np.where(inf_r, 0.0, r) / np.where(inf_t, 1.0, tau))
    # tau == dt written in float32 (snnTorch's alpha = 0) reads as a decay of 1 +- 1e-7
    decay = np.where(np.abs(decay - 1.0) <= SNAP, 1.0, decay)
    return decay, gain


# ------------------------------------------------------------------------------ graph time
def closing_edges(nodes: Iterable[str], edges: Iterable[tuple[str, str]],
                  inputs: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """The edges that close a cycle, each carrying a one-step delay.

    Depth-first from the Input node(s) (then any unvisited node, in `nodes` order), following
    edges in their listed order: an edge into a node still on the DFS stack is a closing edge.
    Without them the graph is a DAG. Deterministic, so every backend delays the same edges;
    for a recurrent layer (neuron -> w_rec -> neuron) it is w_rec -> neuron."""
    names = list(nodes)
    succs: dict[str, list[str]] = {k: [] for k in names}
    for a, b in edges:
        succs[a].append(b)
    state: dict[str, int] = {}   # 1 on stack, 2 done
    out: list[tuple[str, str]] = []
    for root in list(inputs or []) + names:
        if root in state:
            continue
        stack = [(root, iter(succs[root]))]
        state[root] = 1
        while stack:
            k, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[k] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                out.append((k, nxt))
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(succs[nxt])))
    return out


def cycle_through(start: str, end: str, edges: Iterable[tuple[str, str]]) -> list[str]:
    """Nodes of one cycle closed by edge end -> start: a path start ... end (BFS)."""
    succs: dict[str, list[str]] = {}
    for a, b in edges:
        succs.setdefault(a, []).append(b)
    prev: dict[str, str | None] = {start: None}
    queue = [start]
    for k in queue:
        if k == end:
            break
        for b in succs.get(k, []):
            if b not in prev:
                prev[b] = k
                queue.append(b)
    path, k = [], end if end in prev else None
    while k is not None:
        path.append(k)
        k = prev[k]
    return path[::-1]


def discretise_graph(graph: nir.NIRGraph) -> dict[str, DiscreteNeuron | DiscreteDelay]:
    """Every neuron and delay of a canonical graph discretised, as all backends read it:
    dt from metadata `dt` (seconds or absent), resets from metadata `reset_modes`
    ({node: "zero" | "subtract"}), written there by canonicalisation."""
    md: Mapping[str, object] = graph.metadata or {}
    dt = check_dt(md.get("dt"))  # type: ignore[arg-type]
    modes = md.get("reset_modes") or {}
    out: dict[str, DiscreteNeuron | DiscreteDelay] = {}
    for name, node in graph.nodes.items():
        if isinstance(node, NEURONS):
            mode = modes.get(name) if isinstance(modes, Mapping) else None
            out[name] = discretise(node, dt, str(mode) if mode is not None else None, name=name)
        elif isinstance(node, nir.Delay):
            out[name] = discretise_delay(node, dt, name=name)
    return out


def _a(v: object, where: str = "", what: str = "parameter") -> np.ndarray:
    """`v` as float64; a refusal names the node (`where`) and the parameter."""
    try:
        return np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        shown = repr(v)
        raise KdsnnError(f"{where + ': ' if where else ''}{what} {shown[:60]}{'...' if len(shown) > 60 else ''} "
                         "is not numeric; NIR neuron parameters are numbers (arrays of floats)") from None


def _first(a: np.ndarray) -> float:
    a = np.ravel(a)
    return float(a[0]) if a.size else float("nan")


_PARAMS = ("r", "v_threshold", "v_reset", "tau", "tau_mem", "tau_syn", "v_leak", "w_in")


def _shape(node: nir.NIRNode) -> tuple[int, ...]:
    """The layer's shape: that of its largest parameter (exporters write some as scalars)."""
    shapes = [tuple(np.shape(np.asarray(getattr(node, k)))) for k in _PARAMS
              if getattr(node, k, None) is not None]
    s = max(shapes, key=lambda x: int(np.prod(x)) if x else 1, default=())
    return s if s else (1,)
