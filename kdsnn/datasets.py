"""The dataset registry (docs/design.md, "Data"): what a model and a checkpoint know of each dataset.

Name, input shape, classes, normalization and class names of every dataset kdsnn reads, with
no pixels: reading the files and carving the splits is `kdsnn.dataset_files`, the torch
datasets and loaders `kdsnn.data`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from kdsnn.errors import KdsnnError

SPLITS = ("train", "val", "test")
DEFAULT_DATA_DIR_ENV = "KDSNN_DATA_DIR"


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a checkpoint need to know about a dataset (no pixels)."""

    name: str
    input_shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str] = field(default_factory=list)
    augment: bool = False  # whether training uses crop + flip augmentation by default


_DIGIT_NAMES = [str(i) for i in range(10)]
_FASHION_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                  "Sneaker", "Bag", "Ankle boot"]
_CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                  "ship", "truck"]
_CIFAR100_NAMES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus "
    "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch "
    "crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo "
    "keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain "
    "mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain "
    "plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank "
    "telephone television tiger tractor train trout tulip turtle wardrobe whale willow_tree "
    "wolf woman worm"
).split()

# Normalization: MNIST / Fashion-MNIST / CIFAR are the usual per-channel training-set values
# (CIFAR std is the true per-pixel std, not the widely copied 0.2023/0.1994/0.2010).
# `digits`: mean/std of its [0,1] training split (computed once, test_data checks it).
DATASETS: dict[str, DatasetInfo] = {
    "mnist5k": DatasetInfo("mnist5k", (1, 28, 28), 10, (0.1307,), (0.3081,), _DIGIT_NAMES),
    "digits": DatasetInfo("digits", (1, 8, 8), 10, (0.3054,), (0.3760,), _DIGIT_NAMES),
    "mnist": DatasetInfo("mnist", (1, 28, 28), 10, (0.1307,), (0.3081,), _DIGIT_NAMES),
    "fashion-mnist": DatasetInfo("fashion-mnist", (1, 28, 28), 10, (0.2860,), (0.3530,),
                                 _FASHION_NAMES),
    "cifar10": DatasetInfo("cifar10", (3, 32, 32), 10, (0.4914, 0.4822, 0.4465),
                           (0.2470, 0.2435, 0.2616), _CIFAR10_NAMES, augment=True),
    "cifar100": DatasetInfo("cifar100", (3, 32, 32), 100, (0.5071, 0.4865, 0.4409),
                            (0.2673, 0.2564, 0.2762), _CIFAR100_NAMES, augment=True),
    # event data (kdsnn.event_data): frames of event counts, not normalized
    "nmnist": DatasetInfo("nmnist", (2, 34, 34), 10, (0.0, 0.0), (1.0, 1.0), _DIGIT_NAMES),
}
OFFLINE = ("mnist5k", "digits")


def dataset_info(name: str) -> DatasetInfo:
    """The DatasetInfo of a registered dataset; unknown names list the valid ones."""
    key = str(name).strip().lower()
    key = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
           "cifar-10": "cifar10", "cifar-100": "cifar100"}.get(key, key)
    if key not in DATASETS:
        raise KdsnnError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
    return DATASETS[key]


def default_data_dir() -> Path:
    """$KDSNN_DATA_DIR, else ~/.cache/kdsnn/data."""
    env = os.environ.get(DEFAULT_DATA_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "kdsnn" / "data"


def check_split(split: str) -> str:
    """The split name, or a KdsnnError listing the valid ones."""
    if split not in SPLITS:
        raise KdsnnError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    return split
