"""The memory budget: sizes a file or an option declares are checked before allocating.

A NIR file can declare a 100000x100000 matrix in half a megabyte, and `-T 1000000` or
`--width 1e6` ask for terabytes; letting the allocation fail gives a traceback or an
out-of-memory kill instead of one line. The budget defaults to the machine's physical
memory; `KDSNN_MEMORY_BUDGET` (bytes, or with a K/M/G/T suffix: `64G`) changes it.
"""

from __future__ import annotations

import os
from typing import Any

from kdsnn.errors import KdsnnError

ENV = "KDSNN_MEMORY_BUDGET"
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _physical() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not POSIX: assume 16 GiB
        return 16 << 30


def memory_budget() -> int:
    """Bytes one kdsnn process may plan to hold (KDSNN_MEMORY_BUDGET, else physical memory)."""
    raw = os.environ.get(ENV, "").strip().upper().removesuffix("B").removesuffix("I")
    if not raw:
        return _physical()
    unit = raw[-1] if raw[-1] in _UNITS and not raw[-1].isdigit() else ""
    try:
        value = float(raw[:-1] if unit else raw) * _UNITS[unit]
    except ValueError:
        raise KdsnnError(f"{ENV}={os.environ[ENV]!r} is not a size; give bytes or e.g. 64G") from None
    if not value > 0 or value != value:
        raise KdsnnError(f"{ENV}={os.environ[ENV]!r} must be a positive size, e.g. 64G")
    return int(min(value, 1 << 62))


def human(n: float) -> str:
    """Bytes for people: 1.5 GiB, 73 PiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if abs(n) < 1024 or unit == "EiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} EiB"


def check_size(nbytes: float, what: str, fix: str = "") -> None:
    """Refuse `what` (one line: its size, the budget, what to do) if it needs more than the budget."""
    budget = memory_budget()
    if not nbytes <= budget:  # also refuses NaN
        src = f"{ENV}" if os.environ.get(ENV) else f"physical memory; raise it with {ENV}=SIZE"
        raise KdsnnError(f"{what} needs {human(nbytes)}, over the memory budget of {human(budget)} "
                         f"({src}){'; ' + fix if fix else ''}")


def activations_per_sample(arch: str, spiking: bool, num_classes: int, input_shape: tuple[int, ...],
                           width: float, graph: dict[str, Any] | None = None) -> tuple[int, int]:
    """(parameters, values every layer outputs for one sample at one step) of a zoo network,
    counted on PyTorch's meta device: shapes only, nothing allocated."""
    import torch

    from kdsnn.zoo import build

    with torch.device("meta"):
        if graph:
            from kdsnn.layers import GraphNet, NodeSpec

            net = GraphNet([NodeSpec(**d) for d in graph["specs"]], tuple(input_shape), int(num_classes),
                           spiking=spiking, T=1, feature_points=graph.get("feature_points", []), arch=arch)
        else:
            net = build(arch, spiking, int(num_classes), tuple(input_shape), T=1, width=float(width))
        net.eval()
        params = sum(p.numel() for p in net.parameters())
        count = [0]

        def hook(_m: Any, _i: Any, o: Any) -> None:
            if isinstance(o, torch.Tensor):
                count[0] += o.numel()

        for m in net.modules():
            if not list(m.children()):
                m.register_forward_hook(hook)
        with torch.no_grad():
            net(torch.empty(1, *input_shape))
    return int(params), int(count[0])


def check_training(arch: str, spiking: bool, num_classes: int, input_shape: tuple[int, ...], T: int,
                   width: float, batch_size: int) -> None:
    """A lower bound of what training holds (float32 weights and gradients, every layer's
    output of every step of a batch kept for backpropagation) against the budget."""
    params = int(round(float(width) ** 2 * 1e6))  # a cheap first bound before building anything
    if params * 8 > memory_budget():
        check_size(params * 8, f"--width {width:g} ({arch}: about {params:.3g} weights)",
                   "use a smaller --width")
    params, acts = activations_per_sample(arch, spiking, num_classes, input_shape, width)
    need = 8 * params + 4 * batch_size * T * acts
    check_size(need, f"training {arch} at --width {width:g} with --batch-size {batch_size} x -T {T} x "
                     f"{acts:,} values per sample and step ({params:,} weights)",
               "lower -T, --width or --batch-size")


def check_run(batch_size: int, T: int, input_shape: tuple[int, ...], neurons: int, what: str) -> None:
    """A run holds a batch's inputs and neuron states over T steps (float64 on the float rungs)."""
    per_step = 1
    for d in input_shape:
        per_step *= int(d)
    need = 8 * batch_size * T * (per_step + int(neurons))
    check_size(need, f"{what}: --batch-size {batch_size} x -T {T} x {per_step + int(neurons):,} inputs and neurons",
               "lower -T or --batch-size")
