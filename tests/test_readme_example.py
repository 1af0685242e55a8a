"""The README's Python example runs as written (in a fresh folder), prints nothing from the
library itself, and its objects have short reprs."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def readme_python_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## From Python (a notebook)", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_example_runs(tmp_path, monkeypatch, capfd):
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    code = readme_python_block().replace("print(", "_show(")
    shown: list[str] = []
    scope = {"_show": lambda *a: shown.append(" ".join(map(str, a)))}
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - our own README
    assert out.getvalue() == "" and capfd.readouterr().out == ""   # quiet: nothing printed
    assert (tmp_path / "runs/nb/export/graph.nir").is_file() and (tmp_path / "runs/nb/export/report.json").is_file()
    d, r, net = scope["d"], scope["r"], scope["net"]
    assert d.rung(2).passed and d.results["intsim"].logits.shape == (60, 10)
    assert r.result.logits.shape == (30, 10) and r.report is not None
    assert net.T == 2 and net.target == "loihi"
    for obj in (scope["s"], d, d.intnet, d.results["intsim"], d.rung(3), d.report, r, net,
                net.populations[0], net.connections[0], d.lowered.spec):
        assert len(repr(obj)) < 300, repr(obj)
    assert shown[2].startswith("IntNet(loihi, T=2, input 1x8x8")


def test_api_names_are_not_shadowed_by_submodules():
    """`kdsnn.distill` stays the function after the training modules are imported."""
    import kdsnn
    import kdsnn.train  # noqa: F401 - imports the KD losses (kdsnn.kd_loss)

    assert callable(kdsnn.distill) and callable(kdsnn.export) and callable(kdsnn.run)
    assert callable(kdsnn.lower) and kdsnn.distill.__module__ == "kdsnn.api"
