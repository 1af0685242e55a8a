"""The two small Lava processes the backend adds; their models compute with numpy only (they run
in forked processes).

- `GradedSource`: streams the quantized samples as graded spikes on the schedule of
  `schedule.py` (sample k, step t at Lava step k*P + 1 + delay + t; zeros otherwise); a
  temporal input (N, T, ...) sends frame t at step t, a static one the same image.
- `CountingLIF`: Lava's `LIFReset` with its bit-accurate fixed-point model *inherited
  unchanged* (`PyLifResetModelBitAcc`: u, v, du, dv, bias, threshold). The subclass adds
  only (a) observation: it tallies its spikes per (sample, step) and, for the readout,
  copies v at step T-1 of every sample (or counts its spikes per neuron); at the last step
  of the run it writes what it gathered to one .npy file, so the host reads whole arrays
  instead of paying Lava's per-element Var.get (~12 us an element, docs/design.md, "Known traps");
  (b) silence outside its sample windows (no spike leaves a gap step: schedule.py); and
  (c) observe["reset"] == "subtract": v -= vth << 6 where it spiked instead of v = 0, the
  one neuron behaviour Lava's LIF models lack (a programmable neuron on Loihi 2).

And one optional process *model* for Lava's own `Conv` process: `PyConvModelFixedIm2col`,
selected through Lava's `exception_proc_model_map` (backend option conv_model="im2col").
Lava's `PyConvModelFixed` runs one scipy `convolve2d` per (C_out, C_in) pair and step
(~0.3 s a step for the cnn student's 32 -> 64 channel layer); this model computes the same
float64 sums as one BLAS product of an im2col matrix, then applies Lava's exact epilogue
(`astype(int32)`, 24-bit `signed_clamp`). Both sum exact integers, so they agree bit for
bit whenever every partial sum is exactly representable: the model proves the bound
max_k sum|w_k| * max|s| at the first step and then uses float32 (< 2^24), float64 (< 2^53)
(intsim's bounds, `kernels.F32_EXACT`, `F64_EXACT`) or else Lava's own conv. max|s| is 1 for
binary spikes, else the builder's `s_max` proc_param (the input's qmax), else 2^num_message_bits
(the port's message width; build.py sets 24).
"""

# ruff: noqa: E402  (lava is imported after import_lava(), which must run first)
from __future__ import annotations

import os

import numpy as np
from kdsnn.backends.intsim.kernels import F32_EXACT, F64_EXACT
from kdsnn.backends.lava.runtime import import_lava

import_lava()                                    # before any lava import: see import_lava

from kdsnn.backends.lava.schedule import slot
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.conv import utils as conv_utils
from lava.proc.conv.models import PyConvModelFixed
from lava.proc.conv.process import Conv
from lava.proc.lif.models import PyLifResetModelBitAcc
from lava.proc.lif.process import LIFReset


class GradedSource(AbstractProcess):
    """Emits samples (N, *shape) int32 as graded spikes, one sample per `period` steps
    ((N, T, *shape) with temporal=True: frame t at step t)."""

    def __init__(self, *, data: np.ndarray, T: int, period: int, delay: int = 0,
                 temporal: bool = False, name: str | None = None) -> None:
        data = np.ascontiguousarray(data, dtype=np.int32)
        super().__init__(name=name)
        # proc_params reach the forked process without Lava's per-element Var transfer
        self.proc_params["data"] = data
        self.proc_params["timing"] = (int(T), int(period), int(delay))
        self.proc_params["temporal"] = bool(temporal)
        self.s_out = OutPort(shape=data.shape[2 if temporal else 1:])


@implements(proc=GradedSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "floating_pt")
class PyGradedSourceModel(PyLoihiProcessModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._data = proc_params["data"]
        self._T, self._P, self._delay = proc_params["timing"]
        self._temporal = bool(proc_params["temporal"])
        self._zeros = np.zeros(self._data.shape[1 + self._temporal:], np.int32)

    def run_spk(self) -> None:
        s = slot(self.time_step, self._delay, self._P, self._T, self._data.shape[0])
        if s is None:
            self.s_out.send(self._zeros)
        else:
            self.s_out.send(self._data[s] if self._temporal else self._data[s[0]])


class CountingLIF(LIFReset):
    """A LIFReset population that also reports its activity (see the module docstring).

    observe = dict(depth, T, period, n, total_steps, dump (path), readout (bool),
    trains (bool), reset ("zero" | "subtract"), readout_kind ("v" | "spikes")).
    """

    def __init__(self, *, observe: dict, **kwargs) -> None:
        super().__init__(**kwargs)
        self.proc_params["observe"] = dict(observe)


@implements(proc=CountingLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyCountingLifModel(PyLifResetModelBitAcc):
    """Lava's bit-accurate LIFReset model plus passive observation of s and v."""

    implements_process = None                     # re-targeted from LIFReset by @implements

    def __init__(self, proc_params):
        super().__init__(proc_params)
        o = proc_params["observe"]
        self._o = o
        n, T = o["n"], o["T"]
        self._counts = np.zeros((n, T), np.int64)
        self._v_out = None
        self._trains = None
        self._slot = None
        self._subtract = o.get("reset", "zero") == "subtract"
        self._neuron_counts = None

    def _size(self) -> int:
        return int(np.prod(self.v.shape))

    def spiking_activation(self) -> np.ndarray:
        s = super().spiking_activation()
        return s if self._slot is not None else np.zeros_like(s)

    def reset_voltage(self, spike_vector: np.ndarray) -> None:
        if self._subtract:
            self.v[spike_vector] -= self.effective_vth
        else:
            super().reset_voltage(spike_vector)
        if self._slot is not None:
            k, t = self._slot
            self._counts[k, t] = np.count_nonzero(spike_vector)
            if self._o.get("readout_kind") == "spikes" and self._o["readout"]:
                if self._neuron_counts is None:
                    self._neuron_counts = np.zeros((self._o["n"], self._size()), np.int64)
                self._neuron_counts[k] += np.asarray(spike_vector).ravel() != 0
            if self._o["trains"]:
                if self._trains is None:
                    self._trains = np.zeros((self._o["n"], self._o["T"], self._size()), np.uint8)
                self._trains[k, t] = np.asarray(spike_vector).ravel()

    def run_spk(self) -> None:
        o = self._o
        self._slot = slot(self.time_step, o["depth"], o["period"], o["T"], o["n"])
        super().run_spk()
        if (o["readout"] and o.get("readout_kind", "v") == "v" and self._slot is not None
                and self._slot[1] == o["T"] - 1):
            if self._v_out is None:
                self._v_out = np.zeros((o["n"], self._size()), np.int64)
            self._v_out[self._slot[0]] = np.asarray(self.v).ravel()
        if self.time_step == o["total_steps"]:
            self._dump()

    def _dump(self) -> None:
        out = {"counts": self._counts}
        if self._v_out is not None:
            out["v"] = self._v_out
        if self._o["readout"] and self._o.get("readout_kind") == "spikes":
            out["v"] = (self._neuron_counts if self._neuron_counts is not None
                        else np.zeros((self._o["n"], self._size()), np.int64))
        if self._trains is not None:
            out["trains"] = self._trains
        path = self._o["dump"]
        tmp = path + ".part.npz"
        np.savez(tmp, **out)
        os.replace(tmp, path)


@implements(proc=Conv, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyConvModelFixedIm2col(PyConvModelFixed):
    """Lava's fixed-point Conv arithmetic, computed as im2col @ kernel (see module docstring)."""

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._plan = None

    def _prepare(self, x_shape: tuple[int, ...]) -> None:
        w = np.asarray(self.weight)
        bits = int(self.num_message_bits.item())
        params = getattr(self, "proc_params", None) or {}
        s_max = int(params.get("s_max", 1 << bits)) if bits > 0 else 1
        bound = int(np.abs(w.astype(np.int64)).reshape(w.shape[0], -1).sum(axis=1).max(initial=0))
        if bound * s_max >= F64_EXACT:
            self._plan = "lava"
            return
        self._dtype = np.float32 if bound * s_max < F32_EXACT else np.float64
        kx, ky = (int(v) for v in self.kernel_size)
        g = int(self.groups[0])
        cout, cin_g = w.shape[0], w.shape[-1]
        # convolution = correlation with the kernel flipped in X and Y
        wf = w[:, ::-1, ::-1, :].astype(self._dtype)
        # (g, cout/g, kx*ky*cin_g) matching the im2col column order (i, j, c)
        self._wmat = np.ascontiguousarray(wf.reshape(g, cout // g, kx * ky * cin_g))
        self._plan = "im2col"
        self._dims = (kx, ky, g, cout, cin_g)
        px, py = (int(v) for v in self.padding)
        sx, sy = (int(v) for v in self.stride)
        dx, dy = (int(v) for v in self.dilation)
        wo, ho, _ = (int(v) for v in conv_utils.output_shape(x_shape, cout, (kx, ky), (sx, sy), (px, py), (dx, dy)))
        self._geom = (px, py, sx, sy, dx, dy, wo, ho)

    def _conv(self, s_in: np.ndarray) -> np.ndarray:
        if self._plan is None:
            self._prepare(s_in.shape)
        if self._plan == "lava":
            return conv_utils.conv(s_in, self.weight, self.kernel_size, self.stride,
                                   self.padding, self.dilation, self.groups[0])
        kx, ky, g, cout, cin_g = self._dims
        px, py, sx, sy, dx, dy, wo, ho = self._geom
        xp = np.pad(s_in.astype(self._dtype), ((px, px), (py, py), (0, 0)))
        cols = [xp[i * dx: i * dx + sx * (wo - 1) + 1: sx, j * dy: j * dy + sy * (ho - 1) + 1: sy, :]
                for i in range(kx) for j in range(ky)]
        col = np.stack(cols, axis=2)                        # (wo, ho, kx*ky, cin)
        col = col.reshape(wo * ho, kx * ky, g, cin_g).transpose(2, 0, 1, 3)
        col = col.reshape(g, wo * ho, kx * ky * cin_g)
        out = np.matmul(col, self._wmat.transpose(0, 2, 1))   # (g, wo*ho, cout/g)
        out = out.transpose(1, 0, 2).reshape(wo, ho, cout)
        # Lava's utils.conv epilogue (its sums are float64: same exact integers)
        return out.astype(np.float64).astype(np.asarray(self.weight).dtype)

    def run_spk(self) -> None:
        self.a_out.send(self.a_buf)
        if self.num_message_bits.item() > 0:
            s_in = self.s_in.recv()
        else:
            s_in = self.s_in.recv().astype(bool)
        self.a_buf = self.clamp_precision(self._conv(s_in))
