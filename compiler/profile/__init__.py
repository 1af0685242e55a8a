"""The profiler: what one inference of an IntNet costs. `build.build_report` assembles the
report from `synapses` (structure), `counting` (a run), `mapping` (cores), `costs` (memory,
energy under the `energy` models) and `ann` (float networks); `report` and `plots` render it."""
