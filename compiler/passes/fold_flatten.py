"""Pass `fold_flatten`: drop a Flatten that feeds dense layers.

A dense connection reads its source in C order (IntNet contract), which is exactly what
a full Flatten does, so removing it is exact. A Flatten feeding anything else stays
(it becomes an identity connection in `connections`).
"""

from __future__ import annotations

from kdsnn.compiler.passes.state import LoweringState, bypass

NAME = "fold_flatten"


def run(st: LoweringState) -> None:
    folded = 0
    for f in [n for n in st.nodes.values() if n.op == "flatten"]:
        for c in st.consumers(f.name):
            if c.op == "dense":
                bypass(c, f)
                folded += 1
        if not st.consumers(f.name):
            del st.nodes[f.name]
    st.log.append(f"{NAME}: {folded} flatten(s) folded into dense layers")
