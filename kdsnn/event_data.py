"""N-MNIST for training: its recordings as T frames for the student, summed for the teacher.

Reading and binning are kdsnn.nmnist's (tonic's reader, T windows of equal duration), the
same as deployment uses, so a student trains on exactly the frames `kdsnn export` feeds it.

Splits: `test` is the Test folder; `train` and `val` are carved from the Train folder, whose
recordings kdsnn.nmnist lists interleaved by class (0,1,..,9,0,1,..): its last 1/12 (5,000 of
the 60,000, as for MNIST; at least 1) validate, the rest train, so both are class-balanced.

The ANN teacher sees the frames summed over time: the recording's event counts per polarity
and pixel (2x34x34). During distillation it gets the sum of the student's own T frames; a
teacher trained alone (`train-teacher`) sees one window over the whole recording. The two
differ only by the last events tonic's equal windows leave out (a window is
(t_last - t_first) // T microseconds, so under T microseconds at the end).
Frames are event counts, not normalized (mean 0, std 1 in the dataset's info).
Recordings are read from disk on every access (N-MNIST's Train folder at T=4 would need
2.2 GB as float frames in memory).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from kdsnn import nmnist
from kdsnn.errors import KdsnnError

NAME = nmnist.NAME
VAL_SHARE = (1, 12)


def is_event_dataset(name: str | None) -> bool:
    return str(name or "").lower() == NAME


def split_files(data_dir: str | os.PathLike | None, split: str) -> list[tuple[Path, int]]:
    """(file, label) of train, val or test (the module docstring)."""
    if split == "test":
        return nmnist.files(data_dir, "test")
    if split not in ("train", "val"):
        raise KdsnnError(f"unknown split {split!r}; use one of train, val, test")
    fl = nmnist.files(data_dir, "train")
    if len(fl) < 2:
        raise KdsnnError(f"N-MNIST's Train folder under {data_dir} holds {len(fl)} recording(s); at least 2 "
                         "are needed to carve a validation split")
    num, den = VAL_SHARE
    cut = len(fl) - max(1, len(fl) * num // den)
    return fl[:cut] if split == "train" else fl[cut:]


def check_available(data_dir: str | os.PathLike | None) -> dict[str, int]:
    """The recordings of every split, counted before any training (reads the first of each)."""
    counts = {}
    for split in ("train", "val", "test"):
        fl = split_files(data_dir, split)
        nmnist.to_frames(nmnist.read_events(fl[0][0]), 1, fl[0][0])   # a readable recording
        counts[split] = len(fl)
    return counts


class EventDataset(Dataset):
    """(frames (T, 2, 34, 34), label) per recording, or with T None the teacher's view:
    the event counts of the whole recording (2, 34, 34)."""

    def __init__(self, files: list[tuple[Path, int]], T: int | None) -> None:
        if T is not None and int(T) < 1:
            raise KdsnnError(f"-T/--time-steps must be positive, got {T}")
        self.files, self.T = list(files), (None if T is None else int(T))
        self.targets = np.array([k for _, k in self.files], np.int64)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.files[int(index)]
        fr = nmnist.to_frames(nmnist.read_events(path), self.T or 1, path)
        return torch.from_numpy(fr if self.T is not None else fr[0]), int(label)


def load_event_dataset(split: str, data_dir: str | os.PathLike | None, T: int | None) -> EventDataset:
    return EventDataset(split_files(data_dir, split), T)


def teacher_view(x: torch.Tensor, input_shape: tuple[int, ...]) -> torch.Tensor:
    """What the ANN teacher sees of a student batch: frames (B, T, ...) summed over time."""
    return x.sum(1) if x.ndim == len(input_shape) + 2 else x
