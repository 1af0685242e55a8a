"""Student (GraphNet) -> canonical NIR graph (docs/design.md, "Data flow", "Float semantics").

One NIR node per GraphNet node, under the same name, so spike counts line up across
reference, intsim and Lava: conv -> Conv2d (BatchNorm folded), linear -> Affine (or
Linear when there is no bias at all), act -> IF(r=1, v_threshold=theta, v_reset=0) (a leaky student: LIF, see _neuron_node) over
the layer's full shape, avgpool -> AvgPool2d, flatten -> Flatten(start_dim=0), readout ->
I(r=1). A node with several inputs gets several edges (NIR sums them).

BatchNorm is folded in float64 and the parameters are stored as float64: the folded
weights are products of float32 numbers, and keeping them exact (to ~1e-16) lets rung 2
compare export and student without spurious spike flips at the threshold.
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np
import torch
from kdsnn.compiler.geometry import pair, window_out_hw
from kdsnn.compiler.nir.canonicalize import canonicalize

from kdsnn import __version__
from kdsnn.errors import KdsnnError


def fold_bn_torch(weight: torch.Tensor, bias: torch.Tensor | None, bn: torch.nn.Module | None
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(W, b) of a Conv/Linear followed by an eval-mode BatchNorm, float64 and differentiable
    (the deployment-exact training forward folds with this same function, so its float
    weights are bit for bit those exported)."""
    w = weight.double()
    b = bias.double() if bias is not None else None
    if bn is None:
        return w, b
    mean = bn.running_mean.detach().double()
    var = bn.running_var.detach().double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)
    w = w * scale.reshape(-1, *([1] * (w.ndim - 1)))
    b0 = b if b is not None else torch.zeros_like(mean)
    return w, (b0 - mean) * scale + beta


def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: torch.nn.Module | None
            ) -> tuple[np.ndarray, np.ndarray | None]:
    """(W, b) of a Conv/Linear followed by an eval-mode BatchNorm, float64 numpy."""
    with torch.no_grad():
        w, b = fold_bn_torch(weight, bias, bn)
    return w.cpu().numpy(), (b.cpu().numpy() if b is not None else None)


def _neuron_node(mod: Any, shape: tuple[int, ...], theta: float, dt: float) -> nir.NIRNode:
    """IF(r=1) for an IF neuron; LIF for a leaky one with snnTorch's convention
    tau = dt/(1-beta), r = tau/dt, so that forward Euler gives v = beta*v + y exactly in
    the common form (compiler/dynamics.py). A layer's leak is one value, broadcast."""
    th, zeros = np.full(shape, theta), np.zeros(shape)
    beta = getattr(mod, "beta", None)
    if beta is None:
        return nir.IF(r=np.ones(shape), v_threshold=th, v_reset=zeros)
    tau = np.inf if beta >= 1.0 else dt / (1.0 - float(beta))
    return nir.LIF(tau=np.full(shape, tau), r=np.full(shape, tau / dt), v_leak=zeros,
                   v_threshold=th, v_reset=zeros)


def student_to_nir(model: Any, config: dict[str, Any] | None = None) -> nir.NIRGraph:
    """A spiking GraphNet student (eval semantics) -> canonical NIR graph with metadata."""
    from kdsnn.layers import GraphNet  # compiler -> kdsnn only for exporting a student

    config = dict(config or {})
    if config.get("kind", "student") != "student":
        raise KdsnnError(f"only spiking students can be exported to NIR; this checkpoint is a "
                         f"{config.get('kind')!r} (train a student with `kdsnn distill`)")
    if not isinstance(model, GraphNet) or not model.spiking:
        raise KdsnnError("only spiking students can be exported to NIR; this model is an ANN teacher")
    shapes: dict[str, tuple[int, ...]] = {"input": tuple(int(d) for d in model.input_shape)}
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.array(shapes["input"])})}
    edges: list[tuple[str, str]] = []
    theta = float(model.neuron.get("theta", 1.0))
    dt = 1.0                       # one time step of the student is the graph's time unit
    resets: dict[str, str] = {}    # nodes whose reset is subtractive (NIR's v_reset cannot say)
    last = "input"
    for spec in model.specs:
        mod = model.nodes[spec.name]
        s = shapes[spec.inputs[0]]
        if spec.op == "conv":
            conv = mod.conv
            w, b = fold_bn(conv.weight, conv.bias, mod.bn)
            node = nir.Conv2d(input_shape=(s[1], s[2]), weight=w, stride=tuple(conv.stride),
                              padding=tuple(conv.padding), dilation=tuple(conv.dilation),
                              groups=int(conv.groups),
                              bias=b if b is not None else np.zeros(w.shape[0]))
            out = (w.shape[0], *window_out_hw(s[1:], w.shape[2:], conv.stride, conv.padding, conv.dilation))
        elif spec.op == "linear":
            w, b = fold_bn(mod.linear.weight, mod.linear.bias, mod.bn)
            node = nir.Linear(weight=w) if b is None else nir.Affine(weight=w, bias=b)
            out = (w.shape[0],)
        elif spec.op == "act":
            th = float(getattr(mod, "theta", theta))
            node = _neuron_node(mod, s, th, dt)
            if getattr(mod, "reset", "zero") == "subtract":
                resets[spec.name] = "subtract"
            out = s
        elif spec.op == "avgpool":
            k, st = pair(mod.kernel_size), pair(mod.stride or mod.kernel_size)
            if pair(mod.padding) != (0, 0) or mod.ceil_mode:
                raise KdsnnError(f"node {spec.name}: AvgPool2d with padding/ceil_mode cannot be exported exactly")
            node = nir.AvgPool2d(kernel_size=np.array(k), stride=np.array(st), padding=np.array([0, 0]))
            out = (s[0], *window_out_hw(s[1:], k, st, (0, 0)))
        elif spec.op == "flatten":
            node = nir.Flatten(input_type={"input": np.array(s)}, start_dim=0, end_dim=-1)
            out = (int(np.prod(s)),)
        elif spec.op == "readout":
            node = nir.I(r=np.ones(s))
            out = s
        else:  # pragma: no cover - GraphNet validates its ops
            raise KdsnnError(f"node {spec.name}: op {spec.op!r} cannot be exported")
        nodes[spec.name] = node
        shapes[spec.name] = out
        edges += [(i, spec.name) for i in spec.inputs]
        last = spec.name
    nodes["output"] = nir.Output(output_type={"output": np.array(shapes[last])})
    edges.append((last, "output"))
    meta = {
        "T": int(config.get("T", model.T)),
        "dt": dt,
        "reset_modes": resets or None,
        "encoding": "direct",
        "theta": theta,
        "mean": [float(m) for m in config.get("mean") or []] or None,
        "std": [float(m) for m in config.get("std") or []] or None,
        "class_names": [str(c) for c in config.get("class_names") or []] or None,
        "input_shape": list(shapes["input"]),
        "dataset": config.get("dataset"),
        "arch": config.get("arch", model.arch),
        "num_classes": int(model.num_classes),
        "kdsnn_version": __version__,
        "producer": "kdsnn",
        "deploy_exact": config.get("deploy_exact"),   # the plan a deployment-exact student trained on
    }
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata={k: v for k, v in meta.items() if v is not None},
                         type_check=False)
    return canonicalize(graph, source=f"student {meta['arch']}")
