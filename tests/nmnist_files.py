"""N-MNIST recordings in the dataset's real 40-bit binary format, for tests (`import nmnist_files`).

The events are synthetic (a blob per digit at a digit-dependent place, timestamps over
300 ms as the saccade recordings span), written with `kdsnn.nmnist.write_events` into the
layout of the dataset's zip files and read back through tonic like the real ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdsnn import nmnist


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
                nmnist.write_events(d / f"{k:05d}.bin", xs, ys, ts, rng.integers(0, 2, events))
    return Path(root)
