"""ONNX teachers: distil from an ANN trained in any framework that exports ONNX.

The model runs under onnxruntime (CUDA when torch sees a GPU and the CUDA provider is
installed, otherwise CPU). For feature distillation the user names ONNX tensors (or the
nodes producing them); a copy of the model gets them as extra graph outputs.

Everything that would make training meaningless is checked before training starts
(`check`): one NCHW (or flattened N x C*H*W) float input whose channels/height/width fit
the dataset, a batch dimension that is dynamic (a fixed batch is served in chunks), a
first output of shape (B, classes) with the dataset's class count, and — when the file
carries kdsnn metadata (`kdsnn train-teacher --onnx` writes it) — the same input
normalization as the dataset. A foreign ONNX model must expect images normalized the
dataset's way (kdsnn feeds (x - mean) / std); that cannot be read from the file.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdsnn.errors import KdsnnError
from kdsnn.teachers.protocol import same_normalization, split_names

_NP_TYPES = {1: np.float32, 10: np.float16, 11: np.float64}


def _load_onnx(path: str | os.PathLike):
    """Parse and check an ONNX file; anything else is a one-line user error."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise KdsnnError(f"ONNX teacher {p} does not exist; give the path of a .onnx file")
    try:
        model = onnx.load(str(p))
    except Exception as e:  # protobuf DecodeError, external data errors, ...
        raise KdsnnError(f"{p} is not an ONNX model ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'cannot parse'}); "
                         "export the teacher with torch.onnx.export or `kdsnn train-teacher --onnx`") from None
    if not model.graph.node or not model.graph.output:
        raise KdsnnError(f"{p} is not an ONNX model (no graph nodes or outputs); "
                         "export the teacher with torch.onnx.export or `kdsnn train-teacher --onnx`")
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise KdsnnError(f"{p} is not a valid ONNX model: {str(e).splitlines()[0]}") from None
    return model


def _dims(value_info) -> list[int | str | None]:
    """Static dims as ints, symbolic ones as their name (or None)."""
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return []
    out: list[int | str | None] = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        else:
            out.append(d.dim_param or None)
    return out


def _default_providers() -> list[str]:
    import onnxruntime as ort

    avail = ort.get_available_providers()
    if torch.cuda.is_available() and "CUDAExecutionProvider" in avail:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxTeacher:
    """A frozen teacher read from an ONNX file (implements kdsnn.teachers.Teacher).

    feature_names: ONNX tensor names (or node names, meaning the node's first output) to
    return as features, in stage order. None: the file's `kdsnn.feature_points` metadata
    when present (files written by kdsnn), otherwise no features.
    When input_shape / num_classes (/ mean, std) are given, `check` runs at once.
    """

    def __init__(self, path: str | os.PathLike, feature_names: list[str] | str | None = None,
                 providers: list[str] | None = None, *, input_shape: tuple[int, ...] | None = None,
                 num_classes: int | None = None, mean: list[float] | None = None,
                 std: list[float] | None = None, device: torch.device | str = "cpu") -> None:
        import onnx

        self.path = Path(path)
        model = _load_onnx(self.path)
        self.metadata = {p.key: p.value for p in model.metadata_props}
        g = model.graph
        inits = {i.name for i in g.initializer}
        inputs = [i for i in g.input if i.name not in inits]
        if len(inputs) != 1:
            raise KdsnnError(f"ONNX teacher {self.path} has {len(inputs)} inputs "
                             f"({', '.join(i.name for i in inputs)}); kdsnn feeds one image tensor")
        self._input = inputs[0]
        self.input_name = self._input.name
        elem = self._input.type.tensor_type.elem_type
        if elem not in _NP_TYPES:
            raise KdsnnError(f"ONNX teacher {self.path}: input {self.input_name!r} has element type "
                             f"{onnx.TensorProto.DataType.Name(elem)}; kdsnn feeds float images")
        self._in_dtype = _NP_TYPES[elem]
        self._in_dims = _dims(self._input)
        self.logits_name = g.output[0].name
        self._out_dims = _dims(g.output[0])

        # Every tensor a user may name: node outputs (and graph outputs); node names map to
        # their first output.
        self._tensors = [o for n in g.node for o in n.output if o]
        self._node_first = {n.name: n.output[0] for n in g.node if n.name and n.output}
        if feature_names is None:
            meta = self.metadata.get("kdsnn.feature_points")
            feature_names = json.loads(meta) if meta else []
        self.feature_names: list[str] = split_names(feature_names)
        self._feature_tensors = [self._resolve(n) for n in self.feature_names]

        extra = [t for t in self._feature_tensors if t not in {o.name for o in g.output}]
        if extra:
            model = _with_outputs(model, extra)
        self._model_bytes = model.SerializeToString()
        self._providers = list(providers) if providers else None
        self.device = torch.device(device)
        self._session = None
        self._make_session()

        self.feature_shapes: dict[str, tuple[int, ...]] = {}  # filled by check()
        self.input_shape: tuple[int, ...] = tuple(input_shape) if input_shape else self._static_chw()
        self.num_classes: int = int(num_classes) if num_classes else (
            self._out_dims[1] if len(self._out_dims) == 2 and isinstance(self._out_dims[1], int) else 0)
        if input_shape is not None or num_classes is not None:
            self.check(input_shape or self.input_shape, num_classes or self.num_classes, mean, std)

    # ------------------------------------------------------------------ set-up
    def _resolve(self, name: str) -> str:
        if name in self._tensors:
            return name
        if name in self._node_first:
            return self._node_first[name]
        valid = list(dict.fromkeys(self._tensors + list(self._node_first)))
        near = _nearest(name, valid)
        hint = f"nearest valid names: {', '.join(near)}" if near else \
            f"valid names include: {', '.join(valid[:8])}{' ...' if len(valid) > 8 else ''}"
        raise KdsnnError(f"--teacher-features: {name!r} is not a tensor or node of ONNX teacher "
                         f"{self.path.name}; {hint}")

    def _make_session(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, torch.get_num_threads())
        opts.log_severity_level = 3
        providers = self._providers or _default_providers()
        if self.device.type != "cuda":
            providers = [p for p in providers if p != "CUDAExecutionProvider"] or ["CPUExecutionProvider"]
        try:
            self._session = ort.InferenceSession(self._model_bytes, sess_options=opts, providers=providers)
        except Exception as e:
            raise KdsnnError(f"onnxruntime cannot load ONNX teacher {self.path}: {str(e).splitlines()[0]}") from None

    def _static_chw(self) -> tuple[int, ...]:
        d = self._in_dims[1:]
        return tuple(x for x in d if isinstance(x, int)) if all(isinstance(x, int) for x in d) else ()

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers()) if self._session else []

    # ------------------------------------------------------------------ validation
    def check(self, input_shape: tuple[int, ...], num_classes: int,
              mean: list[float] | None = None, std: list[float] | None = None) -> None:
        """Fail before training if this model cannot be a teacher for the dataset."""
        c, h, w = tuple(input_shape) if len(input_shape) == 3 else (None, None, None)
        where = f"ONNX teacher {self.path.name}: input {self.input_name!r}"
        dims = self._in_dims
        if len(dims) == 4 and c is not None:
            got = dims[1:]
            if not _fits(got, (c, h, w)):
                if _fits(got, (h, w, c)):
                    raise KdsnnError(f"{where} is NHWC {_fmt(dims)}; kdsnn feeds NCHW (B, {c}, {h}, {w}): "
                                     "re-export the model with channels first")
                raise KdsnnError(f"{where} has shape {_fmt(dims)} but the dataset gives (B, {c}, {h}, {w}); "
                                 "use a teacher trained on this dataset's image size and channels")
            self._flatten = False
        elif len(dims) == 2 and c is not None:
            if not _fits(dims[1:], (c * h * w,)):
                raise KdsnnError(f"{where} has shape {_fmt(dims)} but the dataset gives {c}x{h}x{w} = "
                                 f"{c * h * w} values per image")
            self._flatten = True
        elif dims:
            raise KdsnnError(f"{where} has rank {len(dims)} {_fmt(dims)}; kdsnn feeds images "
                             f"(B, C, H, W) or flattened (B, C*H*W)")
        self.input_shape = tuple(input_shape)
        meta_mean, meta_std = self.metadata.get("kdsnn.mean"), self.metadata.get("kdsnn.std")
        if meta_mean is not None and meta_std is not None and \
                not same_normalization(json.loads(meta_mean), json.loads(meta_std), mean, std):
            raise KdsnnError(f"ONNX teacher {self.path.name} was trained on inputs normalized with "
                             f"mean {meta_mean}, std {meta_std}, but the dataset uses mean "
                             f"{list(mean)}, std {list(std)}; use the teacher's dataset")
        # A dry run: catches shapes fixed deep inside the graph, and gives the class count.
        try:
            logits, feats = self(torch.zeros(2, *self.input_shape))
        except KdsnnError:
            raise
        except Exception as e:
            raise KdsnnError(f"ONNX teacher {self.path.name} fails on a (2, {', '.join(map(str, self.input_shape))}) "
                             f"input: {str(e).splitlines()[0][:200]}") from None
        if logits.dim() != 2:
            raise KdsnnError(f"ONNX teacher {self.path.name}: first output {self.logits_name!r} has shape "
                             f"{tuple(logits.shape)}; kdsnn needs logits (B, classes) as the first output")
        if num_classes and logits.shape[1] != num_classes:
            raise KdsnnError(f"ONNX teacher {self.path.name} outputs {logits.shape[1]} classes but the dataset "
                             f"has {num_classes}; give a teacher trained on this dataset")
        self.num_classes = int(logits.shape[1])
        self.feature_shapes = {k: tuple(v.shape[1:]) for k, v in feats.items()}

    # ------------------------------------------------------------------ Teacher protocol
    _flatten = False

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits (B, classes) and {feature name: tensor} for a normalized batch."""
        assert self._session is not None
        xb = x.detach().to("cpu", torch.float32)
        if self._flatten:
            xb = xb.reshape(xb.shape[0], -1)
        arr = np.ascontiguousarray(xb.numpy().astype(self._in_dtype, copy=False))
        names = [self.logits_name] + self._feature_tensors
        fixed = self._in_dims[0] if self._in_dims and isinstance(self._in_dims[0], int) else None
        if fixed and fixed != arr.shape[0]:
            outs = self._run_chunked(arr, names, fixed)
        else:
            outs = self._session.run(names, {self.input_name: arr})
        dev = self.device
        logits = torch.from_numpy(np.asarray(outs[0], dtype=np.float32)).to(dev)
        feats = {n: torch.from_numpy(np.asarray(o, dtype=np.float32)).to(dev)
                 for n, o in zip(self.feature_names, outs[1:], strict=True)}
        return logits, feats

    def _run_chunked(self, arr: np.ndarray, names: list[str], size: int) -> list[np.ndarray]:
        """Serve a model exported with a fixed batch size: pad and run chunk by chunk."""
        n = arr.shape[0]
        parts: list[list[np.ndarray]] = []
        for i in range(0, n, size):
            chunk = arr[i:i + size]
            k = chunk.shape[0]
            if k < size:
                chunk = np.concatenate([chunk, np.zeros((size - k, *chunk.shape[1:]), chunk.dtype)])
            parts.append([o[:k] for o in self._session.run(names, {self.input_name: chunk})])
        return [np.concatenate([p[j] for p in parts]) for j in range(len(names))]

    def to(self, device: torch.device | str) -> OnnxTeacher:
        dev = torch.device(device)
        if dev.type != self.device.type:
            self.device = dev
            self._make_session()
        self.device = dev
        return self

    def eval(self) -> OnnxTeacher:  # symmetry with nn.Module teachers
        return self

    def __repr__(self) -> str:
        return (f"OnnxTeacher({str(self.path)!r}, classes={self.num_classes}, input={self.input_shape}, "
                f"features={self.feature_names}, providers={self.providers})")


def _with_outputs(model: Any, names: list[str]) -> Any:
    """A copy of `model` whose graph also outputs the named intermediate tensors."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(m)
    except Exception:
        inferred = m
    known = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    for n in names:
        vi = onnx.ValueInfoProto()
        if n in known:
            vi.CopyFrom(known[n])
        else:
            vi = onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
        m.graph.output.append(vi)
    return m


def _nearest(name: str, valid: list[str]) -> list[str]:
    """Closest names, case-insensitive; short names ("relu2") also match path tails."""
    low = {v.lower(): v for v in valid}
    near = [low[m] for m in difflib.get_close_matches(name.lower(), list(low), n=5, cutoff=0.4)]
    if len(near) < 3:
        tails: dict[str, str] = {}
        for v in valid:
            for part in v.lower().strip("/").split("/")[-2:]:
                tails.setdefault(part, v)
        for m in difflib.get_close_matches(name.lower(), list(tails), n=5, cutoff=0.4):
            if tails[m] not in near:
                near.append(tails[m])
    return near[:5]


def _fits(got: list[int | str | None], want: tuple[int | None, ...]) -> bool:
    """Symbolic dims fit anything; static ones must be equal."""
    return len(got) == len(want) and all(not isinstance(g, int) or g == w for g, w in zip(got, want, strict=True))


def _fmt(dims: list[int | str | None]) -> str:
    return "(" + ", ".join(str(d) if d is not None else "?" for d in dims) + ")"
