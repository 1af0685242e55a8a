"""The streaming schedule that makes Lava's delayed network compute the canonical result.

Canonical semantics (DESIGN §4, `kdsnn.compiler.intnet`): zero synaptic delay, T steps per sample,
zero state at the start of every sample. Lava differs in one place: every Dense/Conv/Sparse
process sends at step tau the accumulation of the spikes it received at tau - 1, so a
population that is `d` connections away from the input sees the input of step tau only at
tau + d (LIF and source processes add no delay: a neuron receives, updates and sends in the
same step). The schedule below undoes that exactly (Lava time steps start at 1):

- depth(input) = 0; depth(p) = 1 + max depth of p's sources (longest path).
- Samples are streamed back to back with period P (default P = T).  Sample k's canonical
  step t of population p happens at Lava step

        tau(p, k, t) = k * P + 1 + depth(p) + t              (0 <= t < T)

  so the window of p for sample k is the P steps starting at k * P + 1 + depth(p).
- Every population is a `LIFReset` with reset_interval = P and
  reset_offset = (1 + depth(p)) mod P: u and v are zeroed at the start of each window,
  before that step's input is integrated -- the canonical "zero state at sample start".
- A connection c: p -> q has Lava delay 1 but needs depth(q) - depth(p) steps. The missing
  extra(c) = depth(q) - depth(p) - 1 steps (residual shortcuts, > 0 only on reconvergent
  paths) come from relay populations: p -> Sparse(identity) -> relay LIF -> ... (extra(c)
  relays, each passes a binary spike exactly one step later), and c starts at the last one.
  Connections from the input instead read a source process that emits the image extra(c)
  steps later.
- The source emits sample k's quantized image at steps k * P + 1 + delay + t, t < T,
  and zeros in the gap steps t >= T (only when P > T).
- Then every hop maps p's window-relative step t onto the same t of q, for every sample:
  whatever happens in a window's gap steps (t >= T) or before a population's first window
  only reaches the gap steps / pre-window steps of the populations downstream, and the
  window reset clears u and v. Hence P >= T suffices (no need for P >= T + depth):
  the network is a pipeline, one sample every P steps after a fill of depth steps.
- The readout never fires; its v at its step t = T - 1 of sample k (Lava step
  k * P + depth(readout) + T) is sample k's integer logit.
- The run lasts total_steps = (N - 1) * P + max depth + T steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kdsnn.compiler.intnet import INPUT, IntNet

from kdsnn.errors import KdsnnError


def depths(net: IntNet) -> dict[str, int]:
    """Longest path (in connections) from the input to every population; input = 0."""
    d: dict[str, int] = {INPUT: 0}
    for p in net.populations:                     # topological order (IntNet.validate)
        srcs = [c.src for c in net.incoming(p.name)]
        missing = [s for s in srcs if s not in d]
        if missing or not srcs:
            raise KdsnnError(f"population {p.name}: sources {missing or 'none'} are not earlier "
                             "populations; the IntNet is not in topological order")
        d[p.name] = 1 + max(d[s] for s in srcs)
    return d


@dataclass
class Schedule:
    """Timing of one streamed Lava run of `n_samples` samples (see the module docstring)."""

    T: int
    period: int
    n_samples: int
    depth: dict[str, int]
    extra: dict[str, int]                         # connection name -> extra delay (relays)
    relays: dict[str, int] = field(default_factory=dict)   # binary source -> relay chain length

    @property
    def max_depth(self) -> int:
        return max(self.depth.values())

    @property
    def total_steps(self) -> int:
        return (self.n_samples - 1) * self.period + self.max_depth + self.T

    def reset_offset(self, pop: str) -> int:
        return (1 + self.depth[pop]) % self.period

    def step(self, pop: str, k: int, t: int) -> int:
        """Lava time step (from 1) of canonical step t of sample k at population `pop`."""
        return k * self.period + 1 + self.depth[pop] + t

    def slot(self, depth: int, time_step: int) -> tuple[int, int] | None:
        """(sample, canonical step) that Lava step `time_step` is at a depth, or None."""
        return slot(time_step, depth, self.period, self.T, self.n_samples)


def slot(time_step: int, depth: int, period: int, T: int, n: int) -> tuple[int, int] | None:
    """Shared by the host and the process models (pure arithmetic, no imports needed)."""
    rel = time_step - 1 - depth
    if rel < 0:
        return None
    k, t = divmod(rel, period)
    if k >= n or t >= T:
        return None
    return k, t


def make_schedule(net: IntNet, n_samples: int, period: int | None = None) -> Schedule:
    """The schedule for streaming `n_samples` samples through `net` with period P."""
    if n_samples < 1:
        raise KdsnnError("the Lava backend needs at least one sample to run")
    T = int(net.T)
    if T < 1:
        raise KdsnnError(f"IntNet T = {T}; it must be at least 1")
    P = T if period is None else int(period)
    if P < T:
        raise KdsnnError(f"Lava stream period {P} is shorter than T = {T}; use a period >= T")
    d = depths(net)
    extra: dict[str, int] = {}
    relays: dict[str, int] = {}
    for c in net.connections:
        e = d[c.dst] - d[c.src] - 1               # >= 0: depth is the longest path
        extra[c.name] = e
        if e > 0 and c.src != INPUT:
            relays[c.src] = max(relays.get(c.src, 0), e)
    return Schedule(T=T, period=P, n_samples=int(n_samples), depth=d, extra=extra, relays=relays)
