"""Target specs: the built-in Loihi numbers and user spec files."""

from __future__ import annotations

import json

import pytest
from kdsnn.compiler.targets import LOIHI, available_targets, load_target

from kdsnn.errors import KdsnnError


def test_loihi_matches_lava_fixed_point_models() -> None:
    t = load_target("loihi")
    assert t is LOIHI and "loihi" in available_targets()
    assert t.weight_range("mixed") == (-256, 254, 2)          # clip 8 bits, drop the LSB
    assert t.weight_range("excitatory") == (0, 255, 1)
    assert t.weight_range("inhibitory") == (-255, 0, 1)
    assert t.state_max == 2 ** 23 and t.vth_max == 131071 and t.bias_mant_max == 4095
    assert (t.bias_exp_min, t.bias_exp_max) == (0, 7) and t.decay_unity == 4096
    assert not t.conv_weight_exp
    assert t.neurons_per_core == 1024 and t.cores_per_chip == 128
    assert t.energy_pj["synaptic_op"] == 23.6
    assert json.loads(json.dumps(t.to_dict()))["name"] == "loihi"


def test_weight_range_agrees_with_lava_truncation() -> None:
    import numpy as np
    from kdsnn.backends.intsim.arith import lava_dense_weights
    w = np.arange(-400, 400)
    for mode in ("mixed", "excitatory", "inhibitory"):
        for bits in (8, 6, 4):
            lo, hi, step = LOIHI.__class__(name="x", num_weight_bits=bits).weight_range(mode)
            got = lava_dense_weights(w, mode, bits)
            assert got.min() == lo and got.max() == hi
            assert np.all(got % step == 0)


def test_user_spec_overrides_a_builtin(tmp_path) -> None:
    p = tmp_path / "chip.json"
    p.write_text(json.dumps({"base": "loihi", "name": "mychip", "vth_bits": 16,
                             "neurons_per_core": 512, "energy_pj": {"synaptic_op": 10.0}}))
    t = load_target(p)
    assert t.name == "mychip" and t.vth_max == 65535 and t.neurons_per_core == 512
    assert t.energy_pj["synaptic_op"] == 10.0 and t.energy_pj["neuron_update_idle"] == 52.0
    assert t.state_bits == 24


def test_full_user_spec(tmp_path) -> None:
    p = tmp_path / "tiny.json"
    p.write_text(json.dumps({"weight_bits": 6, "num_weight_bits": 6, "sign_modes": ["mixed"]}))
    t = load_target(str(p))
    assert t.name == "tiny" and t.weight_range("mixed") == (-64, 62, 2)


@pytest.mark.parametrize("content, match", [
    ("{not json", "not valid JSON"),
    ('{"base": "truenorth"}', "unknown base"),
    ('{"weigth_bits": 8}', "unknown key\\(s\\) weigth_bits"),
    ('{"weight_bits": -1}', "weight_bits must be a positive integer"),
    ('{"weight_exp_min": 3, "weight_exp_max": 1}', "exponent range is empty"),
    ('{"sign_modes": ["excitatory"]}', "sign_modes must include 'mixed'"),
    ('[1, 2]', "object at the top level"),
])
def test_bad_spec_files(tmp_path, content: str, match: str) -> None:
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(KdsnnError, match=match):
        load_target(p)


def test_unknown_target_and_toml(tmp_path) -> None:
    with pytest.raises(KdsnnError, match=r"unknown hardware spec 'spinnaker' \(--hw\): a built-in name "
                                         r"\(loihi, loihi2\) or a spec file.*kdsnn targets"):
        load_target("spinnaker")
    p = tmp_path / "t.toml"
    p.write_text('base = "loihi"\nname = "t"\n')
    try:
        import tomllib  # noqa: F401
        has = True
    except ModuleNotFoundError:
        try:
            import tomli  # noqa: F401
            has = True
        except ModuleNotFoundError:
            has = False
    if has:
        assert load_target(p).name == "t"
    else:
        with pytest.raises(KdsnnError, match="write the spec as JSON"):
            load_target(p)


def test_subtractive_reset_needs_programmable_neurons() -> None:
    """loihi (Loihi 1 as Lava models it) resets v to 0 only and refuses a subtractive layer
    by name; the built-in loihi2 holds it (a kdsnn process model on Lava)."""
    import nir
    import numpy as np
    from kdsnn.compiler.lower import lower

    rng = np.random.default_rng(0)
    nodes = {"in_1": nir.Input(input_type={"input": np.array([6])}),
             "fc": nir.Affine(weight=rng.normal(0, 1, (5, 6)), bias=np.zeros(5)),
             "lif": nir.IF(r=np.ones(5), v_threshold=np.ones(5), v_reset=np.zeros(5)),
             "fc2": nir.Linear(weight=rng.normal(0, 1, (3, 5))),
             "ro": nir.I(r=np.ones(3)),
             "out": nir.Output(output_type={"output": np.array([3])})}
    names = list(nodes)
    g = nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:], strict=True)),
                     metadata={"T": 4, "dt": 1.0, "reset_modes": {"lif": "subtract"}}, type_check=False)
    x = rng.normal(size=(8, 6))
    with pytest.raises(KdsnnError, match=r"node lif: subtractive reset .* not available on hardware spec loihi.*--hw loihi2"):
        lower(g, "loihi", x)
    net = lower(g, "loihi2", x)                 # the Input is named in_1: any name lowers
    assert net.population("lif").reset == "subtract" and net.target == "loihi2"
    assert load_target("loihi2").reset_modes == ("zero", "subtract") and LOIHI.reset_modes == ("zero",)


@pytest.mark.parametrize("content, match", [
    ('{"base": "loihi", "max_fan_out_per_core": 2048}', "max_fan_out_per_core is not honoured.*fan-in"),
    ('{"base": "loihi", "energy_pj": {"spike_per_hop": 3.5}}', "spike_per_hop are not counted"),
    ('{"base": "loihi", "conv_accum_bits": 16}', r"chip.json: conv_accum_bits = 16 is not honoured .*"
                                                 r"conv_accum_bits = 24 only\); remove the field"),
    ('{"base": "loihi", "dense_accum_bits": 16}', r"chip.json: dense_accum_bits = 16 is not honoured"),
])
def test_fields_nothing_honours_are_refused(tmp_path, content, match) -> None:
    p = tmp_path / "chip.json"
    p.write_text(content)
    with pytest.raises(KdsnnError, match=match):
        load_target(p)


def test_accumulator_widths_may_only_be_restated(tmp_path) -> None:
    """Lava's widths written out load (a complete spec may list every field); a spec built in
    Python with another width is refused like a file."""
    from dataclasses import replace

    p = tmp_path / "chip.json"
    p.write_text(json.dumps({"base": "loihi", "dense_accum_bits": 32, "conv_accum_bits": 24}))
    assert load_target(p).conv_accum_bits == 24
    with pytest.raises(KdsnnError, match="hardware spec x: conv_accum_bits = 20 is not honoured"):
        load_target(replace(LOIHI, name="x", conv_accum_bits=20))


def test_one_hardware_description(tmp_path) -> None:
    """The profiler's limits and energy and intsim's widths come from the spec; a custom chip
    cites its own file, not Loihi's papers; widths intsim cannot simulate are refused."""
    import numpy as np
    from kdsnn.backends.intsim import IntSimBackend
    from kdsnn.backends.intsim.arith import ACT_SHIFT, DECAY_SHIFT, STATE_MAX
    from kdsnn.compiler.profile.build import _default_models
    from kdsnn.compiler.profile.energy import LOIHI as LOIHI_ENERGY
    from kdsnn.compiler.profile.limits import LOIHI1_LIMITS, target_limits
    from kdsnn.compiler.targets import check_simulable

    assert (STATE_MAX, ACT_SHIFT, DECAY_SHIFT) == (LOIHI.state_max, LOIHI.act_shift, LOIHI.decay_bits)
    assert LOIHI1_LIMITS["neurons_per_core"] == LOIHI.neurons_per_core
    assert LOIHI_ENERGY.e_synop_pj == LOIHI.energy_pj["synaptic_op"] and "Davies" in LOIHI_ENERGY.source
    p = tmp_path / "mychip.json"
    p.write_text(json.dumps({"base": "loihi", "neurons_per_core": 256,
                             "energy_pj": {"synaptic_op": 5.0}}))
    chip = load_target(p)
    assert target_limits(chip)["neurons_per_core"] == 256
    assert "Davies" not in target_limits(chip)["source"] and "mychip.json" in target_limits(chip)["source"]
    em = _default_models(chip)[1]
    assert em.name == "mychip" and em.e_synop_pj == 5.0 and em.e_neuron_idle_pj == 52.0
    assert "Davies" not in em.source
    check_simulable(chip, "intsim")                       # Lava's widths: simulable
    p20 = tmp_path / "chip20.json"
    p20.write_text(json.dumps({"base": "loihi", "state_bits": 20}))
    with pytest.raises(KdsnnError, match="intsim simulates Lava.*state_bits=20 \\(simulated: 24\\)"):
        check_simulable(load_target(p20), "intsim")
    from intnet_gen import random_intnet

    net = random_intnet(0)
    net.metadata["arithmetic"] = load_target(p20).arithmetic()
    with pytest.raises(KdsnnError, match="state_bits=20"):
        IntSimBackend().compile(net)
    net.metadata["arithmetic"] = LOIHI.arithmetic()
    assert IntSimBackend().compile(net).run(np.zeros((1, *net.input.shape))).logits.shape[0] == 1
