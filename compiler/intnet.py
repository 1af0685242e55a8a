"""IntNet: the integer IR every integer backend executes bit for bit (DESIGN §4).

Read it like NIR's own IR: one small dataclass per concept, shapes and parameters explicit,
numpy arrays only, no framework. Semantics per population p and step t (zero state at the
start of each sample, zero synaptic delay, T steps):

    a[t]  = sum over incoming connections c of  accumulate_c(s_src[t])
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
    s[t]  = v[t] > (vth << 6);  v[t] = 0 where s[t]
    decay(x, d) = sign(x) * ((|x| * (4096 - d)) >> 12)

The source "input" emits the quantized image as graded spikes at every step
(`InputSpec.quantize`). The readout population is thresholded like any other; the
lowering chooses its vth so that it provably never fires, and backends report it if it
does. Its integer `v` after the last step is the integer logit; `logit ~= v * out_scale`.
`backends/intsim.py` is the executable statement of these rules, tested against Lava.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from kdsnn.errors import KdsnnError
from kdsnn.io import atomic_path

SCHEMA = "kdsnn.intnet"
VERSION = 1
INPUT = "input"


@dataclass
class InputSpec:
    """How a normalized float image becomes graded integer spikes."""

    shape: tuple[int, ...]                 # (C, H, W) or (N,), no batch
    scale: float                           # x_int = clip(round(x_norm * scale), -qmax, qmax)
    bits: int = 8                          # signed magnitude bits: qmax = 2**(bits-1) - 1
    mean: tuple[float, ...] = ()           # normalization the float net expects (metadata)
    std: tuple[float, ...] = ()

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1

    def quantize(self, x_norm: np.ndarray) -> np.ndarray:
        """(N, *shape) normalized floats -> (N, *shape) int32 graded spikes."""
        x = np.asarray(x_norm, dtype=np.float64)
        if tuple(x.shape[1:]) != tuple(self.shape):
            raise KdsnnError(f"input of shape {tuple(x.shape[1:])} does not match the network's {tuple(self.shape)}")
        return np.clip(np.rint(x * self.scale), -self.qmax, self.qmax).astype(np.int32)


@dataclass
class Population:
    """A group of integer LIF neurons (IF when du = 4095, dv = 0)."""

    name: str                              # the NIR node it comes from (IF or I readout)
    shape: tuple[int, ...]                 # (C, H, W) or (N,)
    vth: int                               # fires when v > vth << 6
    bias_mant: np.ndarray                  # int32, shape == shape
    bias_exp: int = 0
    du: int = 4095                         # 4095 -> no current memory (IF)
    dv: int = 0                            # 0 -> no leak (IF)
    readout: bool = False                  # never fires; v after the last step is the logit
    out_scale: float = 1.0                 # float value of one unit of v (readout dequantization)
    depth: int = 0                         # longest chain of connections from the input

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass
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


@dataclass
class IntNet:
    """A whole integer network: input quantization, populations, connections, T."""

    input: InputSpec
    populations: list[Population]          # topological order; the readout last
    connections: list[Connection]
    T: int
    target: str = "loihi"
    class_names: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

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

    def validate(self) -> None:
        """Structural checks: names, shapes, edges, dtypes. Raises KdsnnError."""
        names = [p.name for p in self.populations]
        if len(set(names)) != len(names) or INPUT in names:
            raise KdsnnError("IntNet population names must be unique and not 'input'")
        seen = {INPUT}
        for p in self.populations:
            if p.bias_mant.shape != tuple(p.shape):
                raise KdsnnError(f"population {p.name}: bias_mant shape {p.bias_mant.shape} != {p.shape}")
            for c in self.incoming(p.name):
                if c.src not in seen:
                    raise KdsnnError(f"connection {c.name}: source {c.src} is not an earlier population")
            seen.add(p.name)
            if not self.incoming(p.name):
                raise KdsnnError(f"population {p.name} has no incoming connection")
        for c in self.connections:
            if c.dst not in names:
                raise KdsnnError(f"connection {c.name}: unknown destination {c.dst}")
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
                z.writestr("intnet.json", json.dumps(header, indent=1, default=_jd))
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


def _jd(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)
