"""The `kdsnn` command: one click command per verb.

Each command's body lives in the module named beside it; this file holds only the
options and the call, so `--help` is the whole interface in one place.
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
def _training_options(fn):
    """Options shared by `distill` and `train-teacher` (defaults depend on the dataset)."""
    opts = [
        click.option("--dataset", default="mnist5k", show_default=True,
                     help="mnist5k, digits (offline), mnist, fashion-mnist, cifar10, cifar100."),
        click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                     help="Folder of the torchvision datasets (default $KDSNN_DATA_DIR or ~/.cache/kdsnn/data)."),
        click.option("--download", is_flag=True, help="Allow torchvision to download the dataset."),
        click.option("--arch", default=None,
                     help="Zoo architecture: cnn, vgg11, vgg16, resnet18, resnet34, wrn16_2, wrn28_4 "
                          "(default: the dataset's)."),
        click.option("--width", type=float, default=None, help="Channel width multiplier (default 1)."),
        click.option("--epochs", type=int, default=None, help="Epochs (default: the dataset's)."),
        click.option("--batch-size", type=int, default=64, show_default=True),
        click.option("--optimizer", default="adamw", show_default=True, help="sgd or adamw."),
        click.option("--lr", type=float, default=None, help="Peak learning rate (default sgd 0.1, adamw 2e-3); cosine schedule."),
        click.option("--weight-decay", type=float, default=None, help="Default sgd 5e-4, adamw 1e-2."),
        click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same weights."),
        click.option("--device", default="cpu", show_default=True, help="cpu or cuda (AMP on CUDA)."),
        click.option("--limit-train", type=int, default=None, help="Train on the first N samples only."),
        click.option("--shift", type=int, default=None,
                     help="Random translation augmentation, in pixels (default: 2 for MNIST-like data, else 0)."),
        click.option("--resume", is_flag=True, help="Continue the run in OUTPUT from its last.pt."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bars or per-epoch lines."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


@cli.command()
@click.option("-o", "--output", "output", required=True, type=click.Path(file_okay=False),
              help="Output folder (student.pt, best.pt, last.pt, metrics.jsonl).")
@_training_options
@click.option("--kd", default="both", show_default=True,
              help="Distillation: none (baseline), response (logits), feature, both.")
@click.option("--teacher", default=None,
              help="Teacher: a kdsnn teacher .pt, a .onnx file, or torchvision:NAME. Default: train "
                   "the dataset's default teacher first (saved as OUTPUT/teacher.pt).")
@click.option("--teacher-features", default=None, help="ONNX teacher tensors for feature KD, comma separated.")
@click.option("--teacher-weights", type=click.Path(dir_okay=False), default=None,
              help="Weights file of a torchvision:NAME teacher.")
@click.option("--teacher-epochs", type=int, default=None, help="Epochs of the default teacher.")
@click.option("--connector", default="auto", show_default=True,
              help="Feature KD connectors: auto (1x1 conv/linear + BN where shapes differ) or always.")
@click.option("-T", "--time-steps", type=int, default=4, show_default=True, help="Time steps per sample.")
@click.option("--theta", type=float, default=1.0, show_default=True, help="IF threshold.")
@click.option("--surrogate", default="sigmoid", show_default=True, help="Surrogate gradient: sigmoid or arctan.")
@click.option("--slope", type=float, default=4.0, show_default=True, help="Surrogate slope.")
@click.option("--alpha", type=float, default=0.5, show_default=True, help="KD weight (response: in [0, 1]).")
@click.option("--temperature", "--tau", "temperature", type=float, default=4.0, show_default=True,
              help="Softmax temperature of response KD.")
def distill(**opts) -> None:
    """Train a spiking student with knowledge distilled from an ANN teacher.

    \b
    Examples:
      kdsnn distill --dataset mnist5k --kd both -o runs/kd
      kdsnn distill --dataset mnist5k --kd none -o runs/nokd
      kdsnn distill --teacher runs/t/teacher.pt --kd response -T 8 -o runs/r
    """
    from kdsnn.train import distill_command

    distill_command(**opts)


@cli.command("train-teacher")
@click.option("-o", "--output", "output", required=True, type=click.Path(file_okay=False),
              help="Output folder (teacher.pt, best.pt, last.pt, metrics.jsonl).")
@_training_options
@click.option("--onnx", is_flag=True, help="Also write the teacher as OUTPUT/teacher.onnx.")
def train_teacher(**opts) -> None:
    """Train an ANN teacher from the model zoo.

    \b
    Example:
      kdsnn train-teacher --dataset mnist5k --arch cnn -o runs/teacher
    """
    from kdsnn.train import train_teacher_command

    train_teacher_command(**opts)


# float path -> kdsnn/evaluate.py (kdsnn/robustness.py with --noise); --target intsim ->
# backends/evaluate.py
@cli.command()
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--target", type=click.Choice(["float", "intsim"]), default="float", show_default=True,
              help="float: the PyTorch model; intsim: the compiled integer model.")
@click.option("--noise", "noise", multiple=True,
              help="Noise as TYPE:LEVEL, level in [0, 1]: gaussian, uniform, salt_pepper, speckle, "
                   "poisson (e.g. gaussian:0.1); repeatable. With --noise, .onnx teachers are accepted too.")
@click.option("--dataset", default=None, help="Override the checkpoint's dataset.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None)
@click.option("--download", is_flag=True)
@click.option("--samples", type=int, default=None, help="Evaluate on the first N test samples.")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the noise.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("-o", "--output", "output", type=click.Path(file_okay=False), default=None,
              help="Folder for robustness.json and the accuracy-vs-noise plot.")
@click.option("-q", "--quiet", is_flag=True)
def evaluate(**opts) -> None:
    """Test accuracy of teacher or student checkpoints, clean and under noise.

    \b
    Examples:
      kdsnn evaluate runs/demo/student.pt
      kdsnn evaluate teacher.pt student_kd.pt student_nokd.pt --noise gaussian:0.2 -o rob/
      kdsnn evaluate runs/demo/student.pt --target intsim
    """
    if opts["target"] == "intsim":
        from kdsnn.backends.evaluate import evaluate_deployed

        evaluate_deployed(**opts)
    else:
        from kdsnn.evaluate import evaluate_command

        evaluate_command(**opts)


# ---------------------------------------------------------------- deployment (kdsnn/deploy.py)
@cli.command()
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("--target", "target", default="lava", show_default=True,
              help="nir (export only), reference, intsim or lava.")
@click.option("-o", "--output", "output", required=True, type=click.Path(file_okay=False),
              help="Output folder for graph.nir, the IntNet artifact, parity.json, reports.")
@click.option("--samples", type=int, default=None,
              help="Test samples to run (default: 1000; on lava the samples Lava runs, default 100).")
@click.option("--eval-samples", type=int, default=None,
              help="With --target lava: test samples for the float and intsim rungs (default 1000).")
@click.option("--calibration", type=int, default=256, show_default=True,
              help="Training samples used to choose the integer scales.")
@click.option("--dataset", default=None,
              help="Dataset to run on (needed for a .nir SOURCE without --input); nmnist reads N-MNIST's "
                   "binary files under --data-dir.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None)
@click.option("--download", is_flag=True, help="Allow torchvision to download the dataset.")
@click.option("-T", "--time-steps", "time_steps", type=int, default=None,
              help="Time steps per sample (default: the student's / the graph's own T).")
@click.option("--dt", "dt", type=float, default=None,
              help="Seconds per step, where the graph's metadata states none (snnTorch and SpikingJelly "
                   "graphs: 1e-4, Norse and Rockpool: 1e-3).")
@click.option("--reset", "reset", type=click.Choice(["zero", "subtract"]), default=None,
              help="Reset of the spiking neurons where the file cannot say (nir <= 1.0.5 files; "
                   "snnTorch's subtractive reset).")
@click.option("--input", "input", type=click.Path(dir_okay=False), default=None,
              help="Inputs FILE.npz: x (N, T, *input_shape) trains or (N, *input_shape), optional labels y.")
@click.option("--expect", "expect", type=click.Path(dir_okay=False), default=None,
              help="PEER.npz: the source framework's outputs on the same inputs (output_spikes "
                   "(N, T, C) or logits (N, C), optional spike_counts/<node>); adds rung 0.")
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
      kdsnn export cnn_sinabs.nir --reset subtract --dataset nmnist --data-dir data -T 30 \\
          --target reference -o runs/cnn
      kdsnn export graph.nir --dt 1e-4 --input x.npz --expect peer.npz --target reference -o runs/g
    """
    from kdsnn.deploy import export_command

    export_command(**opts)


@cli.command()
@click.argument("artifact", type=click.Path(file_okay=False, exists=False))
@click.option("--target", default="intsim", show_default=True, help="lava, intsim or reference.")
@click.option("--samples", type=int, default=None, help="Test samples to run.")
@click.option("--dataset", default=None, help="Dataset to run on (default: the graph's own).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None)
@click.option("-T", "--time-steps", "time_steps", type=int, default=None,
              help="Time steps per sample (default: the graph's own T).")
@click.option("--dt", "dt", type=float, default=None,
              help="Seconds per step, where the graph's metadata states none (snnTorch and SpikingJelly "
                   "graphs: 1e-4, Norse and Rockpool: 1e-3).")
@click.option("--reset", "reset", type=click.Choice(["zero", "subtract"]), default=None,
              help="Reset of the spiking neurons where the file cannot say (nir <= 1.0.5 files; "
                   "snnTorch's subtractive reset).")
@click.option("--input", "input", type=click.Path(dir_okay=False), default=None,
              help="Inputs FILE.npz: x (N, T, *input_shape) trains or (N, *input_shape), optional labels y.")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="Device for the reference backend.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-q", "--quiet", is_flag=True)
def run(**opts) -> None:
    """Run an exported folder again on a backend and print accuracy and spikes.

    \b
    Example:
      kdsnn run runs/demo/export --target intsim
    """
    from kdsnn.deploy import run_command

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
    from kdsnn.backends.registry import targets_command

    targets_command(as_json)


# ---------------------------------------------------------- reports (compiler/profile/report.py)
@cli.command()
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--compare", "compare", type=click.Path(file_okay=False), default=None,
              help="Another export folder to put side by side (needs -o).")
@click.option("-o", "--output", "output", type=click.Path(file_okay=False), default=None,
              help="With --compare: the folder for compare.md and compare.png (the runs are named by "
                   "what differs in their paths).")
def report(**opts) -> None:
    """Print (and re-render) the operations, memory and energy report of an export folder.

    \b
    Examples:
      kdsnn report runs/demo/export
      kdsnn report runs/kd/export --compare runs/nokd/export -o runs/kd-vs-nokd
    """
    from kdsnn.compiler.profile.report import report_command

    report_command(**opts)


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
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except SystemExit:
        raise


if __name__ == "__main__":
    main()
