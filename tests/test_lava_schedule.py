"""The Lava backend's schedule (depths, delays, periods, streamed samples), checked on many
random graphs without Lava: a numpy model of Lava's timing (every connection delays by one
step, LIFReset resets, relays) equals the zero-delay semantics and intsim's scalar oracle.
"""

from __future__ import annotations

import numpy as np
import pytest
from kdsnn.compiler.intnet import INPUT, Connection, InputSpec, IntNet
from lava_nets import (
    _clip24,
    _decay,
    _dense,
    _eff_weight,
    _pop,
    _wrap24,
    calibrate,
    dense_net,
    ref_run,
)

from kdsnn.errors import KdsnnError


def test_schedule_depths_delays_and_steps():
    from kdsnn.backends.lava.schedule import make_schedule

    net = dense_net(np.random.default_rng(0), residual=True)
    s = make_schedule(net, 5)
    assert s.depth == {"input": 0, "act1": 1, "act2": 2, "act3": 3, "out": 4}
    assert s.extra == {"fc1": 0, "fc2": 0, "fc3": 0, "fc4": 0, "skip1": 1, "skip_in": 1, "skip2": 2}
    assert s.relays == {}                              # dense shortcuts run as DelayDense
    assert s.period == net.T and s.total_steps == 4 * 4 + 4 + 4
    for pop in s.depth:
        for k in range(5):
            for t in range(net.T):
                tau = s.step(pop, k, t)
                assert s.slot(s.depth[pop], tau) == (k, t)
                assert (tau % s.period == s.reset_offset(pop)) == (t == 0) or pop == "input"
    s2 = make_schedule(net, 3, period=7)
    assert s2.slot(2, 1 + 2 + 7 + 4) is None           # a gap step of sample 1 (t = 4 >= T)
    with pytest.raises(KdsnnError, match="period"):
        make_schedule(net, 3, period=net.T - 1)


def lava_timing_model(net: IntNet, sched, x: np.ndarray):
    """Step the network as Lava does, on the backend's schedule; -> logits, per-step counts.

    Every connection accumulates at tau what its source sent extra(c) steps before (relay
    chain or DelayDense) and delivers it at tau + 1; a population is silent outside its
    windows (CountingLIF); dense connections only (a numpy model, no Lava)."""
    from kdsnn.backends.lava.schedule import slot

    temporal = net.input.temporal
    xq = net.input.quantize(x).astype(np.int64)
    xq = xq.reshape(len(x), net.T, -1) if temporal else xq.reshape(len(x), -1)
    N, T, P = len(x), sched.T, sched.period
    pops = {p.name: p for p in net.populations}
    u = {k: np.zeros(p.size, np.int64) for k, p in pops.items()}
    v = {k: np.zeros(p.size, np.int64) for k, p in pops.items()}
    buf = {c.name: np.zeros(pops[c.dst].size, np.int64) for c in net.connections}
    hist = {k: {} for k in pops}                           # pop -> {tau: spikes}
    per = {k: np.zeros((N, T), np.int64) for k in pops}
    logits = np.zeros((N, net.readout.size), np.int64)
    for tau in range(1, sched.total_steps + 1):
        for k, p in pops.items():                          # receive last step's accumulation
            a = sum((buf[c.name] for c in net.incoming(k)), np.zeros(p.size, np.int64))
            if tau % P == sched.reset_offset(k):
                u[k][:] = 0
                v[k][:] = 0
            u[k] = _wrap24(_decay(u[k], p.du + 1) + (a << 6))
            bias = np.asarray(p.bias_mant, np.int64).reshape(-1)
            v[k] = _clip24(_decay(v[k], p.dv) + u[k] + (bias << p.bias_exp))
            sl = slot(tau, sched.depth[k], P, T, N)
            s = (v[k] > (p.vth << 6)) & (sl is not None)
            if p.reset == "subtract":
                v[k][s] -= p.vth << 6
            else:
                v[k][s] = 0
            hist[k][tau] = s.astype(np.int64)
            if sl is not None:
                per[k][sl] = s.sum()
                if p.readout and p.readout_kind == "spikes":
                    logits[sl[0]] += s
                elif p.readout and sl[1] == T - 1:
                    logits[sl[0]] = v[k]
        for c in net.connections:                          # accumulate spikes of tau - extra
            e = sched.extra[c.name]
            if c.src == INPUT:
                sl = slot(tau, e, P, T, N)
                if sl is None:
                    s = np.zeros(xq.shape[-1], np.int64)
                else:
                    s = xq[sl] if temporal else xq[sl[0]]
            else:
                s = hist[c.src].get(tau - e, np.zeros(pops[c.src].size, np.int64))
            acc = s @ _eff_weight(c).T
            buf[c.name] = acc << c.weight_exp if c.weight_exp > 0 else acc >> -c.weight_exp
    return logits, per


@pytest.mark.parametrize("seed", range(30))
def test_schedule_reproduces_general_semantics_on_random_graphs(seed):
    """Recurrent and delayed connections, leaky neurons, subtractive resets, spike-train
    inputs, spiking readouts: Lava's timing on the backend's schedule == intsim, sample by
    sample (scalar oracle), with the default period and a longer one."""
    from intnet_gen import random_general_intnet, random_input
    from kdsnn.backends.lava.schedule import make_schedule
    from oracles.intsim_ref import run_scalar

    net = random_general_intnet(seed, conv=False)
    x = random_input(net, 1 + seed % 3, seed)
    ref = run_scalar(net, x)
    for extra_period in (0, seed % 3):
        P = net.T + max(c.delay for c in net.connections) + extra_period
        sched = make_schedule(net, len(x), period=P)
        lg, per = lava_timing_model(net, sched, x)
        assert np.array_equal(lg, ref["logits"]), (seed, P)
        for k in per:
            assert np.array_equal(per[k], ref["spikes"][k].sum(axis=2)), (seed, P, k)


def test_schedule_refuses_fast_cycles_and_short_periods():
    """A cycle with fewer delay steps than connections cannot be step-exact on Lava (each
    synapse takes one step); a period without room for the delays is refused."""
    from intnet_gen import random_general_intnet
    from kdsnn.backends.lava.schedule import make_schedule

    net = random_general_intnet(3, conv=False)
    names = [p.name for p in net.populations]
    assert len(names) >= 2
    for c in net.connections:
        if c.src == names[-1] and c.dst == names[0]:
            c.delay = 1
    net.connections.append(Connection(name="fast_back", src=names[-1], dst=names[0], kind="dense",
                                      weight=np.ones((net.populations[0].size, net.readout.size), np.int32),
                                      delay=1))
    with pytest.raises(KdsnnError, match=r"cycle .* fewer steps of delay than connections"):
        make_schedule(net, 2)
    net.connections.pop()
    gap = max(c.delay for c in net.connections)
    with pytest.raises(KdsnnError, match="period"):
        make_schedule(net, 2, period=net.T + gap - 1)


@pytest.mark.parametrize("seed", range(30))
def test_schedule_reproduces_canonical_semantics_on_random_graphs(seed):
    """Random dense DAGs with skips of every length, random T, P >= T (P = T included),
    N samples streamed: Lava's timing on the backend's schedule == zero-delay semantics."""
    from kdsnn.backends.lava.schedule import make_schedule

    rng = np.random.default_rng(100 + seed)
    n_pops = int(rng.integers(2, 6))
    T = int(rng.integers(1, 5))
    sizes = [int(rng.integers(3, 9)) for _ in range(n_pops)]
    names = [f"act{i}" for i in range(n_pops - 1)] + ["out"]
    pops = [_pop(rng, nm, (sz,), readout=nm == "out") for nm, sz in zip(names, sizes, strict=True)]
    conns, shapes = [], {INPUT: 7}
    for i, p in enumerate(pops):
        srcs = [([INPUT] + names)[i]]                      # the chain ...
        srcs += [s for s in [INPUT] + names[:i] if s not in srcs and rng.random() < 0.4]  # ... + skips
        for s in srcs:
            conns.append(_dense(rng, f"{s}_{p.name}", s, p.name, p.size, shapes[s]))
        shapes[p.name] = p.size
    net = calibrate(IntNet(input=InputSpec(shape=(7,), scale=40.0), populations=pops,
                           connections=conns, T=T), rng, n=8)
    x = rng.normal(size=(int(rng.integers(1, 5)), 7))
    P = T + int(rng.integers(0, 3))
    sched = make_schedule(net, len(x), period=P)
    lg, per, _ = ref_run(net, x)
    lg2, per2 = lava_timing_model(net, sched, x)
    assert np.array_equal(lg, lg2)
    for k in per:
        assert np.array_equal(per[k], per2[k]), k
