"""IntNet -> a graph of Lava processes, run with Loihi2SimCfg(select_tag="fixed_pt"), bit-exact
with the canonical integer semantics (docs/design.md, "Integer semantics").

What each IntNet piece becomes (layouts: `layout.py`; timing: `schedule.py`):
  input             `GradedSource` (one per distinct input delay), graded int32 spikes
                    (a temporal input sends one frame per step)
  dense connection  `Dense(num_message_bits=24 if graded else 0)`, rows/columns permuted to
                    Lava's flat order, weight_exp / num_weight_bits / sign_mode passed through
                    (Lava's own clip/truncate applies, exactly as intsim applies it);
                    recurrent ones are plain Dense too (Lava's one-step synaptic delay is
                    the cycle's delay); one that needs extra steps (delay, shortcut) is
                    Lava's `DelayDense` with delays = the extra steps
  conv connection   `Conv` with the kernel flipped and transposed to (C_out, W, H, C_in/g);
                    Lava's Conv uses its int32 weights as given (no clip/truncate, no
                    weight_exp) and wraps its output to 24 bits -- intsim does the same.
                    conv_model="lava" runs Lava's own PyConvModelFixed; "im2col" (default)
                    runs the bit-identical, ~100x faster `PyConvModelFixedIm2col`
  population        `CountingLIF` (= Lava's `LIFReset` + bit-accurate model, observed),
                    du/dv passed through, reset_interval = period,
                    reset_offset = (1 + depth) mod period; reset "subtract" switches its
                    model's voltage reset to v -= vth << 6 (processes.py);
                    bias_mant is stored in Lava's int16 register (intsim wraps it alike)
  readout           the same, with the IntNet's vth (the lowering picks one v cannot
                    exceed; intsim thresholds the readout with the same vth)
  conv extra delay  relay chain: `Sparse(identity)` -> `LIF(vth=0)` per extra step
"""

# ruff: noqa: E402  (lava is imported after import_lava(), which must run first)
from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sps
from kdsnn.backends.lava.runtime import import_lava

import_lava()                                    # before any lava import: see import_lava

from kdsnn.backends.lava import layout
from kdsnn.backends.lava.interrupt import LavaSession
from kdsnn.backends.lava.procs.processes import CountingLIF, GradedSource, PyConvModelFixedIm2col
from kdsnn.backends.lava.schedule import Schedule, uses_delay_dense
from kdsnn.compiler.intnet import INPUT, Connection, IntNet
from kdsnn.compiler.targets import LOIHI as _LAVA
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.conv.process import Conv
from lava.proc.dense.process import DelayDense, Dense
from lava.proc.lif.process import LIF
from lava.proc.sparse.process import Sparse
from lava.utils.weightutils import SignMode, clip_weights, truncate_weights

from kdsnn.errors import KdsnnError

SIGN = {"mixed": SignMode.MIXED, "excitatory": SignMode.EXCITATORY,
        "inhibitory": SignMode.INHIBITORY}
GRADED_BITS = _LAVA.max_message_bits        # Lava's graded payload (24 bits)
DECAY_MAX = _LAVA.decay_unity - 1           # du, dv in [0, 4095]
CONV_MODELS = ("im2col", "lava")


def run_config(conv_model: str = "im2col") -> Loihi2SimCfg:
    """Lava's fixed-point simulator config; Conv's model per `conv_model`."""
    if conv_model not in CONV_MODELS:
        raise KdsnnError(f"unknown conv_model {conv_model!r}; choose one of {', '.join(CONV_MODELS)}")
    exceptions = {Conv: PyConvModelFixedIm2col} if conv_model == "im2col" else {}
    return Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=exceptions)


def dense_effective_weight(c: Connection) -> np.ndarray:
    """The weights Lava's fixed-point Dense really uses: clipped to 8 bits, then truncated."""
    mode = SIGN[c.sign_mode]
    w = clip_weights(np.asarray(c.weight, dtype=np.int32), mode, num_bits=_LAVA.weight_bits)
    return truncate_weights(w, mode, int(c.num_weight_bits))


def check(net: IntNet) -> None:
    """What Lava cannot hold without silently changing values: refuse it, name it."""
    for p in net.populations:
        if not 0 <= p.du <= DECAY_MAX or not 0 <= p.dv <= DECAY_MAX:
            raise KdsnnError(f"population {p.name}: du/dv must be in [0, {DECAY_MAX}] for Lava")
        if not -2 ** 15 <= p.bias_exp < 2 ** 15:
            raise KdsnnError(f"population {p.name}: bias_exp {p.bias_exp} out of range")
    for c in net.connections:
        if c.sign_mode not in SIGN:
            raise KdsnnError(f"connection {c.name}: unknown sign_mode {c.sign_mode!r}")
        if c.kind == "conv":
            if c.weight_exp != 0:
                raise KdsnnError(f"connection {c.name}: Lava's Conv ignores weight_exp, but it "
                                 f"is {c.weight_exp}; re-lower with weight_exp = 0 for conv")
            if len(net.shape_of(c.src)) != 3 or len(net.shape_of(c.dst)) != 3:
                raise KdsnnError(f"connection {c.name}: conv needs (C, H, W) source and destination")


@dataclass
class Built:
    """The process graph of one run and where each population writes its observations."""

    anchor: Any                                    # any process of the graph (run/stop on it)
    dumps: dict[str, Path]                         # population name -> .npy/.npz file
    n_processes: int


def build(net: IntNet, sched: Schedule, xq: np.ndarray, dump_dir: Path,
          record: bool = False) -> Built:
    """Create and connect the processes for samples xq (N, *input_shape) int32."""
    T, P, N = sched.T, sched.period, sched.n_samples
    procs: list[Any] = []
    out_ports: dict[str, Any] = {}
    lshape: dict[str, tuple[int, ...]] = {INPUT: layout.lava_shape(tuple(net.input.shape))}
    temporal = bool(net.input.temporal)
    xq = np.asarray(xq, dtype=np.int32)
    if temporal:                                   # (N, T, *shape): each frame in Lava layout
        n_, t_ = xq.shape[:2]
        x_lava = layout.to_lava(xq.reshape(n_ * t_, *xq.shape[2:]), tuple(net.input.shape))
        x_lava = x_lava.reshape(n_, t_, *x_lava.shape[1:])
    else:
        x_lava = layout.to_lava(xq, tuple(net.input.shape))
    sources: dict[int, Any] = {}

    def source(delay: int) -> Any:
        if delay not in sources:
            sources[delay] = GradedSource(data=x_lava, T=T, period=P, delay=delay, temporal=temporal,
                                          name=f"input_d{delay}")
            procs.append(sources[delay])
        return sources[delay].s_out

    dumps: dict[str, Path] = {}
    pops: dict[str, Any] = {}
    for p in net.populations:
        shape = tuple(p.shape)
        ls = layout.lava_shape(shape)
        lshape[p.name] = ls
        bias = np.asarray(p.bias_mant, dtype=np.int64).reshape(1, *shape)
        bias = layout.to_lava(bias, shape)[0]
        dump = dump_dir / f"pop{len(dumps)}.npz"
        dumps[p.name] = dump
        observe = dict(depth=sched.depth[p.name], T=T, period=P, n=N,
                       total_steps=sched.total_steps, dump=str(dump),
                       readout=bool(p.readout), trains=bool(record), reset=p.reset,
                       readout_kind=p.readout_kind)
        lif = CountingLIF(shape=ls, du=int(p.du), dv=int(p.dv), bias_mant=bias,
                          bias_exp=int(p.bias_exp),
                          vth=int(p.vth),
                          reset_interval=P, reset_offset=sched.reset_offset(p.name),
                          name=p.name, observe=observe)
        pops[p.name] = lif
        procs.append(lif)
        out_ports[p.name] = lif.s_out

    # relay chains for binary sources of delayed (shortcut) connections
    taps: dict[tuple[str, int], Any] = {}
    for src, n_relays in sched.relays.items():
        ls = lshape[src]
        n = int(np.prod(ls))
        prev = out_ports[src]
        for i in range(1, n_relays + 1):
            ident = sps.identity(n, dtype=np.int32, format="csr")
            syn = Sparse(weights=ident, sign_mode=SignMode.EXCITATORY, num_weight_bits=_LAVA.weight_bits,
                         name=f"{src}_relay{i}_syn")
            _connect(prev, syn.s_in)
            relay = LIF(shape=ls, du=DECAY_MAX, dv=0, vth=0, bias_mant=0, bias_exp=0,
                        name=f"{src}_relay{i}")
            _connect(syn.a_out, relay.a_in)
            procs += [syn, relay]
            prev = relay.s_out
            taps[(src, i)] = prev

    for c in net.connections:
        e = sched.extra[c.name]
        delayed = uses_delay_dense(c, e)
        if c.src == INPUT:
            src_port = source(e)
        else:
            src_port = taps[(c.src, e)] if e > 0 and not delayed else out_ports[c.src]
        graded = c.src == INPUT or bool(c.graded)
        bits = GRADED_BITS if graded else 0
        src_shape, dst_shape = net.shape_of(c.src), net.shape_of(c.dst)
        if c.kind == "dense":
            w = layout.dense_weight(np.asarray(c.weight, dtype=np.int32), src_shape, dst_shape)
            kw = dict(weights=w, weight_exp=int(c.weight_exp), num_weight_bits=int(c.num_weight_bits),
                      sign_mode=SIGN[c.sign_mode], num_message_bits=bits, name=c.name)
            syn = DelayDense(delays=int(e), **kw) if delayed else Dense(**kw)
        else:
            w = layout.conv_weight(np.asarray(c.weight, dtype=np.int32))
            syn = Conv(weight=w, weight_exp=0, input_shape=lshape[c.src],
                       padding=layout.xy(c.padding), stride=layout.xy(c.stride),
                       dilation=layout.xy(c.dilation), groups=int(c.groups),
                       num_weight_bits=int(c.num_weight_bits), num_message_bits=bits,
                       name=c.name)
            # largest |message| for the im2col model's exactness proof (binary: 1)
            syn.proc_params["s_max"] = int(net.input.qmax) if c.src == INPUT else 1
            if tuple(syn.output_shape) != lshape[c.dst]:
                raise KdsnnError(f"connection {c.name}: conv output {tuple(syn.output_shape)} "
                                 f"(W, H, C) does not match {c.dst} {lshape[c.dst]}")
        _connect(src_port, syn.s_in)
        _connect(syn.a_out, pops[c.dst].a_in)
        procs.append(syn)
    return Built(anchor=pops[net.populations[0].name], dumps=dumps, n_processes=len(procs))


def _connect(out_port: Any, in_port: Any) -> None:
    """Connect, reshaping (a C-order view in Lava's flat order) where shapes differ."""
    if tuple(out_port.shape) != tuple(in_port.shape):
        out_port = out_port.reshape(tuple(in_port.shape))
    out_port.connect(in_port)


@dataclass
class Observed:
    """What a streamed run returns, in canonical layouts."""

    counts: dict[str, np.ndarray]                  # (N, T) int64
    logits: np.ndarray                             # (N, classes) int64
    trains: dict[str, np.ndarray] | None
    steps: int
    n_processes: int
    build_s: float                                 # creating the process objects
    compile_s: float                               # Lava compile + spawn + init of processes
    run_s: float                                   # stepping
    stop_s: float                                  # stop: join processes, free shared memory


def run_stream(net: IntNet, sched: Schedule, xq: np.ndarray, record: bool = False,
               progress: Any = None, chunks: int = 1, conv_model: str = "im2col") -> Observed:
    """Build, run for sched.total_steps steps (in `chunks` pieces for progress), stop, read."""
    t0 = time.perf_counter()
    session = LavaSession()           # Ctrl-C / SIGTERM: a bounded stop, nothing left behind
    tmp = Path(tempfile.mkdtemp(prefix="kdsnn_lava_"))
    try:
        with session:
            built = build(net, sched, xq, tmp, record=record)
            cfg = run_config(conv_model)
            t1 = time.perf_counter()
            total = sched.total_steps
            done = 0
            chunks = max(1, min(int(chunks), total))
            t2 = t1
            try:
                built.anchor.create_runtime(run_cfg=cfg)
                t2 = time.perf_counter()
                for i in range(chunks):
                    n = (total * (i + 1)) // chunks - done
                    if n <= 0:
                        continue
                    built.anchor.run(condition=RunSteps(num_steps=n, blocking=True))
                    done += n
                    if progress is not None:
                        progress(n)
                t3 = time.perf_counter()
            except BaseException:
                session.stop(built.anchor, failed=True)
                if session.interruption() is not None:
                    raise session.interruption() from None
                raise
            session.stop(built.anchor)
            if session.interruption() is not None:
                raise session.interruption()
        t4 = time.perf_counter()
        counts: dict[str, np.ndarray] = {}
        trains: dict[str, np.ndarray] | None = {} if record else None
        logits = None
        for p in net.populations:
            path = built.dumps[p.name]
            if not path.is_file():
                raise KdsnnError(f"Lava population {p.name} wrote no results ({path.name}); "
                                 "the Lava run did not reach its last step")
            with np.load(path, allow_pickle=False) as z:
                counts[p.name] = z["counts"]
                if p.readout:
                    logits = layout.from_lava_flat(z["v"], tuple(p.shape)).reshape(len(xq), -1)
                if record:
                    tr = layout.from_lava_flat(z["trains"], tuple(p.shape))
                    trains[p.name] = tr.astype(np.uint8)
        assert logits is not None
        return Observed(counts=counts, logits=logits.astype(np.int64), trains=trains,
                        steps=total, n_processes=built.n_processes, build_s=t1 - t0,
                        compile_s=t2 - t1, run_s=t3 - t2, stop_s=t4 - t3)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
