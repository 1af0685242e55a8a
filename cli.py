"""The `kdsnn` command: one click command per verb.

Ownership while the project is being built: each command's body lives in the module
named beside it; keep this file thin (options + a call).
"""

from __future__ import annotations

import sys

import click

from kdsnn import __version__
from kdsnn.errors import KdsnnError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="kdsnn")
def cli() -> None:
    """kdsnn: distil spiking students from ANN teachers and deploy them to Loihi via NIR.

    \b
    Typical use:
      kdsnn distill --dataset mnist5k --arch cnn --kd both -o runs/demo
      kdsnn export runs/demo/student.pt --target lava -o runs/demo/export
    """


# ---------------------------------------------------------------- training (kdsnn/train.py)
# distill, train-teacher and evaluate are registered by kdsnn.commands (see bottom).

# ---------------------------------------------------------------- deployment (backends/flow.py)
@cli.command()
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("--target", "target", default="lava", show_default=True,
              help="nir (export only), reference, intsim or lava.")
@click.option("-o", "--output", "output", required=True, type=click.Path(file_okay=False),
              help="Output folder for graph.nir, the IntNet artifact, parity.json, reports.")
@click.option("--samples", type=int, default=None,
              help="Test samples to run (default: 1000 for intsim/reference, 100 for lava).")
@click.option("--calibration", type=int, default=256, show_default=True,
              help="Training samples used to choose the integer scales.")
@click.option("--dataset", default=None, help="Dataset to run on (needed for a .nir SOURCE).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None)
@click.option("--download", is_flag=True, help="Allow torchvision to download the dataset.")
@click.option("--hw", "hw", default="loihi", show_default=True,
              help="Hardware target spec: a built-in name or a spec file (JSON/TOML).")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="Device for float stages.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def export(**opts) -> None:
    """Export a student to NIR, lower it for a target, run it and check the parity ladder.

    \b
    SOURCE is a student checkpoint (.pt) or a .nir file from any framework (then give
    --dataset). Writes graph.nir, intnet.kdsnn, predictions.npz, parity.json and reports.

    \b
    Example:
      kdsnn export runs/demo/student.pt --target lava --samples 200 -o runs/demo/export
    """
    from backends.flow import export_command

    export_command(**opts)


@cli.command()
@click.argument("artifact", type=click.Path(file_okay=False, exists=False))
@click.option("--target", default="intsim", show_default=True, help="lava, intsim or reference.")
@click.option("--samples", type=int, default=None, help="Test samples to run.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None)
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-q", "--quiet", is_flag=True)
def run(**opts) -> None:
    """Run an exported folder again on a backend and print accuracy and spikes.

    \b
    Example:
      kdsnn run runs/demo/export --target intsim
    """
    from backends.flow import run_command

    run_command(**opts)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def targets(as_json: bool) -> None:
    """List every backend plugin, whether it is available here (and why not), and what it
    accepts (NIR float graph or integer IR).

    \b
    Example:
      kdsnn targets
    """
    from backends.registry import targets_command

    targets_command(as_json)


def _register_optional() -> None:
    """Commands whose modules are owned by other parts of the code base."""
    try:
        from kdsnn.commands import register as reg_train
    except ImportError:  # pragma: no cover - during bring-up only
        reg_train = None
    if reg_train:
        reg_train(cli)
    try:
        from compiler.report_cli import register as reg_report
    except ImportError:  # pragma: no cover
        reg_report = None
    if reg_report:
        reg_report(cli)


_register_optional()


def main() -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit."""
    try:
        cli.main(standalone_mode=False)
    except KdsnnError as e:
        click.secho(f"error: {e}", fg="red", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except SystemExit:
        raise


if __name__ == "__main__":
    main()
