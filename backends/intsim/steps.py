"""intsim's step-by-step path: recurrent and delayed networks, leaky/current-based and
subtractive-reset neurons, spike-train inputs, spiking readouts (docs/design.md, "Integer semantics").

`IntSimExecutable` (backends/intsim/fast.py) folds time: it computes one population for all T
steps, then the next, which needs a feed-forward graph without delays. Here the loop is the
other way round, as Lava runs it: for each step t, every population in order integrates

    a[t] = wrap32(sum_c accumulate_c(s_src[t - delay_c]))       (zero before the sample)

with the very connection arithmetic of the fast path (`IntSimExecutable._accumulate`:
Lava's Dense clip/truncate/exponent/int32 and Conv 24-bit wrap), then updates u, v with
Lava's PyLifModelBitAcc arithmetic (`compiler/intnet.py`), fires and resets (to zero or by
subtracting vth << 6). A source of delay d is read from a ring of its last d spike frames.
All integer state is int64 torch; accumulations run in the dtype the fast path proved exact.
"""

from __future__ import annotations

from typing import Any

import torch
from kdsnn.backends.intsim.arith import ACT_SHIFT, STATE_MAX, VTH_SHIFT, decay, wrap, wrap_once24
from kdsnn.backends.intsim.fast import IntSimExecutable
from kdsnn.compiler.intnet import INPUT


class StepSimExecutable(IntSimExecutable):
    """The same compiled connections as the fast path, run one step at a time."""

    def _run_batch(self, xq: torch.Tensor, record: bool) -> dict[str, Any]:
        net, T, n = self.net, self.net.T, xq.shape[0]
        lim = STATE_MAX - 1
        pops = net.populations
        temporal = net.input.temporal
        hist_len = {INPUT: 0, **{p.name: 0 for p in pops}}
        for c in net.connections:
            hist_len[c.src] = max(hist_len[c.src], int(c.delay))
        zeros = {p.name: torch.zeros((n, *p.shape), dtype=torch.int64, device=self.device) for p in pops}
        zeros[INPUT] = torch.zeros_like(xq[:, 0] if temporal else xq)
        hist: dict[str, list[torch.Tensor]] = {k: [zeros[k]] * v for k, v in hist_len.items()}
        u = {p.name: torch.zeros((n, p.size), dtype=torch.int64, device=self.device) for p in pops}
        v = {p.name: torch.zeros((n, p.size), dtype=torch.int64, device=self.device) for p in pops}
        per = {p.name: torch.zeros((n, T), dtype=torch.int64, device=self.device) for p in pops}
        counts_n = {p.name: torch.zeros((n, p.size), dtype=torch.int64, device=self.device) for p in pops}
        trains = {p.name: torch.zeros((n, T, *p.shape), dtype=torch.uint8, device=self.device)
                  for p in pops} if record else {}
        diag = {p.name: {"u_wraps": 0, "v_clips": 0} for p in pops}
        static_acc: dict[str, torch.Tensor] = {}            # input connections of static input
        for t in range(T):
            now: dict[str, torch.Tensor] = {INPUT: xq[:, t] if temporal else xq}
            for p in pops:
                a = torch.zeros((n, p.size), dtype=torch.int64, device=self.device)
                for k in self.conns[p.name]:
                    c = k.c
                    if c.src == INPUT and not temporal and c.delay == 0:
                        if c.name not in static_acc:
                            static_acc[c.name] = self._accumulate(k, xq).to(torch.int64)
                        acc = static_acc[c.name]
                    else:
                        if c.delay == 0:
                            s_src = now[c.src]
                        elif t - c.delay < 0:
                            continue                          # nothing sent before the sample
                        else:
                            s_src = hist[c.src][-c.delay]
                        acc = self._accumulate(k, s_src.to(k.dtype)).to(torch.int64)
                    a = a + acc
                a = wrap(a, 32)
                x = wrap(decay(u[p.name], p.du + 1) + wrap(a << ACT_SHIFT, 32), 32)
                un = wrap_once24(x)
                diag[p.name]["u_wraps"] += int((un != x).sum())
                u[p.name] = un
                pre = wrap(decay(v[p.name], p.dv) + un + self.bias[p.name], 32)
                vn = pre.clamp(-lim, lim)
                diag[p.name]["v_clips"] += int((vn != pre).sum())
                vth = int(p.vth) << VTH_SHIFT
                s = vn > vth
                if p.reset == "subtract":
                    vn = torch.where(s, vn - vth, vn)
                else:
                    vn = vn.masked_fill(s, 0)
                v[p.name] = vn
                si = s.to(torch.int64)
                per[p.name][:, t] = si.sum(dim=1)
                counts_n[p.name] += si
                if record:
                    trains[p.name][:, t] = s.reshape(n, *p.shape).to(torch.uint8)
                now[p.name] = si.reshape(n, *p.shape)
            for k2, L in hist_len.items():
                if L:
                    hist[k2] = hist[k2][1:] + [now[k2]]
        ro = net.readout
        logits = v[ro.name] if ro.readout_kind == "v" else counts_n[ro.name]
        if ro.readout_kind == "v":
            diag[ro.name]["readout_spikes"] = int(per[ro.name].sum())
        return {"logits": logits, "counts": {k: q.sum(dim=1) for k, q in per.items()},
                "per_step": per, "trains": trains, "diag": diag}
