"""Rung 0 of the parity ladder: the graph on kdsnn's reference against the framework that
wrote it (`kdsnn export GRAPH.nir --input X.npz --expect PEER.npz`).

Only this rung checks fidelity to the source: rungs 1 and 2 of a foreign graph compare
kdsnn with itself. PEER.npz holds what the source framework produced on the same inputs, in
the same sample order (arrays, no pickles):

    output_spikes            (N, T, C)  spikes of the output layer per step, or
    logits                   (N, C)     the framework's class scores (argmax is compared)
    spike_counts/<node>      (N,)       optional: total spikes per sample of a spiking node,
                                        keyed by the node's name in the .nir file

Rung 0 reports argmax agreement, output spike agreement (per sample and step where
`output_spikes` is given) and per-layer spike-count differences, and fails below
AGREEMENT (99 % of samples with the same argmax)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from kdsnn.backends.base import RunResult
from kdsnn.errors import KdsnnError
from kdsnn.parity import Rung, scores

AGREEMENT = 0.99
COUNTS = "spike_counts/"


def load_expect(path: str | os.PathLike) -> dict[str, np.ndarray]:
    p = Path(path)
    if not p.is_file():
        raise KdsnnError(f"--expect {p}: no such file")
    try:
        with np.load(p, allow_pickle=False) as f:
            arrays = {k: np.asarray(f[k]) for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise KdsnnError(f"--expect {p} is not a readable .npz file ({str(e).splitlines()[0][:120]})") from None
    if "output_spikes" not in arrays and "logits" not in arrays:
        raise KdsnnError(f"--expect {p}: needs 'output_spikes' (N, T, C) or 'logits' (N, C); has "
                         f"{', '.join(arrays) or 'nothing'}")
    for k, a in arrays.items():
        if a.dtype.kind not in "biuf" or not np.all(np.isfinite(a)):
            raise KdsnnError(f"--expect {p}: array {k!r} is not finite numbers")
    if "output_spikes" in arrays and arrays["output_spikes"].ndim != 3:
        raise KdsnnError(f"--expect {p}: output_spikes must be (N, T, C), got {arrays['output_spikes'].shape}")
    if "logits" in arrays and arrays["logits"].ndim != 2:
        raise KdsnnError(f"--expect {p}: logits must be (N, C), got {arrays['logits'].shape}")
    return arrays


def rung0(expect: dict[str, np.ndarray], res: RunResult, output_layer: str | None,
          source: str = "peer") -> dict[str, Any]:
    """Compare a reference run (with spike trains recorded when output_spikes is given)
    with the peer's outputs on the same inputs."""
    n_run = len(res.logits)
    spikes = expect.get("output_spikes")
    n_exp = len(spikes) if spikes is not None else len(expect["logits"])
    n = min(n_run, n_exp)
    if n == 0:
        raise KdsnnError("--expect: no samples to compare")
    notes = []
    if n_exp != n_run:
        notes.append(f"the peer file has {n_exp} samples, the run {n_run}: the first {n} are compared")
    ours = np.asarray(res.logits)[:n].argmax(1)
    entry: dict[str, Any] = {"rung": 0, "name": f"reference vs the source framework ({source})",
                             "backend": "reference", "samples_compared": n, "threshold": AGREEMENT}
    if spikes is not None:
        if spikes.shape[1] != res.T:
            raise KdsnnError(f"--expect: output_spikes has {spikes.shape[1]} steps, the run T={res.T}")
        peer_counts = spikes[:n].sum(1)
        theirs = peer_counts.argmax(1)
        trains = (res.spike_trains or {}).get(output_layer) if output_layer else None
        if trains is not None:
            tr = trains[:n].reshape(n, res.T, -1)
            if tr.shape[2] != spikes.shape[2]:
                raise KdsnnError(f"--expect: output_spikes has {spikes.shape[2]} outputs, the graph "
                                 f"{tr.shape[2]}")
            same = tr == (spikes[:n] > 0)
            entry["output_spikes"] = {"layer": output_layer, "equal_fraction": float(same.mean()),
                                      "samples_identical": int(same.reshape(n, -1).all(1).sum()),
                                      "kdsnn_spikes": int(tr.sum()), "peer_spikes": int(spikes[:n].sum())}
    else:
        theirs = expect["logits"][:n].argmax(1)
    agree = float((ours == theirs).mean())
    entry["argmax_agreement"] = agree
    entry["differing_samples"] = np.flatnonzero(ours != theirs)[:20].tolist()
    layers = {}
    for k, a in expect.items():
        if not k.startswith(COUNTS):
            continue
        name = k[len(COUNTS):]
        if name not in res.spike_counts:
            raise KdsnnError(f"--expect: spike counts for {name!r}, which is not a spiking node of the graph "
                             f"(nodes: {', '.join(res.spike_counts)})")
        mine, peer = np.asarray(res.spike_counts[name][:n], np.float64), np.asarray(a[:n], np.float64)
        layers[name] = {"kdsnn_mean": float(mine.mean()), "peer_mean": float(peer.mean()),
                        "mean_abs_diff": float(np.abs(mine - peer).mean()),
                        "relative_diff": float(np.abs(mine - peer).sum() / max(peer.sum(), 1.0)),
                        "samples_equal": int((mine == peer).sum())}
    entry["layers"] = layers
    entry["notes"] = notes
    entry["passed"] = agree >= AGREEMENT - 1e-9   # k/n in floats: exactly the threshold passes
    return entry


def output_layer(graph, res: RunResult) -> str | None:
    """The spiking node whose spikes the graph outputs: back from the Output through the
    readout (and the identity weights canonicalisation inserts) to the first spiking node."""
    import nir

    preds: dict[str, list[str]] = {}
    for a, b in graph.edges:
        preds.setdefault(b, []).append(a)
    k = next(n for n, v in graph.nodes.items() if isinstance(v, nir.Output))
    for _ in range(len(graph.nodes)):
        ps = preds.get(k, [])
        if len(ps) != 1:
            return None
        k = ps[0]
        if k in res.spike_counts:
            return k
    return None


def rung0_of(expect_path: str | os.PathLike, source: Any, res: RunResult, y: np.ndarray) -> tuple[Rung, str | None]:
    """Rung 0 for a deployment: (rung, failure message or None)."""
    if source.kind != "nir":
        raise KdsnnError("--expect compares a .nir SOURCE with the framework that wrote it; "
                         f"{source.path} is a kdsnn checkpoint")
    e = rung0(load_expect(expect_path), res, output_layer(source.graph, res), source=Path(expect_path).name)
    details = {k: v for k, v in e.items() if k not in ("rung", "name", "backend", "passed")}
    r = Rung(0, e["name"], "reference", scores(res, y), passed=e["passed"], details=details)
    failure = None if e["passed"] else (
        f"rung 0 failed: the reference agrees with {expect_path} on the argmax of "
        f"{100 * e['argmax_agreement']:.1f} % of {e['samples_compared']} samples (< {100 * AGREEMENT:.0f} %); "
        f"first differing samples {e['differing_samples'][:5]}")
    return r, failure
