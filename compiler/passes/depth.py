"""Pass `depth`: Population.depth = where each population sits in Lava's pipeline.

Lava's synapses (Dense, Conv) deliver one step late, so a population fed through a chain
of d synapses sees the input d steps late; the Lava backend aligns every population to
its depth (backends/lava/schedule.py). A connection with `delay` whole steps must take
exactly depth(dst) - depth(src) + delay Lava steps, at least the one step a synapse
takes, so the depths solve the difference constraints

    depth(dst) >= depth(src) + 1 - delay     (input: depth 0; every population >= 1)

taken at their smallest (longest paths, Bellman-Ford). Feed-forward without delays this
is the longest chain of connections from the input. No solution exists when a cycle has
fewer steps of delay than connections (each synapse on Loihi takes one step): such a
network runs on intsim, and `compiler.intnet.pipeline_depths` names the cycle for Lava.
"""

from __future__ import annotations

from kdsnn.compiler.intnet import INPUT, pipeline_depths
from kdsnn.compiler.passes.state import LoweringState

NAME = "depth"


def run(st: LoweringState) -> None:
    d = pipeline_depths([p.name for p in st.int_pops], st.int_conns)
    if isinstance(d, list):
        st.log.append(f"{NAME}: cycle {' -> '.join(d)} cannot be pipelined on Lava (intsim only)")
        d = {INPUT: 0, **{p.name: 0 for p in st.int_pops}}
    for p in st.int_pops:
        p.depth = d[p.name]
    st.log.append(f"{NAME}: network depth {max(d.values())}")
