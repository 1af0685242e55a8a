"""Typed configurations of kdsnn's commands: the one place their defaults live.

Each field carries its documentation (`help`, shown by `--help`); cli.py builds its click
options from these fields (`cli_option`), the Python API takes the same dataclasses, so a
default changed here changes both. Like FINN's `DataflowBuildConfig`: one object says how a
build runs, and it is written next to what it built. Kept free of heavy imports: the CLI
imports it to build its options.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from kdsnn.errors import KdsnnError


def _f(default: Any, help: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, **meta})


class _Short:
    """A short repr: the class and the fields that differ from their defaults."""

    def __repr__(self) -> str:
        changed = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)  # type: ignore[arg-type]
                   if getattr(self, f.name) != default(type(self), f.name)]
        return f"{type(self).__name__}({', '.join(changed)})"


@dataclass(kw_only=True, repr=False)
class LoweringConfig(_Short):
    """How the lowering chooses integer scales (kdsnn.compiler.lower; docs/design.md, "Lowering")."""

    input_bits: int | None = _f(None, "Graded input width in bits (default: the hardware spec's input_bits).")
    headroom: float = _f(2.0, "Calibration safety factor on activations and membrane states.")
    provable_budget_bits: float = _f(
        1.0, "Bits of precision the lowering may give up to make every integer state provably safe.")
    min_weight_bits: float = _f(
        3.0, "Weight bits a layer must keep; lower it when a layer 'cannot fit' the hardware.")

    def lowering_options(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(LoweringConfig)}


@dataclass(kw_only=True, repr=False)
class HardwareConfig(LoweringConfig):
    """The hardware spec a lowering is for, its calibration and its knobs (export, evaluate)."""

    hw: str = _f("loihi", "Hardware spec: a built-in name or a spec file (JSON/TOML).")
    calibration: int = _f(256, "Training samples used to choose the integer scales.")


@dataclass(kw_only=True, repr=False)
class DataConfig(_Short):
    """The test data a command evaluates on and where it runs (export, run, evaluate)."""

    dataset: str | None = _f(None, "Dataset to run on (default: the student's or the graph's own; a .nir "
                                   "file without one needs it).")
    data_dir: str | None = _f(None, "Folder of the datasets (default $KDSNN_DATA_DIR or ~/.cache/kdsnn/data).")
    download: bool = _f(False, "Allow torchvision to download the dataset.")
    batch_size: int = _f(256, "Samples per batch on the float and intsim backends (intsim: at most, "
                              "fewer where one layer's T-step spikes would pass 16 MiB).")
    device: str = _f("cpu", "Device for the float stages and backends.")
    seed: int = _f(0, "Seed of the test-sample selection.")


@dataclass(kw_only=True, repr=False)
class SampleConfig(DataConfig):
    """Which test samples a backend runs and how (export, run)."""

    time_steps: int | None = _f(None, "Time steps per sample (default: the student's or the graph's own T).")
    dt: float | None = _f(None, "Seconds per step where the graph's metadata states none (snnTorch and "
                                "SpikingJelly graphs: 1e-4, Norse and Rockpool: 1e-3).")
    reset: str | None = _f(None, "Reset of the spiking neurons where the file cannot say: zero or subtract "
                                 "(nir <= 1.0.5 files; snnTorch's subtractive reset).")
    input: str | None = _f(None, "Inputs FILE.npz: x (N, T, *input_shape) trains or (N, *input_shape), "
                                 "optional labels y (instead of --dataset).")


@dataclass(kw_only=True, repr=False)
class ExportConfig(HardwareConfig, SampleConfig):
    """`kdsnn export` / `kdsnn.export`: a source through the parity ladder onto a backend."""

    source: str = _f("", "A student checkpoint (.pt) or a .nir file from any framework.")
    output: str = _f("", "Output folder for graph.nir, the IntNet artifact, parity.json, reports.")
    target: str = _f("lava", "Backend to deploy to (any registered one, see `kdsnn targets`).")
    samples: int | None = _f(None, "Test samples the target runs (default: the backend's, 1000; lava 100).")
    eval_samples: int | None = _f(
        None, "When the target is not intsim: test samples for the float and intsim rungs (default 1000).")
    expect: str | None = _f(None, "PEER.npz: the source framework's outputs on the same inputs "
                                  "(output_spikes (N, T, C) or logits (N, C), optional spike_counts/<node>); "
                                  "adds rung 0.")
    progress: str = _f("auto", "auto: bars on a terminal, else one line per stage (log files); bars; lines; none.")
    quiet: bool = _f(False, "Same as --progress none: no bars and no messages (the CLI still prints "
                            "its summary and the written files).")

    def check(self) -> ExportConfig:
        """Numeric options are checked before anything is written."""
        if not self.source:
            raise KdsnnError("export needs a SOURCE (a student .pt or a .nir file)")
        if not self.output:
            raise KdsnnError("export needs an output folder (-o/--output)")
        check_values(asdict(self))
        return self


@dataclass(kw_only=True, repr=False)
class RunConfig(SampleConfig):
    """`kdsnn run` / `kdsnn.run`: an exported folder again on a backend."""

    artifact: str = _f("", "An export folder (made by `kdsnn export -o FOLDER`).")
    target: str = _f("intsim", "Backend to run on (any registered one, see `kdsnn targets`).")
    samples: int | None = _f(None, "Test samples to run (default: the backend's).")
    progress: str = _f("auto", "auto: bars on a terminal, else none (log files); bars; lines; none.")
    quiet: bool = _f(False, "Same as --progress none (the CLI still prints accuracy and spikes).")

    def check(self) -> RunConfig:
        check_values(asdict(self))
        return self


@dataclass(kw_only=True, repr=False)
class EvaluateConfig(HardwareConfig, DataConfig):
    """`kdsnn evaluate`: test accuracy of checkpoints, clean and under noise, float or deployed."""

    checkpoints: tuple[str, ...] = _f((), "Teacher or student checkpoints (.pt; .onnx teachers with --noise).")
    target: str | None = _f(None, "Backend to deploy students to (any of `kdsnn targets`: an integer "
                                  "one runs the IntNet lowered for --hw); default: the float PyTorch models.")
    noise: tuple[str, ...] = _f((), "Noise as TYPE:LEVEL, level in [0, 1]: gaussian, uniform, salt_pepper, "
                                    "speckle, poisson (e.g. gaussian:0.1); repeatable. With --noise, .onnx "
                                    "teachers are accepted too.")
    dataset: str | None = _f(None, "Override the checkpoint's dataset.")
    samples: int | None = _f(None, "Evaluate on the first N test samples (default: all).")
    seed: int = _f(0, "Seed of the noise and of the test-sample selection.")
    as_json: bool = _f(False, "Print JSON instead of a table.")
    output: str | None = _f(None, "Folder for robustness.json and the accuracy-vs-noise plot.")
    progress: str = _f("auto", "auto: bars on a terminal, else none; bars; lines; none.")
    quiet: bool = _f(False, "Same as --progress none (the CLI still prints the table).")


@dataclass(kw_only=True, repr=False)
class FinetuneConfig(HardwareConfig):
    """`kdsnn finetune`: a student fine-tuned in the integer arithmetic of --hw (kdsnn.finetune)."""

    student: str = _f("", "The student checkpoint (.pt) to fine-tune.")
    output: str = _f("", "Output folder (student.pt with the plan, best.pt, last.pt, metrics.jsonl).")
    hw: str = _f("loihi", "Hardware spec whose integer arithmetic the forward uses: a built-in name or a "
                          "spec file (JSON/TOML).")
    epochs: int = _f(1, "Fine-tuning epochs.")
    lr: float | None = _f(None, "Peak learning rate (default: the student's / 10).")
    kd: str | None = _f(None, "Distillation mode (default: the student's own).")
    teacher: str | None = _f(None, "Teacher (default: the student's own).")
    batch_size: int | None = _f(None, "Default: the student's.")
    seed: int | None = _f(None, "Default: the student's.")
    device: str | None = _f(None, "cpu or cuda (default: the student's).")
    data_dir: str | None = _f(None, "Folder of the datasets (default $KDSNN_DATA_DIR or ~/.cache/kdsnn/data).")
    download: bool = _f(False, "Allow torchvision to download the dataset.")
    resume: bool = _f(False, "Continue the fine-tuning in OUTPUT from its last.pt.")
    quiet: bool = _f(False, "No progress bars or per-epoch lines.")


@dataclass(kw_only=True, repr=False)
class DistillConfig(_Short):
    """`kdsnn distill` / `kdsnn.distill`: a spiking student trained with KD from a teacher.

    None means "the dataset's default" (kdsnn.train.DEFAULTS) or the optimizer's."""

    output: str = _f("", "Output folder: student.pt (selected on validation), best.pt, last.pt, "
                         "metrics.jsonl, result.json, training.png; teacher.pt and teacher/ when the "
                         "default teacher is trained.")
    dataset: str = _f("mnist5k", "mnist5k, digits (offline), mnist, fashion-mnist, cifar10, cifar100; "
                                 "nmnist: event files under --data-dir, T frames (the teacher sees their sum).")
    data_dir: str | None = _f(None, "Folder of the torchvision datasets (default $KDSNN_DATA_DIR or "
                                    "~/.cache/kdsnn/data).")
    download: bool = _f(False, "Allow torchvision to download the dataset.")
    arch: str | None = _f(None, "Zoo architecture: cnn, vgg11, vgg16, resnet18, resnet34, wrn16_2, "
                                "wrn28_4 (default: the dataset's).")
    width: float | None = _f(None, "Channel width multiplier (default 1).")
    epochs: int | None = _f(None, "Epochs (default: the dataset's).")
    batch_size: int = _f(64, "Training batch size (global under torchrun).")
    optimizer: str = _f("adamw", "sgd or adamw.")
    lr: float | None = _f(None, "Peak learning rate (default sgd 0.1, adamw 2e-3); cosine schedule.")
    weight_decay: float | None = _f(None, "Default sgd 5e-4, adamw 1e-2.")
    seed: int = _f(0, "Seeds initialization, shuffling and augmentation. The same weights again only "
                      "with --deterministic and the same thread/process count, device and PyTorch; "
                      "otherwise reruns differ slightly (float sums in another order).")
    device: str = _f("cpu", "cpu or cuda (AMP on CUDA).")
    limit_train: int | None = _f(None, "Train on the first N samples only.")
    shift: int | None = _f(None, "Random translation augmentation, in pixels (default: 2 for "
                                 "MNIST-like data, else 0).")
    resume: bool = _f(False, "Continue the run in OUTPUT from its last.pt.")
    patience: int = _f(0, "Stop after this many epochs without a better validation accuracy (0: never).")
    deterministic: bool = _f(False, "Bit-identical reruns: deterministic kernels and 1 thread (slower; "
                                    "kdsnn.determinism says what it cannot fix).")
    threads: str = _f("auto", "Torch CPU threads: a number, or auto (one per core the 1-minute load "
                              "average leaves free, at least 1; OMP_NUM_THREADS wins if set). More "
                              "threads than free cores can run several times slower.")
    precision: str = _f("auto", "auto: fp16 autocast on CUDA, fp32 on the CPU; fp32; bf16: bfloat16 "
                                "autocast on CPU or CUDA (neurons integrate in float32).")
    progress: str = _f("auto", "auto: bars on a terminal, else one line per epoch (log files); bars; "
                               "lines; none.")
    quiet: bool = _f(False, "Same as --progress none: only the result lines and the written files.")
    kd: str = _f("both", "Distillation: none (baseline), response (logits), feature, both.")
    teacher: str | None = _f(None, "Teacher: a kdsnn teacher .pt, a .onnx file, or torchvision:NAME. "
                                   "Default: train the dataset's default teacher first (saved as "
                                   "OUTPUT/teacher.pt).")
    teacher_features: str | None = _f(None, "ONNX teacher tensors for feature KD, comma separated.")
    teacher_weights: str | None = _f(None, "Weights file of a torchvision:NAME teacher.")
    teacher_epochs: int | None = _f(None, "Epochs of the default teacher (default: the dataset's: "
                                          "mnist5k 8, digits 20, mnist 10, fashion-mnist 15, "
                                          "cifar10 100, cifar100 150).")
    connector: str = _f("auto", "Feature KD connectors: auto (1x1 conv/linear + BN where shapes "
                                "differ) or always.")
    time_steps: int = _f(4, "Time steps per sample.")
    theta: float = _f(1.0, "IF threshold.")
    surrogate: str = _f("sigmoid", "Surrogate gradient: sigmoid or arctan.")
    slope: float = _f(4.0, "Surrogate slope.")
    alpha: float = _f(0.5, "KD weight (response: in [0, 1]).")
    temperature: float = _f(4.0, "Softmax temperature of response KD.")
    neuron: str = _f("if", "Student neuron: if (no leak, reset to zero) or lif (a leak per layer, "
                           "exported as NIR LIF).")
    beta: float | None = _f(None, "LIF leak per step, v = beta*v + y (default 0.9; snapped to the "
                                  "12-bit decay grid 1 - k/4096).")
    tau_mem: float | None = _f(None, "LIF membrane time constant in time steps, instead of --beta "
                                     "(beta = 1 - 1/tau).")
    learn_beta: bool = _f(False, "Learn each LIF layer's leak (kept in [0.5, 1], on the decay grid).")
    reset: str = _f("zero", "LIF reset: to zero, or subtract the threshold.")
    encoding: str = _f("direct", "Input: direct (the image at every step) or rate (Bernoulli spikes "
                                 "from a generator seeded by --seed).")


def default(cls: type, name: str) -> Any:
    """The default of one field of a configuration dataclass."""
    f = next(f for f in fields(cls) if f.name == name)
    if f.default is not MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def from_options(cls: type, opts: dict[str, Any]) -> Any:
    """A configuration from keyword options (None = the default; unknown keys are refused)."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(opts) - names)
    if unknown:
        raise KdsnnError(f"unknown {cls.__name__} option(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(names))}")
    return cls(**{k: (default(cls, k) if v is None else v) for k, v in opts.items()})


def cli_option(cls: type, name: str, *decls: str, **kw: Any):
    """A click option whose default and help come from the field `name` of `cls`."""
    import click

    f = next(f for f in fields(cls) if f.name == name)
    d = default(cls, name)
    if isinstance(d, bool) and "is_flag" not in kw:
        kw["is_flag"] = True
    kw.setdefault("default", d)
    kw.setdefault("help", f.metadata.get("help"))
    if d is not None and not isinstance(d, bool):
        kw.setdefault("show_default", True)
    return click.option(*(decls or (f"--{name.replace('_', '-')}",)), name, **kw)


# ------------------------------------------------------------------ option rules
# One table for every command (distill, train-teacher, finetune, evaluate, export, run and
# the Python API): the same option obeys the same rule wherever it appears.
#   kind: "int>=1", "int>=0", ">0" (finite, positive), ">=0" (finite), "[0,1]", "(0,1]",
#   ">=1" (finite), ("bits", lo, hi): an integer in [lo, hi]
RULES: dict[str, Any] = {
    "samples": "int>=1", "eval_samples": "int>=1", "batch_size": "int>=1", "calibration": "int>=1",
    "time_steps": "int>=1", "epochs": "int>=1", "teacher_epochs": "int>=1", "exact_epochs": "int>=1",
    "limit_train": "int>=1", "patience": "int>=0", "shift": "int>=0",
    "lr": ">0", "weight_decay": ">=0", "temperature": ">0", "alpha": "[0,1]", "width": ">0",
    "theta": ">0", "slope": ">0", "beta": "(0,1]", "tau_mem": ">=1", "dt": ">0",
    "headroom": ">0", "min_weight_bits": ">0", "provable_budget_bits": ">=0", "input_bits": ("bits", 1, 32),
}
# What an option is called on the command line where it is not --name-with-dashes.
FLAGS = {"time_steps": "-T/--time-steps", "temperature": "--temperature/--tau"}
# Upper bounds no real run comes near (the memory budget then speaks for the rest).
MAX_STEPS = 1 << 24


def flag(name: str) -> str:
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def _rule_ok(kind: Any, v: Any) -> bool:
    import math

    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    if isinstance(kind, tuple):
        return float(v).is_integer() and kind[1] <= v <= kind[2]
    if kind.startswith("int"):
        return float(v).is_integer() and v >= int(kind[-1])
    if not math.isfinite(v):
        return False
    return {">0": v > 0, ">=0": v >= 0, "[0,1]": 0 <= v <= 1, "(0,1]": 0 < v <= 1, ">=1": v >= 1}[kind]


def _rule_text(kind: Any) -> str:
    if isinstance(kind, tuple):
        return f"an integer from {kind[1]} to {kind[2]}"
    return {"int>=1": "a positive integer", "int>=0": "0 or a positive integer", ">0": "a positive finite number",
            ">=0": "a finite number >= 0", "[0,1]": "a number in [0, 1]", "(0,1]": "a number in (0, 1]",
            ">=1": "a finite number >= 1"}[kind]


def check_values(values: dict[str, Any], where: str = "") -> None:
    """Every known option in `values` (None = not given) against RULES, and --device; one
    KdsnnError line naming the first bad one, what it must be and what it got."""
    for name, v in values.items():
        kind = RULES.get(name)
        if v is None or kind is None:
            continue
        if not _rule_ok(kind, v):
            raise KdsnnError(f"{flag(name)} must be {_rule_text(kind)}, got {v!r}{where}")
    T = values.get("time_steps")
    if T is not None and T > MAX_STEPS:
        raise KdsnnError(f"-T/--time-steps {T} is over {MAX_STEPS:,} steps; no network of kdsnn runs that long")
    if values.get("device") is not None:
        from kdsnn.device import resolve_device

        resolve_device(values["device"])
