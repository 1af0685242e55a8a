"""What the report plots show (the data behind each bar, axis and label), not only that a PNG exists."""

from __future__ import annotations

import numpy as np
from kdsnn.compiler.profile import plots
from kdsnn.compiler.profile.raster import pick_neurons, raster_layer
from matplotlib.colors import to_hex
from test_report import make_report


def _bars(ax):
    """{legend label: [(x centre, height, colour)]} of an axis' bar containers."""
    out = {}
    for c in ax.containers:
        out[c.get_label()] = [(p.get_x() + p.get_width() / 2, p.get_height(), to_hex(p.get_facecolor()))
                              for p in c.patches]
    return out


def test_firing_rate_bars_are_the_report_values_centred_on_their_ticks():
    rep = make_report(rate=0.3)
    fig = plots.figure_firing_rate(rep)
    ax = fig.axes[0]
    bars = _bars(ax)
    act, readout = rep["layers"]
    # firing rate for both layers; silent/saturated for act1, which has them (the readout none)
    assert [h for _, h, _ in bars["firing rate"]] == [act["firing_rate"], readout["firing_rate"]]
    assert [h for _, h, _ in bars["silent neurons (fraction)"]] == [act["silent_fraction"]]
    assert [h for _, h, _ in bars["saturated neurons (fraction)"]] == [act["saturated_fraction"]]
    # the three bars of a layer sit around its tick, the middle one on it
    ticks = list(ax.get_xticks())
    assert bars["silent neurons (fraction)"][0][0] == ticks[0]
    assert abs(bars["firing rate"][0][0] - ticks[0]) == abs(bars["saturated neurons (fraction)"][0][0] - ticks[0])
    assert [t.get_text() for t in ax.texts] == ["n/a", "n/a"]  # the readout's two missing bars
    assert [t.get_text() for t in ax.get_xticklabels()] == ["act1", "readout"]


def test_ops_energy_uses_one_colour_per_meaning():
    fig = plots.figure_ops_energy(make_report())
    colours: dict[str, str] = {}
    for ax in fig.axes:
        assert ax.get_yscale() == "log"
        for lab, bars in _bars(ax).items():
            assert len({c for _, _, c in bars}) == 1
            colours[lab] = bars[0][2]
    assert len(set(colours.values())) == len(colours), colours  # no colour means two things
    assert {"SNN ACs", "ANN teacher MACs", "SNN, loihi", "ANN teacher, horowitz45"} <= set(colours)


def test_memory_is_on_a_log_axis_with_every_part_per_layer():
    rep = make_report()
    ax = plots.figure_memory(rep).axes[0]
    assert ax.get_yscale() == "log"
    bars = _bars(ax)
    for lab, key in (("SNN weights", "snn_weight_bytes"), ("SNN biases", "snn_bias_bytes"),
                     ("SNN state (u, v)", "snn_state_bytes"), ("ANN teacher fp32", "ann_fp32_bytes")):
        assert [h for _, h, _ in bars[lab]] == [float(r["memory"][key]) for r in rep["layers"]]


def test_raster_prefers_neurons_whose_timing_varies_and_keeps_their_indices():
    T, n = 4, 100
    s = np.zeros((T, n), np.uint8)
    s[:, 10] = 1                 # saturated
    s[:, 20] = 1
    s[1, 30] = 1                 # varying
    s[[0, 2], 70] = 1
    idx, kinds = pick_neurons(s, k=3)
    assert kinds == {"varying": 2, "saturated": 2, "silent": 96}
    assert idx.tolist() == [10, 30, 70]     # both varying, then one saturated
    lay = raster_layer("h", s.reshape(T, 4, 25), k=3)   # a (C, H, W) layer: flat indices
    assert lay["neurons"] == [10, 30, 70]
    assert sorted(map(tuple, lay["events"])) == sorted([(t, 0) for t in range(4)] + [(1, 1), (0, 2), (2, 2)])


def test_raster_plot_draws_the_events_at_their_neuron_rows():
    rep = make_report(rate=0.4)
    g = rep["raster"]["layers"][0]
    assert g["kinds"]["varying"] > 0 and len(g["neurons"]) == 36  # act1 has 36 neurons (< 48)
    ax = plots.figure_raster(rep).axes[0]
    pts = ax.collections[0].get_offsets()
    np.testing.assert_array_equal(np.asarray(pts), np.asarray(g["events"], float))
    assert ax.get_yticklabels()[1].get_text() == str(g["neurons"][6])  # real neuron indices
    assert ax.get_xlabel() == "time step" and "flat index" in ax.get_ylabel()


def test_compare_shows_percent_differences_and_its_legend_clears_the_bars():
    a, b = make_report(rate=0.5), make_report(rate=0.5)
    b = {**b, "totals": {**b["totals"], "spikes": a["totals"]["spikes"] * 1.02}}
    fig = plots.figure_compare(a, b, ("runs/kd", "runs/nokd"))
    ax1, ax2 = fig.axes
    heights = {t.get_text(): p.get_height() for t, p in zip(ax2.get_xticklabels(), ax2.patches, strict=True)}
    assert abs(heights["spikes"] - 2.0) < 1e-9 and heights["SynOps"] == 0.0
    assert "+2.0%" in [t.get_text() for t in ax2.texts]
    assert ax2.get_ylim()[1] < 5  # zoomed to the differences, not to 0..1 ratios
    # the legend sits under the axes, below every bar
    leg = ax1.get_legend()
    assert [t.get_text() for t in leg.get_texts()] == ["runs/kd", "runs/nokd"]
    fig.canvas.draw()
    assert leg.get_window_extent().y1 < ax1.get_window_extent().y0
