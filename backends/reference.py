"""The `reference` backend: a canonical NIR graph executed in float (docs/design.md, "Float semantics") in PyTorch.

It is rung 2 of the parity ladder (the exported graph, read back, must reproduce its
source) and the float oracle of foreign graphs. Every neuron runs the one discretisation of
`kdsnn.compiler.dynamics` through its step on tensors, `TensorNeuron` (forward Euler at the
graph's dt, resets "zero" / "subtract"):

    u[t] = (1 - alpha) u[t-1] + gain a[t];  v[t] = (1 - beta) v[t-1] + u[t] + bias
    s[t] = v[t] > v_threshold;  zero: v = v_reset where s;  subtract: v -= v_threshold where s

Non-spiking neurons (LI, CubaLI, I) pass their voltage on; the readout feeding the Output
gives logits = v[T] / T (for the I readout with unit gain: the mean of its input over T).

Two schedules, same arithmetic:
- acyclic graphs run layer by layer on time-folded tensors (T*B, ...); with direct
  encoding everything before the first neuron is computed once on (B, ...) (kdsnn.timefold);
  a Delay of d steps shifts its input by d steps;
- graphs with cycles run step by step: an edge that closes a cycle
  (`dynamics.closing_edges`) delivers its source's value of step t-1 (zero at t = 0).

Inputs are static (N, *input_shape) images (direct encoding) or spike/current trains
(N, T, *input_shape) (`kdsnn.inputs`). float64 by default, so rung 2 measures the export and
not float32 rounding at thresholds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import nir
import numpy as np
import torch
import torch.nn.functional as F
from kdsnn.backends.base import Backend, Executable, RunResult
from kdsnn.compiler.dynamics import DiscreteDelay, DiscreteNeuron, TensorNeuron, discretise_graph
from kdsnn.compiler.nir.canonicalize import canonicalize
from kdsnn.compiler.nir.meta import graph_meta
from kdsnn.compiler.nir.order import dag_order

from kdsnn.errors import KdsnnError
from kdsnn.inputs import fit_input
from kdsnn.timefold import expand, fold, sum_inputs, unfold

DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass
class _Step:
    name: str
    kind: str                      # "syn", "neuron", "delay", "output"
    preds: list[str]
    delayed: frozenset[str] = frozenset()   # preds whose edge closes a cycle (value of t-1)
    fn: Callable[[torch.Tensor], torch.Tensor] | None = None
    neuron: TensorNeuron | None = None
    disc: DiscreteNeuron | None = None
    delay: np.ndarray | None = None
    shape: tuple[int, ...] = ()
    readout: bool = False


@dataclass
class _Records:
    per_step: dict[str, np.ndarray] = field(default_factory=dict)
    trains: dict[str, np.ndarray] = field(default_factory=dict)
    voltages: dict[str, np.ndarray] = field(default_factory=dict)


class ReferenceBackend(Backend):
    """Float NIR executor (PyTorch, CPU or CUDA)."""

    name: ClassVar[str] = "reference"
    accepts: ClassVar[str] = "nir"
    description: ClassVar[str] = "float execution of the NIR graph in PyTorch (rung 2 of the parity ladder)"
    flow_options: ClassVar[tuple[str, ...]] = ("batch_size", "device")

    def compile(self, net: Any, **options: Any) -> ReferenceExecutable:
        """net: a canonical nir.NIRGraph (foreign graphs are canonicalized first).
        options: T (overrides the graph's), batch_size (256), device ("cpu"), dtype ("float64")."""
        if not isinstance(net, nir.NIRGraph):
            raise KdsnnError(f"the reference backend runs NIR graphs, got {type(net).__name__}")
        # canonicalize also validates (and is idempotent on canonical graphs)
        return ReferenceExecutable(canonicalize(net, source="graph given to reference"), **options)


class ReferenceExecutable(Executable):
    def __init__(self, graph: nir.NIRGraph, T: int | None = None, batch_size: int = 256,
                 device: str | torch.device = "cpu", dtype: str = "float64") -> None:
        if dtype not in DTYPES:
            raise KdsnnError(f"unknown dtype {dtype!r}; choose float64 or float32")
        if int(batch_size) < 1:
            raise KdsnnError(f"batch size must be positive, got {batch_size}")
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise KdsnnError(f"device {device!r} asked for, but CUDA is not available here; use --device cpu")
        self.graph = graph
        self.meta = graph_meta(graph, T)
        self.T = int(self.meta["T"])
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.dtype = DTYPES[dtype]
        self.input_shape = tuple(self.meta["input_shape"])
        self.input_name = next(k for k, v in graph.nodes.items() if isinstance(v, nir.Input))
        self.order, self.closing = dag_order(graph.nodes, list(graph.edges), self.input_name)
        self.steps = self._plan()
        self.recurrent = bool(self.closing)
        self.spiking_layers = [s.name for s in self.steps if s.kind == "neuron" and s.neuron.spiking]
        self.if_layers = self.spiking_layers   # the name rung 2 and the driver use

    # ---------------------------------------------------------------- plan
    def _t(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=self.dtype, device=self.device)

    def _plan(self) -> list[_Step]:
        g = self.graph
        preds: dict[str, list[str]] = {k: [] for k in g.nodes}
        late: dict[str, set[str]] = {k: set() for k in g.nodes}
        for a, b in g.edges:
            preds[b].append(a)
            if (a, b) in self.closing:
                late[b].add(a)
        order = self.order
        dyn = discretise_graph(g)
        out_name = next(k for k, v in g.nodes.items() if isinstance(v, nir.Output))
        steps = []
        for name in order:
            n = g.nodes[name]
            ps, lt = preds[name], frozenset(late[name])
            if isinstance(n, nir.Input):
                continue
            if isinstance(n, nir.Output):
                steps.append(_Step(name, "output", ps, lt))
            elif isinstance(dyn.get(name), DiscreteNeuron):
                d = dyn[name]
                assert isinstance(d, DiscreteNeuron)
                steps.append(_Step(name, "neuron", ps, lt, neuron=d.tensors(self._t), disc=d, shape=d.shape,
                                   readout=out_name in [b for a, b in g.edges if a == name]))
            elif isinstance(dyn.get(name), DiscreteDelay):
                dd = dyn[name]
                assert isinstance(dd, DiscreteDelay)
                steps.append(_Step(name, "delay", ps, lt, delay=dd.steps, shape=dd.shape))
            else:
                steps.append(_Step(name, "syn", ps, lt, fn=self._fn(n)))
        return steps

    def _fn(self, n: nir.NIRNode) -> Callable[[torch.Tensor], torch.Tensor]:
        if isinstance(n, nir.Conv2d):
            w, b = self._t(n.weight), self._t(n.bias)
            st, p, d, g = tuple(n.stride), tuple(n.padding), tuple(n.dilation), int(n.groups)
            return lambda x: F.conv2d(x, w, b, st, p, d, g)
        if isinstance(n, nir.Affine):
            w, b = self._t(n.weight), self._t(n.bias)
            return lambda x: F.linear(x, w, b)
        if isinstance(n, nir.Linear):
            w = self._t(n.weight)
            return lambda x: F.linear(x, w)
        if isinstance(n, nir.Flatten):
            sd, ed = int(n.start_dim), int(n.end_dim)
            k = len(n.input_type["input"])
            sd, ed = sd % k + 1, ed % k + 1
            return lambda x: x.flatten(sd, ed)
        if isinstance(n, (nir.AvgPool2d, nir.SumPool2d)):
            k = tuple(int(v) for v in n.kernel_size)
            s = tuple(int(v) for v in n.stride)
            p = tuple(int(v) for v in n.padding)
            if isinstance(n, nir.AvgPool2d):
                return lambda x: F.avg_pool2d(x, k, s)
            return lambda x: F.avg_pool2d(x, k, s, p, count_include_pad=True, divisor_override=1)
        raise KdsnnError(f"the reference backend cannot run a {type(n).__name__} node")  # pragma: no cover

    # ---------------------------------------------------------------- run
    def run(self, x: np.ndarray, record: bool = False, progress: bool = False) -> RunResult:
        """x: (N, *input_shape) static inputs or (N, T, *input_shape) trains. record: spike
        trains of every spiking layer and voltages (after reset) of every neuron, per step."""
        x, train, _ = fit_input(np.asarray(x), self.input_shape, self.T)
        t0 = time.perf_counter()
        n = len(x)
        logits: list[np.ndarray] = []
        rec = _Records(per_step={k: np.zeros((n, self.T), np.int64) for k in self.spiking_layers})
        if record:
            for s in self.steps:
                if s.kind == "neuron":
                    rec.voltages[s.name] = np.zeros((n, self.T, *s.shape), np.float64)
                    if s.neuron.spiking:
                        rec.trains[s.name] = np.zeros((n, self.T, *s.shape), np.uint8)
        starts = range(0, n, self.batch_size)
        if progress:
            from kdsnn.progress import bar

            starts = bar(starts, "bars", desc="reference", unit="batch")
        with torch.no_grad():
            for i in starts:
                xb = torch.as_tensor(x[i:i + self.batch_size], dtype=self.dtype, device=self.device)
                if train:   # (B, T, ...) -> time-folded (T*B, ...)
                    xb = fold(xb)
                fwd = self._forward_steps if self.recurrent else self._forward_layers
                out, got = fwd(xb, not train, record)
                logits.append(out.cpu().numpy())
                j = slice(i, i + len(out))
                for k, (ps, tr, vs) in got.items():
                    if k in rec.per_step:
                        rec.per_step[k][j] = ps
                    if record:
                        rec.voltages[k][j] = vs
                        if k in rec.trains:
                            rec.trains[k][j] = tr
        out_logits = np.concatenate(logits) if logits else np.zeros((0, self.meta["num_classes"]))
        counts = {k: v.sum(1) for k, v in rec.per_step.items()}
        extra: dict[str, Any] = {"dtype": str(self.dtype).replace("torch.", ""),
                                 "schedule": "step by step" if self.recurrent else "layer by layer"}
        if record:
            extra["voltages"] = rec.voltages
        return RunResult(logits=out_logits, spike_counts=counts, backend="reference", T=self.T,
                         steps=self.T, wall_s=time.perf_counter() - t0, layer_spikes_per_step=rec.per_step,
                         spike_trains=rec.trains if record else None, extra=extra)

    def _forward_layers(self, x: torch.Tensor, static_in: bool, record: bool):
        """Acyclic graphs: each node over all T steps at once (time-folded)."""
        T = self.T
        B = x.shape[0] if static_in else x.shape[0] // T
        vals: dict[str, tuple[torch.Tensor, bool]] = {self.input_name: (x, static_in)}
        got: dict[str, tuple[np.ndarray, np.ndarray | None, np.ndarray | None]] = {}
        out = None
        for st in self.steps:
            h, static = sum_inputs([vals[p] for p in st.preds], T)
            if st.kind == "syn":
                vals[st.name] = (st.fn(h), static)
            elif st.kind == "delay":
                vals[st.name] = (_shift(expand(h, T) if static else h, st.delay, T), False)
            elif st.kind == "neuron":
                nr = st.neuron
                if st.readout and static and not record and _plain_integrator(st.disc):
                    vals[st.name] = (h * nr.gain, True)     # v[T]/T of I(gain) on a constant input
                    continue
                ys = None if static else unfold(h, T)
                u = torch.zeros((B, *st.shape), dtype=self.dtype, device=self.device)
                v = torch.zeros_like(u)
                outs = torch.empty((T, B, *st.shape), dtype=self.dtype, device=self.device)
                vrec = torch.empty_like(outs) if record else None
                for t in range(T):
                    u, v, s = nr.step(u, v, h if static else ys[t])
                    outs[t] = v if s is None else s
                    if vrec is not None:
                        vrec[t] = v
                got[st.name] = _summary(outs if nr.spiking else None, vrec, record)
                if st.readout:
                    vals[st.name] = (v / T, True)
                else:
                    vals[st.name] = (outs.reshape(T * B, *st.shape), False)
            else:
                out = h
        assert out is not None
        return out, got

    def _forward_steps(self, x: torch.Tensor, static_in: bool, record: bool):
        """Graphs with cycles: all nodes at step t, then t+1; closing edges read step t-1."""
        T = self.T
        B = x.shape[0] if static_in else x.shape[0] // T
        xs = None if static_in else unfold(x, T)
        prev: dict[str, torch.Tensor] = {}
        state: dict[str, list[torch.Tensor]] = {}
        history: dict[str, list[torch.Tensor]] = {}
        outs = {st.name: torch.empty((T, B, *st.shape), dtype=self.dtype, device=self.device)
                for st in self.steps if st.kind == "neuron"}
        vrec = {k: torch.empty_like(v) for k, v in outs.items()} if record else {}
        out = None
        for t in range(T):
            cur: dict[str, torch.Tensor] = {self.input_name: x if static_in else xs[t]}
            for st in self.steps:
                ins = []
                for p in st.preds:
                    if p in st.delayed:
                        if t > 0:
                            ins.append(prev[p])
                    else:
                        ins.append(cur[p])
                h = sum(ins) if ins else None
                if st.kind == "syn":
                    cur[st.name] = st.fn(h)
                elif st.kind == "delay":
                    hist = history.setdefault(st.name, [])
                    hist.append(h)
                    cur[st.name] = _delayed(hist, st.delay, t)
                elif st.kind == "neuron":
                    u, v = state.get(st.name) or [torch.zeros((B, *st.shape), dtype=self.dtype, device=self.device)] * 2
                    u, v, s = st.neuron.step(u, v, h)
                    state[st.name] = [u, v]
                    o = v if s is None else s.to(self.dtype)
                    outs[st.name][t] = o
                    if record:
                        vrec[st.name][t] = v
                    cur[st.name] = o
                else:
                    out = h
            prev = cur
        got = {}
        for st in self.steps:
            if st.kind == "neuron":
                got[st.name] = _summary(outs[st.name] if st.neuron.spiking else None, vrec.get(st.name), record)
                if st.readout:
                    out = state[st.name][1] / T
        assert out is not None
        return out, got


def _plain_integrator(d: DiscreteNeuron) -> bool:
    return not d.spiking and not d.has_current and not d.leaks and not np.any(d.bias)


def _summary(spikes: torch.Tensor | None, volts: torch.Tensor | None, record: bool):
    """(per-step counts (B, T), trains (B, T, ...) uint8, voltages (B, T, ...)) of one neuron node."""
    per = (spikes.flatten(2).sum(2).transpose(0, 1).round().long().cpu().numpy() if spikes is not None
           else None)
    tr = spikes.transpose(0, 1).to(torch.uint8).cpu().numpy() if (record and spikes is not None) else None
    vs = volts.transpose(0, 1).cpu().numpy() if (record and volts is not None) else None
    return per, tr, vs


def _shift(h: torch.Tensor, steps: np.ndarray, T: int) -> torch.Tensor:
    """Time-folded h delayed by `steps` (per element) steps; zeros before the sample starts."""
    hs = unfold(h, T)
    out = torch.zeros_like(hs)
    flat_in, flat_out = hs.reshape(T, hs.shape[1], -1), out.view(T, hs.shape[1], -1)
    st = steps.reshape(-1)
    for d in np.unique(st):
        idx = torch.as_tensor(np.flatnonzero(st == d), device=h.device)
        if d < T:
            flat_out[int(d):, :, idx] = flat_in[:T - int(d), :, idx]
    return out.reshape(h.shape)


def _delayed(hist: list[torch.Tensor], steps: np.ndarray, t: int) -> torch.Tensor:
    """Step-by-step delay: element i at step t is the input of step t - steps[i] (zero before 0)."""
    cur = hist[-1]
    out = torch.zeros_like(cur)
    flat_out = out.view(cur.shape[0], -1)
    st = steps.reshape(-1)
    for d in np.unique(st):
        if t - int(d) >= 0:
            idx = torch.as_tensor(np.flatnonzero(st == d), device=cur.device)
            flat_out[:, idx] = hist[t - int(d)].reshape(cur.shape[0], -1)[:, idx]
    return out
