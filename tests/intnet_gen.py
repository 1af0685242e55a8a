"""Random IntNets for the integer-backend tests (shared by intsim and Lava tests)."""

from __future__ import annotations

import numpy as np
from kdsnn.compiler.intnet import INPUT, Connection, InputSpec, IntNet, Population


def _conv_shape(h: int, w: int, k: int, s: int, p: int, d: int) -> tuple[int, int]:
    return (h + 2 * p - d * (k - 1) - 1) // s + 1, (w + 2 * p - d * (k - 1) - 1) // s + 1


def random_intnet(seed: int, *, n_hidden: int | None = None, conv: bool | None = None,
                  big: bool = False, T: int | None = None, residual: bool | None = None,
                  lava_safe: bool = False) -> IntNet:
    """A random small IntNet. big=True drives states into u wrap / v clip regions.

    lava_safe=True keeps every accumulation inside Lava's int32 / float32 datapaths.
    """
    rng = np.random.default_rng(seed)
    conv = bool(rng.integers(2)) if conv is None else conv
    residual = bool(rng.integers(2)) if residual is None else residual
    n_hidden = int(rng.integers(1, 4)) if n_hidden is None else n_hidden
    T = int(rng.integers(1, 5)) if T is None else T
    bits = int(rng.integers(2, 13 if big else 9))
    if conv:
        in_shape = (int(rng.integers(1, 4)), int(rng.integers(3, 7)), int(rng.integers(3, 7)))
    else:
        in_shape = (int(rng.integers(2, 24)),)
    inp = InputSpec(shape=in_shape, scale=float(rng.uniform(0.5, 2.0) * (2 ** (bits - 1)) / 3.0), bits=bits)
    shapes = {INPUT: in_shape}
    pops: list[Population] = []
    conns: list[Connection] = []
    wmax = 1200 if big else 300

    def pop(name: str, shape: tuple[int, ...], readout: bool) -> Population:
        generic = rng.random() < 0.3
        vth = int(rng.integers(0, 131072 if big and rng.random() < 0.5 else 300))
        return Population(
            name=name, shape=shape, vth=vth,
            bias_mant=rng.integers(-4096, 4096, size=shape).astype(np.int32) if rng.random() < 0.5
            else np.zeros(shape, np.int32),
            bias_exp=int(rng.integers(0, 8)) if rng.random() < 0.3 else 0,
            du=int(rng.integers(0, 4096)) if generic else 4095,
            dv=int(rng.integers(0, 4096)) if generic else 0,
            readout=readout, depth=0)

    def dense(name: str, src: str, n_dst: int, dst: str) -> Connection:
        n_src = int(np.prod(shapes[src]))
        mode = str(rng.choice(["mixed", "mixed", "excitatory", "inhibitory"]))
        w = rng.integers(-wmax, wmax + 1, size=(n_dst, n_src))
        return Connection(name=name, src=src, dst=dst, kind="dense", weight=w.astype(np.int32),
                          weight_exp=int(rng.integers(-3, 4)), sign_mode=mode,
                          num_weight_bits=int(rng.integers(1, 9)) if rng.random() < 0.3 else 8,
                          graded=src == INPUT)

    def convc(name: str, src: str, dst: str, c_out: int, k: int, s: int, p: int, d: int, g: int) -> Connection:
        c_in = shapes[src][0]
        w = rng.integers(-256, 255 if not big else 2000, size=(c_out, c_in // g, k, k))
        return Connection(name=name, src=src, dst=dst, kind="conv", weight=w.astype(np.int32),
                          stride=(s, s), padding=(p, p), dilation=(d, d), groups=g,
                          graded=src == INPUT)

    prev = INPUT
    for i in range(n_hidden + 1):
        readout = i == n_hidden
        name = "readout" if readout else f"act{i + 1}"
        src_shape = shapes[prev]
        if len(src_shape) == 3 and not readout and rng.random() < 0.8:
            c_in, h, w_ = src_shape
            g = int(rng.choice([g for g in (1, 2, 3) if c_in % g == 0]))
            c_out = g * int(rng.integers(1, 3))
            k = int(rng.integers(1, 4))
            s = int(rng.integers(1, 3))
            p = int(rng.integers(0, k))
            d = int(rng.integers(1, 3)) if k > 1 and rng.random() < 0.2 else 1
            ho, wo = _conv_shape(h, w_, k, s, p, d)
            if ho < 1 or wo < 1:
                k, s, p, d = 1, 1, 0, 1
                ho, wo = h, w_
            shape = (c_out, ho, wo)
            shapes[name] = shape
            conns.append(convc(f"conv{i + 1}", prev, name, c_out, k, s, p, d, g))
        else:
            shape = (int(rng.integers(1, 12)),)
            shapes[name] = shape
            conns.append(dense(f"fc{i + 1}", prev, shape[0], name))
        pops.append(pop(name, shape, readout))
        if residual and i > 0:
            # a second, shortcut edge from an earlier population or the input
            earlier = [INPUT] + [q.name for q in pops[:-1]]
            src = earlier[int(rng.integers(len(earlier)))]
            if len(shape) == 3 and len(shapes[src]) == 3 and shapes[src][1:] == shape[1:]:
                conns.append(convc(f"short{i + 1}", src, name, shape[0], 1, 1, 0, 1, 1))
            else:
                conns.append(dense(f"short{i + 1}", src, int(np.prod(shape)), name))
        prev = name
    # target 'test': exercises the backends beyond Loihi's fields (weights clipped, wraps)
    net = IntNet(input=inp, populations=pops, connections=conns, T=T, target="test")
    if lava_safe:
        for c in net.connections:
            if c.kind == "conv":
                c.weight = np.clip(c.weight, -256, 254).astype(np.int32)
    net.validate()
    return net


def random_general_intnet(seed: int, *, lava_safe: bool = False, T: int | None = None,
                          conv: bool | None = None) -> IntNet:
    """random_intnet plus the general features: leaky/current decays, subtractive resets,
    recurrent and delayed connections, a spike-train input and a spiking readout.

    Every cycle carries at least one step of delay per connection on it, so Lava can hold
    it (see backends/lava/schedule.py)."""
    rng = np.random.default_rng(10_000 + seed)
    net = random_intnet(seed, T=T if T is not None else int(rng.integers(2, 7)), conv=conv,
                        lava_safe=lava_safe, residual=bool(rng.integers(2)))
    net.input.temporal = bool(rng.integers(2))
    order = {p.name: i for i, p in enumerate(net.populations)}
    for p in net.populations:
        p.reset = str(rng.choice(["zero", "subtract"]))
        if rng.random() < 0.6:
            p.du, p.dv = int(rng.integers(0, 4096)), int(rng.integers(0, 4096))
    ro = net.readout
    ro.readout_kind = str(rng.choice(["v", "spikes"]))
    wmax = 300
    for i in range(int(rng.integers(1, 4))):
        dst = net.populations[int(rng.integers(len(net.populations)))]
        src = net.populations[int(rng.integers(len(net.populations)))]
        hops = max(0, order[src.name] - order[dst.name])      # a bound on the zero-delay path
        delay = hops + 1 + int(rng.integers(0, 3))
        w = rng.integers(-wmax, wmax + 1, size=(dst.size, src.size)).astype(np.int32)
        net.connections.append(Connection(name=f"rec{i}", src=src.name, dst=dst.name, kind="dense",
                                          weight=w, weight_exp=int(rng.integers(-2, 2)), delay=delay))
    if rng.random() < 0.5:                                       # a delayed input connection
        dst = net.populations[0]
        n_src = int(np.prod(net.input.shape))
        w = rng.integers(-wmax, wmax + 1, size=(dst.size, n_src)).astype(np.int32)
        net.connections.append(Connection(name="in_delayed", src=INPUT, dst=dst.name, kind="dense",
                                          weight=w, delay=int(rng.integers(1, 3)), graded=True))
    net.validate()
    return net


def random_input(net: IntNet, n: int, seed: int) -> np.ndarray:
    """Normalized inputs of the right shape: (n, *shape) or (n, T, *shape) when temporal."""
    rng = np.random.default_rng(seed)
    lead = (n, net.T) if net.input.temporal else (n,)
    return rng.uniform(-1.5, 1.5, size=(*lead, *net.input.shape)) * net.input.qmax / net.input.scale
