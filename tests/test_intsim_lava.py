"""intsim against Lava's own bit-accurate process models, one layer at a time (slow).

A RingBuffer source drives a Dense or Conv process into a LIFReset population, all with
Lava's fixed_pt/bit-accurate models; the same layer as a one-population IntNet runs on
intsim. Lava's Dense/Conv delay by one step, so Lava step t+1 is canonical step t; the
LIFReset zeroes its state at step 2 so that the bias of the empty first step is dropped.
Spikes at every step and the final v must be identical.
"""

from __future__ import annotations

import numpy as np
import pytest
from kdsnn.backends.intsim import IntSimBackend
from kdsnn.compiler.intnet import Connection, InputSpec, IntNet, Population

lava = pytest.importorskip("lava")
pytestmark = pytest.mark.slow


def _run_lava(net: IntNet, x_int: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spikes (T, size) in IntNet (C, H, W) order and the final v of the one population."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIFReset
    from lava.utils.weightutils import SignMode

    (p,) = net.populations
    (c,) = net.connections
    T = net.T
    steps = T + 1
    conv = c.kind == "conv"
    src = x_int.transpose(2, 1, 0) if conv else x_int.reshape(-1)          # (W, H, C) for Conv
    data = np.repeat(src[..., None], steps, axis=-1).astype(np.int32)
    source = Source(data=data)
    if conv:
        w = c.weight.transpose(0, 3, 2, 1)[:, ::-1, ::-1, :].copy()          # OIHW -> (O, W, H, I), flipped
        syn = Conv(weight=w, input_shape=src.shape, padding=c.padding[::-1], stride=c.stride[::-1],
                   dilation=c.dilation[::-1], groups=c.groups, num_message_bits=24)
        shape = syn.output_shape
    else:
        mode = {"mixed": SignMode.MIXED, "excitatory": SignMode.EXCITATORY,
                "inhibitory": SignMode.INHIBITORY}[c.sign_mode]
        syn = Dense(weights=c.weight, weight_exp=c.weight_exp, num_weight_bits=c.num_weight_bits,
                    sign_mode=mode, num_message_bits=24)
        shape = (p.size,)
    bias = p.bias_mant.transpose(2, 1, 0) if conv else p.bias_mant.reshape(-1)
    lif = LIFReset(shape=shape, du=p.du, dv=p.dv, vth=p.vth, bias_mant=bias, bias_exp=p.bias_exp,
                   reset_interval=steps + 10, reset_offset=2)
    sink = Sink(shape=shape, buffer=steps)
    source.s_out.connect(syn.s_in)
    syn.a_out.connect(lif.a_in)
    lif.s_out.connect(sink.a_in)
    try:
        lif.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        spikes = np.asarray(sink.data.get())[..., 1:]
        v = np.asarray(lif.v.get())
    finally:
        lif.stop()
    if conv:
        spikes = spikes.transpose(2, 1, 0, 3)
        v = v.transpose(2, 1, 0)
    return spikes.reshape(p.size, T).T, v.reshape(-1)


def _net(kind: str, seed: int) -> tuple[IntNet, np.ndarray]:
    rng = np.random.default_rng(seed)
    T = 4
    if kind == "conv":
        c_in, h, w, g, c_out = 4, 6, 5, 2, 4
        inp = InputSpec(shape=(c_in, h, w), scale=1.0, bits=12)
        wt = rng.integers(-256, 255, size=(c_out, c_in // g, 3, 2)).astype(np.int32)
        conn = Connection("c", "input", "p", "conv", wt, stride=(2, 1), padding=(1, 1), groups=g, graded=True)
        shape = (c_out, (h + 2 - 3) // 2 + 1, (w + 2 - 2) + 1)
    else:
        n_in, n = 12, 9
        inp = InputSpec(shape=(n_in,), scale=1.0, bits=12)
        mode = ["mixed", "excitatory", "inhibitory"][seed % 3]
        wt = rng.integers(-300, 300, size=(n, n_in)).astype(np.int32)        # beyond 8 bits: clipped
        conn = Connection("c", "input", "p", "dense", wt, weight_exp=int(rng.integers(-3, 3)),
                          num_weight_bits=int(rng.choice([8, 6])), sign_mode=mode, graded=True)
        shape = (n,)
    generic = seed % 2 == 1
    pop = Population("p", shape, vth=int(rng.integers(50, 3000)),
                     bias_mant=rng.integers(-4096, 4096, size=shape).astype(np.int32),
                     bias_exp=int(rng.integers(0, 4)), du=int(rng.integers(0, 4096)) if generic else 4095,
                     dv=int(rng.integers(0, 4096)) if generic else 0, readout=True)
    net = IntNet(inp, [pop], [conn], T=T)
    amp = 2047 if seed in (1, 5) else 15                  # 1, 5: u wraps and v clips
    x = rng.integers(-amp, amp + 1, size=inp.shape)
    return net, x


@pytest.mark.parametrize("kind, seed", [("dense", 0), ("dense", 1), ("dense", 5), ("conv", 2), ("conv", 3)])
def test_one_layer_matches_lava_bit_accurate_models(kind: str, seed: int) -> None:
    net, x = _net(kind, seed)
    r = IntSimBackend().compile(net).run(x[None].astype(np.float64), record=True)
    spikes, v = _run_lava(net, x)
    ours = r.spike_trains["p"][0].reshape(net.T, -1)
    np.testing.assert_array_equal(ours, spikes)
    np.testing.assert_array_equal(r.logits[0], v)
    assert spikes.sum() > 0 and (spikes.sum() < spikes.size)           # the case is not trivial
    if seed not in (1, 5):                                  # and sensitive to the weights
        net.connections[0].weight = (net.connections[0].weight * 3) // 4
        r2 = IntSimBackend().compile(net).run(x[None].astype(np.float64))
        assert not np.array_equal(r2.logits, r.logits)
