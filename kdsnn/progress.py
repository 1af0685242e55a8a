"""How a command shows progress: bars on a terminal, one line per epoch / stage elsewhere.

`--progress auto|bars|lines|none` (`-q` = none) picks the mode once per command:
  bars   tqdm bars (on stderr, erased when done) plus the per-epoch / per-stage lines
  lines  no bars; one line per epoch (training) or per stage (export): what a log file wants
  none   neither; results and the list of written files are still printed
  auto   bars when stderr is a terminal, else lines (`make demo > log 2>&1` gets no bar frames)
The mode is passed along explicitly (a string in the run config / flow context), not kept
in a global, so library calls and tests get what they ask for.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import IO, Any

from kdsnn.errors import KdsnnError

MODES = ("auto", "bars", "lines", "none")


def resolve(mode: str | None = None, quiet: bool = False, stream: IO | None = None) -> str:
    """The effective mode: bars, lines or none (`quiet` wins; auto looks at `stream`, stderr)."""
    mode = (mode or "auto").lower()
    if mode not in MODES:
        raise KdsnnError(f"unknown --progress {mode!r}; choose one of {', '.join(MODES)}")
    if quiet:
        return "none"
    if mode == "auto":
        s = sys.stderr if stream is None else stream
        try:
            return "bars" if s.isatty() else "lines"
        except (AttributeError, ValueError):  # closed or not a real stream
            return "lines"
    return mode


def bars(mode: str) -> bool:
    """Draw tqdm bars? (only in bars mode: never in a log file under auto)."""
    return resolve(mode) == "bars"


def lines(mode: str) -> bool:
    """Print the per-epoch / per-stage lines? (bars and lines mode)."""
    return resolve(mode) in ("bars", "lines")


def bar(iterable: Iterable | None = None, mode: str = "none", **kw: Any):
    """A tqdm bar that is drawn only in bars mode and leaves nothing behind when it closes."""
    from tqdm import tqdm

    kw.setdefault("leave", False)
    kw.setdefault("dynamic_ncols", True)
    return tqdm(iterable, disable=not bars(mode), **kw)


def mode_of(cfg: Any) -> str:
    """The mode of a command's configuration (its `progress` and `quiet` fields)."""
    return resolve(getattr(cfg, "progress", None), cfg.quiet)


def stage_done(cfg: Any, what: str, n: int, t0: float) -> None:
    """In lines / bars mode, one line per finished stage (what a log shows while Lava runs)."""
    if lines(mode_of(cfg)):
        import time

        import click

        click.echo(f"  {what}: {n:,} test samples in {time.perf_counter() - t0:.1f} s")


def say(cfg: Any, msg: str, err: bool = False) -> None:
    """A note (stdout) or a warning (stderr, yellow) unless the configuration is quiet."""
    if not cfg.quiet:
        import click

        click.secho(msg, fg="yellow" if err else None, err=err)
