"""Reading pickled files without running anything in them.

A pickle can call any function while it loads (`__reduce__` -> `os.system`), so kdsnn
never unpickles with the full unpickler. PyTorch files go through `torch.load(...,
weights_only=True)` with an allow-list of exactly what kdsnn checkpoints hold besides
tensors and plain containers: numpy's RNG state in `last.pt` (an ndarray). Before
unpickling, the file's format is checked (a torch zip archive with one `data.pkl`, records
stored uncompressed, sizes within the memory budget), so junk is refused as junk.
CIFAR's python batches (dicts of bytes, lists and uint8 arrays) use `load_plain_pickle`,
whose unpickler only resolves the numpy names an array needs.
See https://pytorch.org/docs/stable/notes/serialization.html#weights-only.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdsnn.budget import check_size
from kdsnn.errors import KdsnnError

ZIP_MAGIC = b"PK\x03\x04"


def _numpy_globals() -> list[Any]:
    """What pickling an ndarray (numpy's RNG state) refers to, under numpy 1.x and 2.x names."""
    found: list[Any] = [np.ndarray, np.dtype]
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        try:
            m = __import__(mod, fromlist=["_reconstruct"])
            found.append(m._reconstruct)
        except (ImportError, AttributeError):
            pass
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        found += [getattr(dtypes, n) for n in ("UInt32DType", "Int64DType", "Float64DType") if hasattr(dtypes, n)]
    return found


CHECKPOINT_GLOBALS = _numpy_globals()


def _check_zip(p: Path, what: str) -> None:
    """A torch zip archive: one top folder with data.pkl, stored records, sizes within budget."""
    try:
        with zipfile.ZipFile(p) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as e:
        raise KdsnnError(f"{what} {p} is corrupt: a truncated or damaged zip archive ({e})") from None
    if not any(i.filename.endswith("/data.pkl") or i.filename == "data.pkl" for i in infos):
        raise KdsnnError(f"{what} {p} is a zip archive without data.pkl: not a file written by torch.save")
    packed = [i.filename for i in infos if i.compress_type != zipfile.ZIP_STORED]
    if packed:
        raise KdsnnError(f"{what} {p} holds compressed records ({packed[0]}); torch.save never compresses, "
                         "so the file was altered; refused")
    total = sum(i.file_size for i in infos)
    size = p.stat().st_size
    if total > size:
        raise KdsnnError(f"{what} {p} declares {total} bytes of records in a {size}-byte file; it is corrupt")
    check_size(total, f"{what} {p}")


def _refusal(p: Path, what: str, e: Exception, kind: str = "a PyTorch file") -> KdsnnError:
    text = str(e)
    m = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"Unsupported (?:global|class|operand)[^\n]*?([\w.]+\.[\w]+)",
                                                          text)
    if m:
        return KdsnnError(f"{what} {p} refused: its pickle asks for {m.group(1)}, which is not among the tensors, "
                          "numbers, strings and containers a checkpoint holds; nothing in it was run. Only load "
                          "files from people you trust, re-save it as a state_dict")
    first = next((ln.strip() for ln in text.splitlines() if ln.strip() and "weights_only" not in ln), type(e).__name__)
    return KdsnnError(f"{what} {p} is corrupt or not {kind}, refused ({first[:120]})")


def load_torch(path: str | os.PathLike, what: str = "checkpoint", map_location: Any = "cpu",
               legacy: bool = False) -> Any:
    """`torch.load(weights_only=True)` after a format check; every failure is one KdsnnError line.

    `legacy` also accepts PyTorch's pre-1.6 (non-zip) format, still weights only (old
    third-party .pth files); kdsnn itself always writes zip archives."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise KdsnnError(f"cannot read {what} {p}: {e.strerror or e}") from None
    if magic == ZIP_MAGIC:
        _check_zip(p, what)
    elif not legacy:
        raise KdsnnError(f"{what} {p} is corrupt or not a PyTorch zip archive (it starts with {magic!r}); refused "
                         "without unpickling it")
    else:
        check_size(p.stat().st_size * 2, f"{what} {p}")
    try:
        with torch.serialization.safe_globals(CHECKPOINT_GLOBALS):
            return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise _refusal(p, what, e) from None
    except OSError as e:
        raise KdsnnError(f"cannot read {what} {p}: {e.strerror or e}") from None
    except (RuntimeError, EOFError, MemoryError, OverflowError, zipfile.BadZipFile, ValueError, AttributeError,
            ImportError, IndexError, KeyError, UnicodeDecodeError, TypeError, AssertionError) as e:
        raise _refusal(p, what, e) from None


class _ArrayUnpickler(pickle.Unpickler):
    """Resolves only the names a pickled ndarray needs (and bytes under protocol 2)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"GLOBAL {module}.{name}")


def load_plain_pickle(path: str | os.PathLike, what: str) -> Any:
    """A python pickle of plain data and numpy arrays (CIFAR batches); code in it is refused."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            return _ArrayUnpickler(fh, encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise _refusal(p, what, e, f"a {what}") from None
    except OSError as e:
        raise KdsnnError(f"cannot read {what} {p}: {e.strerror or e}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as e:
        raise KdsnnError(f"{what} {p} is corrupt or not a {what} ({type(e).__name__}: {str(e)[:100]}); "
                         "refused") from None
