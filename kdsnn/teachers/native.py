"""kdsnn's own ANN teacher checkpoints (`kdsnn train-teacher`) as teachers."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from kdsnn.errors import KdsnnError
from kdsnn.teachers.protocol import same_normalization


class CheckpointTeacher:
    """A kdsnn ANN teacher checkpoint (`kdsnn train-teacher`), frozen, in eval mode.

    Its features are the pre-activation values (the ReLU inputs) at the architecture's
    feature points: the one-sided feature loss (kdsnn.kd_loss) is built for pre-ReLU teacher
    features, where a student value below a negative teacher value costs nothing.
    """

    def __init__(self, path: str | os.PathLike, device: torch.device | str = "cpu",
                 features: str = "pre") -> None:
        from kdsnn.checkpoint import load_model

        self.path = Path(path)
        self.model, self.config = load_model(self.path, device, kind="teacher")
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.num_classes = int(self.config["num_classes"])
        self.input_shape = tuple(self.config["input_shape"])
        self.feature_names = list(self.model.feature_points)
        self.features = features
        self.feature_shapes: dict[str, tuple[int, ...]] = {}

    def check(self, input_shape: tuple[int, ...], num_classes: int,
              mean: list[float] | None = None, std: list[float] | None = None) -> None:
        """Fail before training if this teacher does not fit the dataset."""
        name = self.path.name
        if tuple(input_shape) != self.input_shape:
            raise KdsnnError(f"teacher {name} takes inputs of shape {self.input_shape} but the dataset gives "
                             f"{tuple(input_shape)}; train the teacher on this dataset")
        if int(num_classes) != self.num_classes:
            raise KdsnnError(f"teacher {name} has {self.num_classes} classes but the dataset has {num_classes}; "
                             "train the teacher on this dataset")
        tm, ts = self.config.get("mean"), self.config.get("std")
        if not same_normalization(tm, ts, mean, std):
            raise KdsnnError(f"teacher {name} was trained on {self.config.get('dataset')} inputs normalized "
                             f"with mean {tm}, std {ts}; the dataset uses mean {list(mean)}, std {list(std)}")
        dev = next(self.model.parameters()).device
        _, f = self(torch.zeros(2, *self.input_shape, device=dev))
        self.feature_shapes = {k: tuple(v.shape[1:]) for k, v in f.items()}

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.model.eval()
        return self.model(x, return_features=self.features if self.features == "pre" else True)

    def to(self, device: torch.device | str) -> CheckpointTeacher:
        self.model.to(device)
        return self

    def eval(self) -> CheckpointTeacher:
        self.model.eval()
        return self

    def __repr__(self) -> str:
        return f"CheckpointTeacher({self.path}, arch={self.config['arch']})"
