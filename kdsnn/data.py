"""Samples, torch datasets and loaders (docs/design.md, "Data").

Samples are produced from a dataset's cached raw split (`kdsnn.dataset_files`) as:
[0,1] image -> noise (seeded per sample index) -> augmentation (CIFAR training only) ->
normalization with the dataset's mean/std (`kdsnn.datasets`). The names of those two modules
that callers use are importable from here too.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from kdsnn.dataset_files import (
    MNIST5K_PER_CLASS,
    VAL_SHARE,
    RawSplit,
    carve_val,
    check_available,
    clear_cache,
    load_raw,
    val_size,
)
from kdsnn.datasets import (
    DATASETS,
    DEFAULT_DATA_DIR_ENV,
    OFFLINE,
    SPLITS,
    DatasetInfo,
    check_split,
    dataset_info,
    default_data_dir,
)
from kdsnn.errors import KdsnnError
from kdsnn.noise import NoiseSpec, apply_noise_batch, parse_noise

__all__ = [
    "DATASETS", "DEFAULT_DATA_DIR_ENV", "MNIST5K_PER_CLASS", "OFFLINE", "SPLITS", "VAL_SHARE",
    "DatasetInfo", "ImageDataset", "RawSplit", "carve_val", "check_available", "clear_cache",
    "dataset_info", "default_data_dir", "load_arrays", "load_dataset", "load_raw", "make_loader",
    "normalize", "random_crop_flip", "val_size",
]


def normalize(x01: np.ndarray | torch.Tensor, info: DatasetInfo) -> np.ndarray | torch.Tensor:
    """(x - mean) / std per channel; x is (..., C, H, W) in [0, 1]."""
    shape = (len(info.mean), 1, 1)
    if isinstance(x01, torch.Tensor):
        m = torch.tensor(info.mean, dtype=x01.dtype, device=x01.device).view(shape)
        s = torch.tensor(info.std, dtype=x01.dtype, device=x01.device).view(shape)
        return (x01 - m) / s
    m = np.asarray(info.mean, dtype=np.float32).reshape(shape)
    s = np.asarray(info.std, dtype=np.float32).reshape(shape)
    return ((x01 - m) / s).astype(np.float32)


def random_crop_flip(img: torch.Tensor, padding: int = 4,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """RandomCrop(size, padding, fill 0) + RandomHorizontalFlip(0.5) on a (C, H, W) [0,1] image."""
    c, h, w = img.shape
    padded = torch.nn.functional.pad(img, (padding, padding, padding, padding))
    top = int(torch.randint(0, 2 * padding + 1, (1,), generator=generator))
    left = int(torch.randint(0, 2 * padding + 1, (1,), generator=generator))
    out = padded[:, top:top + h, left:left + w]
    if bool(torch.rand((), generator=generator) < 0.5):
        out = out.flip(-1)
    return out.contiguous()


class ImageDataset(Dataset):
    """(normalized float tensor (C,H,W), int label) per sample; see the module docstring."""

    def __init__(self, info: DatasetInfo, raw: RawSplit, split: str, augment: bool = False,
                 noise: NoiseSpec | None = None, seed: int = 0):
        self.info, self.raw, self.split = info, raw, split
        self.augment, self.noise, self.seed = augment, noise, seed
        self.targets = raw.labels.copy()
        c = len(info.mean)
        self._mean = torch.tensor(info.mean, dtype=torch.float32).view(c, 1, 1)
        self._std = torch.tensor(info.std, dtype=torch.float32).view(c, 1, 1)

    def __len__(self) -> int:
        return len(self.raw.labels)

    def image01(self, index: int) -> torch.Tensor:
        """The [0,1] image after noise, before augmentation and normalization."""
        x = self.raw.to01(index)
        if self.noise is not None and not self.noise.is_identity:
            x = apply_noise_batch(x[None], self.noise, self.seed, np.array([index]))[0]
        return torch.from_numpy(x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = int(index)
        if index < 0:
            index += len(self)
        img = self.image01(index)
        if self.augment:
            img = random_crop_flip(img)
        return (img - self._mean) / self._std, int(self.raw.labels[index])


def load_dataset(name: str, split: str, data_dir: str | os.PathLike | None = None,
                 download: bool = False, augment: bool = False,
                 noise: NoiseSpec | str | None = None, seed: int = 0,
                 time_steps: int | None = None) -> Dataset:
    """A torch Dataset of one split. `noise` is seeded by (seed, sample index). Event data
    (nmnist) gives `time_steps` frames per sample, or with None the teacher's summed view."""
    info = dataset_info(name)
    check_split(split)
    if info.name == "nmnist":
        if noise is not None or augment:
            raise KdsnnError("nmnist: noise and augmentation apply to images only")
        from kdsnn.event_data import load_event_dataset

        return load_event_dataset(split, data_dir, time_steps)
    spec = parse_noise(noise) if noise is not None else None
    raw = load_raw(info.name, split, data_dir, download)
    return ImageDataset(info, raw, split, augment=augment, noise=spec, seed=seed)


def load_arrays(name: str, split: str, n: int | None = None,
                data_dir: str | os.PathLike | None = None, download: bool = False,
                seed: int = 0, noise: NoiseSpec | str | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """The first n samples of a split (all when n is None or larger than the split):
    x float32 normalized (N, C, H, W), y int64 (N,). No augmentation; `seed` seeds the noise.
    """
    info = dataset_info(name)
    check_split(split)
    if n is not None and int(n) <= 0:
        raise KdsnnError(f"number of samples must be positive, got {n}")
    spec = parse_noise(noise) if noise is not None else None
    raw = load_raw(info.name, split, data_dir, download)
    m = len(raw.labels) if n is None else min(int(n), len(raw.labels))
    x01 = raw.to01(slice(0, m))
    if spec is not None and not spec.is_identity:
        x01 = apply_noise_batch(x01, spec, seed, np.arange(m))
    return normalize(x01, info), raw.labels[:m].copy()


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = False, seed: int = 0,
                num_workers: int = 0, drop_last: bool = False, sampler=None,
                worker_init_fn: Callable | None = None) -> DataLoader:
    """A DataLoader with a seeded shuffle. Under an initialized torch.distributed with more than
    one rank and no explicit `sampler`, a DistributedSampler(shuffle, seed) shards the data;
    call `loader.sampler.set_epoch(epoch)` each epoch when it is one.
    """
    if batch_size <= 0:
        raise KdsnnError(f"batch size must be positive, got {batch_size}")
    if sampler is None and torch.distributed.is_available() and torch.distributed.is_initialized() \
            and torch.distributed.get_world_size() > 1:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
    g = torch.Generator()
    g.manual_seed(int(seed))
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle if sampler is None else False,
                      sampler=sampler, num_workers=num_workers, drop_last=drop_last, generator=g,
                      worker_init_fn=worker_init_fn, persistent_workers=False)
