"""An export folder's files belong together: parity.json (and report.json) record the sha256
of the graph.nir and intnet.kdsnn they were made with, and `kdsnn run` / `kdsnn report`
refuse a folder where they differ (a copy from another run, a hand edit, a mixed folder)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from kdsnn.errors import KdsnnError
from kdsnn.parity import GRAPH_FILE, INTNET_FILE, PARITY_FILE

ARTIFACTS = (GRAPH_FILE, INTNET_FILE)
REPORT_JSON = "report.json"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def artifact_digests(folder: Path) -> dict[str, str]:
    """{file name: sha256} of the artifacts present in `folder`."""
    return {name: sha256_of(folder / name) for name in ARTIFACTS if (folder / name).is_file()}


def _redo(folder: Path) -> str:
    return f"re-run `kdsnn export ... -o {folder}` to make a consistent export"


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise KdsnnError(f"{path} cannot be read ({e}); {_redo(path.parent)}") from None


def check_bundle(folder: str | Path) -> None:
    """One KdsnnError when graph.nir, intnet.kdsnn, parity.json and report.json in `folder`
    come from different exports. A folder without recorded digests (exported before kdsnn
    recorded them) is not checked."""
    folder = Path(folder)
    parity = folder / PARITY_FILE
    recorded: dict[str, str] | None = None
    if parity.is_file():
        doc = _read(parity)
        recorded = doc.get("artifacts") if isinstance(doc, dict) else None
        if recorded is not None:
            if not isinstance(recorded, dict) or not all(isinstance(v, str) for v in recorded.values()):
                raise KdsnnError(f"{parity}: 'artifacts' must map file names to sha256 digests; it is corrupt; "
                                 f"{_redo(folder)}")
            _check_files(folder, recorded, parity)
    report = folder / REPORT_JSON
    if report.is_file():
        doc = _read(report)
        meta = doc.get("meta") if isinstance(doc, dict) else None
        rep = meta.get("artifacts") if isinstance(meta, dict) else None
        if isinstance(rep, dict):
            if recorded is not None and rep != recorded:
                diff = sorted(k for k in set(rep) | set(recorded) if rep.get(k) != recorded.get(k))
                raise KdsnnError(f"{report} belongs to another export than {parity} (they record different "
                                 f"{', '.join(diff)}); {_redo(folder)}")
            if recorded is None:
                _check_files(folder, rep, report)


def _check_files(folder: Path, recorded: dict[str, str], record: Path) -> None:
    for name in ARTIFACTS:
        path, want = folder / name, recorded.get(name)
        if want is None:
            if path.exists():
                raise KdsnnError(f"{path} is not part of the export {record.name} describes (it records no "
                                 f"{name}): the folder mixes runs; {_redo(folder)}")
            continue
        if not path.is_file():
            raise KdsnnError(f"{path} is missing; {record.name} records it; {_redo(folder)}")
        got = sha256_of(path)
        if got != want:
            raise KdsnnError(f"{path} does not belong with {record}: its sha256 {got[:12]}... differs from the "
                             f"recorded {want[:12]}... (the files come from different runs, or it was edited); "
                             f"{_redo(folder)}")
