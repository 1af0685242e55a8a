"""Pass `depth`: Population.depth = the longest chain of connections from the input.

The input has depth 0, a population fed straight from it depth 1. The Lava backend
aligns each population to its depth (its connections delay one step each).
"""

from __future__ import annotations

from kdsnn.compiler.intnet import INPUT
from kdsnn.compiler.passes.state import LoweringState

NAME = "depth"


def run(st: LoweringState) -> None:
    depth = {INPUT: 0}
    for p in st.int_pops:
        p.depth = 1 + max(depth[c.src] for c in st.int_conns if c.dst == p.name)
        depth[p.name] = p.depth
    st.log.append(f"{NAME}: network depth {max(depth.values())}")
