"""metrics.jsonl, the per-epoch log of a training run, kept consistent with last.pt.

Each epoch's line is appended only after last.pt holds that epoch, and `--resume` cuts the
log back to last.pt's epoch (lines a killed run wrote past it, a half-written line) and puts
back that epoch's line from last.pt when the kill came between the two. So a resumed run logs
every epoch exactly once and training.png plots each once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kdsnn.io import atomic_path, write_error_of, write_failure


def append_metrics(path: Path, rec: dict[str, Any]) -> None:
    """One line, flushed to disk (a failed write is one error naming the file)."""
    try:
        with open(path, "a") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        err = write_error_of(e)
        if err is None:
            raise
        raise write_failure(path, err) from None


def sync_metrics(path: Path, epoch: int, last: dict[str, Any] | None) -> str | None:
    """Make the log hold epochs 1..`epoch` once each, as last.pt (whose own line is `last`)
    says; returns a note when it changed anything."""
    by_epoch: dict[int, dict[str, Any]] = {}
    dropped = 0
    lines = path.read_text().splitlines() if path.is_file() else []
    for line in lines:
        try:
            rec = json.loads(line)
            e = int(rec["epoch"])
        except (ValueError, KeyError, TypeError):
            dropped += 1           # a half-written line
            continue
        if e > epoch or e in by_epoch:
            dropped += 1           # past last.pt, or an epoch logged twice (the later one kept)
        if e <= epoch:
            by_epoch[e] = rec
    restored = epoch not in by_epoch and isinstance(last, dict) and last.get("epoch") == epoch
    if restored:
        by_epoch[epoch] = last  # type: ignore[assignment]
    kept = [by_epoch[e] for e in sorted(by_epoch)]
    if not dropped and not restored:
        return None
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    parts = []
    if dropped:
        parts.append(f"dropped {dropped} line{'s' if dropped != 1 else ''} past epoch {epoch}, repeated or cut "
                     "short (written around a kill)")
    if restored:
        parts.append(f"restored epoch {epoch}'s line from last.pt")
    return f"{path}: " + ", ".join(parts)
