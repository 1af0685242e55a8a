"""Many Lava runs in one Python process leave no processes, file handles or shared memory."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from kdsnn.compiler.intnet import INPUT, Connection, InputSpec, IntNet, Population


def _children() -> list[int]:
    """Live (non-zombie) processes whose parent is this one, read from /proc."""
    me, out = os.getpid(), []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == me and fields[0] != "Z":
            out.append(int(d.name))
    return out


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _shm() -> set[str]:
    p = Path("/dev/shm")
    return set(os.listdir(p)) if p.is_dir() else set()


def _tiny_net() -> IntNet:
    rng = np.random.default_rng(0)
    return IntNet(input=InputSpec(shape=(6,), scale=30.0),
                  populations=[Population("act1", (5,), 50, np.zeros(5, np.int32)),
                               Population("out", (2,), 2 ** 17 - 1, np.zeros(2, np.int32),
                                          readout=True)],
                  connections=[Connection("fc1", INPUT, "act1", "dense",
                                          rng.integers(-50, 90, (5, 6)).astype(np.int32), graded=True),
                               Connection("fc2", "act1", "out", "dense",
                                          rng.integers(-90, 90, (2, 5)).astype(np.int32))],
                  T=3)


@pytest.mark.slow
def test_many_lava_runs_leak_nothing():
    from kdsnn.backends.lava import LavaBackend

    if not LavaBackend.available()[0]:
        pytest.skip(LavaBackend.available()[1])
    net = _tiny_net()
    exe = LavaBackend().compile(net)
    x = np.random.default_rng(1).normal(size=(3, 6))
    first = exe.run(x)                            # warm-up: imports, lazily opened files
    base_children, base_fds, base_shm = _children(), _fds(), _shm()
    for _ in range(20):
        r = exe.run(x)
        assert np.array_equal(r.logits, first.logits)
    # only Python's own multiprocessing resource tracker (one per interpreter) may stay
    assert _children() == base_children
    for pid in base_children:
        assert "resource_tracker" in Path(f"/proc/{pid}/cmdline").read_text()
    assert _fds() <= base_fds
    assert _shm() - base_shm == set()
