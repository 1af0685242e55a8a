"""Small datasets written in the REAL on-disk formats, for tests (`import fakedata`).

- MNIST / Fashion-MNIST: IDX ("SN3 Pascal Vincent") files, big-endian header, in
  torchvision's layout `ROOT/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`
  (optionally only the `.gz` files, as the official download ships them).
- CIFAR-10 / CIFAR-100: python pickles as in the official archives:
  `ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}` with keys
  data (N, 3072) uint8 row-major (C, H, W), labels; `ROOT/cifar-100-python/{train,test,meta}`
  with fine_labels / coarse_labels and fine_label_names / coarse_label_names.
Pixel values are a deterministic function of (sample, label) so tests can check that the
right image arrived with the right label after loading.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]


def images_for(labels: np.ndarray, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """uint8 images whose pixel [0] (first pixel) encodes the label: pixel0 = 10 * label + 5."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(len(labels), *shape), dtype=np.uint8)
    flat = x.reshape(len(labels), -1)
    flat[:, 0] = (10 * np.asarray(labels) + 5).astype(np.uint8)
    return x


def idx_bytes(arr: np.ndarray) -> bytes:
    """An IDX file: 0x00 0x00 type(0x08 = uint8) ndim, then ndim big-endian int32 sizes, data."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">i", d) for d in arr.shape)
    return header + arr.tobytes()


def write_mnist(root: str | Path, n_train: int = 60, n_test: int = 20, folder: str = "MNIST",
                gz: bool = False, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write an MNIST-format dataset; returns {split: (images (N,28,28) uint8, labels)}."""
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        y = (np.arange(n) * 7 + seed) % 10
        x = images_for(y, (28, 28), seed + (split == "test"))
        for kind, arr in (("images-idx3", x), ("labels-idx1", y.astype(np.uint8))):
            name = raw / f"{prefix}-{kind}-ubyte"
            data = idx_bytes(arr)
            if gz:
                with gzip.open(name.with_name(name.name + ".gz"), "wb") as f:
                    f.write(data)
            else:
                name.write_bytes(data)
        out[split] = (x, y.astype(np.int64))
    return out


def write_fashion_mnist(root: str | Path, **kw) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return write_mnist(root, folder="FashionMNIST", **kw)


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the official files are python-2 pickles


def write_cifar10(root: str | Path, per_batch: int = 8, n_test: int = 10, seed: int = 0
                  ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write cifar-10-batches-py/; returns {split: (images (N,32,32,3) HWC uint8, labels)}."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for b in range(1, 6):
        y = (np.arange(per_batch) + b) % 10
        x = images_for(y, (3, 32, 32), seed + b)
        _pickle(folder / f"data_batch_{b}", {"batch_label": f"training batch {b} of 5",
                                              "labels": y.tolist(), "data": x.reshape(len(y), -1),
                                              "filenames": [f"img_{b}_{i}.png" for i in range(len(y))]})
        xs.append(x)
        ys.append(y)
    yt = np.arange(n_test) % 10
    xt = images_for(yt, (3, 32, 32), seed + 100)
    _pickle(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": yt.tolist(),
                                    "data": xt.reshape(len(yt), -1),
                                    "filenames": [f"t_{i}.png" for i in range(len(yt))]})
    _pickle(folder / "batches.meta", {"num_cases_per_batch": per_batch,
                                      "label_names": CIFAR10_NAMES, "num_vis": 3072})
    hwc = lambda a: np.concatenate(a).transpose(0, 2, 3, 1)  # noqa: E731
    return {"train": (hwc(xs), np.concatenate(ys).astype(np.int64)),
            "test": (hwc([xt]), yt.astype(np.int64))}


def write_cifar100(root: str | Path, n_train: int = 30, n_test: int = 12, seed: int = 0,
                   fine_names: list[str] | None = None
                   ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write cifar-100-python/{train,test,meta}; labels use fine classes up to 99."""
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = (np.arange(n) * 37 + 3 * (split == "test")) % 100
        x = images_for(y % 25, (3, 32, 32), seed + (split == "test"))
        _pickle(folder / split, {"filenames": [f"{split}_{i}.png" for i in range(n)],
                                 "batch_label": f"{split} batch", "fine_labels": y.tolist(),
                                 "coarse_labels": (y // 5).tolist(), "data": x.reshape(n, -1)})
        out[split] = (x.transpose(0, 2, 3, 1), y.astype(np.int64))
    _pickle(folder / "meta", {"fine_label_names": fine_names or [f"c{i}" for i in range(100)],
                              "coarse_label_names": [f"s{i}" for i in range(20)]})
    return out
