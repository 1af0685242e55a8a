"""N-MNIST from its real binary files, binned into T frames of 2x34x34 event counts.

The files are the ones the dataset ships (Orchard et al. 2015) and `tonic` reads: one
`.bin` per sample under `<data-dir>/[NMNIST/]{Train,Test}/<digit>/`, 40 bits per event
(x, y, polarity + 23-bit timestamp in us, with overflow markers). Reading and binning are
tonic's (`tonic.io.read_mnist_file`, `tonic.functional.to_frame_numpy` with n_time_bins=T:
the recording cut into T windows of equal duration, counts per polarity and pixel), so
kdsnn bins exactly as the frameworks that train on N-MNIST with tonic.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from kdsnn.errors import KdsnnError

NAME = "nmnist"
SENSOR = (34, 34, 2)                      # tonic's (W, H, P)
INPUT_SHAPE = (2, 34, 34)                 # frames (P, H, W)
SPLITS = {"train": "Train", "test": "Test"}
DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])


def _tonic():
    try:
        import tonic.functional
        import tonic.io
    except ImportError:  # pragma: no cover - tonic is a dependency of the events extra
        raise KdsnnError("reading N-MNIST needs tonic: pip install 'kdsnn[events]'") from None
    return tonic


def split_dir(data_dir: str | os.PathLike | None, split: str) -> Path:
    if split not in SPLITS:
        raise KdsnnError(f"unknown split {split!r}; choose train or test")
    if data_dir is None:
        raise KdsnnError("N-MNIST is read from its binary files: give --data-dir (the folder holding "
                         "NMNIST/Test/<digit>/*.bin or Test/<digit>/*.bin)")
    root = Path(data_dir)
    for cand in (root / "NMNIST" / SPLITS[split], root / SPLITS[split]):
        if cand.is_dir():
            return cand
    raise KdsnnError(f"no N-MNIST {SPLITS[split]} folder under {root} (expected {root}/NMNIST/{SPLITS[split]}/"
                     "<digit>/*.bin, the layout of the dataset's zip files)")


def files(data_dir: str | os.PathLike | None, split: str) -> list[tuple[Path, int]]:
    """(file, label) of a split, interleaved by class (so the first n cover every digit)."""
    d = split_dir(data_dir, split)
    per: dict[int, list[Path]] = {}
    for sub in sorted(d.iterdir()):
        if sub.is_dir() and sub.name.isdigit():
            per[int(sub.name)] = sorted(sub.glob("*.bin"))
    if not any(per.values()):
        raise KdsnnError(f"{d} holds no <digit>/*.bin files")
    out, i = [], 0
    while any(i < len(v) for v in per.values()):
        out.extend((v[i], k) for k, v in sorted(per.items()) if i < len(v))
        i += 1
    return out


def read_events(path: str | os.PathLike) -> np.ndarray:
    """One recording as tonic's structured (x, y, t, p) array."""
    tonic = _tonic()
    try:
        return tonic.io.read_mnist_file(str(path), dtype=DTYPE)
    except (OSError, ValueError, IndexError) as e:
        raise KdsnnError(f"{path} is not an N-MNIST event file ({e})") from None


def to_frames(events: np.ndarray, T: int, path: str | os.PathLike = "") -> np.ndarray:
    """(T, 2, 34, 34) float32 event counts in T windows of equal duration."""
    tonic = _tonic()
    if len(events) == 0:
        raise KdsnnError(f"{path}: the recording holds no events")
    if events["x"].max() >= SENSOR[0] or events["y"].max() >= SENSOR[1] or events["x"].min() < 0:
        raise KdsnnError(f"{path}: events outside the 34x34 sensor; not an N-MNIST file")
    fr = tonic.functional.to_frame_numpy(events, SENSOR, n_time_bins=int(T))
    if fr.shape != (T, *INPUT_SHAPE):   # pragma: no cover - tonic's contract
        raise KdsnnError(f"{path}: binned to {fr.shape}, expected {(T, *INPUT_SHAPE)}")
    return fr.astype(np.float32)


def load(data_dir: str | os.PathLike | None, split: str, n: int | None, T: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n recordings of a split as (n, T, 2, 34, 34) frames and labels (n,)."""
    if T is None or int(T) < 1:
        raise KdsnnError("N-MNIST recordings are binned into T frames: give -T/--time-steps")
    fl = files(data_dir, split)[: (None if n is None else int(n))]
    x = np.stack([to_frames(read_events(p), int(T), p) for p, _ in fl])
    return x, np.array([k for _, k in fl], np.int64)

