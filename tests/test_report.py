"""Report outputs: JSON round trip, Markdown, table, PNG plots, `kdsnn report [--compare]`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from kdsnn.compiler.intnet import Connection, InputSpec, IntNet, Population
from kdsnn.compiler.profile.ann import FloatCounts
from kdsnn.compiler.profile.build import build_report
from kdsnn.compiler.profile.counting import RunCounts
from kdsnn.compiler.profile.definitions import SCHEMA_VERSION
from kdsnn.compiler.profile.report import (
    fmt_bytes,
    fmt_num,
    fmt_pj,
    load_report,
    render_compare,
    render_markdown,
    render_table,
    write_reports,
)

from kdsnn.errors import KdsnnError
from kdsnn.reporting import report_command

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def small_net(T: int = 3) -> IntNet:
    """Weights in Loihi's representable set (mixed sign: even values), a readout that never fires."""
    rng = np.random.default_rng(0)
    inp = InputSpec(shape=(1, 6, 6), scale=20.0)
    a = Population("act1", (4, 3, 3), vth=5, bias_mant=np.zeros((4, 3, 3), np.int32), depth=1)
    o = Population("readout", (3,), vth=2**16, bias_mant=np.zeros(3, np.int32), readout=True, depth=2)
    c1 = Connection("conv1", "input", "act1", "conv", 2 * rng.integers(-2, 3, (4, 1, 3, 3)).astype(np.int32),
                    stride=(2, 2), padding=(1, 1), graded=True)
    c2 = Connection("fc", "act1", "readout", "dense", 2 * rng.integers(-2, 3, (3, 36)).astype(np.int32))
    net = IntNet(inp, [a, o], [c1, c2], T=T)
    net.validate()
    return net


def make_report(seed: int = 0, T: int = 3, rate: float = 0.4, backend: str = "intsim"):
    net = small_net(T)
    rng = np.random.default_rng(seed)
    n = 5
    tr = (rng.random((n, T, 4, 3, 3)) < rate).astype(np.uint8)
    trains = {"act1": tr, "readout": np.zeros((n, T, 3), np.uint8)}
    counts = {k: v.reshape(n, -1).sum(1) for k, v in trains.items()}
    per_step = {k: v.reshape(n, T, -1).sum(2) for k, v in trains.items()}
    x = rng.normal(size=(n, 1, 6, 6)).astype(np.float32)
    return build_report(net, RunCounts(counts, backend, per_step, trains, x),
                        floats=FloatCounts(ann_macs={"act1": 1296, "readout": 108},
                                           ann_params={"act1": 40, "readout": 111}),
                        energy_models=["horowitz45", "loihi"], meta={"accuracy": 0.9, "dataset": "test"})


def test_report_json_round_trip_and_files(tmp_path):
    rep = make_report()
    assert rep["schema_version"] == SCHEMA_VERSION and "definitions" in rep
    for key in ("acs", "eff_acs", "macs", "firing_rate", "cores", "energy"):
        assert key in rep["definitions"]
    paths = write_reports(rep, tmp_path)
    names = {p.relative_to(tmp_path).as_posix() for p in paths}
    assert {"report.json", "report.md", "plots/firing_rate.png", "plots/ops_energy.png",
            "plots/memory.png", "plots/raster.png"} <= names
    loaded = load_report(tmp_path)
    assert loaded == json.loads(json.dumps(rep))
    for p in paths:
        if p.suffix == ".png":
            data = p.read_bytes()
            assert data[:8] == PNG_MAGIC and len(data) > 2000
            import matplotlib.image as mpimg

            img = mpimg.imread(p)
            assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    md = (tmp_path / "report.md").read_text()
    assert "## ANN teacher vs SNN student" in md and "![raster](plots/raster.png)" in md
    assert "horowitz45" in md and "Davies" in md
    # no temporary files left behind by the atomic writes
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]


def test_table_shows_layers_totals_energy():
    rep = make_report()
    t = render_table(rep)
    lines = t.splitlines()
    assert lines[0].startswith("kdsnn report: backend intsim")
    assert any(line.startswith("act1") for line in lines)
    assert any(line.startswith("total") for line in lines)
    assert "energy horowitz45: SNN" in t and "vs ANN" in t and "energy loihi" in t
    assert "loihi: 2 cores, 1 chip(s), fits" in t
    act = next(line for line in lines if line.startswith("act1"))
    assert fmt_num(rep["layers"][0]["acs"]) in act


def test_no_trains_report_says_null():
    net = small_net()
    rep = build_report(net, RunCounts({"act1": np.array([3, 5]), "readout": np.array([0, 0])}, "lava"))
    assert rep["layers"][0]["silent_fraction"] is None and rep["totals"]["silent_fraction"] is None
    assert rep["raster"]["layers"] == []
    assert rep["energy"]["horowitz45"]["ann_pj"] is None
    md = render_markdown(rep)
    assert "no spike trains recorded" in md
    render_table(rep)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two export folders with reports (e.g. KD vs no KD), written once for the module."""
    root = tmp_path_factory.mktemp("runs")
    a, b = root / "kd", root / "nokd"
    write_reports(make_report(seed=0, rate=0.2, T=3), a)
    write_reports(make_report(seed=1, rate=0.6, T=3), b)
    return a, b


def test_report_command_and_compare(two_runs, capsys, tmp_path):
    a, b = two_runs
    (a / "report.md").unlink()
    out = "\n".join(report_command(a, None).summary_lines())
    assert capsys.readouterr() == ("", "")     # library code prints nothing; the CLI prints the lines
    assert "kdsnn report: backend intsim" in out and (a / "report.md").is_file()
    assert "mean over the first 5 test samples" in out
    assert out.strip().splitlines()[-1].startswith(f"wrote {a.as_posix()}/: report.md, plots/firing_rate.png")
    with pytest.raises(KdsnnError, match="--compare needs -o DIR"):
        report_command(a, b)
    done = report_command(a, b, tmp_path / "cmp")
    out, written = "\n".join(done.summary_lines()), done.written
    assert capsys.readouterr() == ("", "")
    # the runs are named by what differs in their paths, and so are the columns
    assert "kd vs nokd" in out and "nokd / kd" in out and "firing rate" in out
    png = tmp_path / "cmp" / "compare.png"
    assert png.read_bytes()[:8] == PNG_MAGIC and (tmp_path / "cmp" / "compare.md").is_file()
    assert png in written and not (a / "compare_nokd.png").exists()  # nothing in the run folder
    assert "compare.md, " in out.strip().splitlines()[-1] or "compare.png" in out.strip().splitlines()[-1]


def test_run_labels_from_paths(tmp_path):
    from kdsnn.compiler.profile.report import run_labels

    assert run_labels(tmp_path / "runs/kd/export", tmp_path / "runs/nokd/export") == ("kd", "nokd")
    assert run_labels(tmp_path / "a/T4", tmp_path / "a/T8") == ("T4", "T8")
    assert run_labels(tmp_path / "x/kd/export", tmp_path / "y/kd/export") == ("x", "y")


def test_compare_ratios():
    a, b = make_report(rate=0.2), make_report(rate=0.6)
    text = render_compare(a, b, ("x", "y"))
    row = next(line for line in text.splitlines() if line.startswith("spikes / inference"))
    assert f"{b['totals']['spikes'] / a['totals']['spikes']:.3g}x" in row


def test_cli_report(two_runs):
    from kdsnn.cli import cli

    a, b = two_runs
    out = a.parent / "cmp_cli"
    r = CliRunner().invoke(cli, ["report", str(b), "--compare", str(a), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "nokd vs kd" in r.output
    assert (out / "compare.png").is_file()


def test_load_report_errors(tmp_path):
    with pytest.raises(KdsnnError, match="does not exist"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text("{broken")
    with pytest.raises(KdsnnError, match="not valid JSON"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text(json.dumps({"schema": "other"}))
    with pytest.raises(KdsnnError, match="not a kdsnn report"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text(json.dumps({"schema": "kdsnn.report", "schema_version": 99}))
    with pytest.raises(KdsnnError, match="newer"):
        load_report(tmp_path)


def test_formatters():
    assert fmt_num(1234567) == "1.23M" and fmt_num(None) == "-" and fmt_num(12) == "12"
    assert fmt_bytes(2048) == "2 KiB" and fmt_bytes(100) == "100 B"
    assert fmt_pj(4600) == "4.6 nJ" and fmt_pj(1.5e6) == "1.5 uJ"


@pytest.mark.slow
def test_lava_and_intsim_runs_give_the_same_report():
    from kdsnn.backends.registry import get_backend

    lava = get_backend("lava")
    ok, why = lava.available()
    if not ok:
        pytest.skip(why)
    net = small_net(T=3)
    x = np.random.default_rng(3).normal(size=(4, 1, 6, 6)).astype(np.float32)
    reps = []
    for name in ("intsim", "lava"):
        res = get_backend(name).compile(net).run(x, record=True)
        rep = build_report(net, RunCounts.of(res, x))
        rep["meta"].pop("backend")
        rep["meta"].pop("created")
        reps.append(rep)
    assert reps[0] == reps[1]
