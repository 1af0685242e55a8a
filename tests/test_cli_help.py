"""`--help` is the interface: every option says what it does and its default; fixed sets
are click Choices; the command list is in workflow order with summaries that fit."""

from __future__ import annotations

import click
from click.testing import CliRunner

from kdsnn.cli import cli

CHOICES = {("distill", "dataset"), ("distill", "arch"), ("distill", "kd"), ("distill", "optimizer"),
           ("distill", "surrogate"), ("distill", "connector"), ("distill", "progress"),
           ("train-teacher", "dataset"), ("export", "progress"), ("run", "progress"),
           ("evaluate", "dataset")}


def test_every_option_has_help_and_shows_its_default():
    for name, cmd in cli.commands.items():
        for p in cmd.params:
            if not isinstance(p, click.Option) or p.name == "help":
                continue
            assert p.help, f"{name} --{p.name} has no help"
            if p.default not in (None, "") and not p.is_flag and not p.multiple and not p.required:
                assert p.show_default, f"{name} --{p.name} hides its default {p.default!r}"
            if (name, p.name) in CHOICES:
                assert isinstance(p.type, click.Choice), f"{name} --{p.name} is not a Choice"


def test_command_list_is_in_workflow_order_and_uncut():
    out = CliRunner().invoke(cli, ["--help"], terminal_width=100).output
    listed = [ln.split()[0] for ln in out.split("Commands:")[1].splitlines() if ln.strip()]
    assert listed[:2] == ["train-teacher", "distill"]
    assert "..." not in out.split("Commands:")[1]


def test_teacher_epochs_names_its_default():
    p = next(p for p in cli.commands["distill"].params if p.name == "teacher_epochs")
    assert "mnist5k 8" in p.help
