"""Training loop on tiny runs (digits, 8x8, a few dozen samples): files, reproducibility,
resume, distillation wiring, and the errors a user can cause."""

from __future__ import annotations

import json

import pytest
import torch

from kdsnn.checkpoint import graph_of, load_checkpoint, load_model, save_checkpoint
from kdsnn.errors import KdsnnError
from kdsnn.train import train_loop
from kdsnn.train_config import make_config
from kdsnn.zoo import build

TINY = {"dataset": "digits", "arch": "cnn", "width": 0.25, "limit_train": 48, "batch_size": 16,
        "epochs": 2, "quiet": True, "seed": 1}


def _run(kind: str, out, **kw):
    cfg = make_config(kind, {**TINY, "output": str(out), **kw})
    return cfg, train_loop(cfg)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    _run("teacher", out, epochs=1)
    return out / "teacher.pt"


def test_student_run_writes_everything(tmp_path, teacher) -> None:
    cfg, res = _run("student", tmp_path, kd="both", teacher=str(teacher), time_steps=2)
    for f in ("best.pt", "last.pt", "student.pt", "metrics.jsonl", "result.json", "training.png"):
        assert (tmp_path / f).is_file()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    for r in lines:
        assert {"loss", "ce", "soft", "feat", "weights", "train_acc", "train_n", "val_acc", "val_n",
                "time_s", "lr"} <= set(r)
        assert "test_acc" not in r  # the test split is not looked at during training
        assert r["train_n"] == 48 and r["val_n"] == 144  # digits: 144 validation samples
    model, mcfg = load_model(tmp_path / "student.pt")
    # the config carries what later commands need
    for k in ("kind", "arch", "num_classes", "input_shape", "T", "neuron", "dataset", "mean", "std",
              "class_names", "kd", "kdsnn_version"):
        assert k in mcfg
    assert mcfg["T"] == 2 and mcfg["kind"] == "student" and mcfg["neuron"]["surrogate"] == "sigmoid"
    assert res["best_acc"] == max(r["val_acc"] for r in lines)
    # connectors are saved apart and never inside the exportable student
    ck = load_checkpoint(tmp_path / "student.pt")
    assert set(ck["model"]) == set(model.state_dict())
    assert ck["connectors"] is not None and all(k.startswith("maps.") for k in ck["connectors"])
    assert not any("connector" in k or k.startswith("maps.") for k in ck["model"])


def test_same_seed_same_weights_and_resume(tmp_path, teacher) -> None:
    kw = {"kd": "response", "teacher": str(teacher), "time_steps": 2}
    _run("student", tmp_path / "a", **kw)
    _run("student", tmp_path / "b", **kw)
    _run("student", tmp_path / "c", stop_after=1, **kw)  # interrupted after epoch 1 ...
    assert len((tmp_path / "c" / "metrics.jsonl").read_text().splitlines()) == 1
    _run("student", tmp_path / "c", resume=True, **kw)  # ... and resumed
    a, b, c = (load_checkpoint(tmp_path / d / "last.pt")["model"] for d in "abc")
    for k in a:
        assert torch.equal(a[k], b[k]), k
        assert torch.equal(a[k], c[k]), k
    assert len((tmp_path / "c" / "metrics.jsonl").read_text().splitlines()) == 2
    _, other = _run("student", tmp_path / "d", epochs=1, **{**kw, "seed": 2})
    d = load_checkpoint(tmp_path / "d" / "last.pt")["model"]
    assert not all(torch.equal(a[k], d[k]) for k in a)


def test_selection_on_validation_and_one_test_evaluation(tmp_path) -> None:
    """best.pt / student.pt are the epoch of the best validation accuracy; result.json's test
    accuracy is that model's on the whole test split."""
    from kdsnn.evaluate import evaluate_model

    _, res = _run("student", tmp_path, kd="none", epochs=3, time_steps=2)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    best = max(range(3), key=lambda i: (lines[i]["val_acc"], -i))  # first epoch of the best
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["epoch"] == lines[best]["epoch"] == load_checkpoint(tmp_path / "student.pt")["epoch"]
    assert result["selected_by"] == "validation accuracy"
    assert result["val"]["accuracy"] == lines[best]["val_acc"] and result["val"]["n"] == 144
    model, cfg = load_model(tmp_path / "student.pt")
    ev = evaluate_model(model, cfg, "digits")
    assert result["test"] == {"accuracy": ev["accuracy"], "correct": ev["correct"], "n": 360,
                              "loss": pytest.approx(ev["loss"]), "split": "test"}
    assert load_checkpoint(tmp_path / "student.pt")["result"] == result


def test_patience_stops_early(tmp_path) -> None:
    from kdsnn import selection

    assert selection.stop_early(5, 3, 2) and not selection.stop_early(4, 3, 2)
    assert not selection.stop_early(50, 1, None)
    # lr 0: nothing improves after epoch 1, so --patience 1 stops after epoch 2
    _, res = _run("student", tmp_path, kd="none", epochs=5, time_steps=2, lr=1e-12, patience=1)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and res["result"]["stopped_early"] and res["result"]["epochs_run"] == 2


def test_resume_with_more_epochs_extends_a_finished_run(tmp_path) -> None:
    _run("student", tmp_path, kd="none", epochs=1, time_steps=2)
    _, res = _run("student", tmp_path, kd="none", epochs=2, time_steps=2, resume=True)
    assert [json.loads(x)["epoch"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert load_checkpoint(tmp_path / "last.pt")["config"]["train"]["epochs"] == 2
    assert res["result"]["epochs"] == 2 and res["result"]["epochs_run"] == 2
    with pytest.raises(KdsnnError, match="has finished 2 epochs, more than --epochs 1"):
        _run("student", tmp_path, kd="none", epochs=1, time_steps=2, resume=True)


def test_deterministic_mode_gives_identical_weights(tmp_path) -> None:
    """--deterministic: deterministic kernels and one thread, whatever the thread count before."""
    from kdsnn import determinism

    prev = determinism.enable()
    determinism.restore(prev)
    try:
        torch.set_num_threads(2)
        _run("student", tmp_path / "a", kd="none", epochs=1, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == 1
        determinism.restore(prev)
        _run("student", tmp_path / "b", kd="none", epochs=1, deterministic=True)
    finally:
        determinism.restore(prev)
    a, b = (load_checkpoint(tmp_path / d / "last.pt") for d in "ab")
    assert a["config"]["train"]["deterministic"] and a["config"]["train"]["threads"] == 1
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert not torch.are_deterministic_algorithms_enabled()


def test_resume_refuses_other_settings(tmp_path) -> None:
    _run("student", tmp_path, kd="none", epochs=1)
    with pytest.raises(KdsnnError, match="--resume.*T="):
        _run("student", tmp_path, kd="none", epochs=1, resume=True, time_steps=8)
    with pytest.raises(KdsnnError, match="nothing|does not exist"):
        _run("student", tmp_path / "empty", kd="none", epochs=1, resume=True)


def test_kd_none_needs_no_teacher_and_features_match_other_arch(tmp_path, teacher) -> None:
    _run("student", tmp_path / "none", kd="none", epochs=1)
    # a wider student than the teacher: 1x1 conv / linear connectors appear
    _run("student", tmp_path / "wide", kd="feature", teacher=str(teacher), width=0.5, epochs=1)
    ck = load_checkpoint(tmp_path / "wide" / "student.pt")
    shapes = {k: tuple(v.shape) for k, v in ck["connectors"].items() if k.endswith(".weight")}
    assert shapes["maps.act1.0.weight"] == (8, 16, 1, 1)  # student 16 ch -> teacher 8 ch, 1x1 conv
    assert shapes["maps.act3.0.weight"] == (32, 64)       # vectors: Linear + BN1d


def test_teacher_mismatches_are_one_line_errors(tmp_path, teacher) -> None:
    # a teacher for another input shape (digits 8x8 teacher, mnist5k student)
    with pytest.raises(KdsnnError, match="inputs of shape"):
        _run("student", tmp_path / "x", dataset="mnist5k", kd="response", teacher=str(teacher))
    # a teacher with another class count
    cfg = load_checkpoint(teacher)["config"]
    net = build("cnn", False, 5, (1, 8, 8), width=0.25)
    save_checkpoint(tmp_path / "t5.pt", {"config": {**cfg, "num_classes": 5, "graph": graph_of(net)},
                                         "model": net.state_dict()})
    with pytest.raises(KdsnnError, match="5 classes but the dataset has 10"):
        _run("student", tmp_path / "y", kd="response", teacher=str(tmp_path / "t5.pt"))
    # a student where a teacher is expected
    _run("student", tmp_path / "s", kd="none", epochs=1)
    with pytest.raises(KdsnnError, match="is a student checkpoint"):
        _run("student", tmp_path / "z", kd="response", teacher=str(tmp_path / "s" / "student.pt"))
    with pytest.raises(KdsnnError, match="does not exist"):
        _run("student", tmp_path / "z", kd="response", teacher=str(tmp_path / "missing.pt"))


def test_nan_loss_stops_and_keeps_earlier_checkpoints(tmp_path) -> None:
    _run("student", tmp_path, kd="none", epochs=1)
    before = (tmp_path / "student.pt").read_bytes()
    with pytest.raises(KdsnnError, match="loss became (nan|inf)"):
        _run("student", tmp_path, kd="none", epochs=1, optimizer="sgd", lr=1e38)
    assert (tmp_path / "student.pt").read_bytes() == before


def test_bad_options(tmp_path) -> None:
    for kw, msg in [({"dataset": "imagenet"}, "unknown dataset"), ({"arch": "alexnet"}, "unknown architecture"),
                    ({"kd": "logit"}, "unknown --kd"), ({"optimizer": "adam"}, "--optimizer"),
                    ({"epochs": 0}, "--epochs"), ({"lr": -1.0}, "--lr"), ({"time_steps": 0}, "time-steps"),
                    ({"surrogate": "relu"}, "--surrogate"), ({"limit_train": 0}, "--limit-train"),
                    ({"connector": "never"}, "--connector"), ({"batch_size": 0}, "--batch-size"),
                    ({"patience": -1}, "--patience"), ({"progress": "fancy"}, "--progress")]:
        with pytest.raises(KdsnnError, match=msg):
            make_config("student", {**TINY, "output": str(tmp_path), **kw})


def test_random_shift_translates_and_pads_with_background() -> None:
    from kdsnn.train_epoch import random_shift

    torch.manual_seed(0)
    x = torch.arange(3 * 2 * 5 * 5, dtype=torch.float32).view(3, 2, 5, 5)
    bg = torch.tensor([-1.0, -2.0]).view(1, 2, 1, 1)
    y = random_shift(x, 2, bg)
    assert y.shape == x.shape
    for i in range(3):
        found = False
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                ref = bg.expand(1, 2, 9, 9).clone()[0]
                ref[:, 2:7, 2:7] = x[i]
                if torch.equal(ref[:, 2 + dy:7 + dy, 2 + dx:7 + dx], y[i]):
                    found = True
        assert found, i
