"""kdsnn: knowledge distillation into spiking students, deployed through NIR to Loihi.

This package is the training side (PyTorch only). Keep this file free of heavy imports:
`compiler` and `backends` import `kdsnn.errors` / `kdsnn.io` for shared utilities.
"""

__version__ = "0.1.0"
