"""The lowering passes, in order (`kdsnn` prints them with `kdsnn.compiler.passes.describe()`).

Each pass is one small module with NAME, a docstring saying what it does and why it is
exact (or how it approximates), and `run(state)`.
"""

from __future__ import annotations

from kdsnn.compiler.passes import (
    calibrate,
    connections,
    depth,
    fold_flatten,
    fold_pool,
    import_nir,
    quantize_input,
    scales,
)

PASSES = [import_nir, fold_flatten, fold_pool, connections, calibrate, quantize_input, scales, depth]


def describe() -> list[tuple[str, str]]:
    """(name, first docstring line) of every pass, in order."""
    return [(m.NAME, (m.__doc__ or "").strip().splitlines()[0]) for m in PASSES]
