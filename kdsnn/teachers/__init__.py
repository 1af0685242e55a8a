"""Teachers: the interface (`protocol`) and its implementations for kdsnn checkpoints
(`native`), ONNX files (`onnx_teacher`) and torchvision models (`torchvision_teacher`);
`load_teacher` picks one from the --teacher value."""

from __future__ import annotations

from typing import Any

import torch

from kdsnn.errors import KdsnnError
from kdsnn.teachers.protocol import Teacher


def load_teacher(spec: str, device: torch.device | str = "cpu", feature_names: str | None = None,
                 **kwargs: Any) -> Teacher:
    """The teacher named by `spec`, dispatched on its form:

      *.pt / *.pth kdsnn checkpoint    -> CheckpointTeacher
      *.onnx                           -> kdsnn.teachers.onnx_teacher.OnnxTeacher(spec, feature_names)
      torchvision:NAME                 -> kdsnn.teachers.torchvision_teacher.TorchvisionTeacher(spec, **kwargs)
                                          (kwargs: weights, num_classes, input_shape, download)
    Only the torchvision teacher takes kwargs (the others ignore them).
    Call `teacher.check(input_shape, num_classes, mean, std)` before training.
    """
    spec = str(spec)
    if spec.startswith("torchvision:"):
        try:
            from kdsnn.teachers.torchvision_teacher import TorchvisionTeacher
        except ImportError:
            raise KdsnnError("torchvision teachers are not available in this kdsnn") from None
        return TorchvisionTeacher(spec, feature_names=feature_names, device=device, **kwargs)
    if spec.lower().endswith(".onnx"):
        from kdsnn.teachers.onnx_teacher import OnnxTeacher

        return OnnxTeacher(spec, feature_names=feature_names, device=device)
    if feature_names:
        raise KdsnnError("--teacher-features names tensors of an ONNX teacher; a kdsnn checkpoint "
                         "teacher uses its architecture's feature points")
    from kdsnn.teachers.native import CheckpointTeacher

    return CheckpointTeacher(spec, device=device)
