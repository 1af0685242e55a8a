"""Hardware specs: the numbers a neuromorphic chip can hold (docs/design.md, "Integer semantics", "Hardware specs").

The lowering reads a `TargetSpec` to decide weight sets, exponents and state widths; the
profiler reads the core/chip limits and the energy constants. Built in: `loihi`, Loihi as
Lava 0.10 models it in its bit-accurate/fixed-point process models (reset to zero only),
and `loihi2`, the same plus programmable neurons (subtractive reset). A user describes
another chip in a JSON file (or TOML where `tomllib`/`tomli` is importable), either
complete or as overrides of a built-in: {"name": "mychip", "base": "loihi", "vth_bits": 16};
`--hw` names one. A field nothing in kdsnn honours is refused when the spec is loaded
(UNHONOURED; FIXED for the accumulator widths, which the lowering does not bound).

Sources of the `loihi` numbers
  - arithmetic: lava-nc 0.10.0 `lava/proc/lif/models.py` (AbstractPyLifModelFixed,
    PyLifModelBitAcc: 24-bit u/v, 12-bit du/dv, 13-bit signed bias mantissa, 3-bit bias
    exponent, 17-bit unsigned vth, <<6 MSB alignment of activation and threshold),
    `lava/proc/dense/models.py` + `lava/utils/weightutils.py` (8-bit weights clipped to
    [-256, 255] then, for mixed sign, the lowest bit truncated: even values in [-256, 254]),
    `lava/proc/conv/models.py` (PyConvModelFixed: weights used as given, weight_exp
    ignored, 24-bit signed wrap of the output).
  - weight exponent range [-8, 7]: Loihi's 4-bit signed weight exponent (Lava's Dense
    accepts any integer; we keep the hardware's range).
  - core and chip: M. Davies et al., "Loihi: A Neuromorphic Manycore Processor with
    On-Chip Learning", IEEE Micro 38(1), 2018, Table 1: 128 neuromorphic cores per chip,
    1,024 neural compartments per core, 4,096 fan-in and 4,096 fan-out axons per core,
    128 KB synaptic memory per core.
  - energy: ibid. Table 2: 23.6 pJ per synaptic spike operation (min), 52 pJ per inactive
    and 81 pJ per active neuron update, 1.7 pJ within-tile spike, 3.5 pJ per hop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from kdsnn.errors import KdsnnError
from kdsnn.io import read_table

SIGN_MODES = ("mixed", "excitatory", "inhibitory")
ENERGY_KEYS = ("synaptic_op", "neuron_update_active", "neuron_update_idle")
# Spec fields of earlier versions that nothing in kdsnn honours: refused by name, with why.
UNHONOURED = {"max_fan_out_per_core": "the core mapping checks neurons, synaptic memory and fan-in "
                                      "per core, not fan-out"}
# Fields kept at one value: the accumulator widths are Lava 0.10's (dense int32, conv 24-bit
# wrap). The lowering bounds u and v, not the accumulators (in the worst case |a| < 2^17 anyway),
# so a narrower accumulator could wrap where nothing checked it; a spec may only restate them.
FIXED = {"dense_accum_bits": 32, "conv_accum_bits": 24}
# The arithmetic intsim and the Lava backend implement (Lava 0.10's fixed-point models); a
# spec that differs here can be lowered (for a plugin that implements it) but not simulated.
SIMULATED = ("state_bits", "act_shift", "vth_shift", "decay_bits", "dense_accum_bits", "conv_accum_bits")
RESET_MODES = ("zero", "subtract")
# The fields that decide an IntNet's integer values (weights, exponents, widths, shifts,
# decays, resets, the input grid). A deployment-exact student's plan is valid for a spec as
# long as these are unchanged (compiler.lower.target_fingerprint); the name, description,
# core/chip sizes, energy constants and references do not change one spike.
ARITHMETIC_FIELDS = ("weight_bits", "num_weight_bits", "sign_modes", "weight_exp_min", "weight_exp_max",
                     "conv_weight_exp", "dense_accum_bits", "conv_accum_bits", "state_bits", "act_shift",
                     "vth_bits", "vth_shift", "decay_bits", "reset_modes", "bias_mant_bits", "bias_exp_min",
                     "bias_exp_max", "max_message_bits", "input_bits")
COSMETIC_FIELDS = ("name", "description", "neurons_per_core", "synaptic_memory_bits_per_core",
                   "max_fan_in_per_core", "cores_per_chip", "energy_pj", "energy_source", "references")


@dataclass(frozen=True, repr=False)
class TargetSpec:
    """What an integer chip can represent and how big it is."""

    name: str
    description: str = ""
    # -- synapses ----------------------------------------------------------------------
    weight_bits: int = 8                   # clip width: mixed [-2^b, 2^b-1], excit. [0, 2^b-1]
    num_weight_bits: int = 8               # kept bits; mixed drops one more LSB (even values)
    sign_modes: tuple[str, ...] = SIGN_MODES
    weight_exp_min: int = -8               # dense weight exponent range
    weight_exp_max: int = 7
    conv_weight_exp: bool = False          # False: conv connections must carry weight_exp = 0
    dense_accum_bits: int = 32             # Lava Dense: int32 dot product / channel
    conv_accum_bits: int = 24              # Lava Conv: float32 conv, signed 24-bit wrap
    # -- neurons ------------------------------------------------------------------------
    state_bits: int = 24                   # u and v
    act_shift: int = 6                     # a << 6 enters u
    vth_bits: int = 17                     # unsigned threshold mantissa; fires at v > vth << 6
    vth_shift: int = 6
    decay_bits: int = 12                   # du, dv in [0, 4095]
    reset_modes: tuple[str, ...] = ("zero",)   # "subtract" (v -= vth) needs programmable neurons
    bias_mant_bits: int = 13               # signed: [-4096, 4095]
    bias_exp_min: int = 0
    bias_exp_max: int = 7
    # -- spikes -------------------------------------------------------------------------
    max_message_bits: int = 24             # graded spike payload
    input_bits: int = 8                    # default graded input width (signed)
    # -- mapping ------------------------------------------------------------------------
    neurons_per_core: int = 1024
    synaptic_memory_bits_per_core: int = 128 * 1024 * 8
    max_fan_in_per_core: int = 4096        # input axons per core
    cores_per_chip: int = 128
    # -- energy (picojoules) ------------------------------------------------------------
    energy_pj: dict[str, float] = field(default_factory=lambda: {
        "synaptic_op": 23.6, "neuron_update_active": 81.0, "neuron_update_idle": 52.0})
    energy_source: str = ("M. Davies et al., 'Loihi: A Neuromorphic Manycore Processor with On-Chip "
                          "Learning', IEEE Micro 38(1), 2018, Table 2: synaptic spike op 23.6 pJ, "
                          "neuron update 81 pJ active / 52 pJ inactive")
    references: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (f"TargetSpec({self.name!r}: {self.weight_bits}-bit weights, {self.state_bits}-bit state, "
                f"{self.vth_bits}-bit vth, {self.neurons_per_core} neurons/core x {self.cores_per_chip} cores)")

    # -- derived numbers the lowering uses ------------------------------------------------
    def weight_range(self, sign_mode: str = "mixed") -> tuple[int, int, int]:
        """(lo, hi, step) of the representable integer weights for a sign mode."""
        b, keep = self.weight_bits, self.num_weight_bits
        if sign_mode == "mixed":
            step = 1 << (b - keep + 1)
            return -(1 << b), (1 << b) - step, step
        step = 1 << (b - keep)
        hi = (1 << b) - step
        return (0, hi, step) if sign_mode == "excitatory" else (-hi, 0, step)

    @property
    def state_max(self) -> int:
        """2^(bits-1): u wraps above it, v clips at +-(it - 1)."""
        return 1 << (self.state_bits - 1)

    @property
    def vth_max(self) -> int:
        return (1 << self.vth_bits) - 1

    @property
    def bias_mant_max(self) -> int:
        return (1 << (self.bias_mant_bits - 1)) - 1

    @property
    def decay_unity(self) -> int:
        return 1 << self.decay_bits

    def validate(self) -> TargetSpec:
        for f in ("weight_bits", "num_weight_bits", "state_bits", "vth_bits", "decay_bits",
                  "bias_mant_bits", "input_bits", "neurons_per_core", "cores_per_chip",
                  "synaptic_memory_bits_per_core", "max_fan_in_per_core", "dense_accum_bits",
                  "conv_accum_bits", "max_message_bits"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise KdsnnError(f"hardware spec {self.name}: {f} must be a positive integer, got {v!r}")
        for k, want in FIXED.items():
            if getattr(self, k) != want:
                raise KdsnnError(f"hardware spec {self.name}: {k} = {getattr(self, k)!r} is not honoured (the "
                                 f"lowering does not bound the accumulators; kdsnn supports {k} = {want} only)")
        if self.num_weight_bits < 2:   # mixed sign drops one more bit: 1 would leave no positive weight
            raise KdsnnError(f"hardware spec {self.name}: num_weight_bits must be at least 2, got {self.num_weight_bits}")
        if self.num_weight_bits > self.weight_bits:
            raise KdsnnError(f"hardware spec {self.name}: num_weight_bits {self.num_weight_bits} > weight_bits {self.weight_bits}")
        if self.weight_exp_min > self.weight_exp_max or self.bias_exp_min > self.bias_exp_max:
            raise KdsnnError(f"hardware spec {self.name}: an exponent range is empty (min > max)")
        if self.state_bits > 31 or self.vth_bits + self.vth_shift > 31:
            raise KdsnnError(f"hardware spec {self.name}: state_bits and vth_bits + vth_shift must fit 31 bits")
        if not 2 <= self.input_bits <= self.max_message_bits:
            raise KdsnnError(f"hardware spec {self.name}: input_bits must be in [2, max_message_bits={self.max_message_bits}]")
        if "zero" not in self.reset_modes or any(m not in RESET_MODES for m in self.reset_modes):
            raise KdsnnError(f"hardware spec {self.name}: reset_modes must include 'zero' and only {RESET_MODES}, "
                             f"got {list(self.reset_modes)}")
        bad = [m for m in self.sign_modes if m not in SIGN_MODES]
        if bad or "mixed" not in self.sign_modes:
            raise KdsnnError(f"hardware spec {self.name}: sign_modes must include 'mixed' and only {SIGN_MODES}, got {list(self.sign_modes)}")
        unknown = sorted(set(self.energy_pj) - set(ENERGY_KEYS))
        if unknown:
            raise KdsnnError(f"hardware spec {self.name}: energy_pj key(s) {', '.join(unknown)} are not counted by "
                             f"kdsnn's profiler (no spike-routing model); it prices {', '.join(ENERGY_KEYS)}")
        for k, v in self.energy_pj.items():
            if not isinstance(v, (int, float)) or v < 0:
                raise KdsnnError(f"hardware spec {self.name}: energy_pj[{k!r}] must be a number >= 0, got {v!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def arithmetic_fields(self) -> dict[str, Any]:
        """Every field that decides integer values (ARITHMETIC_FIELDS), JSON-ready."""
        return {k: list(v) if isinstance(v := getattr(self, k), tuple) else v for k in ARITHMETIC_FIELDS}

    def arithmetic(self) -> dict[str, int]:
        """The widths and shifts a backend must implement to run this spec's IntNets."""
        return {k: int(getattr(self, k)) for k in (*SIMULATED, "weight_bits", "bias_mant_bits")}


def check_simulable(arithmetic: dict[str, int] | TargetSpec | None, backend: str, target: str = "") -> None:
    """Refuse an IntNet (or spec) whose arithmetic differs from Lava 0.10's fixed-point models,
    which intsim and the lava backend implement; None (an IntNet without the record) passes."""
    if arithmetic is None:
        return
    got = arithmetic.arithmetic() if isinstance(arithmetic, TargetSpec) else dict(arithmetic)
    name = arithmetic.name if isinstance(arithmetic, TargetSpec) else target
    want = LOIHI.arithmetic()
    bad = [f"{k}={got[k]} (simulated: {want[k]})" for k in SIMULATED if k in got and got[k] != want[k]]
    bad += [f"{k}={got[k]} (simulated: at most {want[k]})" for k in ("weight_bits", "bias_mant_bits")
            if k in got and got[k] > want[k]]
    if bad:
        raise KdsnnError(f"{backend} simulates Lava 0.10's fixed-point widths, but hardware spec {name} has "
                         f"{', '.join(bad)}; change those fields of the spec, or run on a backend "
                         "that implements them")


LOIHI = TargetSpec(
    name="loihi",
    description="Intel Loihi as modelled by lava-nc 0.10 fixed_pt (bit-accurate) process models",
    references=(
        "lava-nc 0.10.0: lava/proc/lif/models.py, lava/proc/dense/models.py, "
        "lava/proc/conv/models.py, lava/utils/weightutils.py",
        "M. Davies et al., Loihi: A Neuromorphic Manycore Processor with On-Chip Learning, "
        "IEEE Micro 38(1):82-99, 2018 (Tables 1 and 2)",
    ),
).validate()

# Loihi 2: the same fixed-point LIF datapath as Lava models it, plus programmable neurons
# (microcode), which hold the subtractive reset v -= vth that Lava's LIF models lack; the
# backend runs it as a kdsnn process model on Lava's bit-accurate LIF arithmetic.
LOIHI2 = replace(
    LOIHI, name="loihi2", reset_modes=("zero", "subtract"),
    description="Intel Loihi 2 as the loihi spec plus programmable neurons (subtractive reset)",
    references=(*LOIHI.references,
                "G. Orchard et al., Efficient Neuromorphic Signal Processing with Loihi 2, "
                "IEEE SiPS 2021 (programmable neuron microcode, graded spikes)"),
).validate()

BUILTIN: dict[str, TargetSpec] = {"loihi": LOIHI, "loihi2": LOIHI2}


def available_targets() -> list[str]:
    return sorted(BUILTIN)


def load_target(name_or_path: str | Path | TargetSpec) -> TargetSpec:
    """A built-in hardware spec by name, or a user's JSON/TOML spec file (what --hw names)."""
    if isinstance(name_or_path, TargetSpec):
        return name_or_path.validate()
    key = str(name_or_path)
    if key in BUILTIN:
        return BUILTIN[key]
    path = Path(key)
    if not path.is_file():
        raise KdsnnError(f"unknown hardware spec {key!r} (--hw): a built-in name ({', '.join(available_targets())}) "
                         "or a spec file (.json/.toml); see `kdsnn targets`")
    data = read_table(path, "hardware spec")
    if not isinstance(data, dict):
        raise KdsnnError(f"hardware spec {path}: expected a JSON/TOML object at the top level")
    base_name = data.pop("base", None)
    if base_name is not None and base_name not in BUILTIN:
        raise KdsnnError(f"hardware spec {path}: unknown base {base_name!r}; choose one of {', '.join(available_targets())}")
    valid = {f.name for f in fields(TargetSpec)}
    for k in sorted(set(data) & set(UNHONOURED)):
        raise KdsnnError(f"hardware spec {path}: {k} is not honoured by kdsnn ({UNHONOURED[k]}); remove it")
    for k in sorted(k for k in set(data) & set(FIXED) if data[k] != FIXED[k]):
        raise KdsnnError(f"hardware spec {path}: {k} = {data[k]!r} is not honoured (the lowering does not bound "
                         f"the accumulators; kdsnn supports Lava's {k} = {FIXED[k]} only); remove the field")
    unknown = sorted(set(data) - valid)
    if unknown:
        raise KdsnnError(f"hardware spec {path}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(valid))}")
    if "name" not in data:
        data["name"] = path.stem
    # a user's chip cites what the user gives, never the base's papers
    data.setdefault("references", (f"user spec file {path.name}"
                                   + (f" (overrides of the built-in {base_name})" if base_name else ""),))
    if "energy_pj" in data:
        data.setdefault("energy_source", f"user spec file {path.name}: energy_pj")
    else:
        data.setdefault("energy_source", f"{path.name} gives no energy_pj: {base_name or 'the default'}'s "
                                         f"numbers, {(BUILTIN[base_name] if base_name else LOIHI).energy_source}")
    for k in ("sign_modes", "references", "reset_modes"):
        if k in data:
            data[k] = tuple(data[k])
    try:
        spec = replace(BUILTIN[base_name], **data) if base_name else TargetSpec(**data)
    except TypeError as e:
        raise KdsnnError(f"hardware spec {path}: {e}") from None
    if base_name and "energy_pj" in data:
        spec = replace(spec, energy_pj={**BUILTIN[base_name].energy_pj, **data["energy_pj"]})
    return spec.validate()
