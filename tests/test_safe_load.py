"""Nothing in a file is executed: checkpoints, teacher weights and CIFAR batches are read
with restricted unpicklers (weights only, an explicit allow-list), after a format check."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from kdsnn.checkpoint import load_checkpoint, load_model, save_checkpoint
from kdsnn.errors import KdsnnError


class _Evil:
    """Unpickling this runs os.system, which would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvilOpen:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _kdsnn_like(payload) -> dict:
    return {"format": "kdsnn-checkpoint", "version": 1, "model": {}, "payload": payload,
            "config": {"kind": "student", "arch": "cnn"}}


@pytest.mark.parametrize("evil", [_Evil, _EvilOpen])
def test_malicious_checkpoint_is_refused_and_runs_nothing(tmp_path, evil) -> None:
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.pt"
    torch.save(_kdsnn_like(evil(marker)), bad)   # a real torch zip file whose pickle calls code
    with pytest.raises(KdsnnError) as e:
        load_checkpoint(bad)
    assert not marker.exists()
    msg = str(e.value)
    assert "\n" not in msg and "bad.pt" in msg and "refused" in msg
    with pytest.raises(KdsnnError):
        load_model(bad)
    assert not marker.exists()


def test_malicious_plain_pickle_is_refused_before_unpickling(tmp_path) -> None:
    marker = tmp_path / "pwned"
    bad = tmp_path / "legacy.pt"
    bad.write_bytes(pickle.dumps(_kdsnn_like(_Evil(marker))))   # not a zip: torch's legacy path
    with pytest.raises(KdsnnError, match="not a PyTorch zip"):
        load_checkpoint(bad)
    assert not marker.exists()


def test_cli_refuses_malicious_student(tmp_path) -> None:
    from click.testing import CliRunner

    from kdsnn.cli import cli

    marker = tmp_path / "pwned"
    bad = tmp_path / "student.pt"
    torch.save(_kdsnn_like(_Evil(marker)), bad)
    for args in (["evaluate", str(bad)], ["export", str(bad), "--target", "intsim", "-o", str(tmp_path / "e")],
                 ["distill", "--teacher", str(bad), "--dataset", "digits", "-o", str(tmp_path / "d")]):
        r = CliRunner().invoke(cli, args, standalone_mode=False)
        assert isinstance(r.exception, KdsnnError), (args, r.exception)
        assert not marker.exists(), args


def test_resumable_checkpoint_round_trips_weights_only(tmp_path) -> None:
    """last.pt holds numpy's RNG state (an ndarray): allowed, and nothing else is."""
    import random

    import numpy as np

    st = {"config": {"kind": "teacher", "arch": "cnn"}, "model": {"w": torch.ones(2)},
          "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
          "optimizer": torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1).state_dict()}
    save_checkpoint(tmp_path / "last.pt", st)
    got = load_checkpoint(tmp_path / "last.pt")
    assert got["rng"]["numpy"][0] == "MT19937"
    np.testing.assert_array_equal(got["rng"]["numpy"][1], np.random.get_state()[1])


def test_teacher_weights_malicious_refused(tmp_path) -> None:
    pytest.importorskip("torchvision")
    from kdsnn.teachers.torchvision_teacher import TorchvisionTeacher

    marker = tmp_path / "pwned"
    bad = tmp_path / "w.pth"
    torch.save({"state_dict": {"x": _Evil(marker)}}, bad)
    with pytest.raises(KdsnnError, match="refused"):
        TorchvisionTeacher("torchvision:resnet18", bad, 10, (3, 32, 32))
    assert not marker.exists()


def test_cifar_batch_unpickler_refuses_code(tmp_path) -> None:
    import numpy as np

    from kdsnn.safe_load import load_plain_pickle

    good = tmp_path / "data_batch_1"
    good.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2],
                                   "batch_label": "x"}, protocol=2))
    got = load_plain_pickle(good, "CIFAR batch")
    assert got[b"data"].shape == (2, 3072)
    marker = tmp_path / "pwned"
    bad = tmp_path / "data_batch_2"
    bad.write_bytes(pickle.dumps({"data": _Evil(marker)}))
    with pytest.raises(KdsnnError, match="refused"):
        load_plain_pickle(bad, "CIFAR batch")
    assert not marker.exists()


def test_zip_with_compressed_or_huge_members_refused(tmp_path) -> None:
    """Declared sizes are checked before torch reads a record (a zip bomb)."""
    path = tmp_path / "bomb.pt"
    buf = io.BytesIO()
    torch.save(_kdsnn_like(1), buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for i in src.infolist():
            z.writestr(i.filename, src.read(i.filename))
        z.writestr(src.infolist()[0].filename.split("/")[0] + "/data/99", b"\0" * (1 << 20))
    with pytest.raises(KdsnnError, match="compressed"):
        load_checkpoint(path)
