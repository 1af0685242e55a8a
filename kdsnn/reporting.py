"""The driver behind `kdsnn report FOLDER [--compare OTHER -o DIR]`: an export's report.json
re-rendered (report.md, plots) and, with --compare, two runs side by side.

It lives on the kdsnn side because it checks the folders as bundles (kdsnn.bundle) and names
the files it wrote (kdsnn.outputs), which kdsnn.compiler may not import (docs/design.md,
"Layout and import direction"). It prints nothing: `report_command` returns a `Reported`
whose `summary_lines()` the CLI prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kdsnn.bundle import check_bundle
from kdsnn.compiler.profile.plots import plot_compare
from kdsnn.compiler.profile.report import (
    load_report,
    render_compare,
    render_table,
    run_labels,
    write_reports,
)
from kdsnn.errors import KdsnnError
from kdsnn.io import ensure_dir, write_text
from kdsnn.outputs import written_line

__all__ = ["Reported", "report_command"]


@dataclass
class Reported:
    """What `kdsnn report` did: the table (and the comparison) it shows, the files it wrote."""

    table: str
    written: list[Path]
    comparison: str | None = None

    def summary_lines(self) -> list[str]:
        """The table, a blank line and the comparison (with --compare), the files written."""
        lines = [self.table]
        if self.comparison is not None:
            lines += ["", self.comparison]
        return [*lines, written_line(self.written)]


def report_command(folder: str | Path, compare: str | Path | None = None,
                   output: str | Path | None = None) -> Reported:
    """`kdsnn report FOLDER [--compare OTHER -o DIR]`: re-render, compare, say what was written."""
    folder = Path(folder)
    rep = load_report(folder)
    if compare is not None and output is None:
        raise KdsnnError("--compare needs -o DIR, the folder for compare.md and compare.png "
                         "(e.g. -o runs/compare)")
    other = load_report(Path(compare)) if compare is not None else None
    for f in (folder, *([Path(compare)] if compare is not None else [])):
        check_bundle(f if f.is_dir() else f.parent)   # report.json, parity.json and the artifacts agree
    if output is None and not os.access(folder, os.W_OK):
        raise KdsnnError(f"{folder} is read-only, so report.md and plots/ cannot be re-rendered there; give "
                         f"-o DIR to write them elsewhere: kdsnn report {folder} -o {_elsewhere(folder)}")
    # -o DIR: the whole re-rendered report there (report.json too, which report.md describes)
    dest = Path(output) if output is not None else folder
    done = Reported(render_table(rep), write_reports(rep, dest, json_too=output is not None))
    if other is not None:
        out = ensure_dir(Path(output))
        labels = run_labels(folder, Path(compare))
        png = plot_compare(rep, other, labels, out / "compare.png")
        done.comparison = render_compare(rep, other, labels)
        md = write_text(out / "compare.md", f"# {labels[0]} vs {labels[1]}\n\n{folder} vs {compare}\n\n"
                        f"```\n{done.comparison}\n```\n\n![compare]({png.name})\n")
        done.written += [md, png]
    return done


def _elsewhere(folder: Path) -> str:
    """A suggestion for -o: a writable folder named after the run."""
    import tempfile

    return str(Path(tempfile.gettempdir()) / f"{folder.resolve().name or 'report'}-report")
