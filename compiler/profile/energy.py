"""Named, versioned energy models: picojoules per counted operation (docs/design.md, "Reports").

An energy model is a handful of per-event costs. The profiler counts the events (synaptic
accumulates, multiply-accumulates, neuron updates); a model only weighs them, so a new
chip or process node is a small JSON/TOML file, not code:

    E_snn = e_ac * ACs + e_mac * MACs + e_synop * SynOps
            + e_neuron_active * active updates + e_neuron_idle * idle updates
    E_ann = e_mac * ANN dense MACs            (null when the model has no e_mac)

`count` says which synapse count the model weighs: "effective" (NeuroBench Eff_ACs /
Eff_MACs: only synapses with a non-zero weight) or "all" (every stored synapse, as a
Loihi core walks its whole fan-out list whatever the weight).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from kdsnn.compiler.targets import LOIHI as LOIHI_SPEC

from kdsnn.errors import KdsnnError
from kdsnn.io import read_table

COSTS = ("e_ac_pj", "e_mac_pj", "e_synop_pj", "e_neuron_active_pj", "e_neuron_idle_pj")


@dataclass(frozen=True)
class EnergyModel:
    """Per-event energies in picojoules, with where the numbers come from."""

    name: str
    version: str
    source: str
    e_ac_pj: float = 0.0               # one accumulate (binary spike x synapse)
    e_mac_pj: float = 0.0              # one multiply-accumulate (graded input x synapse)
    e_synop_pj: float = 0.0            # one synaptic event, binary or graded (Loihi's "synaptic op")
    e_neuron_active_pj: float = 0.0    # one neuron update at a step where the neuron fires
    e_neuron_idle_pj: float = 0.0      # one neuron update at a step where it does not
    count: Literal["effective", "all"] = "effective"

    def snn_pj(self, acs: float, macs: float, active: float, idle: float) -> float:
        """Energy of one inference of the SNN from its event counts (same `count` basis)."""
        return (self.e_ac_pj * acs + self.e_mac_pj * macs + self.e_synop_pj * (acs + macs)
                + self.e_neuron_active_pj * active + self.e_neuron_idle_pj * idle)

    def ann_pj(self, ann_macs: float | None) -> float | None:
        """Energy of one dense ANN inference; None when the model prices no MAC."""
        if ann_macs is None or self.e_mac_pj == 0.0:
            return None
        return self.e_mac_pj * ann_macs

    def formula(self) -> str:
        terms = []
        if self.e_ac_pj:
            terms.append(f"{self.e_ac_pj:g} pJ x ACs")
        if self.e_mac_pj:
            terms.append(f"{self.e_mac_pj:g} pJ x MACs")
        if self.e_synop_pj:
            terms.append(f"{self.e_synop_pj:g} pJ x SynOps (ACs + MACs)")
        if self.e_neuron_active_pj:
            terms.append(f"{self.e_neuron_active_pj:g} pJ x active neuron updates")
        if self.e_neuron_idle_pj:
            terms.append(f"{self.e_neuron_idle_pj:g} pJ x idle neuron updates")
        return " + ".join(terms) + f"; synapse counts: {self.count}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "formula": self.formula()}


HOROWITZ45 = EnergyModel(
    name="horowitz45", version="1",
    source="M. Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014: "
           "45 nm, 32-bit float MAC = 4.6 pJ (mult 3.7 + add 0.9), 32-bit float add (AC) = 0.9 pJ",
    e_ac_pj=0.9, e_mac_pj=4.6, count="effective")

def energy_model_of(spec: Any) -> EnergyModel:
    """A hardware spec's own energy model (its energy_pj, priced on every stored synapse, as a
    Loihi core walks its whole fan-out list), named after the spec."""
    e = spec.energy_pj
    return EnergyModel(name=spec.name, version="1", source=spec.energy_source,
                       e_synop_pj=float(e.get("synaptic_op", 0.0)),
                       e_neuron_active_pj=float(e.get("neuron_update_active", 0.0)),
                       e_neuron_idle_pj=float(e.get("neuron_update_idle", 0.0)), count="all")


LOIHI = energy_model_of(LOIHI_SPEC)   # the numbers live in kdsnn.compiler.targets.LOIHI

BUILTIN: dict[str, EnergyModel] = {m.name: m for m in (HOROWITZ45, LOIHI)}
DEFAULT_MODELS = ("horowitz45", "loihi")


def load_energy_model(name_or_path: str | Path | EnergyModel) -> EnergyModel:
    """A built-in name (horowitz45, loihi) or a JSON/TOML file with the fields of EnergyModel."""
    if isinstance(name_or_path, EnergyModel):
        return name_or_path
    key = str(name_or_path)
    if key in BUILTIN:
        return BUILTIN[key]
    path = Path(key)
    if not path.is_file():
        raise KdsnnError(f"energy model {key!r} is neither built in ({', '.join(BUILTIN)}) "
                         "nor an existing JSON/TOML file")
    data = read_table(path, "energy model file")
    if not isinstance(data, dict):
        raise KdsnnError(f"energy model file {path} must hold one table/object of fields")
    data = data.get("energy_model", data)
    allowed = {"name", "version", "source", "count", *COSTS}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise KdsnnError(f"energy model file {path}: unknown field(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(sorted(allowed))}")
    if not any(k in data for k in COSTS):
        raise KdsnnError(f"energy model file {path} prices no event; give at least one of {', '.join(COSTS)}")
    vals: dict[str, Any] = {"name": str(data.get("name", path.stem)),
                            "version": str(data.get("version", "1")),
                            "source": str(data.get("source", f"user file {path.name}")),
                            "count": data.get("count", "effective")}
    if vals["count"] not in ("effective", "all"):
        raise KdsnnError(f"energy model file {path}: count must be 'effective' or 'all', not {vals['count']!r}")
    for k in COSTS:
        v = data.get(k, 0.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or v != v:
            raise KdsnnError(f"energy model file {path}: {k} must be a non-negative number of pJ, not {v!r}")
        vals[k] = float(v)
    return EnergyModel(**vals)
