"""Graph structure of an imported NIR graph: subgraphs inlined, edges and ends checked,
nodes in evaluation order (a topological order once the edges closing cycles are set
aside: they carry a one-step delay)."""

from __future__ import annotations

from collections import deque
from typing import Any

import nir
from kdsnn.compiler.dynamics import NEURONS, closing_edges, cycle_through
from kdsnn.compiler.nir.context import ImportContext

from kdsnn.errors import KdsnnError


def inline_subgraphs(graph: nir.NIRGraph, prefix: str, ctx: ImportContext) -> tuple[dict[str, nir.NIRNode], list[tuple[str, str]]]:
    """Flatten nested NIRGraphs: edges into/out of a subgraph go through its inner Input /
    Output, which are then bypassed, so only the top-level Input and Output remain."""
    nodes, edges, inner = _inline_rec(graph, prefix, ctx)
    for k in inner:
        ins_ = [a for a, b in edges if b == k]
        outs_ = [b for a, b in edges if a == k]
        edges = [e for e in edges if k not in e] + [(a, b) for a in ins_ for b in outs_]
        del nodes[k]
    if inner:
        ctx.notes.append(f"inlined {len(inner) // 2} subgraph(s)")
    return nodes, edges


def _inline_rec(graph: nir.NIRGraph, prefix: str, ctx: ImportContext):
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    inner: list[str] = []
    entry: dict[str, str] = {}   # subgraph name (or name.<its input>) -> its inner Input
    exit_: dict[str, str] = {}
    for name, node in graph.nodes.items():
        full = prefix + str(name)
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges, sub_inner = _inline_rec(node, full + ".", ctx)
            ins = [k for k, v in node.nodes.items() if isinstance(v, nir.Input)]
            outs = [k for k, v in node.nodes.items() if isinstance(v, nir.Output)]
            if len(ins) != 1 or len(outs) != 1:
                raise ctx.fail(full, f"subgraph with {len(ins)} inputs and {len(outs)} outputs; "
                                     "only subgraphs with one Input and one Output can be inlined")
            entry[full] = f"{full}.{ins[0]}"
            exit_[full] = f"{full}.{outs[0]}"
            inner += [entry[full], exit_[full], *sub_inner]
            nodes.update(sub_nodes)
            edges.extend(sub_edges)
        else:
            nodes[full] = node
    for a, b in graph.edges:
        a, b = prefix + str(a), prefix + str(b)
        edges.append((exit_.get(a, a), entry.get(b, b)))
    return nodes, edges, inner


def topological_order(names: list[str], preds: dict[str, list[str]],
                      succs: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """Kahn's order of a DAG: (order, nodes left on a cycle; empty for a DAG)."""
    indeg = {k: len(preds[k]) for k in names}
    queue = deque(k for k in names if indeg[k] == 0)
    order: list[str] = []
    while queue:
        k = queue.popleft()
        order.append(k)
        for b in succs[k]:
            indeg[b] -= 1
            if indeg[b] == 0:
                queue.append(b)
    return order, [k for k in names if indeg[k] > 0]


def check_structure(nodes: dict[str, nir.NIRNode], edges: list[tuple[str, str]], ctx: ImportContext):
    """Edges refer to nodes, one Input and one Output, every node connected and reachable
    from the Input; cycles only through a neuron or Delay (their closing edge carries a
    one-step delay, `dag_order`). Returns (evaluation order, preds, succs)."""
    seen = set()
    for a, b in edges:
        for end in (a, b):
            if end not in nodes:
                raise KdsnnError(f"{ctx.source}: edge {a!r} -> {b!r} refers to node {end!r}, which does "
                                 "not exist (dangling edge)")
        if (a, b) in seen:
            raise KdsnnError(f"{ctx.source}: edge {a!r} -> {b!r} appears twice")
        seen.add((a, b))
    ins = [k for k, v in nodes.items() if isinstance(v, nir.Input)]
    outs = [k for k, v in nodes.items() if isinstance(v, nir.Output)]
    if len(ins) != 1:
        raise KdsnnError(f"{ctx.source}: the graph has {len(ins)} Input nodes ({', '.join(ins) or 'none'}); "
                         "kdsnn runs graphs with exactly one input")
    if len(outs) != 1:
        raise KdsnnError(f"{ctx.source}: the graph has {len(outs)} Output nodes ({', '.join(outs) or 'none'}); "
                         "kdsnn runs graphs with exactly one output")
    preds: dict[str, list[str]] = {k: [] for k in nodes}
    succs: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in edges:
        preds[b].append(a)
        succs[a].append(b)
    for k, node in nodes.items():
        if isinstance(node, nir.Input):
            if preds[k]:
                raise ctx.fail(k, f"the Input node has incoming edges (from {', '.join(preds[k])})")
            if not succs[k]:
                raise ctx.fail(k, "the Input node feeds nothing")
        elif isinstance(node, nir.Output):
            if succs[k]:
                raise ctx.fail(k, "the Output node has outgoing edges")
            if len(preds[k]) != 1:
                raise ctx.fail(k, f"the Output node must have exactly one incoming edge, has {len(preds[k])}")
        else:
            if not preds[k]:
                raise ctx.fail(k, "has no incoming edge (not connected to the input)")
            if not succs[k]:
                raise ctx.fail(k, "has no outgoing edge (does not lead to the output)")
    order, closing = dag_order(nodes, edges, ins[0])
    reached = set(order_from(ins[0], succs))
    for k in nodes:
        if k not in reached:
            raise ctx.fail(k, "is not reachable from the Input node " + repr(ins[0]))
    for a, b in closing:
        cyc = cycle_through(b, a, edges)
        if not any(isinstance(nodes[k], (*NEURONS, nir.Delay)) for k in cyc):
            raise KdsnnError(f"{ctx.source}: the graph has a cycle through {' -> '.join([*cyc, b])} with no "
                             "neuron or Delay on it: a loop of synapses alone has no state to carry the "
                             "step from t-1 to t; put a neuron on the loop")
    return order, preds, succs


def dag_order(nodes: dict[str, Any] | list[str], edges: list[tuple[str, str]], input_name: str):
    """(topological order without the closing edges, the closing edges): the order every
    backend evaluates a step in; a closing edge delivers its source's value of step t-1."""
    names = list(nodes)
    closing = closing_edges(names, edges, [input_name])
    late = set(closing)
    preds: dict[str, list[str]] = {k: [] for k in names}
    succs: dict[str, list[str]] = {k: [] for k in names}
    for a, b in edges:
        if (a, b) not in late:
            preds[b].append(a)
            succs[a].append(b)
    order, left = topological_order(names, preds, succs)
    assert not left, left   # removing every DFS back edge leaves a DAG
    return order, closing


def order_from(start: str, succs: dict[str, list[str]]) -> list[str]:
    """Nodes reachable from `start` (itself included), breadth first."""
    seen, queue = {start}, [start]
    for k in queue:
        for b in succs[k]:
            if b not in seen:
                seen.add(b)
                queue.append(b)
    return queue
