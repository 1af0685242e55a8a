"""The Lava backend: an IntNet runs as real Lava processes on Lava's Loihi simulator
(`Loihi2SimCfg(select_tag="fixed_pt")`), bit-exact with the canonical zero-delay semantics
that intsim computes (docs/design.md, "Integer semantics", parity rung 4).

    exe = LavaBackend().compile(intnet)               # options: period (>= T, default T),
    res = exe.run(x_normalized, progress=True)        #   conv_model ("im2col" | "lava"),
    res.logits, res.spike_counts, res.layer_spikes_per_step   # max_samples_per_run (2000)

One `run` streams all its samples through one running Lava network (schedule.py), then
stops it; `res.extra` says where the time went (compile_s, run_s, stop_s, ...).
`kdsnn.parity.first_difference(intsim_res, lava_res)` names the first differing sample, layer
and step for rung 4. Lava is imported only when a network is compiled, so listing backends works
where lava-nc cannot be installed (Python >= 3.11); `available()` then says why.
"""

from __future__ import annotations

import sys
import time
from typing import Any, ClassVar

import numpy as np
from kdsnn.backends.base import Backend, Executable, RunResult
from kdsnn.backends.lava.runtime import import_lava
from kdsnn.compiler.intnet import IntNet
from kdsnn.compiler.targets import check_simulable

from kdsnn.errors import KdsnnError

__all__ = ["LavaBackend", "LavaExecutable"]


def _import_error() -> str:
    if sys.version_info >= (3, 11):
        return (f"lava-nc 0.10 needs Python 3.10 and numpy < 2 (this is Python {sys.version_info.major}."
                f"{sys.version_info.minor}); install kdsnn into a Python 3.10 environment")
    try:
        import_lava()
        import lava.magma.core.run_configs  # noqa: F401
        import lava.proc.lif.process  # noqa: F401
    except Exception as e:  # ImportError, numpy ABI errors
        return f"lava-nc cannot be imported ({type(e).__name__}: {e}); `pip install lava-nc==0.10.0`"
    return ""


class _Progress:
    """tqdm in steps, with the samples whose readout step has passed as a postfix."""

    def __init__(self, bar: Any, sched: Any, offset: int, total: int) -> None:
        self.bar, self.sched, self.offset, self.total, self.done = bar, sched, offset, total, 0

    def __call__(self, n_steps: int) -> None:
        s = self.sched
        self.done += n_steps
        k = (self.done - s.max_depth - s.T) // s.period + 1
        self.bar.update(n_steps)
        self.bar.set_postfix(samples=f"{self.offset + max(0, min(k, s.n_samples))}/{self.total}")


class LavaExecutable(Executable):
    """A compiled IntNet. Each `run` streams its samples through one (or a few) Lava runs."""

    def __init__(self, net: IntNet, period: int | None = None, max_samples_per_run: int = 2000,
                 progress_chunks: int = 20, conv_model: str = "im2col") -> None:
        from kdsnn.backends.lava.build import check, run_config
        from kdsnn.backends.lava.schedule import make_schedule

        run_config(conv_model)                    # validates the name
        self.conv_model = conv_model
        if int(max_samples_per_run) < 1 or int(progress_chunks) < 1:
            raise KdsnnError("lava backend: max_samples_per_run and progress_chunks must be >= 1")
        net.validate()
        check(net)
        make_schedule(net, 1, period)             # validates timing now, not at run time
        self.net = net
        self.period = period
        self.max_samples_per_run = int(max_samples_per_run)
        self.progress_chunks = int(progress_chunks)
        self.last_profile: dict[str, float] = {}

    def run(self, x: np.ndarray, record: bool = False, progress: bool = False) -> RunResult:
        from kdsnn.backends.lava.build import run_stream
        from kdsnn.backends.lava.schedule import make_schedule

        net = self.net
        xq = net.input.quantize(x)
        n = len(xq)
        if n == 0:
            raise KdsnnError("no samples to run on Lava")
        t0 = time.perf_counter()
        parts = [(i, min(n, i + self.max_samples_per_run))
                 for i in range(0, n, self.max_samples_per_run)]
        scheds = [make_schedule(net, b - a, self.period) for a, b in parts]
        bar = None
        if progress:
            from kdsnn.progress import bar as progress_bar

            bar = progress_bar(None, "bars", total=sum(s.total_steps for s in scheds), unit="step",
                               desc=f"lava ({n} samples)")
        logits, per_step, trains = [], {}, {}
        steps = 0
        prof = {"build_s": 0.0, "compile_s": 0.0, "run_s": 0.0, "stop_s": 0.0, "runs": 0}
        try:
            for (a, b), sched in zip(parts, scheds, strict=True):
                tick = _Progress(bar, sched, a, n) if bar is not None else None
                obs = run_stream(net, sched, xq[a:b], record=record, progress=tick,
                                 chunks=self.progress_chunks if progress else 1,
                                 conv_model=self.conv_model)
                logits.append(obs.logits)
                for k, v in obs.counts.items():
                    per_step.setdefault(k, []).append(v)
                if record and obs.trains is not None:
                    for k, v in obs.trains.items():
                        trains.setdefault(k, []).append(v)
                steps += obs.steps
                for key in ("build_s", "compile_s", "run_s", "stop_s"):
                    prof[key] += getattr(obs, key)
                prof["runs"] += 1
                prof["processes"] = obs.n_processes
        finally:
            if bar is not None:
                bar.close()
        per = {k: np.concatenate(v).astype(np.int64) for k, v in per_step.items()}
        wall = time.perf_counter() - t0
        self.last_profile = dict(prof, wall_s=wall, steps=steps)
        sched0 = scheds[0]
        return RunResult(
            logits=np.concatenate(logits).astype(np.int64),
            spike_counts={k: v.sum(axis=1) for k, v in per.items()},
            backend="lava", T=net.T, steps=steps, wall_s=wall,
            layer_spikes_per_step=per,
            spike_trains={k: np.concatenate(v) for k, v in trains.items()} if record else None,
            extra={"period": sched0.period, "conv_model": self.conv_model, "depth": sched0.max_depth,
                   "latency_steps": sched0.max_depth + sched0.T,
                   "relays": sum(sched0.relays.values()), **self.last_profile},
        )


class LavaBackend(Backend):
    """IntNet -> Lava processes on Lava's bit-accurate Loihi simulator (fixed_pt)."""

    name: ClassVar[str] = "lava"
    accepts: ClassVar[str] = "intnet"
    description: ClassVar[str] = ("Intel Lava processes on the simulated Loihi (fixed_pt), "
                                  "streamed, bit-exact with intsim")
    default_samples: ClassVar[int] = 100      # Lava simulates slowly; intsim runs the rest

    @classmethod
    def available(cls) -> tuple[bool, str]:
        reason = _import_error()
        return (not reason, reason)

    def compile(self, net: Any, **options: Any) -> LavaExecutable:
        if not isinstance(net, IntNet):
            raise KdsnnError(f"the lava backend runs an IntNet, not {type(net).__name__}; "
                             "lower the graph first (kdsnn.compiler.lower)")
        check_simulable(net.metadata.get("arithmetic"), "the lava backend", net.target)
        ok, reason = self.available()
        if not ok:
            raise KdsnnError(f"the lava backend is unavailable: {reason}")
        known = {"period", "max_samples_per_run", "progress_chunks", "conv_model"}
        unknown = set(options) - known
        if unknown:
            raise KdsnnError(f"unknown lava backend option(s) {sorted(unknown)}; known: {sorted(known)}")
        return LavaExecutable(net, **options)
