"""Model selection on the validation split, and the one test evaluation of the selected model.

The training loop evaluates the validation split (kdsnn.data, carved from the training
file) after every epoch; the epoch with the best validation accuracy is `best.pt` and,
when the run ends, `student.pt` / `teacher.pt`. Only then is the test split evaluated,
once, on that model: the number `distill`, `train-teacher`, result.json and the README
report as test accuracy. `--patience N` stops a run after N epochs without a better
validation accuracy.

result.json (next to metrics.jsonl):
  selected_by   "validation accuracy"
  epoch         the selected epoch;  epochs_run, epochs (planned), stopped_early
  val, test     {"accuracy", "correct", "n", "loss", "split"}  (test: of the selected model)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdsnn.outputs import fmt_accuracy

RESULT_FILE = "result.json"


def epoch_line(kind: str, epoch: int, epochs: int, loss: float, terms: str, train_acc: float,
               n_train: int, val: dict[str, Any], seconds: float, improved: bool) -> str:
    """One line per epoch: the loss as the sum of its weighted terms, and both accuracies
    with their samples."""
    return (f"{kind} epoch {epoch}/{epochs}: loss {loss:.4f} = {terms} | train "
            f"{fmt_accuracy(train_acc, int(n_train), 'train')}, running | val "
            f"{fmt_accuracy(val['accuracy'], int(val['n']), 'val')}"
            f"{'  best so far' if improved else ''} [{seconds:.1f}s]")


def stop_early(epoch: int, best_epoch: int, patience: int | None) -> bool:
    """True when `patience` epochs have passed without a better validation accuracy."""
    return bool(patience) and epoch - best_epoch >= int(patience)


def result_record(cfg: dict[str, Any], best_epoch: int, epochs_run: int, val: dict[str, Any],
                  test: dict[str, Any], stopped_early: bool) -> dict[str, Any]:
    """What result.json holds (module docstring)."""
    keep = ("accuracy", "correct", "n", "loss")
    return {"kind": cfg["kind"], "arch": cfg.get("arch"), "dataset": cfg.get("dataset"),
            "kd": cfg.get("kd"), "selected_by": "validation accuracy", "epoch": int(best_epoch),
            "epochs_run": int(epochs_run), "epochs": int(cfg["train"]["epochs"]),
            "stopped_early": bool(stopped_early),
            "val": {**{k: val[k] for k in keep if k in val}, "split": "val"},
            "test": {**{k: test[k] for k in keep if k in test}, "split": "test"},
            "note": "test evaluated once, on the model selected by validation accuracy"}


def result_line(what: str, result: dict[str, Any], path: str | Path) -> str:
    """'student cnn (kd=both): epoch 3 of 3 selected by validation accuracy 97.25 % (400 val
    samples); test accuracy 96.80 % (1,000 test samples), evaluated once -> student.pt'."""
    v, t = result["val"], result["test"]
    stop = f", stopped early after {result['epochs_run']}" if result.get("stopped_early") else ""
    return (f"{what}: epoch {result['epoch']} of {result['epochs']}{stop} selected by validation accuracy "
            f"{fmt_accuracy(v['accuracy'], int(v['n']), 'val')}; test accuracy "
            f"{fmt_accuracy(t['accuracy'], int(t['n']), 'test')}, evaluated once on it -> {path}")


def check_extension(old_epochs: int, new_epochs: int, done: int, last: Path) -> None:
    """`--resume --epochs N` may extend a run (N above the epochs done), never cut it short."""
    from kdsnn.errors import KdsnnError

    if new_epochs < done:
        raise KdsnnError(f"--resume: {last} has finished {done} epochs, more than --epochs {new_epochs}; "
                         f"give --epochs {done} or more (the run was planned for {old_epochs})")
