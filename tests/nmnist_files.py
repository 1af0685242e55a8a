"""N-MNIST recordings in the dataset's real 40-bit binary format, for tests (`import nmnist_files`).

The events are synthetic (a blob per digit at a digit-dependent place, timestamps over
300 ms as the saccade recordings span), written with `write_events` into the layout of the
dataset's zip files and read back through tonic like the real ones."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def write_events(path: str | os.PathLike, x: np.ndarray, y: np.ndarray, t_us: np.ndarray, p: np.ndarray) -> None:
    """Write events in the dataset's 40-bit format (timestamps beyond 2^23 us use the
    format's overflow markers), so tests read them back through kdsnn.nmnist and tonic."""
    x, y, t, p = (np.asarray(a, np.int64) for a in (x, y, t_us, p))
    order = np.argsort(t, kind="stable")
    recs = []
    base = 0
    for i in order:
        while t[i] - base >= 2**23:
            recs.append((0, 240, 0, 0, 0))       # overflow marker: +2^13 us per tonic's reader
            base += 2**13
        ts = int(t[i] - base)
        recs.append((int(x[i]), int(y[i]), (int(p[i]) << 7) | (ts >> 16), (ts >> 8) & 255, ts & 255))
    Path(path).write_bytes(np.asarray(recs, np.uint8).tobytes())


def make(root: Path, per_digit: int = 1, events: int = 3000, seed: int = 0) -> Path:
    """root/NMNIST/{Train,Test}/<digit>/<k>.bin; returns root (the --data-dir)."""
    rng = np.random.default_rng(seed)
    for split in ("Train", "Test"):
        for digit in range(10):
            d = Path(root) / "NMNIST" / split / str(digit)
            d.mkdir(parents=True, exist_ok=True)
            for k in range(per_digit):
                cx, cy = 8 + 2 * digit, 10 + digit
                xs = np.clip(rng.normal(cx, 4, events).round(), 0, 33).astype(int)
                ys = np.clip(rng.normal(cy, 4, events).round(), 0, 33).astype(int)
                ts = np.sort(rng.integers(0, 300_000, events))
                write_events(d / f"{k:05d}.bin", xs, ys, ts, rng.integers(0, 2, events))
    return Path(root)
