"""intsim: the bit-accurate integer IF simulator (DESIGN §4), batched and fast.

Canonical semantics: zero synaptic delay, T steps per sample, zero state at sample start,
and Lava 0.10's fixed-point arithmetic exactly, including its integer widths:

  dense  a = wrap32(shift(W' . s, weight_exp))   W' = Lava clip to 8 bits, then LSB truncation
                                                 (mixed sign: even values); int32 channel
  conv   a = wrap24(conv(W, s))                  Lava's Conv: weights as given, weight_exp
                                                 ignored (must be 0), signed 24-bit clamp
  LIF    a_in = wrap32(sum of the population's incoming a)           (int32 port sum)
         u = wrap_once24(wrap32(decay(u, du + 1) + wrap32(a_in << 6)))
         v = clip(wrap32(decay(v, dv) + u + bias), -(2^23 - 1), 2^23 - 1)
         s = v > vth << 6;  v = 0 where s
  wrap_once24(x) = x - 2^24 if x > 2^23, x + 2^24 if x <= -2^23, else x  (Lava's exact test)

Because the network is a feed-forward DAG without delays, each population is computed for
all T steps at once (time-folded, like the float student), then the next one. Integer
sums run in float32 (or float64) only where `_exact_dtype` proves from the weights' and
inputs' maxima that every partial sum is an integer below 2^24 (2^53); otherwise an exact
int64 path is taken. The bound is checked in code when compiling, not assumed.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from backends.base import Backend, Executable, RunResult
from compiler.intnet import INPUT, Connection, IntNet
from kdsnn.errors import KdsnnError

LAVA_CLIP_BITS = 8                 # Lava's Dense clips weights to 8 bits, whatever the target
STATE_MAX = 1 << 23                # 24-bit u and v
ACT_SHIFT = VTH_SHIFT = 6
DECAY_SHIFT = 12
F32_EXACT = 1 << 24
F64_EXACT = 1 << 53


# -- Lava's weight handling -------------------------------------------------------------
def lava_dense_weights(w: np.ndarray, sign_mode: str, num_weight_bits: int) -> np.ndarray:
    """What PyDenseModelBitAcc does to weights: clip_weights(8 bits) then truncate_weights."""
    w = np.asarray(w).astype(np.int64)
    mixed = sign_mode == "mixed"
    inhib = sign_mode == "inhibitory"
    if inhib:
        w = -w
    lo = -(1 << LAVA_CLIP_BITS) if mixed else 0
    w = np.clip(w, lo, (1 << LAVA_CLIP_BITS) - 1)
    ntb = LAVA_CLIP_BITS - num_weight_bits + int(mixed)
    w = (w >> ntb) << ntb
    return -w if inhib else w


def effective_weights(c: Connection) -> np.ndarray:
    """The integer weights a connection really applies (int64)."""
    if c.kind == "dense":
        return lava_dense_weights(c.weight, c.sign_mode, c.num_weight_bits)
    return np.asarray(c.weight).astype(np.int64)


# -- integer helpers (torch int64) ------------------------------------------------------
def wrap(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Two's complement wrap of int64 values to a signed `bits`-bit integer."""
    half = 1 << (bits - 1)
    return ((x + half) & ((1 << bits) - 1)) - half


def decay(x: torch.Tensor, d: int) -> torch.Tensor:
    """sign(x) * ((|x| * (4096 - d)) >> 12), as Lava computes it in int64."""
    if d == 0:
        return x
    if d >= 1 << DECAY_SHIFT:
        return torch.zeros_like(x)
    p = x * ((1 << DECAY_SHIFT) - d)
    return torch.sign(p) * (p.abs() >> DECAY_SHIFT)


def wrap_once24(x: torch.Tensor) -> torch.Tensor:
    """Lava's u overflow handling: one conditional wrap, with `> max` and `<= -max`."""
    y = torch.where(x > STATE_MAX, x - 2 * STATE_MAX, x)
    return torch.where(y <= -STATE_MAX, x + 2 * STATE_MAX, y)


def bias_effective(mant: np.ndarray, exp: int) -> np.ndarray:
    """Lava's scale_bias: int16 storage of the mantissa, int32 shift by the exponent."""
    m = ((np.asarray(mant).astype(np.int64) + (1 << 15)) & 0xFFFF) - (1 << 15)
    out = (m << exp) if exp >= 0 else (m >> -exp)
    return ((out + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


# -- compiled form ------------------------------------------------------------------------
@dataclass
class _Conn:
    c: Connection
    w: np.ndarray                     # effective int64 weights
    bound: int                        # max |accumulation| for any input within src_max
    dtype: torch.dtype                # float32 / float64 (proved exact) or int64
    wt: torch.Tensor                  # weights in `dtype`
    src_static: bool                  # source is the input: same value at every step


def _exact_dtype(bound: int) -> torch.dtype:
    if bound < F32_EXACT:
        return torch.float32
    if bound < F64_EXACT:
        return torch.float64
    return torch.int64


def accumulation_bound(w: np.ndarray, kind: str, src_max: int) -> int:
    """Largest |sum| any partial sum of one output can reach with |inputs| <= src_max."""
    a = np.abs(w.astype(np.int64)) if w.size else np.zeros((1, 1), np.int64)
    per_out = a.sum(axis=1) if kind == "dense" else a.reshape(a.shape[0], -1).sum(axis=1)
    return int(per_out.max(initial=0)) * int(src_max)


class IntSimExecutable(Executable):
    """An IntNet ready to run batches on the CPU (or a CUDA device, same arithmetic)."""

    def __init__(self, net: IntNet, batch_size: int = 256, device: str = "cpu",
                 check_lava_datapath: bool = True) -> None:
        net.validate()
        self.net = net
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise KdsnnError(f"intsim: batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.conns: dict[str, list[_Conn]] = {}
        src_max = {INPUT: net.input.qmax}
        for p in net.populations:
            src_max[p.name] = 1
        for p in net.populations:
            lst = []
            for c in net.incoming(p.name):
                self._check_conn(c)
                w = effective_weights(c)
                bound = accumulation_bound(w, c.kind, src_max[c.src])
                if check_lava_datapath:
                    lim = (1 << 31) if c.kind == "dense" else F32_EXACT
                    if bound >= lim:
                        raise KdsnnError(
                            f"connection {c.name}: accumulation can reach {bound} >= 2^{lim.bit_length() - 1}, "
                            f"beyond Lava's {'int32 Dense' if c.kind == 'dense' else 'float32 Conv'} datapath; "
                            "lower with smaller weights")
                dt = _exact_dtype(bound)
                wt = torch.from_numpy(w if dt == torch.int64 else w.astype(np.float64)).to(self.device, dt)
                lst.append(_Conn(c, w, bound, dt, wt, c.src == INPUT))
            self.conns[p.name] = lst
        self.bias = {p.name: torch.from_numpy(bias_effective(p.bias_mant, p.bias_exp).reshape(-1)).to(self.device)
                     for p in net.populations}

    def _check_conn(self, c: Connection) -> None:
        src_shape = self.net.shape_of(c.src)
        dst_shape = self.net.shape_of(c.dst)
        if c.kind == "conv":
            if c.weight_exp != 0:
                raise KdsnnError(f"connection {c.name}: conv weight_exp must be 0 (Lava's Conv ignores it)")
            if len(src_shape) != 3 or len(dst_shape) != 3:
                raise KdsnnError(f"connection {c.name}: conv needs (C, H, W) source and destination")
            out = _conv_out_shape(src_shape, c)
            if out != tuple(dst_shape):
                raise KdsnnError(f"connection {c.name}: conv output {out} != population {c.dst} shape {tuple(dst_shape)}")

    # -- one batch ----------------------------------------------------------------------
    def _accumulate(self, k: _Conn, s: torch.Tensor, T: int, n: int) -> torch.Tensor:
        """int64 a of one connection for all steps: (T*n, n_dst) (or (n, n_dst) if static)."""
        c = k.c
        if c.kind == "dense":
            x = s.reshape(s.shape[0], -1)
            if k.dtype == torch.int64:
                acc = x.to(torch.int64) @ k.wt.T
            else:
                acc = torch.round(x.to(k.dtype) @ k.wt.T).to(torch.int64)
            e = c.weight_exp
            acc = (acc << e) if e >= 0 else (acc >> -e)
            return wrap(acc, 32)
        if k.dtype == torch.int64:
            acc = _conv_int64(s.to(torch.int64), k.wt, c)
        else:
            with _no_nnpack():
                acc = torch.round(F.conv2d(s.to(k.dtype), k.wt, None, c.stride, c.padding,
                                           c.dilation, c.groups)).to(torch.int64)
        return wrap(acc.reshape(acc.shape[0], -1), 24)

    def _run_batch(self, xq: torch.Tensor, record: bool) -> dict[str, Any]:
        net, T, n = self.net, self.net.T, xq.shape[0]
        spikes: dict[str, torch.Tensor] = {INPUT: xq}             # input static: (n, ...)
        counts, per_step, trains, diag = {}, {}, {}, {}
        logits = None
        for p in net.populations:
            a = None
            for k in self.conns[p.name]:
                acc = self._accumulate(k, spikes[k.c.src], T, n)
                if k.src_static:
                    acc = acc.unsqueeze(0).expand(T, *acc.shape).reshape(T * n, -1)
                a = acc if a is None else a + acc
            assert a is not None
            a = wrap(a, 32).reshape(T, n, -1)
            s_all, info = self._neurons(p, a)
            diag[p.name] = info
            if p.readout:
                logits = info.pop("v_last")
            spk = s_all.reshape(T, n, *p.shape)
            spikes[p.name] = spk.reshape(T * n, *p.shape)
            per = s_all.sum(dim=2).T.contiguous()                  # (n, T)
            per_step[p.name] = per
            counts[p.name] = per.sum(dim=1)
            if record:
                trains[p.name] = spk.transpose(0, 1).to(torch.uint8)
        return {"logits": logits, "counts": counts, "per_step": per_step, "trains": trains,
                "diag": diag}

    def _neurons(self, p, a: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """Run one population's LIF dynamics over T steps; a: (T, n, size) int64."""
        T, n, size = a.shape
        bias = self.bias[p.name]
        vth = int(p.vth) << VTH_SHIFT
        u = torch.zeros((n, size), dtype=torch.int64, device=a.device)
        v = torch.zeros_like(u)
        out = torch.empty((T, n, size), dtype=torch.bool, device=a.device)
        amax = int(a.abs().max()) if a.numel() else 0
        bmax = int(bias.abs().max()) if bias.numel() else 0
        small = amax < (1 << 24) and bmax < (1 << 29)              # no int32 wrap can happen
        u_wraps = v_clips = 0
        for t in range(T):
            act = a[t] << ACT_SHIFT
            du_part = decay(u, p.du + 1)
            if small:
                x = du_part + act
            else:
                x = wrap(du_part + wrap(act, 32), 32)
            u = wrap_once24(x)
            u_wraps += int((u != x).sum())
            pre = decay(v, p.dv) + u + bias
            if not small:
                pre = wrap(pre, 32)
            v = pre.clamp(-(STATE_MAX - 1), STATE_MAX - 1)
            v_clips += int((v != pre).sum())
            s = v > vth
            v = v.masked_fill(s, 0)
            out[t] = s
        info: dict[str, Any] = {"u_wraps": u_wraps, "v_clips": v_clips}
        if p.readout:
            info["v_last"] = v
            info["readout_spikes"] = int(out.sum())
        return out, info

    def run(self, x: np.ndarray, record: bool = False, progress: bool = False) -> RunResult:
        net = self.net
        t0 = time.perf_counter()
        x = np.asarray(x)
        if x.ndim != len(net.input.shape) + 1:
            raise KdsnnError(f"intsim: expected inputs of shape (N, {', '.join(map(str, net.input.shape))}), got {x.shape}")
        xq_all = net.input.quantize(x)
        chunks = []
        it = range(0, len(xq_all), self.batch_size)
        if progress:
            from tqdm import tqdm
            it = tqdm(it, desc="intsim", unit="batch")
        for i in it:
            xq = torch.from_numpy(xq_all[i:i + self.batch_size].astype(np.int64)).to(self.device)
            with torch.no_grad():
                chunks.append(self._run_batch(xq, record))
        names = [p.name for p in net.populations]

        def cat(key: str, k: str) -> np.ndarray:
            if not chunks:
                return np.zeros((0,))
            return np.concatenate([c[key][k].cpu().numpy() for c in chunks])

        logits = (np.concatenate([c["logits"].cpu().numpy() for c in chunks]).astype(np.int64)
                  if chunks else np.zeros((0, net.readout.size), np.int64))
        diag = {nm: {k: int(sum(c["diag"][nm][k] for c in chunks)) for k in chunks[0]["diag"][nm]}
                for nm in names} if chunks else {}
        return RunResult(
            logits=logits.reshape(len(logits), -1),
            spike_counts={nm: cat("counts", nm).astype(np.int64) for nm in names},
            backend="intsim", T=net.T, steps=net.T * len(logits),
            wall_s=time.perf_counter() - t0,
            layer_spikes_per_step={nm: cat("per_step", nm).astype(np.int64) for nm in names},
            spike_trains={nm: cat("trains", nm) for nm in names} if record else None,
            extra={"overflow": diag, "out_scale": net.readout.out_scale,
                   "input_int": xq_all if record else None},
        )


class IntSimBackend(Backend):
    name = "intsim"
    accepts = "intnet"
    description = "bit-accurate integer IF simulator (Lava fixed-point arithmetic, zero delay), batched"

    def compile(self, net: Any, **options: Any) -> IntSimExecutable:
        if not isinstance(net, IntNet):
            raise KdsnnError(f"intsim runs an IntNet (lower the NIR graph first), got {type(net).__name__}")
        return IntSimExecutable(net, **options)


# -- conv helpers ---------------------------------------------------------------------------
def _conv_out_shape(src: tuple[int, ...], c: Connection) -> tuple[int, int, int]:
    _, h, w = src
    kh, kw = c.weight.shape[2:]
    ho = (h + 2 * c.padding[0] - c.dilation[0] * (kh - 1) - 1) // c.stride[0] + 1
    wo = (w + 2 * c.padding[1] - c.dilation[1] * (kw - 1) - 1) // c.stride[1] + 1
    return (int(c.weight.shape[0]), int(ho), int(wo))


def _conv_int64(x: torch.Tensor, w: torch.Tensor, c: Connection) -> torch.Tensor:
    """Exact int64 convolution via im2col (torch has no integer conv2d on CPU)."""
    n, cin, h, wd = x.shape
    cout, cpg, kh, kw = w.shape
    g = c.groups
    ph, pw = c.padding
    xp = F.pad(x, (pw, pw, ph, ph))
    ho, wo = _conv_out_shape((cin, h, wd), c)[1:]
    sh, sw = c.stride
    dh, dw = c.dilation
    cols = []
    for i in range(kh):
        for j in range(kw):
            cols.append(xp[:, :, i * dh: i * dh + sh * (ho - 1) + 1: sh, j * dw: j * dw + sw * (wo - 1) + 1: sw])
    col = torch.stack(cols, dim=2)                                # (n, cin, kh*kw, ho, wo)
    col = col.reshape(n, g, cpg * kh * kw, ho * wo)
    wg = w.reshape(g, cout // g, cpg * kh * kw)
    out = torch.einsum("gok,ngkp->ngop", wg, col)
    return out.reshape(n, cout, ho, wo)


@contextlib.contextmanager
def _no_nnpack():
    """NNPACK's Winograd/FFT convolutions are not exact; keep PyTorch on direct/im2col."""
    try:
        ctx = torch.backends.nnpack.flags(enabled=False)
    except AttributeError:  # pragma: no cover - very old torch
        ctx = contextlib.nullcontext()
    with ctx:
        yield
