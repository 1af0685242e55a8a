"""The option groups several `kdsnn` commands share, built from kdsnn.config's fields.

cli.py decorates its commands with these, so an option reads the same (name, type,
default, help) wherever it appears.
"""

from __future__ import annotations

import click

from kdsnn.config import DistillConfig, cli_option

# Fixed sets, spelled here so --help lists them without importing torch.
DATASET_NAMES = ["mnist5k", "digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "nmnist"]
ARCH_NAMES = ["cnn", "vgg11", "vgg16", "resnet18", "resnet34", "wrn16_2", "wrn28_4"]
PROGRESS_MODES = ["auto", "bars", "lines", "none"]


def training_options(fn):
    """Options shared by `distill` and `train-teacher` (kdsnn.config.DistillConfig; None
    defaults depend on the dataset)."""
    C = DistillConfig
    return options(
        cli_option(C, "dataset", "--dataset", type=click.Choice(DATASET_NAMES)),
        cli_option(C, "data_dir", "--data-dir", type=click.Path(file_okay=False)),
        cli_option(C, "download", "--download"),
        cli_option(C, "arch", "--arch", type=click.Choice(ARCH_NAMES)),
        cli_option(C, "width", "--width", type=float),
        cli_option(C, "epochs", "--epochs", type=int),
        cli_option(C, "batch_size", "--batch-size", type=int),
        cli_option(C, "optimizer", "--optimizer", type=click.Choice(["sgd", "adamw"])),
        cli_option(C, "lr", "--lr", type=float),
        cli_option(C, "weight_decay", "--weight-decay", type=float),
        cli_option(C, "seed", "--seed", type=int),
        cli_option(C, "device", "--device"),
        cli_option(C, "limit_train", "--limit-train", type=int),
        cli_option(C, "shift", "--shift", type=int),
        cli_option(C, "resume", "--resume"),
        cli_option(C, "patience", "--patience", type=click.IntRange(min=0)),
        cli_option(C, "deterministic", "--deterministic"),
        cli_option(C, "threads", "--threads"),
        cli_option(C, "precision", "--precision", type=click.Choice(["auto", "fp32", "bf16"])),
        cli_option(C, "progress", "--progress", type=click.Choice(PROGRESS_MODES)),
        cli_option(C, "quiet", "-q", "--quiet"))(fn)


def options(*opts):
    """One decorator for several click options, in the order given (top first in --help)."""
    def deco(fn):
        for o in reversed(opts):
            fn = o(fn)
        return fn
    return deco


def lowering_options(cls, hw: bool = True):
    """--hw, --calibration and the lowering's knobs (kdsnn.config.HardwareConfig)."""
    return options(
        *([cli_option(cls, "hw", "--hw")] if hw else []),
        cli_option(cls, "calibration", "--calibration", type=int),
        cli_option(cls, "min_weight_bits", "--min-weight-bits", type=float),
        cli_option(cls, "headroom", "--headroom", type=float),
        cli_option(cls, "input_bits", "--input-bits", type=int),
        cli_option(cls, "provable_budget_bits", "--provable-budget-bits", type=float))


def sample_options(cls):
    """Which test samples a backend runs and how (kdsnn.config.SampleConfig: export, run)."""
    return options(
        cli_option(cls, "dataset", "--dataset"),
        cli_option(cls, "data_dir", "--data-dir", type=click.Path(file_okay=False)),
        cli_option(cls, "download", "--download"),
        cli_option(cls, "time_steps", "-T", "--time-steps", type=int),
        cli_option(cls, "dt", "--dt", type=float),
        cli_option(cls, "reset", "--reset", type=click.Choice(["zero", "subtract"])),
        cli_option(cls, "input", "--input", type=click.Path(dir_okay=False)),
        cli_option(cls, "batch_size", "--batch-size", type=int),
        cli_option(cls, "device", "--device"),
        cli_option(cls, "seed", "--seed", type=int))
