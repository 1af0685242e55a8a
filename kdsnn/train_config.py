"""The configuration of a training run (what its checkpoint carries) from the CLI options,
with each dataset's default architectures and epochs."""

from __future__ import annotations

import math
from typing import Any

from kdsnn import __version__, progress, speed
from kdsnn.config import DistillConfig
from kdsnn.encoding import ENCODINGS
from kdsnn.errors import KdsnnError
from kdsnn.kd_loss import check_mode
from kdsnn.lif import RESETS, beta_from_tau, beta_on_grid
from kdsnn.neurons import SURROGATES

# The dataset's default teacher (trained by `distill` when no --teacher is given) and the
# default epochs of teacher and student. mnist5k's numbers fit the budget: teacher
# and KD student within 10 minutes on 2 CPU cores.
DEFAULTS: dict[str, dict[str, Any]] = {
    "mnist5k": {"arch": "cnn", "teacher": "cnn", "teacher_epochs": 8, "epochs": 15, "shift": 2},
    "digits": {"arch": "cnn", "teacher": "cnn", "teacher_epochs": 20, "epochs": 30, "shift": 0},
    "mnist": {"arch": "cnn", "teacher": "cnn", "teacher_epochs": 10, "epochs": 20, "shift": 2},
    "fashion-mnist": {"arch": "cnn", "teacher": "cnn", "teacher_epochs": 15, "epochs": 30, "shift": 2},
    "cifar10": {"arch": "vgg11", "teacher": "resnet18", "teacher_epochs": 100, "epochs": 200, "shift": 0},
    "nmnist": {"arch": "cnn", "teacher": "cnn", "teacher_epochs": 10, "epochs": 20, "shift": 0},
    "cifar100": {"arch": "resnet18", "teacher": "resnet34", "teacher_epochs": 150, "epochs": 200, "shift": 0},
}
_D = DistillConfig()   # the CLI's defaults (kdsnn.config), for options left out or None
OPTIMIZERS = ("sgd", "adamw")
DEFAULT_LR = {"sgd": 0.1, "adamw": 2e-3}
DEFAULT_WD = {"sgd": 5e-4, "adamw": 1e-2}


def make_config(kind: str, opts: dict[str, Any]) -> dict[str, Any]:
    """The full run configuration (what the checkpoint carries) from the CLI options."""
    from kdsnn.data import dataset_info
    from kdsnn.zoo import ARCHS

    info = dataset_info(opts.get("dataset") or _D.dataset)
    d = DEFAULTS.get(info.name, DEFAULTS["mnist5k"])
    arch = opts.get("arch") or (d["arch"] if kind == "student" else d["teacher"])
    if arch not in ARCHS:
        raise KdsnnError(f"unknown architecture {arch!r}; choose one of {', '.join(sorted(ARCHS))}")
    kd = check_mode(opts.get("kd") or _D.kd) if kind == "student" else "none"
    optimizer = (opts.get("optimizer") or _D.optimizer).lower()
    if optimizer not in OPTIMIZERS:
        raise KdsnnError(f"unknown --optimizer {optimizer!r}; choose sgd or adamw")
    surrogate = opts.get("surrogate") or _D.surrogate
    if surrogate not in SURROGATES:
        raise KdsnnError(f"unknown --surrogate {surrogate!r}; choose one of {', '.join(SURROGATES)}")
    T = int(_opt(opts, "time_steps", _D.time_steps)) if kind == "student" else 1
    epochs = opts.get("epochs")
    epochs = int(epochs if epochs is not None else (d["epochs"] if kind == "student" else d["teacher_epochs"]))
    train = {
        "epochs": epochs,
        "batch_size": int(_opt(opts, "batch_size", _D.batch_size)),
        "optimizer": optimizer,
        "lr": float(opts["lr"]) if opts.get("lr") is not None else DEFAULT_LR[optimizer],
        "weight_decay": float(opts["weight_decay"]) if opts.get("weight_decay") is not None else DEFAULT_WD[optimizer],
        "seed": int(_opt(opts, "seed", _D.seed)),
        "alpha": float(_opt(opts, "alpha", _D.alpha)),
        "temperature": float(_opt(opts, "temperature", _D.temperature)),
        "limit_train": opts.get("limit_train"),
        "augment": info.augment,
        "device": str(opts.get("device") or _D.device),
        "connector": opts.get("connector") or _D.connector,
        "shift": int(_opt(opts, "shift", d["shift"])),
        # kdsnn.determinism: bit-identical reruns (deterministic kernels, fixed threads)
        "deterministic": bool(opts.get("deterministic")),
        # kdsnn.speed: threads (auto: the free cores, resolved when the run starts), precision
        "threads": 1 if opts.get("deterministic") else speed.resolve_threads(opts.get("threads")),
        "precision": speed.check_precision(opts.get("precision")),
        # kdsnn.selection: stop after this many epochs without a better validation accuracy
        "patience": int(opts["patience"]) if opts.get("patience") else None,
    }
    if info.name == "nmnist" and train["shift"]:
        raise KdsnnError(f"--shift {train['shift']}: nmnist recordings are not shifted (give --shift 0)")
    if info.name == "nmnist" and (opts.get("encoding") or "direct") != "direct":
        raise KdsnnError("--encoding rate: nmnist's input already is events (T frames); use --encoding direct")
    if train["connector"] not in ("auto", "always"):
        raise KdsnnError(f"unknown --connector {train['connector']!r}; choose auto or always")
    for k in ("epochs", "batch_size"):
        if train[k] <= 0:
            raise KdsnnError(f"--{k.replace('_', '-')} must be positive, got {train[k]}")
    if not train["lr"] > 0 or not math.isfinite(train["lr"]):
        raise KdsnnError(f"--lr must be a positive number, got {train['lr']}")
    if T <= 0:
        raise KdsnnError(f"-T/--time-steps must be positive, got {T}")
    if opts.get("patience") is not None and int(opts["patience"]) < 0:
        raise KdsnnError(f"--patience must be 0 (off) or positive, got {opts['patience']}")
    if train["limit_train"] is not None and int(train["limit_train"]) <= 0:
        raise KdsnnError(f"--limit-train must be positive, got {train['limit_train']}")
    theta = float(_opt(opts, "theta", _D.theta))
    slope = float(_opt(opts, "slope", _D.slope))
    if not theta > 0 or not slope > 0:
        raise KdsnnError(f"--theta and --slope must be positive, got {theta} and {slope}")
    neuron = _neuron_config(opts, theta, surrogate, slope) if kind == "student" else None
    encoding = opts.get("encoding") or "direct"
    if encoding not in ENCODINGS:
        raise KdsnnError(f"unknown --encoding {encoding!r}; choose one of {', '.join(ENCODINGS)}")
    return {
        "kind": kind,
        "arch": arch,
        "width": float(_opt(opts, "width", 1.0)),
        "num_classes": info.num_classes,
        "input_shape": list(info.input_shape),
        "T": T,
        "neuron": neuron,
        "dataset": info.name,
        "data_dir": str(opts["data_dir"]) if opts.get("data_dir") else None,
        "mean": list(info.mean),
        "std": list(info.std),
        "class_names": list(info.class_names),
        "kd": kd,
        "teacher": opts.get("teacher"),
        "teacher_features": opts.get("teacher_features"),
        "teacher_weights": opts.get("teacher_weights"),
        "encoding": encoding if kind == "student" else "direct",
        "encoding_seed": int(_opt(opts, "seed", 0)) if encoding == "rate" and kind == "student" else None,
        "kdsnn_version": __version__,
        "train": train,
        "output": str(opts["output"]),
        "progress": progress.resolve(opts.get("progress"), bool(opts.get("quiet"))),
        "quiet": progress.resolve(opts.get("progress"), bool(opts.get("quiet"))) == "none",
        "silent": bool(opts.get("silent")),   # the Python API's quiet: not even the result lines
        "download": bool(opts.get("download")),
        "resume": bool(opts.get("resume")),
        "stop_after": opts.get("stop_after"),
    }


def _neuron_config(opts: dict[str, Any], theta: float, surrogate: str, slope: float) -> dict[str, Any]:
    """The student's neuron (kdsnn.layers.make_neuron's config): IF, or LIF with a leak
    from --beta or --tau (in time steps), snapped to the 12-bit decay grid."""
    model = opts.get("neuron") or "if"
    cfg: dict[str, Any] = {"theta": theta, "surrogate": surrogate, "slope": slope}
    if model == "if":
        for k in ("beta", "tau_mem", "learn_beta"):
            if opts.get(k):
                raise KdsnnError(f"--{k.replace('_', '-')} is an option of --neuron lif")
        if (opts.get("reset") or "zero") != "zero":
            raise KdsnnError("--reset subtract needs --neuron lif (the IF student resets to zero)")
        return cfg
    if model != "lif":
        raise KdsnnError(f"unknown --neuron {model!r}; choose if or lif")
    if opts.get("beta") is not None and opts.get("tau_mem") is not None:
        raise KdsnnError("give --beta or --tau-mem, not both")
    try:
        beta = beta_from_tau(float(opts["tau_mem"])) if opts.get("tau_mem") is not None else float(_opt(opts, "beta", 0.9))
        beta = beta_on_grid(beta)
    except ValueError as e:
        raise KdsnnError(f"--beta/--tau-mem: {e}") from None
    reset = opts.get("reset") or "zero"
    if reset not in RESETS:
        raise KdsnnError(f"unknown --reset {reset!r}; choose one of {', '.join(RESETS)}")
    return {**cfg, "model": "lif", "beta": beta, "reset": reset, "learn_beta": bool(opts.get("learn_beta"))}


def _opt(opts: dict[str, Any], key: str, default: Any) -> Any:
    """opts[key] unless it is missing or None (0 is a value, and gets checked)."""
    v = opts.get(key)
    return default if v is None else v


# Keys of the run config that are about this invocation, not about the model.
_RUNTIME_KEYS = ("output", "quiet", "progress", "silent", "download", "resume", "stop_after")


def checkpoint_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The run config without the keys about this invocation."""
    return {k: v for k, v in cfg.items() if k not in _RUNTIME_KEYS}
