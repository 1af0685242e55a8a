"""The `reference` backend: a canonical NIR graph executed in float (DESIGN §3) in PyTorch.

It is rung 2 of the parity ladder: the exported graph, read back, must reproduce the
student's logits. Execution mirrors the student's own (kdsnn.layers.GraphNet): tensors are
time-folded (T*B, ...); with direct encoding everything before the first IF is the same
at every step, so it is computed once on (B, ...) and expanded where a neuron needs it.

    IF:  v[t] = v[t-1] + y[t];  s[t] = v[t] > theta;  v[t] = 0 where s[t]
    I:   logits = (1/T) sum_t y[t]      (the readout; y is static -> logits = y)

float64 by default, so rung 2 measures the export and not float32 rounding at thresholds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import nir
import numpy as np
import torch
import torch.nn.functional as F
from kdsnn.backends.base import Backend, Executable, RunResult
from kdsnn.compiler.nir.canonicalize import canonicalize
from kdsnn.compiler.nir.meta import graph_meta

from kdsnn.errors import KdsnnError

DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass
class _Step:
    name: str
    kind: str                      # "syn", "if", "readout", "output"
    preds: list[str]
    fn: Callable[[torch.Tensor], torch.Tensor] | None = None
    theta: torch.Tensor | None = None
    shape: tuple[int, ...] = ()


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
        # canonicalize also validates (and is idempotent on kdsnn's own graphs)
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
        self.steps = self._plan()
        self.if_layers = [s.name for s in self.steps if s.kind == "if"]

    # ---------------------------------------------------------------- plan
    def _t(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=self.dtype, device=self.device)

    def _plan(self) -> list[_Step]:
        preds: dict[str, list[str]] = {k: [] for k in self.graph.nodes}
        for a, b in self.graph.edges:
            preds[b].append(a)
        steps = []
        for name, n in self.graph.nodes.items():  # canonical graphs are topologically ordered
            ps = preds[name]
            if isinstance(n, nir.Input):
                continue
            if isinstance(n, nir.Output):
                steps.append(_Step(name, "output", ps))
            elif isinstance(n, nir.IF):
                steps.append(_Step(name, "if", ps, theta=self._t(n.v_threshold),
                                   shape=tuple(n.v_threshold.shape)))
            elif isinstance(n, nir.I):
                steps.append(_Step(name, "readout", ps))
            else:
                steps.append(_Step(name, "syn", ps, fn=self._fn(n)))
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
        x = np.asarray(x)
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise KdsnnError(f"inputs of shape {tuple(x.shape[1:])} do not match the graph's input "
                             f"{self.input_shape}")
        t0 = time.perf_counter()
        n = len(x)
        logits: list[np.ndarray] = []
        counts = {k: np.zeros(n, np.int64) for k in self.if_layers}
        per_step = {k: np.zeros((n, self.T), np.int64) for k in self.if_layers}
        trains = ({s.name: np.zeros((n, self.T, *s.shape), np.uint8) for s in self.steps if s.kind == "if"}
                  if record else None)
        starts = range(0, n, self.batch_size)
        if progress:
            from tqdm import tqdm

            starts = tqdm(starts, desc="reference", unit="batch", leave=False)
        with torch.no_grad():
            for i in starts:
                xb = torch.as_tensor(x[i:i + self.batch_size], dtype=self.dtype, device=self.device)
                out, spk = self._forward(xb, record)
                logits.append(out.cpu().numpy())
                for k, (ps, tr) in spk.items():
                    per_step[k][i:i + len(xb)] = ps
                    counts[k][i:i + len(xb)] = ps.sum(1)
                    if trains is not None and tr is not None:
                        trains[k][i:i + len(xb)] = tr
        out_logits = np.concatenate(logits) if logits else np.zeros((0, self.meta["num_classes"]))
        return RunResult(logits=out_logits, spike_counts=counts, backend="reference", T=self.T,
                         steps=self.T, wall_s=time.perf_counter() - t0, layer_spikes_per_step=per_step,
                         spike_trains=trains, extra={"dtype": str(self.dtype).replace("torch.", "")})

    def _forward(self, x: torch.Tensor, record: bool):
        T, B = self.T, x.shape[0]
        vals: dict[str, tuple[torch.Tensor, bool]] = {}
        first_in = next(k for k, v in self.graph.nodes.items() if isinstance(v, nir.Input))
        vals[first_in] = (x, True)
        spikes: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        out = None
        for st in self.steps:
            ins = [vals[p] for p in st.preds]
            if len(ins) == 1:
                h, static = ins[0]
            else:
                static = all(s for _, s in ins)
                h = sum(_expand(t, T) if (s and not static) else t for t, s in ins)
            if st.kind == "syn":
                vals[st.name] = (st.fn(h), static)
            elif st.kind == "if":
                ys = (_expand(h, T) if static else h).reshape(T, B, *h.shape[1:])
                v = torch.zeros_like(ys[0])
                s_all = torch.empty_like(ys)
                for t in range(T):
                    v = v + ys[t]
                    s = v > st.theta
                    v = v.masked_fill(s, 0.0)
                    s_all[t] = s
                per = s_all.flatten(2).sum(2).transpose(0, 1).round().long().cpu().numpy()  # (B, T)
                tr = s_all.transpose(0, 1).to(torch.uint8).cpu().numpy() if record else None
                spikes[st.name] = (per, tr)
                vals[st.name] = (s_all.reshape(T * B, *h.shape[1:]), False)
            elif st.kind == "readout":
                vals[st.name] = (h if static else h.reshape(T, B, *h.shape[1:]).mean(0), True)
            else:
                out = h
        assert out is not None
        return out, spikes


def _expand(x: torch.Tensor, T: int) -> torch.Tensor:
    """Static (B, ...) -> time-folded (T*B, ...)."""
    return x.unsqueeze(0).expand(T, *x.shape).reshape(T * x.shape[0], *x.shape[1:])
