"""The stages of the deployment flow, each returning a typed result (docs/design.md, "Data flow").

    load_source(cfg)                  -> Source     a student checkpoint or a .nir graph
    resolve(source, cfg)              -> Setup      dataset and T, checked against the network
    export_graph(source, setup, out)  -> Exported   out/graph.nir written and read back
    load_samples(setup, n, cfg)       -> Samples    the first n test samples, normalized
    lower_graph(exported, setup, cfg) -> Lowered    the IntNet for the hardware spec (--hw)
    compile_backend(name, net, T, cfg)-> Executable any registered backend, with the flow's options
    make_report(lowered, res, ...)    -> report     operations, memory, mapping, energy

kdsnn.deploy composes them into a pipeline per target; nothing here prints.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from kdsnn.backends.base import Executable, RunResult
from kdsnn.compiler.nir.meta import graph_meta, graph_summary
from kdsnn.config import ExportConfig, LoweringConfig, RunConfig
from kdsnn.errors import KdsnnError
from kdsnn.parity import GRAPH_FILE, INTNET_FILE, head, scores

RECORD_BUDGET_BYTES = 256 * 2**20   # spike trains kept for the report (silent/saturated fractions)
EVAL_SAMPLES = 1000                 # float and intsim rungs when the target runs fewer


@dataclass(repr=False)
class Source:
    """What `kdsnn export` was given: a student (GraphNet + its config) or a NIR graph."""

    path: Path
    kind: Literal["checkpoint", "nir"]
    model: Any = None                  # GraphNet (checkpoint)
    config: dict[str, Any] | None = None
    graph: Any = None                  # canonical nir.NIRGraph (nir)

    def __repr__(self) -> str:
        return f"Source({self.kind} {self.path})"


@dataclass(repr=False)
class Setup:
    """Dataset and time steps of the run, checked against the network's shapes."""

    dataset: Any                       # kdsnn.data.DatasetInfo (or --input's / N-MNIST's)
    T: int
    input_shape: tuple[int, ...] = ()  # the network's (a flat Input may take images: C-order)

    def __repr__(self) -> str:
        return f"Setup({self.dataset.name}, T={self.T})"


@dataclass(repr=False)
class Exported:
    """graph.nir as written and read back: everything downstream runs what is on disk."""

    graph: Any                         # nir.NIRGraph
    path: Path

    def __repr__(self) -> str:
        return f"Exported({self.path}, {len(self.graph.nodes)} nodes)"


@dataclass(repr=False)
class Samples:
    x: np.ndarray                      # (N, *input_shape) normalized, or (N, T, *input_shape) trains
    y: np.ndarray                      # (N,) int64 (-1: --input without labels)
    note: str | None = None            # how the inputs were fitted to the network's Input

    def __len__(self) -> int:
        return len(self.y)

    def __repr__(self) -> str:
        return f"Samples({len(self)} x {tuple(self.x.shape[1:])})"


@dataclass(repr=False)
class Lowered:
    """The IntNet for a hardware spec, with the number of calibration samples and its file."""

    intnet: Any                        # kdsnn.compiler.intnet.IntNet
    spec: Any                          # kdsnn.compiler.targets.TargetSpec
    calibration: int
    path: Path | None = None
    wall_s: float = 0.0

    def __repr__(self) -> str:
        return f"Lowered({self.intnet!r} for {self.spec.name}, {self.calibration} calibration samples)"


class Report(dict):
    """A report (kdsnn.compiler.profile): the JSON document as a dict, with a short repr."""

    def __repr__(self) -> str:
        m, t = self.get("meta", {}), self.get("totals", {})
        keys = ", ".join(k for k in ("spikes", "synops", "snn_pj") if k in t)
        return (f"Report({m.get('backend')} on {m.get('target')}, T={m.get('T')}, {len(self.get('layers', []))} "
                f"layers; totals: {keys or ', '.join(list(t)[:4])})")


# ------------------------------------------------------------------------------ stages
def load_source(cfg: ExportConfig) -> Source:
    """A student checkpoint (.pt) or a .nir graph from any framework."""
    src = Path(cfg.source)
    if src.suffix.lower() == ".nir":
        from kdsnn.compiler.nir.read import read_nir

        return Source(src, "nir", graph=read_nir(src, dt=cfg.dt, reset=cfg.reset))
    for opt in ("dt", "reset"):
        if getattr(cfg, opt) is not None:
            raise KdsnnError(f"--{opt} applies to a .nir SOURCE; {src} is a kdsnn checkpoint (IF neurons "
                             "counted in steps)")
    from kdsnn.checkpoint import load_model

    model, config = load_model(src, device=cfg.device, kind="student")
    return Source(src, "checkpoint", model=model, config=config)


def resolve(source: Source, cfg: ExportConfig) -> Setup:
    """Dataset, T and shape checks before anything is written."""
    from kdsnn.inputs import graph_input_shape, input_steps, run_info

    T_opt = cfg.time_steps
    if source.kind == "checkpoint":
        if T_opt:
            source.model.set_time_steps(int(T_opt))
            source.config = {**source.config, "T": int(T_opt)}
        ds = cfg.dataset or source.config.get("dataset")
        shape, n_cls = tuple(source.model.input_shape), int(source.model.num_classes)
        T = int(source.config.get("T") or source.model.T)
        if input_steps(vars(cfg), shape):
            raise KdsnnError(f"--input {cfg.input} holds trains (N, T, ...); a kdsnn student takes static "
                             "images (N, C, H, W): export it, then run the .nir on trains")
    else:
        steps = input_steps(vars(cfg), graph_input_shape(source.graph))
        if steps and T_opt and int(T_opt) != steps:
            raise KdsnnError(f"--input trains have {steps} steps but -T {T_opt} was given")
        meta = graph_meta(source.graph, T=T_opt or steps)
        ds = cfg.dataset or meta.get("dataset")
        shape, n_cls = tuple(meta["input_shape"]), int(meta["num_classes"])
        T = meta["T"]
    from kdsnn.budget import activations_per_sample, check_run

    if source.kind == "checkpoint":
        c = source.config
        neurons = activations_per_sample(c["arch"], True, n_cls, shape, float(c.get("width", 1.0)), c.get("graph"))[1]
    else:
        neurons = graph_summary(source.graph)["neurons"]
    check_run(cfg.batch_size, int(T), tuple(shape), neurons, f"export of {source.path.name}")
    info = run_info(vars(cfg), ds, shape, n_cls, source.path)
    return Setup(info, int(T), tuple(shape))


def export_graph(source: Source, setup: Setup, out: Path) -> Exported:
    """Write out/graph.nir (the student exported, or the imported graph with its metadata
    completed) and read it back."""
    from kdsnn.compiler.nir.read import read_nir
    from kdsnn.compiler.nir.write import write_nir
    from kdsnn.io import ensure_dir

    ensure_dir(out)
    info = setup.dataset
    if source.kind == "checkpoint":
        from kdsnn.compiler.export import student_to_nir

        graph = student_to_nir(source.model, {**source.config, "dataset": info.name})
    else:
        graph = source.graph
        md = graph.metadata
        md["T"] = setup.T
        md["dataset"] = info.name
        for k in ("mean", "std", "class_names"):
            if getattr(info, k):
                md.setdefault(k, list(getattr(info, k)))
        md.setdefault("encoding", "direct")
    path = write_nir(graph, out / GRAPH_FILE)
    return Exported(read_nir(path), path)


def load_samples(dataset: str, n: int, cfg: ExportConfig | RunConfig, shape: tuple[int, ...] = (),
                 T: int = 1, split: str = "test", meta: dict[str, Any] | None = None) -> Samples:
    """The first n samples: normalized images, N-MNIST frames or --input's, fitted to the
    network's input `shape` (kdsnn.inputs); images of a rate-encoded graph (`meta`) become
    its spike trains (kdsnn.encoding), the same for every rung."""
    from kdsnn.encoding import encode_for_graph
    from kdsnn.inputs import load_run_inputs

    if not shape:
        from kdsnn.data import load_arrays

        x, y = load_arrays(dataset, split, int(n), cfg.data_dir, bool(cfg.download), int(cfg.seed))
        return Samples(x, y)
    x, y, note = load_run_inputs(vars(cfg), dataset, split, int(n), shape, int(T), int(cfg.seed))
    return Samples(encode_for_graph(meta or {}, x, int(T)), y, note)


def lower_for_target(graph: Any, dataset: str, hw: Any = "loihi", calibration: int = 256,
                     data_dir: str | None = None, download: bool = False, seed: int = 0,
                     T: int | None = None, lowering: LoweringConfig | None = None,
                     x_cal: np.ndarray | None = None) -> Any:
    """A canonical graph -> IntNet for the hardware spec, with scales calibrated on the
    first `calibration` training samples (shared by `kdsnn export` and `kdsnn evaluate`)."""
    from kdsnn.compiler.lower import lower
    from kdsnn.compiler.targets import load_target
    from kdsnn.data import load_arrays

    if int(calibration) < 1:
        raise KdsnnError(f"--calibration must be positive, got {calibration}")
    if x_cal is None:
        x_cal, _ = load_arrays(dataset, "train", int(calibration), data_dir, download, seed)
    return lower(graph, load_target(hw), x_cal, T=T, **(lowering or LoweringConfig()).lowering_options())


def lower_graph(exported: Exported, setup: Setup, cfg: ExportConfig, out: Path | None) -> Lowered:
    """Lower graph.nir for the hardware spec (--hw) with calibration data; save the IntNet."""
    from kdsnn.compiler.targets import check_simulable, load_target

    spec = load_target(cfg.hw)
    check_simulable(spec, "intsim (rung 3)")   # before any work: every integer pipeline runs intsim
    t0 = time.perf_counter()
    net = lower_for_target(exported.graph, setup.dataset.name, spec, cfg.calibration, cfg.data_dir,
                           bool(cfg.download), int(cfg.seed), T=setup.T, lowering=cfg,
                           x_cal=_calibration_inputs(setup, cfg, graph_meta(exported.graph, T=setup.T)))
    wall = time.perf_counter() - t0
    path = net.save(out / INTNET_FILE) if out is not None else None
    return Lowered(net, spec, int(cfg.calibration), path, wall)


def _calibration_inputs(setup: Setup, cfg: ExportConfig, meta: dict[str, Any]) -> np.ndarray | None:
    """Calibration samples where they are not an image dataset's training split: the first
    of --input's own samples, or N-MNIST's Train recordings (None: the dataset's)."""
    from kdsnn.nmnist import NAME

    if cfg.input:
        return load_samples(setup.dataset.name, cfg.calibration, cfg, setup.input_shape, setup.T).x
    if setup.dataset.name == NAME:
        return load_samples(NAME, cfg.calibration, cfg, setup.input_shape, setup.T, split="train").x
    if meta.get("encoding") == "rate":
        return load_samples(setup.dataset.name, cfg.calibration, cfg, setup.input_shape, setup.T,
                            split="train", meta=meta).x
    return None


def compile_backend(name: str, net: Any, T: int, cfg: ExportConfig | RunConfig) -> Executable:
    """Any registered backend's executable. A NIR backend gets T; each backend also gets the
    flow settings it names in `Backend.flow_options` (batch_size, device)."""
    from kdsnn.backends.registry import get_backend

    backend = get_backend(name)
    opts: dict[str, Any] = {"T": int(T)} if backend.accepts == "nir" else {}
    for k in getattr(backend, "flow_options", ()):
        if hasattr(cfg, k):
            opts[k] = getattr(cfg, k)
    return backend.compile(net, **opts)


def record_ok(intnet: Any, n: int, T: int) -> bool:
    """Whether the spike trains of n samples fit the report's recording budget."""
    return n * T * sum(p.size for p in intnet.populations) <= RECORD_BUDGET_BYTES


def run_student(model: Any, x: np.ndarray, batch_size: int = 256, device: str = "cpu",
                progress: bool = False) -> RunResult:
    """Rung 1: the student GraphNet in float64 (a copy), with per-layer spike counts."""
    import torch

    from kdsnn.layers import NEURON_MODULES

    t0 = time.perf_counter()
    m = copy.deepcopy(model).to(device).double().eval()
    ifs = {name: mod for name, mod in m.nodes.items() if isinstance(mod, NEURON_MODULES)}
    for mod in ifs.values():
        mod.record = True
    T, n = int(m.T), len(x)
    logits = []
    per_step = {k: np.zeros((n, T), np.int64) for k in ifs}
    starts = range(0, n, batch_size)
    if progress:
        from kdsnn.progress import bar

        starts = bar(starts, "bars", desc="student", unit="batch")
    with torch.no_grad():
        for i in starts:
            xb = torch.as_tensor(x[i:i + batch_size], dtype=torch.float64, device=device)
            logits.append(m(xb).cpu().numpy())
            for k, mod in ifs.items():
                s = mod.last_spikes  # (T, B, ...)
                per_step[k][i:i + len(xb)] = s.flatten(2).sum(2).transpose(0, 1).round().long().cpu().numpy()
    out = np.concatenate(logits) if logits else np.zeros((0, m.num_classes))
    return RunResult(logits=out, spike_counts={k: v.sum(1) for k, v in per_step.items()}, backend="pytorch",
                     T=T, steps=T, wall_s=time.perf_counter() - t0, layer_spikes_per_step=per_step)


def make_report(lowered: Lowered, res: RunResult, samples: Samples, source: Source, setup: Setup,
                float_run: RunResult | None) -> Report:
    """Spikes, operations, memory, energy and core mapping of the deployed run."""
    from kdsnn.compiler.profile.build import report_from_run

    n = len(res.logits)
    x, y = samples.x[:n], samples.y[:n]
    teacher = _load_teacher_net(source)
    meta: dict[str, Any] = {"accuracy": scores(res, y)["accuracy"], "dataset": setup.dataset.name,
                            "source": str(source.path), "samples": int(n), "split": "test"}
    if float_run is not None:
        meta["float_accuracy"] = scores(head(float_run, n), y)["accuracy"]
    if teacher is not None:
        meta["teacher"] = str(source.config.get("teacher"))
        meta["teacher_accuracy"] = _teacher_accuracy(teacher, x, y)   # event data: their sum over time
    return Report(report_from_run(lowered.intnet, res, x=x, target=lowered.spec, teacher=teacher,
                                  student=source.model, meta=meta))


def _load_teacher_net(source: Source) -> Any:
    """The student's teacher as a GraphNet when it is a kdsnn checkpoint that still exists."""
    t = source.config.get("teacher") if source.config else None
    if not t or not str(t).endswith(".pt"):
        return None
    p = Path(t)
    if not p.is_absolute() and not p.exists():
        p = source.path.parent / p.name
    if not p.exists():
        return None
    try:
        from kdsnn.checkpoint import load_model

        net, _ = load_model(p, device="cpu", kind="teacher")
        return net
    except KdsnnError:
        return None


def _teacher_accuracy(teacher: Any, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    from kdsnn.event_data import teacher_view

    shape = tuple(teacher.input_shape)
    with torch.no_grad():
        preds = [teacher(teacher_view(torch.as_tensor(x[i:i + 256]), shape)).argmax(1).numpy()
                 for i in range(0, len(x), 256)]
    return float((np.concatenate(preds) == y).mean()) if preds else 0.0
