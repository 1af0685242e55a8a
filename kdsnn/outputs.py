"""How commands state results for people: every accuracy with its sample count and split,
and, at the end of every command, the list of files it wrote (plots included).

One place for both, so `distill`, `train-teacher`, `export`, `run`, `evaluate` and `report`
say them the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def fmt_accuracy(acc: float, n: int, split: str, first: int | None = None) -> str:
    """'96.80 % (1,000 test samples)'; with `first`, '... (first 200 test samples)'."""
    what = f"first {n:,}" if first else f"{n:,}"
    return f"{100 * float(acc):.2f} % ({what} {split} sample{'s' if n != 1 else ''})"


def written_line(paths: Iterable[str | os.PathLike], root: str | os.PathLike | None = None) -> str:
    """'wrote runs/demo/: student.pt, best.pt, plots/raster.png' (order kept, duplicates and
    missing files dropped; paths outside `root` in full)."""
    seen: list[Path] = []
    for p in paths:
        q = Path(p)
        if q not in seen and q.exists():
            seen.append(q)
    if not seen:
        return "wrote nothing"
    base = Path(root) if root is not None else Path(os.path.commonpath([str(q.parent) for q in seen]))
    names = []
    for q in seen:
        try:
            names.append(q.relative_to(base).as_posix())
        except ValueError:
            names.append(str(q))
    return f"wrote {base.as_posix().rstrip('/')}/: " + ", ".join(names)


def echo_written(paths: Iterable[str | os.PathLike], root: str | os.PathLike | None = None,
                 silent: bool = False) -> str:
    """Print (and return) `written_line`; on rank 0 only under torchrun; not when `silent`
    (the Python API's quiet)."""
    import click

    from kdsnn.distributed import is_main

    line = written_line(paths, root)
    if is_main() and not silent:
        click.echo(line)
    return line
