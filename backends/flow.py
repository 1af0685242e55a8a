"""The deployment flow behind `kdsnn export` and `kdsnn run` (DESIGN §2, §5).

Every stage is checked against the previous one (the parity ladder, FINN-style):
  rung 1  student (float, PyTorch) on the test samples
  rung 2  graph.nir read back and run on `reference`: same predictions, logits within 1e-4
  rung 3  IntNet on `intsim`: accuracy within 0.5 points of rung 1, per-layer spike agreement
  rung 4  Lava fixed_pt: identical to rung 3 on every sample (logits and spike counts)
A failed rung 2 or 4 raises ParityError (non-zero exit).

Contract of the pieces this flow calls (owners implement them in their modules):
  kdsnn.data.load_arrays(name, split, n, data_dir, download, seed) -> (x float32 normalized, y int64)
  kdsnn.data.dataset_info(name) -> DatasetInfo(name, input_shape, num_classes, mean, std, class_names)
  kdsnn.checkpoint.load_model(path, device) -> (GraphNet, config dict)
  compiler.export.student_to_nir(model, config) -> nir.NIRGraph (canonical, metadata set)
  compiler.nir_io.write_nir(graph, path); compiler.nir_io.read_nir(path) -> nir.NIRGraph
  compiler.nir_io.graph_meta(graph) -> dict(T, encoding, mean, std, class_names, input_shape, dataset)
  compiler.targets.load_target(name_or_path) -> TargetSpec
  compiler.lower.lower(graph, target, calibration_x) -> IntNet
  backends.registry.get_backend(name) -> Backend;  Backend.compile(net).run(x) -> RunResult
  compiler.profile.build_report(...) / compiler.report.write_reports(report, out)  (profiler issue)
"""

from __future__ import annotations

# The implementation is filled in as the stages land.
