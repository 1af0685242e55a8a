"""Pass `connections`: every neuron node becomes a population, every edge into it a connection.

An edge from a synaptic node (Conv2d/Affine/Linear) becomes a connection from that node's
source population with its weights; an edge straight from a population (or the input) is
an identity connection (1x1 depthwise conv for maps, identity matrix for vectors); a
pooling node left after `fold_pool` becomes a depthwise conv, a flatten an identity matrix.
Several edges into one node (residual sums, recurrence) give several connections into one
population. Delays on the way (a cycle-closing edge: one step; Delay nodes: their steps)
become the connection's `delay`.

The neuron's common form (`compiler.dynamics`) is folded exactly:
  gain      multiplies the incoming weights (and synaptic biases) row by row: u is linear;
  threshold per-neuron thresholds are normalised to the layer's (1 when they differ) by
            scaling the neuron's weights and biases by theta_layer / theta_i: v is linear
            in its inputs, so spikes and both resets are unchanged;
  v_leak    (dynamics' bias, dt/tau * v_leak) is the population's bias, added to v;
  synaptic  a Conv/Affine bias enters the synaptic input a. With no current state
  bias      (alpha = 1) and no delay on its edge it is the same constant in v: it joins the
            population's bias. Otherwise (it would rise through u's decay, or start after
            the edge's delay) it is sent exactly as it acts: a one-neuron `bias` population
            that spikes at every step drives a connection with the bias as weights and the
            edge's delay.
"""

from __future__ import annotations

import numpy as np
from kdsnn.compiler.dynamics import DiscreteNeuron
from kdsnn.compiler.intnet import INPUT
from kdsnn.compiler.passes.state import FConn, FPop, LNode, LoweringState

from kdsnn.errors import KdsnnError

NAME = "connections"
SOURCES = ("input", "neuron")
LINEAR = ("conv", "dense", "pool", "flatten")


def _identity(src: str, dst: str, shape: tuple[int, ...], name: str) -> FConn:
    if len(shape) == 3:
        return FConn(name, src, dst, "conv", np.ones((shape[0], 1, 1, 1)), groups=shape[0])
    n = int(np.prod(shape))
    return FConn(name, src, dst, "dense", np.eye(n))


def _chain(st: LoweringState, n: LNode, first: str) -> tuple[LNode, LNode | None, int, int]:
    """Walk from neuron n's input `first` back to a source: (source, the one linear node or
    None, delay of the whole path, delay after the linear node: what its bias sees)."""
    delay = after = n.delays.get(first, 0)
    cur = st.nodes[first]
    lin: list[LNode] = []
    while cur.op not in SOURCES:
        if cur.op == "delay":
            delay += cur.params["steps"]
            if not lin:
                after += cur.params["steps"]
        elif cur.op in LINEAR:
            lin.append(cur)
        else:
            raise KdsnnError(f"node {n.name} is fed by {cur.name} ({cur.op}); cannot lower that edge")
        if len(cur.inputs) != 1:
            raise KdsnnError(f"node {cur.name} ({cur.op}) has {len(cur.inputs)} inputs; kdsnn sums inputs "
                             "only in neuron nodes")
        nxt = cur.inputs[0]
        step = cur.delays.get(nxt, 0)
        delay += step
        if not lin:
            after += step
        cur = st.nodes[nxt]
    if len(lin) > 1:
        raise KdsnnError(f"{lin[-1].op} node {lin[-1].name} reads from {lin[-2].name} ({lin[-2].op}); kdsnn "
                         "lowers one synaptic layer between neuron layers (fold or remove the extra linear layer)")
    return cur, (lin[0] if lin else None), delay, after


def _row_factor(d: DiscreteNeuron, shape: tuple[int, ...]) -> tuple[float, np.ndarray, np.ndarray]:
    """(theta of the layer, per-neuron weight factor gain * theta/theta_i, per-neuron v factor)."""
    gain = np.broadcast_to(np.asarray(d.gain, np.float64), shape)
    if not d.spiking:
        return float("inf"), np.array(gain), np.ones(shape)
    th = np.broadcast_to(np.asarray(d.v_threshold, np.float64), shape)
    theta = float(th.flat[0]) if np.all(th == th.flat[0]) else 1.0
    f = theta / th
    return theta, gain * f, f


def _scale_rows(c: FConn, k: np.ndarray, dst: str) -> None:
    """Multiply connection c's weights by the per-destination-neuron factor k."""
    if c.kind == "dense":
        c.weight = c.weight * k.reshape(-1, 1)
        return
    kc = k.reshape(k.shape[0], -1)
    if not np.allclose(kc, kc[:, :1], rtol=1e-12, atol=0):
        raise KdsnnError(f"node {dst}: its gain or threshold differs within a channel of a convolution; a conv "
                         "connection scales whole output channels (make them uniform per channel)")
    c.weight = c.weight * kc[:, 0].reshape(-1, 1, 1, 1)


def run(st: LoweringState) -> None:
    used: set[str] = set()                        # connection names
    taken: set[str] = set(st.nodes)               # population names: no node's name

    def fresh(base: str, names: set[str] = used) -> str:
        nm, i = base, 1
        while nm in names:
            i += 1
            nm = f"{base}_{i}"
        names.add(nm)
        return nm

    neurons = [n for n in st.nodes.values() if n.op == "neuron"]
    neurons.sort(key=lambda n: bool(n.params.get("readout")))     # readout last, order kept otherwise
    bias_pop: FPop | None = None
    pops, conns = [], []
    for n in neurons:
        d: DiscreteNeuron = n.params["neuron"]
        shape = tuple(n.shape)
        theta, k, f = _row_factor(d, shape)
        pop = FPop(n.name, shape, theta, np.broadcast_to(np.asarray(d.bias, np.float64), shape) * f,
                   readout=bool(n.params.get("readout")), alpha=float(np.ravel(d.alpha)[0]),
                   beta=float(np.ravel(d.beta)[0]), reset=d.reset, kind=d.kind)
        for i in n.inputs:
            src, lin, delay, after = _chain(st, n, i)
            bias = None
            if lin is None:
                c = _identity(src.name, n.name, src.shape, fresh(f"{src.name}->{n.name}"))
            else:
                p = lin.params
                if lin.op == "conv":
                    c = FConn(fresh(lin.name), src.name, n.name, "conv", p["weight"], p["stride"], p["padding"],
                              p["dilation"], p["groups"], list(lin.origin))
                    bias = np.broadcast_to(p["bias"].reshape(-1, 1, 1), shape)
                elif lin.op == "dense":
                    c = FConn(fresh(lin.name), src.name, n.name, "dense", p["weight"], origin=list(lin.origin))
                    bias = p["bias"].reshape(shape)
                elif lin.op == "pool":
                    ch = src.shape[0]
                    w = np.full((ch, 1, *p["kernel"]), p["scale"])
                    c = FConn(fresh(lin.name), src.name, n.name, "conv", w, p["stride"], p["padding"],
                              (1, 1), ch, list(lin.origin))
                else:
                    c = _identity(src.name, n.name, (int(np.prod(src.shape)),), fresh(lin.name))
                    c.origin = list(lin.origin)
            c.delay = int(delay)
            _scale_rows(c, k, n.name)
            conns.append(c)
            if bias is None or not np.any(bias):
                continue
            b = bias * k
            if pop.alpha == 1.0 and after == 0:
                pop.bias = pop.bias + b
                continue
            if bias_pop is None:
                bias_pop = FPop(fresh("bias", taken), (1,), 0.5, np.ones(1), kind="bias")
                conns.append(FConn(fresh(f"{INPUT}->{bias_pop.name}"), INPUT, bias_pop.name, "dense",
                                   np.zeros((1, int(np.prod(st.shape_of(INPUT)))))))
            conns.append(FConn(fresh(f"{bias_pop.name}->{n.name}"), bias_pop.name, n.name, "dense",
                               b.reshape(-1, 1), origin=list(lin.origin) if lin else [], delay=int(after)))
        pops.append(pop)
    if bias_pop is not None:
        pops.insert(0, bias_pop)
        st.log.append(f"{NAME}: synaptic biases through a current decay or a delay are sent by the "
                      f"one-neuron population {bias_pop.name!r} (fires every step)")
    st.pops.extend(pops)
    st.conns.extend(conns)
    st.log.append(f"{NAME}: {len(st.pops)} populations, {len(st.conns)} connections, "
                  f"{sum(c.delay > 0 for c in st.conns)} delayed")
