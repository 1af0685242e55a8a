"""`kdsnn evaluate CKPT... --target intsim`: accuracy of what is deployed, clean and under noise.

Each student checkpoint is exported to NIR, lowered for the target (Loihi by default) with
calibration images from the training split, and run on intsim, the bit-accurate integer
simulator. Its float student is evaluated beside it on the very same (noisy) images, so
the table shows what deployment costs and whether robustness survives it. Teachers (which
cannot be deployed) are evaluated in float, for comparison. Noise, tables, JSON and plots
are those of `kdsnn.robustness` (the float `--noise` evaluation), so both read alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kdsnn.errors import KdsnnError

DEFAULT_CALIBRATION = 256


def deployed_model(path: str | Path, target: str = "loihi", calibration: int = DEFAULT_CALIBRATION,
                   data_dir: str | None = None, download: bool = False, batch_size: int = 256,
                   dataset: str | None = None) -> tuple[Any, Any, dict[str, Any]]:
    """(IntNet, intsim executable, checkpoint config) for a student checkpoint."""
    from kdsnn.backends.intsim import IntSimBackend
    from kdsnn.compiler.export import student_to_nir

    from kdsnn.checkpoint import load_model
    from kdsnn.deploy import lower_for_target

    model, cfg = load_model(path, "cpu")
    if cfg.get("kind") != "student":
        raise KdsnnError(f"{path} is a {cfg.get('kind')} checkpoint; only spiking students can be deployed "
                         "to intsim (evaluate teachers with --target float)")
    ds = dataset or cfg.get("dataset")
    if not ds:
        raise KdsnnError(f"{path} names no dataset; give --dataset")
    if calibration <= 0:
        raise KdsnnError(f"calibration needs at least one sample, got {calibration}")
    net = lower_for_target(student_to_nir(model, cfg), ds, target, calibration, data_dir, download)
    return net, IntSimBackend().compile(net, batch_size=batch_size), cfg


def evaluate_deployed(checkpoints: Sequence[str] = (), target: str = "intsim", noise: Sequence[str] = (),
                      dataset: str | None = None, data_dir: str | None = None, download: bool = False,
                      samples: int | None = None, batch_size: int = 256, device: str = "cpu",
                      seed: int = 0, as_json: bool = False, output: str | None = None,
                      quiet: bool = False, calibration: int = DEFAULT_CALIBRATION,
                      hw_target: str = "loihi", **_: Any) -> dict[str, Any]:
    """Options as in cli.py's evaluate command; prints a table (or JSON), writes -o files."""
    from kdsnn.noise import parse_noise
    from kdsnn.robustness import RobustModel, load_models, report_robustness, run_robustness

    specs = [parse_noise(s) for s in noise]                   # bad specs fail before any work
    if samples is not None and samples <= 0:
        raise KdsnnError(f"--samples must be positive, got {samples}")
    if batch_size <= 0:
        raise KdsnnError(f"--batch-size must be positive, got {batch_size}")
    if not checkpoints:
        raise KdsnnError("give at least one checkpoint to evaluate")
    floats = load_models(checkpoints, device, dataset)
    models: list[RobustModel] = []
    for fm in floats:
        if fm.info.get("kind") != "student":
            fm.label = f"{fm.label} (float)"
            models.append(fm)
            continue
        net, exe, cfg = deployed_model(fm.path, hw_target, calibration, data_dir, download, batch_size, dataset)
        scale = float(net.readout.out_scale)

        def predict(x: np.ndarray, exe=exe, scale=scale) -> np.ndarray:
            return exe.run(x).logits.astype(np.float64) * scale

        base = fm.label
        fm.label = f"{base} (float)"
        models.append(fm)
        models.append(RobustModel(f"{base} (intsim {net.target})", predict, fm.path,
                                  {**fm.info, "target": f"intsim/{net.target}",
                                   "calibration_samples": calibration},
                                  fm.dataset, fm.input_shape, fm.num_classes))
    result = run_robustness(models, dataset, specs, samples, data_dir, download, batch_size, seed,
                            target="intsim", quiet=quiet or as_json)
    report_robustness(result, as_json, output)
    return result
