"""ONNX teachers: exact agreement with the torch model they were exported from, named
intermediate tensors as features, the checks against the dataset, and distillation from an
ONNX teacher matching distillation from the same torch teacher."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from kdsnn.errors import KdsnnError
from kdsnn.export_onnx import export_onnx
from kdsnn.teachers.onnx_teacher import OnnxTeacher
from kdsnn.zoo import build

DIGITS = (1, 8, 8)
MEAN, STD = [0.3054], [0.3760]


def _export(module: nn.Module, path: Path, shape: tuple[int, ...], dynamic: bool = True,
            output_names: list[str] | None = None) -> Path:
    module.eval()
    names = output_names or ["logits"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(2, *shape),), str(path), input_names=["x"],
                          output_names=names, dynamo=False,
                          dynamic_axes={n: {0: "b"} for n in ["x", *names]} if dynamic else None)
    return path


@pytest.fixture(scope="module")
def teacher_net() -> nn.Module:
    torch.manual_seed(0)
    m = build("cnn", False, 10, DIGITS).eval()
    # non-trivial BN statistics, so a train/eval mix-up in the export would show
    m.nodes["fc1"].bn.running_mean.uniform_(-0.5, 0.5)
    m.nodes["fc1"].bn.running_var.uniform_(0.5, 2.0)
    return m


@pytest.fixture(scope="module")
def exported(teacher_net, tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("onnx") / "teacher.onnx"
    export_onnx(teacher_net, p, config={"dataset": "digits", "mean": MEAN, "std": STD})
    return p


def test_exported_teacher_matches_torch(teacher_net, exported):
    t = OnnxTeacher(exported, input_shape=DIGITS, num_classes=10, mean=MEAN, std=STD)
    assert t.feature_names == ["act1", "act2", "act3"]  # from the file's kdsnn metadata
    assert t.feature_shapes == {"act1": (32, 8, 8), "act2": (64, 2, 2), "act3": (128,)}
    x = torch.randn(7, *DIGITS, generator=torch.Generator().manual_seed(1))
    logits, feats = t(x)
    with torch.no_grad():
        ref, ref_f = teacher_net(x, return_features="pre")
    assert logits.dtype == torch.float32 and logits.shape == (7, 10)
    torch.testing.assert_close(logits, ref, rtol=1e-5, atol=1e-5)
    for k in t.feature_names:
        torch.testing.assert_close(feats[k], ref_f[k], rtol=1e-5, atol=1e-5)
    assert min(float(v.min()) for v in feats.values()) < 0  # pre-activation, as CheckpointTeacher


def test_export_post_features_and_refusals(teacher_net, tmp_path):
    p = export_onnx(teacher_net, tmp_path / "post.onnx", features="post", feature_names=["act2"])
    t = OnnxTeacher(p)
    assert t.feature_names == ["act2"] and t.num_classes == 10 and t.input_shape == DIGITS
    x = torch.randn(3, *DIGITS)
    with torch.no_grad():
        _, ref_f = teacher_net(x, return_features=True)
    torch.testing.assert_close(t(x)[1]["act2"], ref_f["act2"], rtol=1e-5, atol=1e-5)
    with pytest.raises(KdsnnError, match="not nodes of the model"):
        export_onnx(teacher_net, tmp_path / "x.onnx", feature_names=["act9"])
    with pytest.raises(KdsnnError, match="spiking student"):
        export_onnx(build("cnn", True, 10, DIGITS), tmp_path / "s.onnx")
    assert teacher_net.feature_points == ["act1", "act2", "act3"]  # restored after export
    assert not (tmp_path / "x.onnx").exists()


class _Foreign(nn.Module):
    """A teacher from 'another framework': plain torch modules, no kdsnn naming."""

    def __init__(self, c: int = 1, classes: int = 10, hw: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 3, padding=1),
                                  nn.ReLU(), nn.Flatten(), nn.Linear(4 * hw * hw, classes))

    def forward(self, x):
        return self.body(x)


def _torch_intermediates(m: _Foreign, x: torch.Tensor) -> dict[str, torch.Tensor]:
    out, h = {}, x
    for i, layer in enumerate(m.body):
        h = layer(h)
        out[str(i)] = h
    return out


def test_foreign_model_intermediate_tensors_as_features(tmp_path):
    torch.manual_seed(3)
    m = _Foreign()
    p = _export(m, tmp_path / "foreign.onnx", DIGITS)
    g = onnx.load(str(p)).graph
    relu = [n for n in g.node if n.op_type == "Relu"]
    conv2 = [n for n in g.node if n.op_type == "Conv"][1]
    # one tensor named by tensor name, one by node name (= its first output)
    t = OnnxTeacher(p, feature_names=f"{relu[0].output[0]},{conv2.name}", input_shape=DIGITS, num_classes=10)
    x = torch.randn(5, *DIGITS)
    logits, feats = t(x)
    with torch.no_grad():
        ref = _torch_intermediates(m, x)
    torch.testing.assert_close(logits, ref["5"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(feats[relu[0].output[0]], ref["1"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(feats[conv2.name], ref["2"], rtol=1e-5, atol=1e-5)
    assert t.feature_shapes == {relu[0].output[0]: (6, 8, 8), conv2.name: (4, 8, 8)}
    assert len(onnx.load(str(p)).graph.output) == 1  # the user's file is untouched


def test_fixed_batch_model_is_served_in_chunks(tmp_path):
    torch.manual_seed(4)
    m = _Foreign()
    p = _export(m, tmp_path / "fixed.onnx", DIGITS, dynamic=False)  # batch fixed at 2
    t = OnnxTeacher(p, input_shape=DIGITS, num_classes=10)
    x = torch.randn(5, *DIGITS)
    with torch.no_grad():
        torch.testing.assert_close(t(x)[0], m(x), rtol=1e-5, atol=1e-5)


def test_flattened_input_model(tmp_path):
    torch.manual_seed(5)
    m = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    p = _export(m, tmp_path / "mlp.onnx", (64,))
    t = OnnxTeacher(p, input_shape=DIGITS, num_classes=10)
    x = torch.randn(4, *DIGITS)
    with torch.no_grad():
        torch.testing.assert_close(t(x)[0], m(x.flatten(1)), rtol=1e-5, atol=1e-5)
    with pytest.raises(KdsnnError, match="784 values per image"):
        OnnxTeacher(p, input_shape=(1, 28, 28), num_classes=10)


# ------------------------------------------------------------------ bad input
def test_not_an_onnx_file(tmp_path):
    (tmp_path / "a.onnx").write_text("this is not a model\n")
    torch.save({"w": torch.zeros(3)}, tmp_path / "b.onnx")
    for name in ("a.onnx", "b.onnx"):
        with pytest.raises(KdsnnError, match="is not an ONNX model") as e:
            OnnxTeacher(tmp_path / name)
        assert "\n" not in str(e.value)
    with pytest.raises(KdsnnError, match="does not exist"):
        OnnxTeacher(tmp_path / "missing.onnx")


def test_shape_class_and_normalization_mismatch(exported, tmp_path):
    with pytest.raises(KdsnnError, match=r"shape \(b.*, 1, 8, 8\) but the dataset gives \(B, 3, 32, 32\)"):
        OnnxTeacher(exported, input_shape=(3, 32, 32), num_classes=10)
    with pytest.raises(KdsnnError, match="outputs 10 classes but the dataset has 100"):
        OnnxTeacher(exported, input_shape=DIGITS, num_classes=100)
    with pytest.raises(KdsnnError, match="normalized with mean"):
        OnnxTeacher(exported, input_shape=DIGITS, num_classes=10, mean=[0.5], std=[0.5])

    class NHWC(nn.Module):
        def __init__(self):
            super().__init__()
            self.f = _Foreign(c=3, hw=8)

        def forward(self, x):  # (B, H, W, C)
            return self.f(x.permute(0, 3, 1, 2))

    p = _export(NHWC(), tmp_path / "nhwc.onnx", (8, 8, 3))
    with pytest.raises(KdsnnError, match="is NHWC"):
        OnnxTeacher(p, input_shape=(3, 8, 8), num_classes=10)


def test_dynamic_dims_fail_in_the_dry_run(tmp_path):
    """A model whose H, W are symbolic but whose Linear needs 8x8 fails with one line."""
    m = _Foreign()
    p = tmp_path / "dyn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m.eval(), (torch.zeros(2, *DIGITS),), str(p), input_names=["x"],
                          output_names=["y"], dynamo=False, dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}})
    with pytest.raises(KdsnnError, match="fails on a") as e:
        OnnxTeacher(p, input_shape=(1, 28, 28), num_classes=10)
    assert "\n" not in str(e.value)


def test_bad_feature_names_list_nearest(exported):
    with pytest.raises(KdsnnError) as e:
        OnnxTeacher(exported, feature_names=["act4"])
    msg = str(e.value)
    assert "'act4' is not a tensor or node" in msg and "nearest valid names: act" in msg
    with pytest.raises(KdsnnError, match="/model/act1/Relu"):
        OnnxTeacher(exported, feature_names=["relu1"])


def test_teacher_protocol_and_device(exported):
    from kdsnn.teachers.protocol import Teacher

    t = OnnxTeacher(exported).to("cpu")
    assert isinstance(t, Teacher)
    assert t.providers == ["CPUExecutionProvider"] or "CUDAExecutionProvider" not in t.providers


# ------------------------------------------------------------------ distillation
@pytest.fixture(scope="module")
def trained_teacher(tmp_path_factory) -> Path:
    from kdsnn.train import train_teacher_command

    out = tmp_path_factory.mktemp("tt")
    torch.set_num_threads(1)
    train_teacher_command(dataset="digits", epochs=1, limit_train=128, batch_size=32,
                          output=str(out), onnx=True, quiet=True)
    assert (out / "teacher.onnx").exists()
    return out


def _distill(out: Path, teacher: str | None, kd: str) -> dict[str, torch.Tensor]:
    from kdsnn.checkpoint import load_checkpoint
    from kdsnn.train import distill_command

    distill_command(dataset="digits", epochs=1, limit_train=96, batch_size=32, output=str(out),
                    teacher=teacher, kd=kd, quiet=True, seed=0)
    return load_checkpoint(out / "last.pt")["model"]


@pytest.mark.slow
@pytest.mark.parametrize("kd", ["response", "feature"])
def test_distilling_from_onnx_matches_torch_teacher(trained_teacher, tmp_path, kd):
    a = _distill(tmp_path / "pt", str(trained_teacher / "teacher.pt"), kd)
    b = _distill(tmp_path / "onnx", str(trained_teacher / "teacher.onnx"), kd)
    c = _distill(tmp_path / "none", None, "none")
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    base = max(float((a[k].float() - c[k].float()).abs().max()) for k in a)
    assert diff < 1e-4, diff
    assert base > 100 * max(diff, 1e-6), (base, diff)  # the teacher did change the student


@pytest.mark.slow
def test_cli_rejects_bad_onnx_teacher_in_one_line(tmp_path):
    bad = tmp_path / "t.onnx"
    bad.write_bytes(np.arange(100, dtype=np.uint8).tobytes())
    r = subprocess.run([sys.executable, "-m", "kdsnn", "distill", "--dataset", "digits", "--teacher", str(bad),
                        "--epochs", "1", "-o", str(tmp_path / "o"), "-q"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().startswith("error:") and "is not an ONNX model" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
