"""The two small Lava processes the backend adds; numpy only (they run in forked processes).

- `GradedSource`: streams the quantized samples as graded spikes on the schedule of
  `schedule.py` (sample k, step t at Lava step k*P + 1 + delay + t; zeros otherwise).
- `CountingLIF`: Lava's `LIFReset` with its bit-accurate fixed-point model *inherited
  unchanged* (`PyLifResetModelBitAcc`); the subclass only observes: it tallies its spikes per
  (sample, step) and, for the readout, copies v at step T-1 of every sample. At the last step
  of the run it writes what it gathered to one .npy file, so the host reads whole arrays
  instead of paying Lava's per-element Var.get (~12 us an element, DESIGN §9).
"""

from __future__ import annotations

import os

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.lif.models import PyLifResetModelBitAcc
from lava.proc.lif.process import LIFReset

from backends.lava.schedule import slot


class GradedSource(AbstractProcess):
    """Emits samples (N, *shape) int32 as graded spikes, one sample per `period` steps."""

    def __init__(self, *, data: np.ndarray, T: int, period: int, delay: int = 0,
                 name: str | None = None) -> None:
        data = np.ascontiguousarray(data, dtype=np.int32)
        super().__init__(name=name)
        # proc_params reach the forked process without Lava's per-element Var transfer
        self.proc_params["data"] = data
        self.proc_params["timing"] = (int(T), int(period), int(delay))
        self.s_out = OutPort(shape=data.shape[1:])


@implements(proc=GradedSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "floating_pt")
class PyGradedSourceModel(PyLoihiProcessModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._data = proc_params["data"]
        self._T, self._P, self._delay = proc_params["timing"]
        self._zeros = np.zeros(self._data.shape[1:], np.int32)

    def run_spk(self) -> None:
        s = slot(self.time_step, self._delay, self._P, self._T, self._data.shape[0])
        self.s_out.send(self._zeros if s is None else self._data[s[0]])


class CountingLIF(LIFReset):
    """A LIFReset population that also reports its activity (see the module docstring).

    observe = dict(depth, T, period, n, total_steps, dump (path), readout (bool),
    trains (bool)).
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

    def _size(self) -> int:
        return int(np.prod(self.v.shape))

    def reset_voltage(self, spike_vector: np.ndarray) -> None:
        super().reset_voltage(spike_vector)
        if self._slot is not None:
            k, t = self._slot
            self._counts[k, t] = np.count_nonzero(spike_vector)
            if self._o["trains"]:
                if self._trains is None:
                    self._trains = np.zeros((self._o["n"], self._o["T"], self._size()), np.uint8)
                self._trains[k, t] = np.asarray(spike_vector).ravel()

    def run_spk(self) -> None:
        o = self._o
        self._slot = slot(self.time_step, o["depth"], o["period"], o["T"], o["n"])
        super().run_spk()
        if o["readout"] and self._slot is not None and self._slot[1] == o["T"] - 1:
            if self._v_out is None:
                self._v_out = np.zeros((o["n"], self._size()), np.int64)
            self._v_out[self._slot[0]] = np.asarray(self.v).ravel()
        if self.time_step == o["total_steps"]:
            self._dump()

    def _dump(self) -> None:
        out = {"counts": self._counts}
        if self._v_out is not None:
            out["v"] = self._v_out
        if self._trains is not None:
            out["trains"] = self._trains
        path = self._o["dump"]
        tmp = path + ".part.npz"
        np.savez(tmp, **out)
        os.replace(tmp, path)
