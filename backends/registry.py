"""Backend plugin registry over the entry-point group `kdsnn.backends` (docs/design.md, "Backends are plugins").

The built-ins (reference, intsim, lava) register in kdsnn's own pyproject.toml exactly as
a third party would in theirs:

    [project.entry-points."kdsnn.backends"]
    mybackend = "my_package.module:MyBackend"      # a kdsnn.backends.base.Backend subclass

A backend that cannot be imported, is not a Backend, or whose `available()` says no, is
listed as unavailable with the reason; listing never fails because of one plugin.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from kdsnn.backends.base import Backend

from kdsnn.errors import KdsnnError

GROUP = "kdsnn.backends"
ACCEPTS = {"nir": "NIR graph (float)", "intnet": "integer IR (IntNet)"}


@dataclass
class BackendInfo:
    name: str
    available: bool
    accepts: str | None
    reason: str
    description: str
    entry_point: str
    cls: Any = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("cls")
        return d


def _entry_points() -> list[EntryPoint]:
    """The group's entry points, first one per name (sys.path order)."""
    eps = entry_points()
    found = eps.select(group=GROUP) if hasattr(eps, "select") else eps.get(GROUP, [])
    seen: dict[str, EntryPoint] = {}
    for ep in found:
        seen.setdefault(ep.name, ep)
    return [seen[k] for k in sorted(seen)]


def _inspect(ep: EntryPoint) -> BackendInfo:
    info = BackendInfo(ep.name, False, None, "", "", ep.value)
    try:
        cls = ep.load()
    except Exception as e:  # a broken plugin must not break the listing
        info.reason = f"cannot be imported ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:160]})"
        return info
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        info.reason = f"{ep.value} is not a kdsnn Backend subclass"
        return info
    info.cls = cls
    info.accepts = getattr(cls, "accepts", None)
    info.description = str(getattr(cls, "description", "") or "")
    if info.accepts not in ACCEPTS:
        info.reason = f"declares accepts={info.accepts!r}; must be 'nir' or 'intnet'"
        return info
    try:
        ok, reason = cls.available()
    except Exception as e:
        ok, reason = False, f"availability check failed ({type(e).__name__}: {e})"
    info.available, info.reason = bool(ok), str(reason or "")
    return info


def list_backends() -> list[BackendInfo]:
    """Every registered backend, available or not (with the reason), sorted by name."""
    return [_inspect(ep) for ep in _entry_points()]


def backend_info(name: str) -> BackendInfo:
    """The named backend's entry, or a KdsnnError saying why it cannot be used."""
    eps = {ep.name: ep for ep in _entry_points()}
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none"
        raise KdsnnError(f"unknown backend {name!r}; registered backends: {known} (see `kdsnn targets`)")
    info = _inspect(eps[name])
    if not info.available:
        raise KdsnnError(f"backend {name!r} is not available here: {info.reason}")
    return info


def get_backend(name: str) -> Backend:
    """An instance of the named backend, or a KdsnnError saying why it cannot be used."""
    return backend_info(name).cls()


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    n = len(rows[0]) - 1
    widths = [max(len(r[c]) for r in rows) for c in range(n)]
    lines = []
    for j, r in enumerate(rows):
        lines.append("  ".join(r[c].ljust(widths[c]) for c in range(n)) + "  " + r[n])
        if j == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 20)
    return lines


def targets_text(as_json: bool = False) -> str:
    """What `kdsnn targets` prints: the backends (--target: status, what they accept, why not)
    and the hardware specs (--hw) built in; JSON with `as_json`."""
    from kdsnn.compiler.targets import BUILTIN

    infos = list_backends()
    if as_json:
        return json.dumps({"backends": [i.to_json() for i in infos],
                           "hardware": [{"name": s.name, "description": s.description}
                                        for s in BUILTIN.values()]}, indent=2)
    rows = [("backend (--target)", "status", "accepts", "description / reason")]
    for i in infos:
        rows.append((i.name, "available" if i.available else "unavailable",
                     ACCEPTS.get(i.accepts or "", "-"),
                     i.description if i.available else i.reason))
    hw = [("hardware spec (--hw)", "description"), *((s.name, s.description) for s in BUILTIN.values())]
    return "\n".join([*_table(rows), "", *_table(hw),
                      "(--hw also takes a spec file, JSON or TOML: {\"name\": \"mychip\", \"base\": \"loihi\", ...})"])
