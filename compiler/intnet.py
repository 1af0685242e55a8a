"""IntNet: the integer IR every integer backend executes bit for bit (docs/design.md, "Integer semantics").

Read it like NIR's own IR: one small dataclass per concept, shapes and parameters explicit,
numpy arrays only, no framework. Semantics per population p and step t (zero state at the
start of each sample, T steps):

    a[t]  = sum over incoming connections c of  accumulate_c(s_src[t - delay_c])
            (zero when t - delay_c < 0; delay_c = 0 is the canonical same-step synapse,
            delay_c >= 1 whole steps: recurrent edges and NIR Delay nodes)
            dense: Lava's PyDenseModelBitAcc — weights clipped to 8 bits and truncated
            by (num_weight_bits, sign_mode), int32 dot product, then << weight_exp
            (>> -weight_exp, an arithmetic shift, when negative)
            conv: Lava's PyConvModelFixed — weights used as given (no clip/truncate),
            weight_exp ignored (so conv connections carry weight_exp = 0), the sum
            wrapped to 24 bits
    u[t]  = wrap24(decay(u[t-1], du + 1) + (a[t] << 6))     Lava's one-sided test:
            x > 2^23 -> x - 2^24;  x <= -2^23 -> x + 2^24
    v[t]  = clip24(decay(v[t-1], dv) + u[t] + bias)          clip to [-(2^23-1), 2^23-1]
            bias = int16(bias_mant) << bias_exp  (>> -bias_exp when negative)
    s[t]  = v[t] > (vth << 6)
            reset "zero":     v[t] = 0 where s[t]              (Lava's LIF)
            reset "subtract": v[t] -= vth << 6 where s[t]      (a kdsnn Lava process model;
                                                                 targets with programmable
                                                                 neurons only, e.g. loihi2)
    decay(x, d) = sign(x) * ((|x| * (4096 - d)) >> 12)

du = 4095, dv = 0 is IF (no current memory, no leak); a leaky or current-based neuron
(LIF, CubaLIF, LI, CubaLI) has other du/dv, exactly Lava's 12-bit decays.

The source "input" emits the quantized image as graded spikes at every step
(`InputSpec.quantize`), or, when `InputSpec.temporal`, one quantized frame per step
(inputs (N, T, *shape): spike/event trains). The zero-delay connections form a DAG in
population order; a connection with delay >= 1 may come from any population (itself or a
later one: recurrence). The readout population is the network's output: with
readout_kind "v" the lowering chooses its vth so that it provably never fires (backends
report it if it does) and its integer `v` after the last step is the integer logit,
`logit ~= v * out_scale`; with readout_kind "spikes" it is a spiking layer and the logits
are its spike counts per neuron. `backends/intsim/fast.py` (time-folded feed-forward IF path)
and `backends/intsim/steps.py` (everything else, step by step) are the executable
statement of these rules, tested against Lava.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from kdsnn.errors import KdsnnError
from kdsnn.io import atomic_path, json_default

SCHEMA = "kdsnn.intnet"
VERSION = 2
INPUT = "input"
RESETS = ("zero", "subtract")
READOUT_KINDS = ("v", "spikes")


def _shape(shape: Any) -> str:
    return "x".join(str(int(n)) for n in shape)


@dataclass(repr=False)
class InputSpec:
    """How a normalized float image becomes graded integer spikes."""

    shape: tuple[int, ...]                 # (C, H, W) or (N,), no batch
    scale: float                           # x_int = clip(round(x_norm * scale), -qmax, qmax)
    bits: int = 8                          # signed magnitude bits: qmax = 2**(bits-1) - 1
    mean: tuple[float, ...] = ()           # normalization the float net expects (metadata)
    std: tuple[float, ...] = ()
    temporal: bool = False                 # True: inputs are (N, T, *shape), one frame per step

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1

    def quantize(self, x_norm: np.ndarray) -> np.ndarray:
        """(N, *shape) normalized floats -> (N, *shape) int32 graded spikes
        ((N, T, *shape) -> (N, T, *shape) when temporal)."""
        x = np.asarray(x_norm, dtype=np.float64)
        lead = 2 if self.temporal else 1
        if tuple(x.shape[lead:]) != tuple(self.shape) or x.ndim != lead + len(self.shape):
            want = "(N, T, " if self.temporal else "(N, "
            raise KdsnnError(f"input of shape {tuple(x.shape)} does not match the network's "
                             f"{want}{', '.join(map(str, self.shape))})")
        return np.clip(np.rint(x * self.scale), -self.qmax, self.qmax).astype(np.int32)

    def __repr__(self) -> str:
        return (f"InputSpec({_shape(self.shape)}, {self.bits}-bit, scale {self.scale:.4g}"
                f"{', temporal' if self.temporal else ''})")


@dataclass(repr=False)
class Population:
    """A group of integer LIF neurons (IF when du = 4095, dv = 0)."""

    name: str                              # the NIR node it comes from
    shape: tuple[int, ...]                 # (C, H, W) or (N,)
    vth: int                               # fires when v > vth << 6
    bias_mant: np.ndarray                  # int32, shape == shape
    bias_exp: int = 0
    du: int = 4095                         # 4095 -> no current memory (IF)
    dv: int = 0                            # 0 -> no leak (IF)
    readout: bool = False                  # the network's output (see readout_kind)
    out_scale: float = 1.0                 # float value of one unit of v (readout dequantization)
    depth: int = 0                         # pipeline depth on Lava (passes/depth.py)
    reset: str = "zero"                    # "zero": v = 0 on a spike; "subtract": v -= vth << 6
    readout_kind: str = "v"                # readout only: "v" (never fires; v is the logit) or
                                           # "spikes" (spike counts are the logits)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __repr__(self) -> str:
        kind = f"readout {self.readout_kind}" if self.readout else "LIF" if (self.du, self.dv) != (4095, 0) else "IF"
        return (f"Population({self.name!r}, {_shape(self.shape)}, {kind}, vth={self.vth}, du={self.du}, "
                f"dv={self.dv}, reset={self.reset})")


@dataclass(repr=False)
class Connection:
    """Integer synapses from a source ("input" or a population) into a population."""

    name: str
    src: str
    dst: str
    kind: Literal["dense", "conv"]
    weight: np.ndarray                     # int32; dense: (n_dst, n_src) over C-order flattened
                                           # shapes; conv: (C_out, C_in/groups, kH, kW), PyTorch
                                           # cross-correlation layout on (C, H, W) data
    weight_exp: int = 0
    num_weight_bits: int = 8
    sign_mode: Literal["mixed", "excitatory", "inhibitory"] = "mixed"
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    graded: bool = False                   # True when the source sends graded spikes (input)
    delay: int = 0                         # whole steps: a[t] reads s_src[t - delay]

    def __repr__(self) -> str:
        w = np.asarray(self.weight)
        return (f"Connection({self.name!r}, {self.src} -> {self.dst}, {self.kind} {_shape(w.shape)}, "
                f"weight_exp={self.weight_exp}{f', delay={self.delay}' if self.delay else ''})")


@dataclass(repr=False)
class IntNet:
    """A whole integer network: input quantization, populations, connections, T."""

    input: InputSpec
    populations: list[Population]          # topological order; the readout last
    connections: list[Connection]
    T: int
    target: str = "loihi"
    class_names: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        neurons = sum(p.size for p in self.populations)
        return (f"IntNet({self.target}, T={self.T}, input {_shape(self.input.shape)}, "
                f"{len(self.populations)} populations ({neurons:,} neurons), "
                f"{len(self.connections)} connections, readout {self.readout.name!r})")

    # -- queries --------------------------------------------------------------------------
    def population(self, name: str) -> Population:
        for p in self.populations:
            if p.name == name:
                return p
        raise KeyError(name)

    def incoming(self, name: str) -> list[Connection]:
        return [c for c in self.connections if c.dst == name]

    def shape_of(self, name: str) -> tuple[int, ...]:
        return tuple(self.input.shape) if name == INPUT else tuple(self.population(name).shape)

    @property
    def readout(self) -> Population:
        outs = [p for p in self.populations if p.readout]
        if len(outs) != 1:
            raise KdsnnError(f"IntNet must have exactly one readout population, found {len(outs)}")
        return outs[0]

    @property
    def depth(self) -> int:
        return max((p.depth for p in self.populations), default=0)

    @property
    def feed_forward_if(self) -> bool:
        """True when the time-folded fast path holds: static input, no delays, reset to
        zero everywhere and a v readout (any du/dv)."""
        return (not self.input.temporal and all(c.delay == 0 for c in self.connections)
                and all(p.reset == "zero" for p in self.populations)
                and self.readout.readout_kind == "v")

    def validate(self) -> None:
        """Structural checks: names, shapes, edges, dtypes. Raises KdsnnError."""
        names = [p.name for p in self.populations]
        if len(set(names)) != len(names) or INPUT in names:
            raise KdsnnError("IntNet population names must be unique and not 'input'")
        seen = {INPUT}
        for p in self.populations:
            if p.bias_mant.shape != tuple(p.shape):
                raise KdsnnError(f"population {p.name}: bias_mant shape {p.bias_mant.shape} != {p.shape}")
            if p.reset not in RESETS or p.readout_kind not in READOUT_KINDS:
                raise KdsnnError(f"population {p.name}: reset {p.reset!r} / readout_kind {p.readout_kind!r} "
                                 f"not in {RESETS} / {READOUT_KINDS}")
            if not (0 <= int(p.du) <= 4095 and 0 <= int(p.dv) <= 4095):
                raise KdsnnError(f"population {p.name}: du {p.du} / dv {p.dv} outside Lava's 12 bits [0, 4095]")
            for c in self.incoming(p.name):
                if c.delay == 0 and c.src not in seen:
                    raise KdsnnError(f"connection {c.name}: source {c.src} is not an earlier population "
                                     "(only a connection with delay >= 1 may close a cycle)")
            seen.add(p.name)
            if not self.incoming(p.name):
                raise KdsnnError(f"population {p.name} has no incoming connection")
        for c in self.connections:
            if c.dst not in names:
                raise KdsnnError(f"connection {c.name}: unknown destination {c.dst}")
            if c.src != INPUT and c.src not in names:
                raise KdsnnError(f"connection {c.name}: unknown source {c.src}")
            if isinstance(c.delay, bool) or not isinstance(c.delay, (int, np.integer)) or c.delay < 0:
                raise KdsnnError(f"connection {c.name}: delay must be a whole number of steps >= 0, got {c.delay!r}")
            if c.kind == "dense":
                n_src = int(np.prod(self.shape_of(c.src)))
                n_dst = int(np.prod(self.shape_of(c.dst)))
                if c.weight.shape != (n_dst, n_src):
                    raise KdsnnError(f"connection {c.name}: dense weight {c.weight.shape} != {(n_dst, n_src)}")
            elif c.kind == "conv":
                if c.weight.ndim != 4:
                    raise KdsnnError(f"connection {c.name}: conv weight must be 4-D")
            else:
                raise KdsnnError(f"connection {c.name}: unknown kind {c.kind}")
        self.readout  # noqa: B018 - raises if not exactly one

    # -- persistence: one zip file, a JSON header plus .npy arrays -------------------------
    def save(self, path: str | Path) -> Path:
        self.validate()
        arrays: dict[str, np.ndarray] = {}
        pops = []
        for i, p in enumerate(self.populations):
            d = asdict(p)
            arrays[f"pop{i}_bias"] = np.asarray(p.bias_mant, dtype=np.int32)
            d["bias_mant"] = f"pop{i}_bias"
            pops.append(d)
        conns = []
        for i, c in enumerate(self.connections):
            d = asdict(c)
            arrays[f"conn{i}_weight"] = np.asarray(c.weight, dtype=np.int32)
            d["weight"] = f"conn{i}_weight"
            conns.append(d)
        header = {"schema": SCHEMA, "version": VERSION, "T": self.T, "target": self.target,
                  "class_names": list(self.class_names), "metadata": self.metadata,
                  "input": asdict(self.input), "populations": pops, "connections": conns}
        path = Path(path)
        with atomic_path(path) as tmp:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
                z.writestr("intnet.json", json.dumps(header, indent=1, default=json_default))
                for k, a in arrays.items():
                    buf = io.BytesIO()
                    np.save(buf, a, allow_pickle=False)
                    z.writestr(f"{k}.npy", buf.getvalue())
        return path

    @classmethod
    def load(cls, path: str | Path) -> IntNet:
        path = Path(path)
        if not path.is_file():
            raise KdsnnError(f"IntNet artifact {path} does not exist; run `kdsnn export` first")
        try:
            with zipfile.ZipFile(path) as z:
                header = json.loads(z.read("intnet.json"))
                arr = {n[:-4]: np.load(io.BytesIO(z.read(n)), allow_pickle=False)
                       for n in z.namelist() if n.endswith(".npy")}
        except (zipfile.BadZipFile, KeyError, ValueError, OSError) as e:
            raise KdsnnError(f"{path} is not a readable IntNet artifact ({e}); re-run `kdsnn export`") from None
        if header.get("schema") != SCHEMA:
            raise KdsnnError(f"{path} is not an IntNet artifact (schema {header.get('schema')!r})")
        if header.get("version") != VERSION:
            raise KdsnnError(f"{path}: IntNet version {header.get('version')} is not supported (expected {VERSION})")
        inp = header["input"]
        inp = InputSpec(**{**inp, "shape": tuple(inp["shape"]), "mean": tuple(inp["mean"]),
                           "std": tuple(inp["std"])})
        pops = []
        for d in header["populations"]:
            d = dict(d, shape=tuple(d["shape"]), bias_mant=arr[d["bias_mant"]])
            pops.append(Population(**d))
        conns = []
        for d in header["connections"]:
            d = dict(d, weight=arr[d["weight"]])
            for k in ("stride", "padding", "dilation"):
                d[k] = tuple(d[k])
            conns.append(Connection(**d))
        net = cls(input=inp, populations=pops, connections=conns, T=header["T"],
                  target=header["target"], class_names=header["class_names"],
                  metadata=header["metadata"])
        net.validate()
        return net


def pipeline_depths(pops: Iterable[str], conns: Iterable[Any]) -> dict[str, int] | list[str]:
    """{population: depth, "input": 0}, or the populations of a cycle that Lava cannot hold
    (fewer delay steps than connections). conns: objects with src, dst, delay."""
    d = {INPUT: 0, **{p: 1 for p in pops}}
    edges = [(c.src, c.dst, 1 - int(c.delay)) for c in conns]
    parent: dict[str, str] = {}
    for _ in range(len(d) + 1):
        changed = None
        for s, t, w in edges:
            if d[s] + w > d[t]:
                d[t] = d[s] + w
                parent[t] = s
                changed = t
        if changed is None:
            return d
    cyc, x = [], changed
    for _ in range(len(d)):                       # walk back into the cycle
        x = parent[x]
    start = x
    while True:
        cyc.append(x)
        x = parent[x]
        if x == start:
            break
    return cyc[::-1]


def lava_cycle_error(cycle: list[str]) -> KdsnnError:
    return KdsnnError(
        f"the cycle {' -> '.join([*cycle, cycle[0]])} has fewer steps of delay than connections; "
        "each synapse on Loihi takes one step, so Lava cannot run it step-exact (intsim can): "
        "give the cycle's recurrent edge a NIR Delay of one step more per extra connection")
