"""kdsnn: knowledge distillation into spiking students, deployed through NIR to Loihi.

The Python API (docs/design.md, "Python API"), imported on first use so that `import kdsnn`
stays light; the functions themselves are in kdsnn/api.py:

    import kdsnn
    s = kdsnn.distill("runs/nb", dataset="digits", kd="response", epochs=1, quiet=True)
    d = kdsnn.export(s.paths["student"], "runs/nb/export", target="intsim", quiet=True)
    d.graph, d.intnet, d.results["intsim"].logits, d.report
    r = kdsnn.run("runs/nb/export", target="reference", quiet=True)
    net = kdsnn.lower(d.graph, "loihi", calibration=64)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = {"distill": "kdsnn.api", "export": "kdsnn.api", "run": "kdsnn.api", "lower": "kdsnn.api",
        "Distilled": "kdsnn.api", "Deployment": "kdsnn.deploy", "Rerun": "kdsnn.rerun",
        "ExportConfig": "kdsnn.config", "RunConfig": "kdsnn.config", "DistillConfig": "kdsnn.config",
        "EvaluateConfig": "kdsnn.config", "LoweringConfig": "kdsnn.config",
        "KdsnnError": "kdsnn.errors", "ParityError": "kdsnn.errors"}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'kdsnn' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
