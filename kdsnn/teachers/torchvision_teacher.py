"""torchvision teachers: `--teacher torchvision:resnet18 --teacher-weights file.pth`.

The architecture comes from torchvision with its classifier head sized to the dataset;
the weights come from a local file (a state_dict, or a checkpoint dict holding one under
`state_dict` / `model` / `model_state_dict`; DDP `module.` prefixes are stripped).
Nothing is downloaded unless `download=True` (then torchvision's default pretrained
weights, whose 1000-class ImageNet head only fits a 1000-class dataset, unless
`reset_head=True` starts a fresh head that must then be fine-tuned).

Channels. If the dataset has fewer channels than the architecture's stem (MNIST: 1 vs 3):
  - weights whose stem conv takes 1 channel (a model trained on MNIST with its first conv
    adapted) get a 1-channel stem built for them;
  - weights with a 3-channel stem (e.g. ImageNet) see the grayscale image replicated to
    3 channels, which is exactly what converting gray to RGB would give them.
Any other channel mismatch is an error.

Features: torchvision module names (`layer1` ... `layer4` for ResNets, the default there;
`features.3` etc. elsewhere), captured with forward hooks.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdsnn.errors import KdsnnError
from kdsnn.teachers.protocol import split_names

PREFIX = "torchvision:"
_STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")


def parse_spec(spec: str) -> str:
    """'torchvision:resnet18' -> 'resnet18' (checked against torchvision's classifiers)."""
    import torchvision

    name = spec[len(PREFIX):] if spec.startswith(PREFIX) else spec
    names = torchvision.models.list_models(module=torchvision.models)
    if name not in names:
        near = difflib.get_close_matches(name, names, n=4, cutoff=0.5)
        hint = f"did you mean {', '.join(PREFIX + n for n in near)}?" if near else \
            "see torchvision.models.list_models() for the classification models"
        raise KdsnnError(f"unknown torchvision model {name!r} in --teacher {spec}; {hint}")
    return name


class TorchvisionTeacher:
    """A frozen torchvision classifier as teacher (implements kdsnn.teachers.Teacher)."""

    def __init__(self, spec: str, weights: str | os.PathLike | None, num_classes: int,
                 input_shape: tuple[int, ...], download: bool = False,
                 feature_names: list[str] | str | None = None, reset_head: bool = False,
                 device: torch.device | str = "cpu") -> None:
        import torchvision

        self.arch = parse_spec(spec)
        self.spec = PREFIX + self.arch
        self.num_classes = int(num_classes)
        self.input_shape = tuple(input_shape)
        if len(self.input_shape) != 3:
            raise KdsnnError(f"{self.spec} needs image data (C, H, W); the dataset gives {self.input_shape}")
        kwargs: dict[str, Any] = {"weights": None, "num_classes": self.num_classes}
        if self.arch in ("googlenet", "inception_v3"):
            kwargs.update(aux_logits=False, init_weights=False)
        model: nn.Module = torchvision.models.get_model(self.arch, **kwargs)

        state = self._weights(weights, download)
        self._replicate = 1
        self._adapt_stem(model, state)
        self._load(model, state, reset_head)
        self.model = model.eval().requires_grad_(False)

        mods = dict(self.model.named_modules())
        if feature_names is None:
            feature_names = [n for n in ("layer1", "layer2", "layer3", "layer4") if n in mods] \
                if all(n in mods for n in ("layer1", "layer4")) else []
        self.feature_names: list[str] = split_names(feature_names)
        for n in self.feature_names:
            if n not in mods or n == "":
                valid = [k for k in mods if k]
                near = difflib.get_close_matches(n, valid, n=5, cutoff=0.4)
                tops = [k for k in valid if "." not in k]
                raise KdsnnError(f"--teacher-features: {n!r} is not a module of {self.spec}; "
                                 + (f"nearest valid names: {', '.join(near)}" if near
                                    else f"top-level modules: {', '.join(tops)}"))
        self._feats: dict[str, torch.Tensor] = {}
        for n in self.feature_names:
            mods[n].register_forward_hook(self._hook(n))
        self.device = torch.device("cpu")
        self.to(device)
        self._dry_run()

    # ------------------------------------------------------------------ weights
    def _weights(self, weights: str | os.PathLike | None, download: bool) -> dict[str, torch.Tensor]:
        if weights is not None:
            p = Path(weights)
            if not p.is_file():
                raise KdsnnError(f"--teacher-weights {p} does not exist; give a state_dict file (.pth/.pt)")
            from kdsnn.safe_load import load_torch

            if p.suffix == ".onnx":
                raise KdsnnError(f"cannot read --teacher-weights {p}: not a PyTorch state_dict saved with "
                                 "torch.save (an ONNX file); an ONNX teacher is given as --teacher FILE.onnx")
            obj = load_torch(p, "--teacher-weights", legacy=True)
            return _state_dict_of(obj, p)
        if download:
            import torchvision

            try:
                w = torchvision.models.get_model_weights(self.arch).DEFAULT
                return dict(w.get_state_dict(progress=False))
            except Exception as e:
                raise KdsnnError(f"cannot download pretrained weights for {self.spec}: "
                                 f"{str(e).splitlines()[0][:200]}") from None
        raise KdsnnError(f"{self.spec} needs --teacher-weights FILE (a state_dict trained for this dataset); "
                         "pass --download to fetch torchvision's pretrained weights instead")

    def _adapt_stem(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        """Fit the first conv to the dataset's channel count (see the module docstring)."""
        c = self.input_shape[0]
        stem_name, stem = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)),
                               (None, None))
        if stem is None:
            return
        w = state.get(f"{stem_name}.weight")
        w_in = int(w.shape[1]) if w is not None and w.dim() == 4 else stem.in_channels
        if w_in == c == stem.in_channels:
            return
        if w_in == c:  # weights trained with an adapted stem: build the stem they need
            new = nn.Conv2d(c, stem.out_channels, stem.kernel_size, stem.stride, stem.padding,
                            stem.dilation, stem.groups, stem.bias is not None, stem.padding_mode)
            parent = model.get_submodule(stem_name.rpartition(".")[0]) if "." in stem_name else model
            setattr(parent, stem_name.rpartition(".")[2], new)
        elif c == 1 and w_in == 3:
            self._replicate = 3
        else:
            raise KdsnnError(f"{self.spec}: its first conv {stem_name} takes {w_in} channels but the dataset "
                             f"has {c}; give weights trained on {c}-channel images")

    def _load(self, model: nn.Module, state: dict[str, torch.Tensor], reset_head: bool) -> None:
        own = model.state_dict()
        head = _head_name(model)
        missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
        unexpected = [k for k in state if k not in own]
        wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        head_wrong = [k for k in wrong if head and k.startswith(head + ".")]
        if head_wrong:
            got = int(state[f"{head}.weight"].shape[0]) if f"{head}.weight" in state else "?"
            if not reset_head:
                raise KdsnnError(f"{self.spec}: the weights' classifier head {head} has {got} classes but the "
                                 f"dataset has {self.num_classes}; give weights trained for "
                                 f"{self.num_classes} classes (or fine-tune a fresh head: reset_head=True)")
            state = {k: v for k, v in state.items() if k not in head_wrong}
            wrong = [k for k in wrong if k not in head_wrong]
            missing = [k for k in missing if k not in head_wrong] + head_wrong
        if wrong or unexpected or [k for k in missing if not (reset_head and k.startswith(f"{head}."))]:
            parts = []
            if wrong:
                parts.append("shape differs for " + ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                                                              for k in wrong[:3]))
            if missing:
                parts.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
            if unexpected:
                parts.append(f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}")
            raise KdsnnError(f"--teacher-weights do not fit {self.spec}: {'; '.join(parts)}; "
                             "give a state_dict saved from this torchvision architecture")
        model.load_state_dict(state, strict=False)  # checked above, with clearer messages

    def check(self, input_shape: tuple[int, ...], num_classes: int,
              mean: list[float] | None = None, std: list[float] | None = None) -> None:
        """Fail before training if this teacher does not fit the dataset (the head and stem
        were built for the shape and classes given at construction)."""
        if tuple(input_shape) != self.input_shape or int(num_classes) != self.num_classes:
            raise KdsnnError(f"{self.spec} was built for inputs {self.input_shape} and {self.num_classes} classes; "
                             f"the dataset gives {tuple(input_shape)} and {num_classes} classes")
        self._dry_run()

    def _dry_run(self) -> None:
        try:
            logits, feats = self(torch.zeros(2, *self.input_shape, device=self.device))
        except KdsnnError:
            raise
        except Exception as e:
            raise KdsnnError(f"{self.spec} cannot take {self.input_shape} inputs: "
                             f"{str(e).splitlines()[0][:200]}; choose an architecture for this image size") from None
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise KdsnnError(f"{self.spec} gives outputs of shape {tuple(logits.shape)}, expected (B, {self.num_classes})")
        self.feature_shapes = {k: tuple(v.shape[1:]) for k, v in feats.items()}

    # ------------------------------------------------------------------ Teacher protocol
    def _hook(self, name: str):
        def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
            self._feats[name] = out[0] if isinstance(out, (tuple, list)) else out
        return hook

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits (B, classes) and {module name: output} for a normalized batch."""
        self._feats = {}
        x = x.to(self.device)
        if self._replicate > 1:
            x = x.expand(-1, self._replicate, *x.shape[2:])
        out = self.model(x)
        logits = getattr(out, "logits", out)
        feats = {n: self._feats[n] for n in self.feature_names}
        self._feats = {}
        return logits, feats

    def to(self, device: torch.device | str) -> TorchvisionTeacher:
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def eval(self) -> TorchvisionTeacher:
        self.model.eval()
        return self

    def __repr__(self) -> str:
        return (f"TorchvisionTeacher({self.spec!r}, classes={self.num_classes}, input={self.input_shape}, "
                f"features={self.feature_names})")


def _state_dict_of(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a state_dict, unwrapped from common checkpoint layouts."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for k in _STATE_KEYS:
            if isinstance(obj.get(k), dict):
                obj = obj[k]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise KdsnnError(f"--teacher-weights {path} holds no state_dict (a dict of tensors); "
                         "save it with torch.save(model.state_dict(), path)")
    from kdsnn.checkpoint import check_tensors

    check_tensors(obj, f"--teacher-weights {path}", "state_dict")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def _head_name(model: nn.Module) -> str | None:
    """The classifier head: the last Linear (or, as in SqueezeNet, the last Conv2d)."""
    last = None
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear):
            last = n
    if last is None:
        for n, m in model.named_modules():
            if isinstance(m, nn.Conv2d):
                last = n
    return last
