"""Files kdsnn writes get the mode the umask gives (0644 under umask 022), not mkstemp's 0600:
colleagues on a shared runs folder can read checkpoints and reports."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from kdsnn.checkpoint import save_checkpoint
from kdsnn.io import atomic_path, write_json


@pytest.fixture
def umask():
    old = os.umask(0o022)
    try:
        yield lambda m: os.umask(m)
    finally:
        os.umask(old)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mask, expected) -> None:
    umask(mask)
    write_json(tmp_path / "a.json", {"x": 1})
    save_checkpoint(tmp_path / "c.pt", {"config": {"kind": "student"}, "model": {"w": torch.zeros(2)}})
    with atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"1")
    for name in ("a.json", "c.pt", "b.bin"):
        assert mode(tmp_path / name) == expected, name


def test_nir_and_intnet_follow_the_umask(tmp_path, umask) -> None:
    import nir
    import numpy as np
    from kdsnn.compiler.nir.write import write_nir

    g = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])), "fc": nir.Linear(np.eye(2)),
                            "output": nir.Output(np.array([2]))},
                     edges=[("input", "fc"), ("fc", "output")])
    write_nir(g, tmp_path / "graph.nir")
    assert mode(tmp_path / "graph.nir") == 0o644
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
