"""The `kdsnn` command: one click command per verb.

Each command's body lives in the module named beside it; this file holds only the
options and the call, so `--help` is the whole interface in one place.
"""

from __future__ import annotations

import sys

import click

from kdsnn import __version__
from kdsnn.cli_options import (
    DATASET_NAMES,
    PROGRESS_MODES,
    lowering_options,
    sample_options,
    training_options,
)
from kdsnn.config import (
    DistillConfig,
    EvaluateConfig,
    ExportConfig,
    FinetuneConfig,
    RunConfig,
    cli_option,
    default,
)
from kdsnn.errors import KdsnnError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _Ordered(click.Group):
    """Commands listed in workflow order (train-teacher first), with summaries that fit."""

    ORDER = ("train-teacher", "distill", "finetune", "evaluate", "export", "run", "report", "targets")

    def list_commands(self, ctx: click.Context) -> list[str]:
        rank = {n: i for i, n in enumerate(self.ORDER)}
        return sorted(self.commands, key=lambda n: rank.get(n, len(rank)))


@click.group(cls=_Ordered, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="kdsnn")
def cli() -> None:
    """kdsnn: distil spiking students from ANN teachers and deploy them to Loihi via NIR.

    \b
    Typical use:
      kdsnn distill --dataset mnist5k --arch cnn --kd both -o runs/demo
      kdsnn export runs/demo/student.pt --target lava -o runs/demo/export
    """


# ---------------------------------------------------------------- training (kdsnn/train.py)
@cli.command(short_help='Train a spiking student, distilled from an ANN teacher.')
@cli_option(DistillConfig, "output", "-o", "--output", required=True, type=click.Path(file_okay=False),
            default=None)
@training_options
@cli_option(DistillConfig, "kd", "--kd", type=click.Choice(["none", "response", "feature", "both"]))
@cli_option(DistillConfig, "teacher", "--teacher")
@cli_option(DistillConfig, "teacher_features", "--teacher-features")
@cli_option(DistillConfig, "teacher_weights", "--teacher-weights", type=click.Path(dir_okay=False))
@cli_option(DistillConfig, "teacher_epochs", "--teacher-epochs", type=int)
@cli_option(DistillConfig, "connector", "--connector", type=click.Choice(["auto", "always"]))
@cli_option(DistillConfig, "time_steps", "-T", "--time-steps", type=int)
@cli_option(DistillConfig, "theta", "--theta", type=float)
@cli_option(DistillConfig, "surrogate", "--surrogate", type=click.Choice(["sigmoid", "arctan"]))
@cli_option(DistillConfig, "slope", "--slope", type=float)
@cli_option(DistillConfig, "neuron", "--neuron", type=click.Choice(["if", "lif"]))
@cli_option(DistillConfig, "beta", "--beta", type=float)
@cli_option(DistillConfig, "tau_mem", "--tau-mem", type=float)
@cli_option(DistillConfig, "learn_beta", "--learn-beta")
@cli_option(DistillConfig, "reset", "--reset", type=click.Choice(["zero", "subtract"]))
@cli_option(DistillConfig, "encoding", "--encoding", type=click.Choice(["direct", "rate"]))
@cli_option(DistillConfig, "alpha", "--alpha", type=float)
@cli_option(DistillConfig, "temperature", "--temperature", "--tau", type=float)
@click.option("--deploy-exact", "deploy_exact", default=None, is_flag=False,
              flag_value=default(FinetuneConfig, "hw"), metavar="HW",
              help="Then fine-tune the student with HW's integer arithmetic in its forward (a hardware "
                   f"spec, as --hw of `kdsnn finetune`; alone: {default(FinetuneConfig, 'hw')}) into "
                   "OUTPUT/exact/: rung 3 of its export is exact.")
@click.option("--exact-epochs", type=int, default=None,
              help=f"Epochs of the --deploy-exact fine-tuning (default {default(FinetuneConfig, 'epochs')}).")
def distill(**opts) -> None:
    """Train a spiking student with knowledge distilled from an ANN teacher.

    \b
    Examples:
      kdsnn distill --dataset mnist5k --kd both -o runs/kd
      kdsnn distill --dataset mnist5k --kd none -o runs/nokd
      kdsnn distill --teacher runs/t/teacher.pt --kd response -T 8 -o runs/r
      kdsnn distill --dataset mnist5k --kd both --deploy-exact loihi -o runs/exact
    """
    from kdsnn.train import distill_command

    hw, epochs = opts.pop("deploy_exact"), opts.pop("exact_epochs")
    res = distill_command(**opts)
    if hw:
        from pathlib import Path

        from kdsnn.finetune import finetune_command

        finetune_command(student=res["path"], hw=hw, epochs=epochs,
                         output=str(Path(opts["output"]) / "exact"), quiet=opts.get("quiet"),
                         device=opts.get("device"), data_dir=opts.get("data_dir"),
                         download=opts.get("download"), resume=opts.get("resume"))


@cli.command(short_help="Fine-tune a student in the deployed integer arithmetic.")
@click.argument("student", type=click.Path(dir_okay=False))
@cli_option(FinetuneConfig, "hw", "--hw", "--deploy-exact")
@cli_option(FinetuneConfig, "output", "-o", "--output", required=True, type=click.Path(file_okay=False),
            default=None)
@cli_option(FinetuneConfig, "epochs", "--epochs", type=int)
@cli_option(FinetuneConfig, "lr", "--lr", type=float)
@cli_option(FinetuneConfig, "kd", "--kd", type=click.Choice(["none", "response", "feature", "both"]))
@cli_option(FinetuneConfig, "teacher", "--teacher")
@lowering_options(FinetuneConfig, hw=False)
@cli_option(FinetuneConfig, "batch_size", "--batch-size", type=int)
@cli_option(FinetuneConfig, "seed", "--seed", type=int)
@cli_option(FinetuneConfig, "device", "--device")
@cli_option(FinetuneConfig, "data_dir", "--data-dir", type=click.Path(file_okay=False))
@cli_option(FinetuneConfig, "download", "--download")
@cli_option(FinetuneConfig, "resume", "--resume")
@cli_option(FinetuneConfig, "quiet", "-q", "--quiet")
def finetune(**opts) -> None:
    """Fine-tune a student so its PyTorch forward is the chip's integer run, spike for spike.

    \b
    The lowering's scales are fixed from calibration; the forward then uses the hardware's
    integer weights, thresholds, biases, state widths and reset, with straight-through
    gradients, so the student's distillation losses still apply. Its export checks rung 3
    exact: every layer's spikes at every step and the integer logits equal intsim's.

    \b
    Example:
      kdsnn finetune runs/demo/student.pt --hw loihi -o runs/demo/exact
    """
    from kdsnn.finetune import finetune_command

    finetune_command(**opts)


@cli.command("train-teacher", short_help='Train an ANN teacher from the model zoo.')
@click.option("-o", "--output", "output", required=True, type=click.Path(file_okay=False),
              help="Output folder: teacher.pt (selected on validation), best.pt, last.pt, metrics.jsonl, "
                   "result.json, training.png.")
@training_options
@click.option("--onnx", is_flag=True, help="Also write the teacher as OUTPUT/teacher.onnx.")
def train_teacher(**opts) -> None:
    """Train an ANN teacher from the model zoo.

    \b
    Example:
      kdsnn train-teacher --dataset mnist5k --arch cnn -o runs/teacher
    """
    from kdsnn.train import train_teacher_command

    train_teacher_command(**opts)


# float path -> kdsnn/evaluate.py (kdsnn/robustness.py with --noise); --target BACKEND ->
# kdsnn/evaluate_deployed.py
@cli.command(short_help='Accuracy of checkpoints, clean and under noise.')
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(dir_okay=False))
@cli_option(EvaluateConfig, "target", "--target")
@lowering_options(EvaluateConfig)
@cli_option(EvaluateConfig, "noise", "--noise", multiple=True, default=None, show_default=False)
@cli_option(EvaluateConfig, "dataset", "--dataset", type=click.Choice(DATASET_NAMES))
@cli_option(EvaluateConfig, "data_dir", "--data-dir", type=click.Path(file_okay=False))
@cli_option(EvaluateConfig, "download", "--download")
@cli_option(EvaluateConfig, "samples", "--samples", type=int)
@cli_option(EvaluateConfig, "batch_size", "--batch-size", type=int)
@cli_option(EvaluateConfig, "device", "--device")
@cli_option(EvaluateConfig, "seed", "--seed", type=int)
@cli_option(EvaluateConfig, "as_json", "--json")
@cli_option(EvaluateConfig, "output", "-o", "--output", type=click.Path(file_okay=False))
@cli_option(EvaluateConfig, "progress", "--progress", type=click.Choice(PROGRESS_MODES))
@cli_option(EvaluateConfig, "quiet", "-q", "--quiet")
def evaluate(**opts) -> None:
    """Test accuracy of teacher or student checkpoints, clean and under noise.

    \b
    Examples:
      kdsnn evaluate runs/demo/student.pt
      kdsnn evaluate teacher.pt student_kd.pt student_nokd.pt --noise gaussian:0.2 -o rob/
      kdsnn evaluate runs/demo/student.pt --target intsim --hw loihi
    """
    from kdsnn.distributed import is_main
    from kdsnn.evaluate import evaluate_text
    from kdsnn.outlock import output_lock
    from kdsnn.progress import resolve

    opts["quiet"] = resolve(opts.pop("progress"), opts["quiet"]) != "bars"  # bars only; lines: no bars
    with output_lock(opts["output"] or None, "evaluate"):
        if opts["target"] is not None:
            from kdsnn.evaluate_deployed import evaluate_deployed

            res = evaluate_deployed(**opts)
        else:
            from kdsnn.evaluate import evaluate_command

            res = evaluate_command(**{**opts, "target": "float"})
    if is_main():
        click.echo(evaluate_text(res, opts["as_json"], opts["output"]))


# ------------------------------------------------ deployment (kdsnn/deploy.py, kdsnn/rerun.py)
@cli.command(short_help='Export to NIR, lower, run on a backend, check the parity ladder.')
@click.argument("source", type=click.Path(dir_okay=False))
@cli_option(ExportConfig, "target", "--target")
@cli_option(ExportConfig, "output", "-o", "--output", required=True, type=click.Path(file_okay=False),
            default=None)
@cli_option(ExportConfig, "samples", "--samples", type=int)
@cli_option(ExportConfig, "eval_samples", "--eval-samples", type=int)
@lowering_options(ExportConfig)
@sample_options(ExportConfig)
@cli_option(ExportConfig, "expect", "--expect", type=click.Path(dir_okay=False))
@cli_option(ExportConfig, "progress", "--progress", type=click.Choice(PROGRESS_MODES))
@cli_option(ExportConfig, "quiet", "-q", "--quiet")
def export(**opts) -> None:
    """Export a student to NIR, lower it for a target, run it and check the parity ladder.

    \b
    SOURCE is a student checkpoint (.pt) or a .nir file from any framework (then give
    --dataset). --target is any backend of `kdsnn targets`: a NIR backend runs graph.nir,
    an integer backend runs the IntNet lowered for --hw. Writes graph.nir, intnet.kdsnn,
    predictions.npz, parity.json and reports.

    \b
    Example:
      kdsnn export runs/demo/student.pt --target lava --samples 200 -o runs/demo/export
      kdsnn export cnn_sinabs.nir --reset subtract --dataset nmnist --data-dir data -T 30 \\
          --target reference -o runs/cnn
      kdsnn export graph.nir --dt 1e-4 --input x.npz --expect peer.npz --target reference -o runs/g
    """
    from kdsnn.deploy import export_command
    from kdsnn.errors import ParityError
    from kdsnn.parity import PARITY_FILE

    d = export_command(**opts)
    failed = [r for r in d.rungs if r.passed is False]
    for line in (d.warnings if d.config.quiet else []):
        if not (failed and line.startswith(f"rung {failed[0].rung}")):
            click.secho(f"warning: {line}", fg="yellow", err=True)
    click.echo("\n".join(d.summary_lines()))
    if failed:  # a rung that does not stop the export (rung 3): everything is written, exit 3
        why = next((w for w in d.warnings if w.startswith(f"rung {failed[0].rung}")), f"rung {failed[0].rung} failed")
        raise ParityError(f"{why}; see {d.out / PARITY_FILE}")


@cli.command(short_help='Run an export folder again on a backend.')
@click.argument("artifact", type=click.Path(file_okay=False, exists=False))
@cli_option(RunConfig, "target", "--target")
@cli_option(RunConfig, "samples", "--samples", type=int)
@sample_options(RunConfig)
@cli_option(RunConfig, "progress", "--progress", type=click.Choice(PROGRESS_MODES))
@cli_option(RunConfig, "quiet", "-q", "--quiet")
def run(**opts) -> None:
    """Run an exported folder again on a backend and print accuracy and spikes.

    \b
    Example:
      kdsnn run runs/demo/export --target intsim
    """
    from kdsnn.rerun import run_command

    click.echo("\n".join(run_command(**opts).summary_lines()))


@cli.command(short_help='List backends and hardware specs.')
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def targets(as_json: bool) -> None:
    """List the backends (--target: every plugin, whether it is available here and why not,
    what it accepts: NIR float graph or integer IR) and the hardware specs (--hw).

    \b
    Example:
      kdsnn targets
    """
    from kdsnn.backends.registry import targets_text

    click.echo(targets_text(as_json))


# ----------------------------------------------------------------- reports (kdsnn/reporting.py)
@cli.command(short_help="Print and re-render an export's report; compare two runs.")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--compare", "compare", type=click.Path(file_okay=False), default=None,
              help="Another export folder to put side by side (needs -o).")
@click.option("-o", "--output", "output", type=click.Path(file_okay=False), default=None,
              help="Write the re-rendered report (report.json, report.md, plots/) here instead of into "
                   "FOLDER (needed when FOLDER is read-only); with --compare also compare.md and compare.png "
                   "(the runs are named by what differs in their paths).")
def report(**opts) -> None:
    """Print (and re-render) the operations, memory and energy report of an export folder.

    \b
    Examples:
      kdsnn report runs/demo/export
      kdsnn report /shared/runs/demo/export -o runs/demo-report
      kdsnn report runs/kd/export --compare runs/nokd/export -o runs/kd-vs-nokd
    """
    from kdsnn.reporting import report_command

    click.echo("\n".join(report_command(**opts).summary_lines()))


def main() -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit."""
    try:
        cli.main(standalone_mode=False)
    except KdsnnError as e:
        click.secho(f"error: {e}", fg="red", err=True)
        sys.exit(e.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt) as e:  # Ctrl-C (click wraps it in Abort)
        ki = e.__cause__ if isinstance(e, click.exceptions.Abort) else e  # a Lava run's says more
        click.echo(f"interrupted: {ki}" if str(ki or "") else "interrupted", err=True)
        sys.exit(getattr(ki, "exit_code", 130))
    except click.UsageError as e:  # a wrong flag or value: one line, like every other error
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `kdsnn`: the help, as click shows it
            click.echo(e.format_message(), err=True)
            sys.exit(e.exit_code)
        cmd = e.ctx.command_path if e.ctx else "kdsnn"
        click.secho(f"error: {e.format_message()} (see `{cmd} --help`)", fg="red", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except SystemExit:
        raise


if __name__ == "__main__":
    main()
