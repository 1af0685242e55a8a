"""kdsnn.config is the one source of each command's defaults; its objects read briefly."""

from __future__ import annotations

from dataclasses import fields

import click
import pytest

from kdsnn.config import (
    DistillConfig,
    EvaluateConfig,
    ExportConfig,
    FinetuneConfig,
    RunConfig,
)


def test_repr_names_only_what_differs_from_the_defaults() -> None:
    assert repr(ExportConfig(source="s.pt", output="out", samples=20)) == \
        "ExportConfig(source='s.pt', output='out', samples=20)"
    assert repr(RunConfig()) == "RunConfig()"
    assert len(repr(DistillConfig(output="runs/x", kd="none"))) < 60


def test_shared_fields_are_declared_once() -> None:
    """export and run read the sample options from one declaration (SampleConfig), export,
    evaluate and finetune the lowering's (HardwareConfig): same default, same help."""
    def spec(cls: type, name: str) -> tuple:
        f = next(f for f in fields(cls) if f.name == name)
        return f.default, f.metadata["help"]

    for name in ("data_dir", "download", "time_steps", "dt", "reset", "input", "batch_size", "device", "seed"):
        assert spec(ExportConfig, name) == spec(RunConfig, name), name
    for name in ("calibration", "min_weight_bits", "headroom", "input_bits", "provable_budget_bits"):
        assert spec(ExportConfig, name) == spec(EvaluateConfig, name) == spec(FinetuneConfig, name), name


@pytest.mark.parametrize("command, cls", [("export", ExportConfig), ("run", RunConfig),
                                          ("evaluate", EvaluateConfig), ("finetune", FinetuneConfig)])
def test_cli_defaults_are_the_config_defaults(command: str, cls: type) -> None:
    from kdsnn.cli import cli

    cmd = cli.commands[command]
    names = {f.name for f in fields(cls)}
    checked = 0
    for p in cmd.params:
        if isinstance(p, click.Option) and p.name in names and not p.required:
            d = getattr(cls(), p.name)
            assert (p.default if not p.multiple else tuple(p.default or ())) == d, (command, p.name)
            checked += 1
    assert checked >= 8


def test_finetune_takes_hw_under_both_names() -> None:
    from click.testing import CliRunner

    from kdsnn.cli import cli

    hw = next(p for p in cli.commands["finetune"].params if p.name == "hw")
    assert {"--hw", "--deploy-exact"} <= set(hw.opts)
    out = CliRunner().invoke(cli, ["finetune", "--help"]).output
    assert "--min-weight-bits" in out and "--headroom" in out      # the lowering's knobs, as in export


def test_finetune_refuses_an_unknown_hw_before_writing(tmp_path) -> None:
    from kdsnn.errors import KdsnnError
    from kdsnn.finetune import finetune_command

    with pytest.raises(KdsnnError, match=r"unknown hardware spec 'nochip' \(--hw\)"):
        finetune_command(student=str(tmp_path / "student.pt"), output=str(tmp_path / "ft"), hw="nochip")
    assert not (tmp_path / "ft").exists()
