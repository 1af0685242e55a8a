"""The streaming schedule that makes Lava's delayed network compute the canonical result.

Canonical semantics (docs/design.md, "Integer semantics", `kdsnn.compiler.intnet`): zero synaptic delay, T steps per sample,
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
  Outside its windows (gap steps t >= T, steps before its first window) a population sends
  no spikes (`CountingLIF` masks them): that is what keeps delayed and recurrent
  connections from carrying one sample's activity into the next.
- Recurrent and delayed connections (IntNet delay >= 1): depth is no longer the longest
  path but the smallest solution of depth(dst) >= depth(src) + 1 - delay
  (compiler/passes/depth.py); a connection then needs depth(dst) - depth(src) + delay
  Lava steps, and the period must leave delay gap steps: P >= T + max delay (the default),
  so that what reaches a sample's first `delay` steps is the silent gap of the sample
  before, i.e. the canonical zero.
- A connection c: p -> q has Lava delay 1 but needs depth(q) - depth(p) + delay(c) steps.
  The missing extra(c) = depth(q) - depth(p) + delay(c) - 1 steps (residual shortcuts,
  Delay nodes) come from Lava's `DelayDense` (delays = extra(c), up to 63) for dense
  connections, and from relay populations for conv: p -> Sparse(identity) -> relay LIF
  -> ... (extra(c) relays, each passes a binary spike exactly one step later), and c
  starts at the last one. Connections from the input instead read a source process that
  emits the image extra(c) steps later.
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

from kdsnn.compiler.intnet import INPUT, Connection, IntNet, lava_cycle_error, pipeline_depths

from kdsnn.errors import KdsnnError

DELAY_DENSE_MAX = 63                              # Lava's DelayDense: 6-bit delays (Loihi 2)


def uses_delay_dense(c: Connection, extra: int) -> bool:
    """A delayed dense connection from a population runs as Lava's DelayDense."""
    return c.kind == "dense" and c.src != INPUT and 0 < extra <= DELAY_DENSE_MAX


def depths(net: IntNet) -> dict[str, int]:
    """Pipeline depth of every population (compiler/passes/depth.py); input = 0."""
    net.validate()
    d = pipeline_depths([p.name for p in net.populations], net.connections)
    if isinstance(d, list):
        raise lava_cycle_error(d)
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
    gap = max((int(c.delay) for c in net.connections), default=0)
    P = T + gap if period is None else int(period)
    if P < T + gap:
        raise KdsnnError(f"Lava stream period {P} is shorter than T + the longest connection delay = "
                         f"{T} + {gap}; use a period >= {T + gap}")
    d = depths(net)
    extra: dict[str, int] = {}
    relays: dict[str, int] = {}
    for c in net.connections:
        e = d[c.dst] - d[c.src] + int(c.delay) - 1      # >= 0 by the depth constraints
        extra[c.name] = e
        if e > 0 and c.src != INPUT and not uses_delay_dense(c, e):
            relays[c.src] = max(relays.get(c.src, 0), e)
    return Schedule(T=T, period=P, n_samples=int(n_samples), depth=d, extra=extra, relays=relays)
