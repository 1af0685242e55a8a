"""Pass `quantize_input`: the input becomes signed graded spikes of `input_bits` bits.

scale = qmax / max|x| over the calibration samples, so the calibration range uses the
whole integer range; values beyond it saturate at +-qmax (InputSpec.quantize). Integer
inputs that fit (spike trains, event counts per bin) keep scale 1: exact. A spike/current
train input (N, T, *shape) is sent one frame per step (InputSpec.temporal). A
deployment-exact student (kdsnn.deploy_exact) keeps the input grid it was trained on.
"""

from __future__ import annotations

from kdsnn.compiler.intnet import InputSpec
from kdsnn.compiler.passes.state import LoweringState

from kdsnn.errors import KdsnnError

NAME = "quantize_input"


def run(st: LoweringState) -> None:
    bits = int(st.config.input_bits or st.target.input_bits)
    if not 2 <= bits <= st.target.max_message_bits:
        raise KdsnnError(f"input_bits must be in [2, {st.target.max_message_bits}] (the max_message_bits of hardware "
                         f"spec {st.target.name}), got {bits}; choose --input-bits in that range")
    shape = next(n.shape for n in st.nodes.values() if n.op == "input")
    qmax = 2 ** (bits - 1) - 1
    xmax = st.stats["input"]["x_max"]
    exact = bool(st.stats["input"].get("integer")) and xmax <= qmax
    scale = 1.0 if exact or xmax == 0 else qmax / xmax
    if st.plan is not None:             # the input grid the student was trained on
        bits, scale, exact = int(st.plan["input"]["bits"]), float(st.plan["input"]["scale"]), False
    mean = tuple(float(m) for m in (st.meta.get("mean") or ()))
    std = tuple(float(s) for s in (st.meta.get("std") or ()))
    st.input_spec = InputSpec(shape=tuple(shape), scale=float(scale), bits=bits, mean=mean, std=std,
                              temporal=st.temporal)
    st.log.append(f"{NAME}: {bits}-bit graded input{' train' if st.temporal else ''}, scale {scale:.4g} "
                  f"(|x| <= {xmax:.4g}{', integers kept exact' if exact else ''})")
