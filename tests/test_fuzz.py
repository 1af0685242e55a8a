"""Hostile inputs, generated: random bytes, truncated and mutated checkpoints, NIR files and
IntNets, and out-of-range option values, through the real CLI (`kdsnn.cli.main`, in
process). Each must end with a non-zero exit, exactly one `error:` line, no traceback, and
no file changed in an existing output folder. A mutation that leaves a file valid (a
flipped bit inside a weight) may run: then it exits 0, still without a traceback."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=12, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli(args: list[str], capsys, monkeypatch) -> tuple[int, str]:
    from kdsnn.cli import main

    monkeypatch.setattr(sys, "argv", ["kdsnn", *args])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    return code, capsys.readouterr().err


def _contract(code: int, err: str, args: list[str], may_pass: bool = False) -> None:
    assert "Traceback" not in err, (args, err)
    if code == 0 and may_pass:
        return
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code != 0, (args, err)
    assert len(errors) == 1, (args, err)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A real student, its real export folder (graph.nir, intnet.kdsnn, reports) and a
    folder of earlier outputs that no failing command may touch."""
    from test_exit_codes import _student

    from kdsnn.deploy import export_command

    root = tmp_path_factory.mktemp("fuzz")
    student = _student(root / "student.pt", 4.0)
    export_command(source=str(student), target="intsim", output=str(root / "export"), samples=8,
                   eval_samples=8, calibration=8, quiet=True)
    keep = root / "keep"
    shutil.copytree(root / "export", keep)
    return {"root": root, "student": student, "export": root / "export", "keep": keep,
            "digest": _digest(keep)}


def _mutate(data: bytes, cut: float, flips: list[tuple[float, int]]) -> bytes:
    b = bytearray(data[: max(0, int(len(data) * cut))])
    for pos, val in flips:
        if b:
            b[int(pos * (len(b) - 1))] = val
    return bytes(b)


MUTATION = st.tuples(st.floats(0.0, 1.0), st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)),
                                                    max_size=6))


@FUZZ
@given(data=st.binary(max_size=600))
def test_random_bytes_as_every_input(world, tmp_path_factory, capsys, monkeypatch, data) -> None:
    d = tmp_path_factory.mktemp("bytes")
    keep = world["keep"]
    for name, args in [("x.pt", ["evaluate", "{f}", "--samples", "4"]),
                       ("x.pt", ["export", "{f}", "--target", "intsim", "-o", str(keep)]),
                       ("x.nir", ["export", "{f}", "--target", "reference", "--dataset", "digits", "-o", str(keep)])]:
        f = d / name
        f.write_bytes(data)
        a = [s.replace("{f}", str(f)) for s in args]
        _contract(*_cli(a, capsys, monkeypatch), a)
    assert _digest(keep) == world["digest"]


@FUZZ
@given(m=MUTATION)
def test_mutated_checkpoint(world, tmp_path_factory, capsys, monkeypatch, m) -> None:
    f = tmp_path_factory.mktemp("ckpt") / "s.pt"
    f.write_bytes(_mutate(world["student"].read_bytes(), *m))
    args = ["export", str(f), "--target", "intsim", "--samples", "4", "--eval-samples", "4", "--calibration", "4",
            "-q", "-o", str(world["keep"])]
    code, err = _cli(args, capsys, monkeypatch)
    if code == 0:   # still a valid student: it wrote a new export there; put the old one back
        shutil.rmtree(world["keep"])
        shutil.copytree(world["export"], world["keep"])
    _contract(code, err, args, may_pass=True)
    assert _digest(world["keep"]) == world["digest"] or code == 0


@FUZZ
@given(m=MUTATION, which=st.sampled_from(["graph.nir", "intnet.kdsnn", "report.json"]))
def test_mutated_export_folder(world, tmp_path_factory, capsys, monkeypatch, m, which) -> None:
    folder = tmp_path_factory.mktemp("exp") / "e"
    shutil.copytree(world["export"], folder)
    f = folder / which
    f.write_bytes(_mutate(f.read_bytes(), *m))
    before = _digest(folder)
    args = ["run", str(folder), "--target", "intsim", "--samples", "4", "-q"] if which != "report.json" \
        else ["report", str(folder), "-o", str(folder.parent / "r")]
    code, err = _cli(args, capsys, monkeypatch)
    _contract(code, err, args, may_pass=True)
    assert _digest(folder) == before


def _bad_values(rule) -> st.SearchStrategy[str]:
    """Values that break a rule of kdsnn.config.RULES, as the user would type them."""
    junk = st.sampled_from(["nan", "inf", "-inf", "abc", "", "1e400", "0x10", "--"])
    if isinstance(rule, tuple):
        ints = st.one_of(st.integers(max_value=rule[1] - 1), st.integers(min_value=rule[2] + 1))
    elif rule == "int>=1":
        ints = st.integers(max_value=0)
    elif rule == "int>=0":
        ints = st.integers(max_value=-1)
    else:
        lo = {">0": st.floats(max_value=0.0), ">=0": st.floats(max_value=-1e-9), ">=1": st.floats(max_value=0.999),
              "[0,1]": st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.000001)),
              "(0,1]": st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.000001))}[rule]
        return st.one_of(junk, lo.map(repr))
    return st.one_of(junk, ints.map(str), st.sampled_from(["1.5", "-0.5"]))


COMMAND_OPTIONS = {
    "distill": ["batch_size", "epochs", "teacher_epochs", "limit_train", "patience", "shift", "lr", "weight_decay",
                "temperature", "alpha", "width", "theta", "slope", "time_steps", "beta", "tau_mem"],
    "export": ["samples", "eval_samples", "batch_size", "calibration", "time_steps", "dt", "headroom",
               "min_weight_bits", "provable_budget_bits", "input_bits"],
    "run": ["samples", "batch_size", "time_steps", "dt"],
    "evaluate": ["samples", "batch_size", "calibration", "headroom", "min_weight_bits"],
}


@st.composite
def _bad_option(draw):
    from kdsnn.config import RULES, flag

    cmd = draw(st.sampled_from(sorted(COMMAND_OPTIONS)))
    name = draw(st.sampled_from(COMMAND_OPTIONS[cmd]))
    return cmd, name, flag(name).split("/")[-1], draw(_bad_values(RULES[name]))


@settings(FUZZ, max_examples=40)
@given(case=_bad_option())
def test_bad_option_values(world, capsys, monkeypatch, case) -> None:
    cmd, name, opt, value = case
    keep = world["keep"]
    base = {"distill": ["distill", "--dataset", "digits", "--neuron", "lif" if name in ("beta", "tau_mem") else "if",
                        "-o", str(keep)],
            "export": ["export", str(world["student"]), "--target", "intsim", "-o", str(keep)],
            "run": ["run", str(world["export"]), "--target", "intsim"],
            "evaluate": ["evaluate", str(world["student"]), "--target", "intsim"]}[cmd]
    args = [*base, f"{opt}={value}"]
    before = _digest(world["export"])
    _contract(*_cli(args, capsys, monkeypatch), args)
    assert _digest(keep) == world["digest"] and _digest(world["export"]) == before
