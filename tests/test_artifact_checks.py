"""Artifacts are checked on load: an edited IntNet against its target's spec, NaN/inf in
checkpoints and NIR files by name, report.json against its schema, declared sizes against
the memory budget before anything is allocated."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
from kdsnn.compiler.intnet import INPUT, Connection, InputSpec, IntNet, Population
from kdsnn.compiler.targets import LOIHI

from kdsnn.errors import KdsnnError


def _net() -> IntNet:
    return IntNet(input=InputSpec(shape=(4,), scale=10.0, bits=8),
                  populations=[Population("out", (2,), vth=100, bias_mant=np.array([3, -3], np.int32),
                                          readout=True)],
                  connections=[Connection("fc", INPUT, "out", "dense", np.arange(-4, 4, dtype=np.int32).reshape(2, 4) * 2,
                                          graded=True)],
                  T=3, target="loihi", metadata={"arithmetic": LOIHI.arithmetic()})


def _edited(tmp_path: Path, header_edit=None, arrays_edit=None) -> Path:
    src = _net().save(tmp_path / "good.kdsnn")
    with zipfile.ZipFile(src) as z:
        header = json.loads(z.read("intnet.json"))
        arrays = {n[:-4]: np.load(io.BytesIO(z.read(n))) for n in z.namelist() if n.endswith(".npy")}
    if header_edit:
        header_edit(header)
    if arrays_edit:
        arrays_edit(arrays)
    out = tmp_path / "edited.kdsnn"
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("intnet.json", json.dumps(header))
        for k, a in arrays.items():
            buf = io.BytesIO()
            np.save(buf, a)
            z.writestr(f"{k}.npy", buf.getvalue())
    return out


def _set(path: str, value):
    def edit(h):
        *keys, last = path.split("/")
        d = h
        for k in keys:
            d = d[int(k)] if k.isdigit() else d[k]
        if value is KeyError:
            del d[last]
        else:
            d[last] = value
    return edit


def _arr(name: str, value):
    def edit(a):
        a[name] = np.asarray(value, dtype=a[name].dtype if not isinstance(value, np.ndarray) else value.dtype)
    return edit


def test_good_intnet_loads(tmp_path) -> None:
    back = IntNet.load(_net().save(tmp_path / "n.kdsnn"))
    assert back.T == 3 and back.populations[0].vth == 100


@pytest.mark.parametrize("header_edit,arrays_edit,msg", [
    (None, _arr("conn0_weight", np.full((2, 4), 2**31 - 1, np.int32)), "8-bit field"),
    (None, _arr("conn0_weight", np.full((2, 4), 100000, np.int32)), "8-bit field"),
    (None, _arr("conn0_weight", np.full((2, 4), 1.5, np.float32)), "integer array"),
    (None, _arr("pop0_bias", np.array([5000, 0], np.int32)), "13-bit mantissa"),
    (_set("populations/0/vth", -5), None, "vth -5"),
    (_set("populations/0/vth", 1 << 20), None, "17-bit threshold"),
    (_set("connections/0/num_weight_bits", 99), None, "num_weight_bits 99"),
    (_set("connections/0/weight_exp", 40), None, "weight_exp 40"),
    (_set("populations/0/bias_exp", 9), None, "bias_exp 9"),
    (_set("populations/0/du", 5000), None, "du 5000"),
    (_set("populations/0/reset", "subtract"), None, "reset 'subtract'"),
    (_set("T", 0), None, "T must be an integer >= 1"),
    (_set("T", "3"), None, "T must be an integer"),
    (_set("T", KeyError), None, "field 'T' is missing"),
    (_set("input", KeyError), None, "field 'input' is missing"),
    (_set("input/scale", float("nan")), None, "input.scale"),
    (_set("input/bits", 99), None, "input.bits"),
    (_set("populations/0/vth", KeyError), None, "vth"),
    (_set("populations/0/shape", [0]), None, "shape"),
    (_set("metadata/arithmetic/weight_bits", 16), None, "recorded arithmetic differs"),
])
def test_edited_intnet_refused_naming_the_field(tmp_path, header_edit, arrays_edit, msg) -> None:
    path = _edited(tmp_path, header_edit, arrays_edit)
    with pytest.raises(KdsnnError) as e:
        IntNet.load(path)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_nan_checkpoint_refused_naming_the_tensor(tmp_path) -> None:
    from test_exit_codes import _student

    from kdsnn.checkpoint import load_checkpoint, load_model

    p = _student(tmp_path / "s.pt", 1.0)
    data = load_checkpoint(p)
    name = next(k for k, v in data["model"].items() if v.is_floating_point())
    data["model"][name][0] = float("nan")
    bad = tmp_path / "nan.pt"
    torch.save(data, bad)
    with pytest.raises(KdsnnError, match=f"tensor {name} holds NaN"):
        load_model(bad)
    data["model"][name][0] = float("inf")
    torch.save(data, bad)
    with pytest.raises(KdsnnError, match=f"tensor {name} holds inf"):
        load_model(bad)


def _graph(w: np.ndarray) -> nir.NIRGraph:
    n_out, n_in = w.shape
    return nir.NIRGraph(nodes={"input": nir.Input(np.array([n_in])),
                               "fc": nir.Affine(w.astype(np.float32), np.zeros(n_out, np.float32)),
                               "output": nir.Output(np.array([n_out]))},
                        edges=[("input", "fc"), ("fc", "output")])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nir_non_finite_parameter_refused_naming_node(tmp_path, bad) -> None:
    from kdsnn.compiler.nir.read import read_nir

    w = np.ones((3, 4))
    w[1, 2] = bad
    path = tmp_path / "g.nir"
    nir.write(path, _graph(w))
    with pytest.raises(KdsnnError, match="node 'fc' parameter weight holds " + ("NaN" if np.isnan(bad) else "inf")):
        read_nir(path)


def test_nir_declaring_a_huge_affine_refused_before_allocating(tmp_path, monkeypatch) -> None:
    """A 100000x100000 float32 Affine (40 GB) declared in a few KB of compressed HDF5."""
    import h5py

    monkeypatch.setenv("KDSNN_MEMORY_BUDGET", "8G")   # the same on any machine

    from kdsnn.compiler.nir.read import read_nir

    path = tmp_path / "huge.nir"
    nir.write(path, _graph(np.ones((3, 4))))
    with h5py.File(path, "r+") as f:
        node = f["node/nodes/fc"]
        del node["weight"]
        node.create_dataset("weight", shape=(100000, 100000), dtype="f4", chunks=(1000, 1000),
                            compression="gzip", fillvalue=0.0)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(KdsnnError, match=r"node 'fc' parameter 'weight' of shape 100000x100000\) needs 37.3 GiB, over the memory budget"):
        read_nir(path)


def test_budget_env(monkeypatch) -> None:
    from kdsnn.budget import check_size, memory_budget

    monkeypatch.setenv("KDSNN_MEMORY_BUDGET", "2G")
    assert memory_budget() == 2 << 30
    with pytest.raises(KdsnnError, match=r"needs 3 GiB, over the memory budget of 2 GiB \(KDSNN_MEMORY_BUDGET\)"):
        check_size(3 << 30, "thing")
    monkeypatch.setenv("KDSNN_MEMORY_BUDGET", "lots")
    with pytest.raises(KdsnnError, match="not a size"):
        memory_budget()


def _report(tmp_path: Path) -> Path:
    """A real report.json, from an export of a tiny student (made once per test session)."""
    from test_exit_codes import _student

    from kdsnn.deploy import export_command

    src = _student(tmp_path / "s.pt", 4.0)
    export_command(source=str(src), target="intsim", output=str(tmp_path / "e"), samples=20, calibration=16,
                   quiet=True)
    return tmp_path / "e" / "report.json"


@pytest.fixture(scope="module")
def report_doc(tmp_path_factory) -> dict:
    return json.loads(_report(tmp_path_factory.mktemp("rep")).read_text())


@pytest.mark.parametrize("edit,msg", [
    (lambda r: r.pop("meta"), "no 'meta' section"),
    (lambda r: r.__setitem__("layers", "conv1"), "'layers' must be a JSON array"),
    (lambda r: r.__setitem__("layers", ["x"]), "layers[0] must be an object"),
    (lambda r: r.__setitem__("schema_version", 0), "schema_version 0 is not a version"),
    (lambda r: r.__setitem__("schema_version", "1"), "must be an integer, got '1' (str)"),
    (lambda r: r.__setitem__("schema_version", 99), "newer than this kdsnn reads"),
    (lambda r: r["meta"].pop("backend"), "field 'backend' is missing"),
])
def test_report_schema(tmp_path, report_doc, edit, msg) -> None:
    from kdsnn.compiler.profile.report import load_report

    doc = json.loads(json.dumps(report_doc))
    (tmp_path / "report.json").write_text(json.dumps(doc))
    load_report(tmp_path)                      # the real one reads
    edit(doc)
    (tmp_path / "report.json").write_text(json.dumps(doc))
    with pytest.raises(KdsnnError) as e:
        load_report(tmp_path)
    assert msg in str(e.value), str(e.value)


def test_spec_with_one_weight_bit_refused(tmp_path) -> None:
    """A 1-bit mixed-sign field holds no positive weight: the lowering divided by zero."""
    from kdsnn.compiler.targets import load_target

    spec = tmp_path / "one.json"
    spec.write_text(json.dumps({"name": "one", "base": "loihi", "weight_bits": 1, "num_weight_bits": 1}))
    with pytest.raises(KdsnnError, match="num_weight_bits must be at least 2"):
        load_target(str(spec))
