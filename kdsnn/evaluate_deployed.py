"""`kdsnn evaluate CKPT... --target BACKEND`: accuracy of what is deployed, clean and under noise.

Each student checkpoint is exported to NIR and run on the backend: an integer backend
(intsim, lava, a plugin) runs it lowered for the hardware spec (--hw, Loihi by default) with
calibration images from the training split; a NIR backend runs the graph. Its float
student is evaluated beside it on the very same (noisy) images, so the table shows what
deployment costs and whether robustness survives it. Teachers (which
cannot be deployed) are evaluated in float, for comparison. Noise, tables, JSON and plots
are those of `kdsnn.robustness` (the float `--noise` evaluation), so both read alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from kdsnn.checkpoint import load_model
from kdsnn.compiler.export import student_to_nir
from kdsnn.config import (
    EvaluateConfig,
    LoweringConfig,
    RunConfig,
    check_values,
    from_options,
)
from kdsnn.errors import KdsnnError
from kdsnn.noise import parse_noise
from kdsnn.plan import plan_for
from kdsnn.robustness import RobustModel, load_models, run_robustness, write_robustness
from kdsnn.stages import compile_backend, lower_for_target

_D = EvaluateConfig()   # the defaults of `kdsnn evaluate` (kdsnn.config)


def deployed_model(path: str | Path, target: str = "intsim", hw: str = "loihi",
                   calibration: int = _D.calibration,
                   data_dir: str | None = None, download: bool = False, batch_size: int = _D.batch_size,
                   dataset: str | None = None, lowering: LoweringConfig | None = None,
                   device: str = _D.device) -> tuple[Any, Any, dict[str, Any], Callable[[np.ndarray], np.ndarray]]:
    """(IntNet or NIR graph, executable, checkpoint config, predict) for a student checkpoint on
    any registered backend: an integer backend runs the IntNet lowered for `hw`, a NIR backend
    the exported graph. predict(x) gives float logits (an IntNet's scaled by its readout)."""
    plan = plan_for(target)
    model, cfg = load_model(path, "cpu")
    if cfg.get("kind") != "student":
        raise KdsnnError(f"{path} is a {cfg.get('kind')} checkpoint; only spiking students can be deployed "
                         f"to {target} (evaluate teachers without --target)")
    ds = dataset or cfg.get("dataset")
    if not ds:
        raise KdsnnError(f"{path} names no dataset; give --dataset")
    graph = student_to_nir(model, cfg)
    T = int(cfg.get("T") or model.T)
    run_cfg = RunConfig(batch_size=batch_size, device=device)
    if not plan.lowers:
        exe = compile_backend(target, graph, T, run_cfg)
        return graph, exe, cfg, lambda x: np.asarray(exe.run(x).logits, dtype=np.float64)
    net = lower_for_target(graph, ds, hw, calibration, data_dir, download, lowering=lowering)
    exe = compile_backend(target, net, T, run_cfg)
    scale = float(net.readout.out_scale)
    return net, exe, cfg, lambda x: exe.run(x).logits.astype(np.float64) * scale


def evaluate_deployed(checkpoints: Sequence[str] = (), target: str = "intsim", noise: Sequence[str] = (),
                      dataset: str | None = None, data_dir: str | None = None, download: bool = False,
                      samples: int | None = None, batch_size: int = _D.batch_size, device: str = _D.device,
                      seed: int = _D.seed, as_json: bool = False, output: str | None = None,
                      quiet: bool = False, calibration: int = _D.calibration,
                      hw: str = _D.hw, **lowering: Any) -> dict[str, Any]:
    """Options as in cli.py's evaluate command; writes the -o files and prints nothing (the CLI
    prints kdsnn.evaluate.evaluate_text of the result)."""
    check_values({"samples": samples, "batch_size": batch_size, "device": device, "calibration": calibration,
                  **lowering})
    specs = [parse_noise(s) for s in noise]                   # bad specs fail before any work
    if samples is not None and samples <= 0:
        raise KdsnnError(f"--samples must be positive, got {samples}")
    if batch_size <= 0:
        raise KdsnnError(f"--batch-size must be positive, got {batch_size}")
    if calibration <= 0:
        raise KdsnnError(f"--calibration must be positive, got {calibration}")
    if not checkpoints:
        raise KdsnnError("give at least one checkpoint to evaluate")
    low = from_options(LoweringConfig, {k: v for k, v in lowering.items() if k in _LOWERING})
    floats = load_models(checkpoints, device, dataset)
    models: list[RobustModel] = []
    for fm in floats:
        if fm.info.get("kind") != "student":
            fm.label = f"{fm.label} (float)"
            models.append(fm)
            continue
        net, _, cfg, predict = deployed_model(fm.path, target, hw, calibration, data_dir, download,
                                              batch_size, dataset, low, device)
        where = f"{target} {net.target}" if hasattr(net, "target") else target
        base = fm.label
        fm.label = f"{base} (float)"
        models.append(fm)
        info = {**fm.info, "target": where.replace(" ", "/")}
        if hasattr(net, "target"):
            info["calibration_samples"] = calibration
        models.append(RobustModel(f"{base} ({where})", predict, fm.path, info,
                                  fm.dataset, fm.input_shape, fm.num_classes))
    result = run_robustness(models, dataset, specs, samples, data_dir, download, batch_size, seed,
                            target=target, quiet=quiet or as_json)
    if output:
        write_robustness(result, output)
    return result


_LOWERING = {f.name for f in fields(LoweringConfig)}
