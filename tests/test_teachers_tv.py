"""torchvision teachers: local weights only, head sized to the dataset, grayscale inputs,
features from forward hooks, and one clear line for every bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from kdsnn.errors import KdsnnError
from kdsnn.teachers.protocol import Teacher
from kdsnn.teachers.torchvision_teacher import TorchvisionTeacher, parse_spec


@pytest.fixture(scope="module")
def r18(tmp_path_factory) -> tuple[nn.Module, Path]:
    torch.manual_seed(0)
    m = torchvision.models.resnet18(num_classes=10).eval()
    for mod in m.modules():  # non-trivial BN statistics: eval mode must be used
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
    p = tmp_path_factory.mktemp("tv") / "r18.pth"
    torch.save(m.state_dict(), p)
    return m, p


def test_resnet_matches_torchvision_and_hooks_features(r18):
    m, p = r18
    t = TorchvisionTeacher("torchvision:resnet18", p, num_classes=10, input_shape=(3, 32, 32))
    assert isinstance(t, Teacher)
    assert t.feature_names == ["layer1", "layer2", "layer3", "layer4"]
    t.check((3, 32, 32), 10)
    assert t.feature_shapes == {"layer1": (64, 8, 8), "layer2": (128, 4, 4),
                                "layer3": (256, 2, 2), "layer4": (512, 1, 1)}
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    logits, feats = t(x)
    with torch.no_grad():
        ref = m(x)
        ref_l2 = m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x))))))
    torch.testing.assert_close(logits, ref)
    torch.testing.assert_close(feats["layer2"], ref_l2)
    assert not logits.requires_grad
    with pytest.raises(KdsnnError, match="was built for"):
        t.check((1, 28, 28), 10)


def test_grayscale_with_rgb_stem_replicates_channels(r18):
    m, p = r18
    t = TorchvisionTeacher("resnet18", p, num_classes=10, input_shape=(1, 28, 28), feature_names="layer3")
    x = torch.randn(2, 1, 28, 28)
    logits, feats = t(x)
    with torch.no_grad():
        torch.testing.assert_close(logits, m(x.expand(-1, 3, -1, -1)))
    assert list(feats) == ["layer3"]


def test_one_channel_stem_from_checkpoint_dict_with_ddp_prefix(tmp_path):
    torch.manual_seed(2)
    m = torchvision.models.resnet18(num_classes=10)
    m.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    m.eval()
    p = tmp_path / "gray.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in m.state_dict().items()}}, p)
    t = TorchvisionTeacher("torchvision:resnet18", p, num_classes=10, input_shape=(1, 28, 28))
    assert t.model.conv1.in_channels == 1
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(t(x)[0], m(x))


def test_other_families_find_their_head(tmp_path):
    torch.manual_seed(3)
    m = torchvision.models.mobilenet_v3_small(num_classes=7).eval()
    p = tmp_path / "mb.pth"
    torch.save(m.state_dict(), p)
    t = TorchvisionTeacher("torchvision:mobilenet_v3_small", p, 7, (3, 32, 32), feature_names=["features.3"])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(t(x)[0], m(x))
    with pytest.raises(KdsnnError, match=r"head classifier\.3 has 7 classes but the dataset has 10"):
        TorchvisionTeacher("torchvision:mobilenet_v3_small", p, 10, (3, 32, 32))


# ------------------------------------------------------------------ bad input
def test_unknown_architecture_suggests():
    with pytest.raises(KdsnnError, match="did you mean torchvision:resnet18"):
        parse_spec("torchvision:resnet81")


def test_head_of_other_size(r18):
    _, p = r18
    with pytest.raises(KdsnnError) as e:
        TorchvisionTeacher("torchvision:resnet18", p, num_classes=100, input_shape=(3, 32, 32))
    assert "head fc has 10 classes but the dataset has 100" in str(e.value)
    t = TorchvisionTeacher("torchvision:resnet18", p, 100, (3, 32, 32), reset_head=True)
    assert t.model.fc.out_features == 100
    sd = torch.load(p)
    torch.testing.assert_close(t.model.layer4[1].conv2.weight, sd["layer4.1.conv2.weight"])


def test_weights_of_another_architecture(r18):
    _, p = r18
    with pytest.raises(KdsnnError, match="do not fit torchvision:resnet34: missing layer1.2"):
        TorchvisionTeacher("torchvision:resnet34", p, 10, (3, 32, 32))


def test_no_weights_no_download(tmp_path):
    with pytest.raises(KdsnnError, match="needs --teacher-weights FILE"):
        TorchvisionTeacher("torchvision:resnet18", None, 10, (3, 32, 32))
    with pytest.raises(KdsnnError, match="does not exist"):
        TorchvisionTeacher("torchvision:resnet18", tmp_path / "nope.pth", 10, (3, 32, 32))
    (tmp_path / "t.onnx").write_bytes(b"\x08\x07garbage")
    with pytest.raises(KdsnnError, match="not a PyTorch state_dict.*--teacher FILE.onnx"):
        TorchvisionTeacher("torchvision:resnet18", tmp_path / "t.onnx", 10, (3, 32, 32))
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(KdsnnError, match="holds no state_dict"):
        TorchvisionTeacher("torchvision:resnet18", tmp_path / "list.pt", 10, (3, 32, 32))


def test_channel_mismatch_and_bad_features(r18):
    _, p = r18
    with pytest.raises(KdsnnError, match="takes 3 channels but the dataset has 2"):
        TorchvisionTeacher("torchvision:resnet18", p, 10, (2, 32, 32))
    with pytest.raises(KdsnnError, match="nearest valid names: layer4"):
        TorchvisionTeacher("torchvision:resnet18", p, 10, (3, 32, 32), feature_names=["layer5"])


def test_too_small_input_is_one_line(tmp_path):
    torch.manual_seed(4)
    m = torchvision.models.alexnet(num_classes=10)
    p = tmp_path / "alex.pth"
    torch.save(m.state_dict(), p)
    with pytest.raises(KdsnnError, match="cannot take") as e:
        TorchvisionTeacher("torchvision:alexnet", p, 10, (1, 8, 8))
    assert "\n" not in str(e.value)


@pytest.mark.slow
def test_distill_from_torchvision_teacher(tmp_path):
    """End to end through the CLI's function: response + feature KD from hooked ResNet layers."""
    from kdsnn.checkpoint import load_checkpoint
    from kdsnn.train import distill_command

    torch.set_num_threads(1)
    torch.manual_seed(5)
    m = torchvision.models.resnet18(num_classes=10)
    m.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)  # a gray stem (weights trained on 1 channel)
    torch.save(m.state_dict(), tmp_path / "w.pth")
    distill_command(dataset="digits", epochs=1, limit_train=64, batch_size=32, output=str(tmp_path / "s"),
                    teacher="torchvision:resnet18", teacher_weights=str(tmp_path / "w.pth"), kd="both",
                    quiet=True)
    ck = load_checkpoint(tmp_path / "s" / "student.pt")
    assert ck["config"]["teacher"] == "torchvision:resnet18"
    assert ck.get("connectors")  # feature KD ran against the teacher's hooked layers
