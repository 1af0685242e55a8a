"""Checkpoints: round trip, and one clear error for every way a file can be wrong."""

from __future__ import annotations

import os

import pytest
import torch

from kdsnn.checkpoint import load_checkpoint, load_model, save_checkpoint
from kdsnn.errors import KdsnnError
from kdsnn.zoo import build


def _config(kind: str = "student", **kw) -> dict:
    cfg = {"kind": kind, "arch": "cnn", "width": 0.25, "num_classes": 10, "input_shape": [1, 8, 8],
           "T": 3 if kind == "student" else 1,
           "neuron": {"theta": 0.75, "surrogate": "arctan", "slope": 2.0} if kind == "student" else None,
           "dataset": "digits", "mean": [0.3], "std": [0.4], "class_names": list("0123456789"),
           "kd": "both", "kdsnn_version": "0.1.0"}
    cfg.update(kw)
    return cfg


def _saved(tmp_path, kind: str = "student", name: str = "m.pt"):
    torch.manual_seed(0)
    cfg = _config(kind)
    net = build("cnn", kind == "student", 10, (1, 8, 8), T=cfg["T"], neuron=cfg["neuron"], width=0.25)
    with torch.no_grad():  # non-default BN statistics must survive the round trip
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
    path = save_checkpoint(tmp_path / name, {"config": cfg, "model": net.state_dict(), "connectors": None})
    return path, net.eval(), cfg


@pytest.mark.parametrize("kind", ["student", "teacher"])
def test_round_trip(tmp_path, kind: str) -> None:
    path, net, cfg = _saved(tmp_path, kind)
    model, got = load_model(path, "cpu")
    assert got == cfg and not model.training and model.spiking == (kind == "student")
    assert model.T == cfg["T"]
    if kind == "student":
        neuron = model.nodes["act1"]
        assert (neuron.theta, neuron.surrogate, neuron.slope) == (0.75, "arctan", 2.0)
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x), rtol=0, atol=0)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temp files left


def test_missing_and_folder(tmp_path) -> None:
    with pytest.raises(KdsnnError, match="does not exist"):
        load_model(tmp_path / "nope.pt")
    with pytest.raises(KdsnnError, match="is a folder"):
        load_model(tmp_path)


def test_corrupt_files(tmp_path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(256))
    with pytest.raises(KdsnnError, match="corrupt"):
        load_checkpoint(junk)
    path, _, _ = _saved(tmp_path)
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(KdsnnError, match="corrupt"):
        load_checkpoint(cut)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(KdsnnError):
        load_checkpoint(empty)


def test_not_ours_and_wrong_kind(tmp_path) -> None:
    other = tmp_path / "plain.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(KdsnnError, match="not a kdsnn checkpoint"):
        load_checkpoint(other)
    torch.save(build("cnn", False, 10, (1, 8, 8)).state_dict(), other)
    with pytest.raises(KdsnnError, match="not a kdsnn checkpoint"):
        load_model(other)
    path, _, _ = _saved(tmp_path, "teacher")
    with pytest.raises(KdsnnError, match="is a teacher checkpoint; a spiking student"):
        load_model(path, kind="student")
    spath, _, _ = _saved(tmp_path, "student", "s.pt")
    with pytest.raises(KdsnnError, match="is a student checkpoint; an ANN teacher"):
        load_checkpoint(spath, kind="teacher")


def test_newer_version_and_mismatched_weights(tmp_path) -> None:
    path, net, cfg = _saved(tmp_path)
    save_checkpoint(tmp_path / "new.pt", {"config": cfg, "model": net.state_dict()})
    data = torch.load(tmp_path / "new.pt", weights_only=True)
    data["version"] = 99
    torch.save(data, tmp_path / "new.pt")
    with pytest.raises(KdsnnError, match="upgrade kdsnn"):
        load_checkpoint(tmp_path / "new.pt")
    save_checkpoint(tmp_path / "bad.pt", {"config": {**cfg, "width": 0.5}, "model": net.state_dict()})
    with pytest.raises(KdsnnError, match="does not match its own config"):
        load_model(tmp_path / "bad.pt")


def test_failed_save_keeps_previous_file(tmp_path) -> None:
    path, net, cfg = _saved(tmp_path)
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - pickling a lambda fails inside torch.save
        save_checkpoint(path, {"config": cfg, "model": net.state_dict(), "bad": lambda: 0})
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.pt"]


def test_stored_graph_is_rebuilt_exactly(tmp_path) -> None:
    """A checkpoint carrying its node list rebuilds that network, not today's zoo entry."""
    from kdsnn.checkpoint import graph_of
    from kdsnn.layers import GraphBuilder, GraphNet

    b = GraphBuilder((1, 8, 8))
    b.conv("conv1", 3, 3, stride=2)
    b.act("act1")
    b.flatten("flatten")
    b.linear("fc", 10)
    b.readout()
    torch.manual_seed(0)
    cfg = {**_config("student"), "T": 2, "width": 1.0}
    net = GraphNet(b.specs, (1, 8, 8), 10, spiking=True, T=2, neuron=cfg["neuron"],
                   feature_points=["act1"], arch="cnn").eval()
    cfg["graph"] = graph_of(net)
    save_checkpoint(tmp_path / "g.pt", {"config": cfg, "model": net.state_dict()})
    model, got = load_model(tmp_path / "g.pt")
    assert [s.name for s in model.specs] == ["conv1", "act1", "flatten", "fc", "readout"]
    assert model.feature_points == ["act1"]
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x), rtol=0, atol=0)


def test_training_curves_plot(tmp_path):
    """metrics.jsonl -> a real PNG; a truncated last line (killed run) is skipped."""
    import json

    from kdsnn.curves import plot_training, read_metrics

    m = tmp_path / "metrics.jsonl"
    recs = [{"epoch": e, "loss": 1.0 / e, "ce": 0.5 / e, "train_acc": 0.5 + e / 10, "test_acc": 0.4 + e / 10}
            for e in (1, 2, 3)]
    m.write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"epoch": 4, "lo')
    assert read_metrics(m) == recs
    png = plot_training(m, tmp_path / "training.png", title="t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # what the figure shows: weighted terms, validation accuracy, the one test point
    from kdsnn.curves import figure_training

    recs = [{"epoch": e, "loss": 8 * 0.5 / e + 0.5 * 0.25 / e, "soft": 0.5 / e, "ce": 0.25 / e,
             "weights": {"soft": 8.0, "ce": 0.5}, "train_acc": 0.5, "val_acc": 0.4 + e / 10,
             "val_n": 400} for e in (1, 2, 3)]
    fig = figure_training(recs, result={"epoch": 3, "test": {"accuracy": 0.65, "n": 1000}})
    loss_ax, acc_ax = fig.axes
    lines = {ln.get_label(): ln.get_ydata() for ln in loss_ax.get_lines()}
    assert list(lines) == ["total", "soft x 8", "ce x 0.5"]
    for i in range(3):  # the drawn terms add up to the drawn total
        assert abs(lines["soft x 8"][i] + lines["ce x 0.5"][i] - lines["total"][i]) < 1e-12
    acc = {ln.get_label(): list(ln.get_ydata()) for ln in acc_ax.get_lines()}
    assert acc["validation, 400 samples"] == pytest.approx([50.0, 60.0, 70.0])
    assert acc["test, selected epoch 3 (1,000 samples, once)"] == pytest.approx([65.0])
    (tmp_path / "empty.jsonl").write_text("")
    assert plot_training(tmp_path / "empty.jsonl", tmp_path / "x.png") is None
    assert not (tmp_path / "x.png").exists()
