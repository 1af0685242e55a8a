"""Network inputs besides the image datasets: `--input FILE.npz` arrays and the shape rules
every backend applies (static images or spike/current trains; flat inputs)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from kdsnn.errors import KdsnnError


def fit_input(x: np.ndarray, input_shape: tuple[int, ...], T: int) -> tuple[np.ndarray, bool, str | None]:
    """Match inputs to a graph's Input: (x, is_train, note).

    (N, *input_shape) is a static input (the same at every step: direct encoding),
    (N, T, *input_shape) a train with one frame per step. Inputs whose per-sample (per-frame)
    element count equals the Input's are reshaped in C order (a flat (784,) Input fed 1x28x28
    images, or the reverse); the note says so. Anything else is refused."""
    shape = tuple(int(s) for s in input_shape)
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise KdsnnError(f"inputs of dtype {x.dtype} are not numeric")
    k = len(shape)
    if tuple(x.shape[1:]) == shape:
        return x, False, None
    if x.ndim == k + 2 and tuple(x.shape[2:]) == shape:
        _check_T(x, T)
        return x, True, None
    size = int(np.prod(shape))
    if x.ndim >= 2 and int(np.prod(x.shape[1:])) == size:
        note = (f"inputs of shape {tuple(x.shape[1:])} reshaped in C order to the graph's Input "
                f"{shape} (same {size} elements)")
        return x.reshape(len(x), *shape), False, note
    if x.ndim >= 3 and int(np.prod(x.shape[2:])) == size:
        _check_T(x, T)
        note = (f"input frames of shape {tuple(x.shape[2:])} reshaped in C order to the graph's Input "
                f"{shape} (same {size} elements)")
        return x.reshape(len(x), x.shape[1], *shape), True, note
    raise KdsnnError(f"inputs of shape {tuple(x.shape[1:])} do not match the graph's input {shape} "
                     f"(give (N, {', '.join(map(str, shape))}) images or (N, T, {', '.join(map(str, shape))}) "
                     "trains, or the same number of elements)")


def _check_T(x: np.ndarray, T: int) -> None:
    if x.shape[1] != T:
        raise KdsnnError(f"the input trains have {x.shape[1]} steps but the run has T={T}; "
                         f"give -T {x.shape[1]} or trains of {T} steps")


def load_npz_inputs(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """`--input FILE.npz`: array `x` of (N, T, *input_shape) trains (or (N, *input_shape)
    static inputs) and optional integer labels `y` (N,). Nothing in the file is executed
    (no pickles)."""
    p = Path(path)
    if not p.is_file():
        raise KdsnnError(f"--input {p}: no such file")
    try:
        with np.load(p, allow_pickle=False) as f:
            if "x" not in f.files:
                raise KdsnnError(f"--input {p}: no array 'x' (has {', '.join(f.files) or 'nothing'}); "
                                 "save inputs with np.savez(path, x=..., y=...)")
            x = np.asarray(f["x"])
            y = np.asarray(f["y"]) if "y" in f.files else None
    except KdsnnError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise KdsnnError(f"--input {p} is not a readable .npz file ({str(e).splitlines()[0][:120]})") from None
    if x.dtype.kind not in "biuf" or x.ndim < 2:
        raise KdsnnError(f"--input {p}: x must be a numeric array (N, T, *input_shape), got {x.dtype} {x.shape}")
    if not np.all(np.isfinite(x)):
        raise KdsnnError(f"--input {p}: x contains NaN or infinite values")
    if y is not None:
        if y.dtype.kind not in "iu" or y.shape != (len(x),):
            raise KdsnnError(f"--input {p}: y must be integer labels of shape ({len(x)},), got {y.dtype} {y.shape}")
        y = y.astype(np.int64)
    return x.astype(np.float32) if x.dtype.kind != "f" else x, y


# ------------------------------------------------------------------------------ runs
NO_LABEL = -1   # labels of --input files without `y`: accuracy is not measured


def graph_input_shape(graph) -> tuple[int, ...]:
    import nir

    inp = next(n for n in graph.nodes.values() if isinstance(n, nir.Input))
    return tuple(int(s) for s in np.ravel(next(iter(inp.input_type.values()))))


def input_steps(opts: dict, input_shape: tuple[int, ...]) -> int | None:
    """T of the trains in --input (None for static inputs or no --input)."""
    if not opts.get("input"):
        return None
    x, _ = load_npz_inputs(opts["input"])
    size = int(np.prod(input_shape))
    if int(np.prod(x.shape[1:])) == size:
        return None
    if x.ndim >= 3 and int(np.prod(x.shape[2:])) == size:
        return int(x.shape[1])
    return None


def run_info(opts: dict, dataset: str | None, shape: tuple[int, ...], n_cls: int, source: object):
    """The DatasetInfo a run uses: --input's (named after the file), N-MNIST's, or the named
    image dataset's; the network's input must hold its samples (flat inputs: same element
    count, reshaped in C order)."""
    from kdsnn.data import DatasetInfo, dataset_info
    from kdsnn.nmnist import INPUT_SHAPE, NAME

    if opts.get("input"):
        info = DatasetInfo(name=f"input:{Path(opts['input']).name}", input_shape=shape, num_classes=n_cls,  # type: ignore[arg-type]
                           mean=(), std=(), class_names=[])
    elif not dataset:
        raise KdsnnError(f"{source} does not name its dataset; give --dataset or --input FILE.npz")
    elif str(dataset).lower() == NAME:
        info = DatasetInfo(name=NAME, input_shape=INPUT_SHAPE, num_classes=10, mean=(), std=(),
                           class_names=[str(i) for i in range(10)])
    else:
        info = dataset_info(dataset)
    if tuple(info.input_shape) != tuple(shape) and int(np.prod(info.input_shape)) != int(np.prod(shape)):
        raise KdsnnError(f"dataset {info.name} has inputs of shape {tuple(info.input_shape)} but the "
                         f"network in {source} takes {tuple(shape)}")
    if info.num_classes != n_cls:
        raise KdsnnError(f"dataset {info.name} has {info.num_classes} classes but the network in "
                         f"{source} outputs {n_cls}")
    return info


def load_run_inputs(opts: dict, dataset: str | None, split: str, n: int, shape: tuple[int, ...],
                    T: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str | None]:
    """(x fitted to the network's input, labels, a note or None) for one run: the first n
    samples of --input FILE.npz, of N-MNIST's binary files (--data-dir), or of an image
    dataset (normalized, direct encoding)."""
    from kdsnn.nmnist import NAME

    if opts.get("input"):
        x, y = load_npz_inputs(opts["input"])
        x = x[:n]
        y = y[:n] if y is not None else np.full(len(x), NO_LABEL, np.int64)
    elif str(dataset).lower() == NAME:
        from kdsnn.nmnist import load

        x, y = load(opts.get("data_dir"), split, n, T)
    else:
        from kdsnn.data import load_arrays

        x, y = load_arrays(str(dataset), split, int(n), opts.get("data_dir"), bool(opts.get("download")), seed)
    x, _, note = fit_input(x, shape, T)
    return x, y, note
