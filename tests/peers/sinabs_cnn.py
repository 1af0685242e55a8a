"""Sinabs' own simulation of a NIR graph, run in a subprocess beside kdsnn's pins.

Sinabs 3.1.3 needs nir 1.0.4 / nirtorch 2.0.2 (kdsnn pins nir 1.0.8), so it lives in its
own folder (`make peers`: .peers/sinabs) put first on PYTHONPATH; this script imports
nothing from kdsnn. Usage:

    PYTHONPATH=.peers/sinabs python tests/peers/sinabs_cnn.py GRAPH.nir X.npz OUT.npz MODE

X.npz holds x (N, T, C, H, W) input frames. MODE:
  nir      one spike per step (SingleSpike), reset by subtraction (MembraneSubtract), no
           lower bound on v: NIR's IF with a subtractive reset, as kdsnn runs it
  default  what `sinabs.from_nir` builds: several spikes per step (MultiSpike, v // thr)
           and v clipped at min_v_mem = -v_threshold
OUT.npz gets output_spikes (N, T, classes) and spike_counts/<node> (N,) per IF node
(kdsnn.peer's --expect format)."""

from __future__ import annotations

import sys

import nir
import numpy as np
import sinabs
import sinabs.layers as sl
import torch
from sinabs.activation import MembraneSubtract, MultiSpike, SingleSpike


def main(graph: str, x_path: str, out: str, mode: str) -> None:
    torch.set_num_threads(1)
    x = np.load(x_path)["x"].astype(np.float32)
    g = nir.read(graph)
    model = sinabs.from_nir(g, batch_size=1)
    neurons = {name: m for name, m in model.named_children() if isinstance(m, sl.IAF)}
    for m in neurons.values():
        if mode == "nir":
            m.spike_fn, m.reset_fn, m.min_v_mem = SingleSpike, MembraneSubtract(), None
        elif mode == "default":
            assert m.spike_fn is MultiSpike and isinstance(m.reset_fn, MembraneSubtract)
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    last = next(a for a, b in g.edges if b == "output")   # the spiking layer the Output reads
    counts: dict[str, list[float]] = {k: [] for k in neurons}
    outs = []
    seen: dict[str, torch.Tensor] = {}
    for k, m in neurons.items():
        m.register_forward_hook(lambda mod, inp, o, k=k: seen.__setitem__(k, o.detach()))
    with torch.no_grad():
        for n in range(len(x)):
            for m in neurons.values():
                m.reset_states()
            model(torch.from_numpy(x[n]))
            for k in neurons:
                counts[k].append(float(seen[k].sum()))
            outs.append(seen[last].reshape(x.shape[1], -1).numpy())
    arrays = {"output_spikes": np.stack(outs).astype(np.float32)}
    arrays.update({f"spike_counts/{k}": np.asarray(v) for k, v in counts.items()})
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(*sys.argv[1:5])
