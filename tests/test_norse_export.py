"""Norse 1.1's own NIR exporter (`norse.torch.utils.export_nir.to_nir`) against Norse's own
simulation: what its files mean, and where kdsnn refuses them.

Norse 1.1 writes LIFBoxCell as nir.LIF with tau = dt / tau_mem_inv, i.e. dt * tau_mem
instead of tau_mem (norse/norse#411, open), 0-d parameters (norse/norse#412) that nir
1.0.8's writer cannot store, and torch tensors. Read at Norse's dt, such a file has
dt / tau = tau_mem_inv > 1: refused. Read at dt = (Norse's dt)^2 its per-step decay and
gain are Norse's own, and kdsnn's reference equals Norse spike for spike."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from kdsnn.backends.reference import ReferenceBackend
from kdsnn.compiler.nir.read import read_nir
from nir_files import write_foreign

from kdsnn.errors import KdsnnError

norse = pytest.importorskip("norse.torch")
torch.set_num_threads(1)
DT = 1e-3   # Norse's default step


def _net():
    from norse.torch import LIFBoxCell, LIFBoxParameters, SequentialState

    torch.manual_seed(1)
    p1 = LIFBoxParameters(tau_mem_inv=torch.tensor(50.0), v_th=torch.tensor(0.5))
    p2 = LIFBoxParameters(tau_mem_inv=torch.tensor(200.0), v_th=torch.tensor(0.3))
    net = SequentialState(torch.nn.Linear(12, 16), LIFBoxCell(p1), torch.nn.Linear(16, 3), LIFBoxCell(p2))
    with torch.no_grad():
        for m in net:
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(8.0)
    return net


def _norse_run(net, x: np.ndarray) -> np.ndarray:
    """Output spikes (N, T, 3): Norse steps the whole batch, state carried by SequentialState."""
    out, state = [], None
    with torch.no_grad():
        for t in range(x.shape[1]):
            z, state = net(torch.tensor(x[:, t]), state)
            out.append(z)
    return torch.stack(out, 1).numpy()


def test_norse_lifbox_export_refused_at_its_dt_and_exact_at_dt_squared(tmp_path):
    from norse.torch.utils.export_nir import to_nir

    net = _net()
    g = to_nir(net, torch.zeros(1, 12), dt=DT)
    lif = [k for k, v in g.nodes.items() if isinstance(v, nir.LIF)]
    assert len(lif) == 2 and float(g.nodes[lif[0]].tau) == pytest.approx(DT / 50.0)   # norse#411
    p = tmp_path / "norse.nir"
    write_foreign(p, g)
    with pytest.raises(KdsnnError, match=rf"node '{lif[0]}': dt=0.001 s exceeds a time constant.*"
                                         r"Norse 1\.1.*norse/norse#411.*--dt 1e-06"):
        read_nir(p, dt=DT)
    x = (np.random.default_rng(5).random((8, 60, 12)) < 0.4).astype(np.float32)
    spikes = _norse_run(net, x)
    ours = ReferenceBackend().compile(read_nir(p, dt=DT * DT), T=x.shape[1]).run(x, record=True)
    out = ours.spike_trains[lif[1]]
    assert spikes.sum() > 20 and 0 < ours.spike_trains[lif[0]].mean() < 0.5
    np.testing.assert_array_equal(out, spikes)
