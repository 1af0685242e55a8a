"""Noise robustness: every model sees the same noisy images, accuracies are counted exactly
(and agree with kdsnn.evaluate's independent loader path), outputs (table, JSON, plot), and
bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kdsnn.checkpoint import save_checkpoint
from kdsnn.data import dataset_info, load_arrays
from kdsnn.errors import KdsnnError
from kdsnn.robustness import (
    RobustModel,
    format_table,
    load_models,
    robustness_command,
    robustness_text,
    run_robustness,
)
from kdsnn.zoo import build

NOISE = ["gaussian:0.2", "gaussian:0.5", "salt_pepper:0.1", "uniform:0.3"]


def _centroid_model(label: str, seen: list[np.ndarray] | None = None) -> RobustModel:
    """Nearest class mean on digits' training split: a real classifier that noise hurts."""
    x, y = load_arrays("digits", "train")
    cent = np.stack([x[y == k].reshape((y == k).sum(), -1).mean(0) for k in range(10)])

    def predict(xb: np.ndarray) -> np.ndarray:
        if seen is not None:
            seen.append(xb.copy())
        d = ((xb.reshape(len(xb), 1, -1) - cent[None]) ** 2).sum(-1)
        return -d

    return RobustModel(label, predict, info={"kind": "test"}, dataset="digits",
                       input_shape=(1, 8, 8), num_classes=10)


def test_accuracy_is_exact_and_all_models_see_the_same_images():
    seen_a: list[np.ndarray] = []
    seen_b: list[np.ndarray] = []
    models = [_centroid_model("a", seen_a), _centroid_model("b", seen_b)]
    res = run_robustness(models, None, NOISE, samples=150, batch_size=64, seed=7)
    assert res["conditions"] == ["clean", *NOISE] and res["samples"] == 150
    assert len(seen_a) == len(seen_b) == 5 * 3  # 5 conditions x 3 batches
    for xa, xb in zip(seen_a, seen_b, strict=True):
        np.testing.assert_array_equal(xa, xb)
    for i, cond in enumerate(res["conditions"]):
        x, y = load_arrays("digits", "test", 150, seed=7, noise=None if cond == "clean" else cond)
        np.testing.assert_array_equal(np.concatenate(seen_a[3 * i:3 * i + 3]), x)
        hits = int((models[0].predict(x).argmax(1) == y).sum())
        assert res["models"][0]["correct"][cond] == hits
        assert res["models"][0]["accuracy"][cond] == hits / 150
    acc = res["models"][0]["accuracy"]
    assert acc["clean"] > 0.8 and acc["gaussian:0.5"] < acc["clean"]
    assert res["models"][0]["drop"]["gaussian:0.5"] == pytest.approx(acc["clean"] - acc["gaussian:0.5"])
    # another seed draws other noise
    other = run_robustness([_centroid_model("a")], None, ["gaussian:0.5"], samples=150, seed=8)
    x7, _ = load_arrays("digits", "test", 150, seed=7, noise="gaussian:0.5")
    x8, _ = load_arrays("digits", "test", 150, seed=8, noise="gaussian:0.5")
    assert not np.array_equal(x7, x8) and other["seed"] == 8


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rob")
    info = dataset_info("digits")
    paths = {}
    torch.manual_seed(0)
    for name, kind, kd in [("teacher", "teacher", "none"), ("kd", "student", "both"),
                           ("nokd", "student", "none"), ("kd2", "student", "both")]:
        m = build("cnn", kind == "student", 10, info.input_shape, T=2)
        cfg = {"kind": kind, "arch": "cnn", "num_classes": 10, "input_shape": list(info.input_shape),
               "T": 2 if kind == "student" else 1,
               "neuron": {"theta": 1.0, "surrogate": "sigmoid", "slope": 4.0} if kind == "student" else None,
               "dataset": "digits", "mean": list(info.mean), "std": list(info.std),
               "class_names": info.class_names, "kd": kd}
        (root / name).mkdir()
        paths[name] = save_checkpoint(root / name / f"{kind}.pt", {"config": cfg, "model": m.state_dict()})
        if name == "teacher":
            from kdsnn.export_onnx import export_onnx

            paths["onnx"] = export_onnx(m, root / "teacher.onnx", config=cfg)
    return paths


def test_checkpoints_side_by_side_match_evaluate_model(ckpts, tmp_path, capsys):
    from kdsnn.checkpoint import load_model
    from kdsnn.evaluate import evaluate_model

    paths = [str(ckpts[k]) for k in ("teacher", "kd", "nokd", "onnx")]
    res = robustness_command(paths, noise=NOISE[:3], samples=120, batch_size=50, seed=3,
                             output=str(tmp_path / "out"), quiet=True)
    labels = [m["label"] for m in res["models"]]
    assert labels == ["teacher cnn", "student kd=both", "student kd=none", "onnx teacher"]
    for m, p in zip(res["models"][:3], paths[:3], strict=True):
        model, cfg = load_model(p)
        for cond in res["conditions"]:
            r = evaluate_model(model, cfg, "digits", noise=None if cond == "clean" else cond,
                               samples=120, batch_size=32, seed=3)
            assert m["correct"][cond] == r["correct"], (p, cond)
    # the ONNX export of the teacher is evaluated through onnxruntime: same answers
    assert res["models"][3]["correct"] == res["models"][0]["correct"]
    assert capsys.readouterr().out == ""           # the library prints nothing; the CLI prints the text
    out = robustness_text(res, output=str(tmp_path / "out"))
    assert "student kd=none" in out and "salt_pepper:0.1" in out and "robustness.json" in out
    on_disk = json.loads((tmp_path / "out" / "robustness.json").read_text())
    assert on_disk["models"][1]["correct"] == res["models"][1]["correct"]
    assert (tmp_path / "out" / "robustness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_mode_text_is_the_result_as_json(ckpts, capsys):
    res = robustness_command([str(ckpts["kd"])], noise=["gaussian:0.1"], samples=20, as_json=True)
    assert capsys.readouterr().out == ""
    parsed = json.loads(robustness_text(res, as_json=True))
    assert parsed["dataset"] == "digits" and parsed["noise"] == [{"spec": "gaussian:0.1", "type": "gaussian",
                                                                  "level": 0.1}]


def test_equal_labels_are_disambiguated(ckpts):
    models = load_models([ckpts["kd"], ckpts["kd2"]])
    assert models[0].label != models[1].label
    assert "kd/" in models[0].label and "kd2/" in models[1].label


def test_table_layout():
    res = run_robustness([_centroid_model("centroid")], "digits", ["gaussian:0.1"], samples=10)
    lines = format_table(res).splitlines()
    assert lines[1].split() == ["model", "clean", "gaussian:0.1"]
    assert lines[3].split()[0] == "centroid" and float(lines[3].split()[1]) == 100 * res["models"][0]["accuracy"]["clean"]


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("spec, words", [("blur:0.1", "unknown noise type"), ("gaussian:2", "out of range")])
def test_bad_noise_fails_before_loading_models(spec, words, tmp_path):
    with pytest.raises(KdsnnError, match=words):
        robustness_command([str(tmp_path / "missing.pt")], noise=[spec])


def test_dataset_conflicts(ckpts, tmp_path):
    info = dataset_info("mnist5k")
    m = build("cnn", False, 10, info.input_shape)
    other = save_checkpoint(tmp_path / "m.pt", {"config": {
        "kind": "teacher", "arch": "cnn", "num_classes": 10, "input_shape": list(info.input_shape), "T": 1,
        "neuron": None, "dataset": "mnist5k", "mean": list(info.mean), "std": list(info.std),
        "class_names": info.class_names, "kd": "none"}, "model": m.state_dict()})
    with pytest.raises(KdsnnError, match="different datasets"):
        robustness_command([str(ckpts["kd"]), str(other)], noise=["gaussian:0.1"], samples=5)
    with pytest.raises(KdsnnError, match=r"takes inputs \(1, 28, 28\) but digits gives \(1, 8, 8\)"):
        robustness_command([str(other)], noise=["gaussian:0.1"], dataset="digits", samples=5)
    with pytest.raises(KdsnnError, match="but the dataset gives"):
        robustness_command([str(ckpts["onnx"])], noise=["gaussian:0.1"], dataset="mnist5k", samples=5)


@pytest.mark.slow
def test_cli_evaluate_with_noise(ckpts, tmp_path):
    base = [sys.executable, "-m", "kdsnn", "evaluate", str(ckpts["teacher"]), str(ckpts["nokd"]),
            "--samples", "30", "-q"]
    r = subprocess.run(base + ["--noise", "gaussian:0.1", "--noise", "uniform:0.2", "-o", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "teacher cnn" in r.stdout and "uniform:0.2" in r.stdout
    assert (tmp_path / "o" / "robustness.png").exists()
    r = subprocess.run(base + ["--noise", "blur:0.1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: unknown noise type")
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_torchrun_two_processes_give_exact_totals(ckpts, tmp_path):
    """Sharded over 2 gloo ranks (odd sample count: uneven shards) == one process, exactly."""
    import os

    single = robustness_command([str(ckpts["teacher"]), str(ckpts["kd"])], noise=["gaussian:0.3"],
                                samples=61, batch_size=16, seed=2, quiet=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(v, None)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "kdsnn", "evaluate", str(ckpts["teacher"]), str(ckpts["kd"]), "--noise",
                        "gaussian:0.3", "--samples", "61", "--batch-size", "16", "--seed", "2", "--json",
                        "-q", "-o", str(tmp_path / "o")], capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    two = json.loads(r.stdout)  # printed once (rank 0 only), so it parses as one document
    assert [m["correct"] for m in two["models"]] == [m["correct"] for m in single["models"]]
    assert two["samples"] == 61
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["robustness.json", "robustness.png"]
