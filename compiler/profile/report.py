"""Report outputs: report.json (machines), report.md and a terminal table (people), plots
(docs/design.md, "Reports").

Rendering, loading and comparing only; the `kdsnn report out/ [--compare other/]` driver
that re-renders a folder and says what it wrote is `kdsnn.reporting`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kdsnn.compiler.profile.definitions import SCHEMA, SCHEMA_VERSION
from kdsnn.compiler.profile.plots import write_plots

from kdsnn.errors import KdsnnError
from kdsnn.io import ensure_dir, write_json, write_text

REPORT_JSON = "report.json"
REPORT_MD = "report.md"


# --------------------------------------------------------------------------- formatting ---
def fmt_num(v: Any, digits: int = 3) -> str:
    """1234567 -> '1.23M'; None -> '-'."""
    if v is None:
        return "-"
    v = float(v)
    for div, suf in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.{digits}g}{suf}"
    return f"{v:.{digits}g}" if v != int(v) else f"{int(v)}"


def _with_unit(v: Any, steps: tuple[tuple[float, str], ...], base: str, base_digits: int = 3) -> str:
    """v in the largest unit of steps it reaches (3 significant digits), else in base."""
    if v is None:
        return "-"
    v = float(v)
    for div, suf in steps:
        if abs(v) >= div:
            return f"{v / div:.3g} {suf}"
    return f"{v:.{base_digits}g} {base}"


def fmt_bytes(v: Any) -> str:
    return _with_unit(v, ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")), "B", base_digits=4)


def fmt_pj(v: Any) -> str:
    return _with_unit(v, ((1e12, "J"), (1e9, "mJ"), (1e6, "uJ"), (1e3, "nJ")), "pJ")


def fmt_frac(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.1f}%"


def fmt_ratio(v: Any) -> str:
    return "-" if v is None else f"{float(v):.3g}x"


def _grid(header: list[str], rows: list[list[str]], md: bool = False, total: bool = False) -> str:
    """A Markdown or aligned plain-text table; `total` sets the last row apart."""
    if md:
        out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    w = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]

    def line(r: list[str]) -> str:
        return "  ".join(str(c).ljust(w[0]) if i == 0 else str(c).rjust(w[i]) for i, c in enumerate(r)).rstrip()

    sep = "  ".join("-" * x for x in w)
    body = [line(r) for r in rows]
    if total and rows:
        body.insert(len(body) - 1, sep)
    return "\n".join([line(header), sep, *body])


# ------------------------------------------------------------------------------- tables ---
def _layer_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["layer", "neurons", "spikes/inf", "rate", "silent", "saturated", "ACs", "MACs",
              "ANN MACs", "SNN mem", "cores", "binds"]
    rows = []
    for r in report["layers"]:
        m = r["mapping"]
        rows.append([r["name"], fmt_num(r["neurons"]), fmt_num(r["spikes"]), fmt_frac(r["firing_rate"]),
                     fmt_frac(r["silent_fraction"]), fmt_frac(r["saturated_fraction"]),
                     fmt_num(r["acs"]), fmt_num(r["macs"]), fmt_num(r["ann_macs"]),
                     fmt_bytes(r["memory"]["snn_total_bytes"]),
                     str(m["cores"]) + ("" if m["fits"] else "!"), m["binding_limit"]])
    t, mem, mp = report["totals"], report["memory"], report["mapping"]
    rows.append(["total", fmt_num(t["neurons"]), fmt_num(t["spikes"]), fmt_frac(t["firing_rate"]),
                 fmt_frac(t["silent_fraction"]), fmt_frac(t["saturated_fraction"]),
                 fmt_num(t["acs"]), fmt_num(t["macs"]), fmt_num(t["ann_macs"]),
                 fmt_bytes(mem["snn_total_bytes"]), str(mp["cores"]), f"{mp['chips']} chip(s)"])
    return header, rows


def samples_text(meta: Mapping[str, Any]) -> str:
    """Which samples a run's measured numbers come from: 'first 200 test samples'."""
    n = meta.get("samples")
    split = meta.get("split") or "test"
    return f"first {n:,} {split} samples" if isinstance(n, int) else f"{split} samples"


def _summary_rows(report: Mapping[str, Any]) -> list[list[str]]:
    """The KDSNN paper's Tab. 3 analogue: ANN teacher vs SNN student, and what each row is
    measured on (the networks alone, or which samples)."""
    t, mem, meta = report["totals"], report["memory"], report["meta"]
    on = f"{samples_text(meta)}, {meta['backend']}"
    stu = f"{fmt_num(mem.get('student_params'))} integer (IntNet weights + biases)"
    if meta.get("student_float_params") is not None:
        stu = f"{fmt_num(meta['student_float_params'])} float; " + stu
    ann_p = fmt_num(mem["ann_params"]) + (" float" if mem["ann_params"] is not None else "")
    rows = [["parameters", ann_p, stu, "the networks (no data)"],
            ["memory", fmt_bytes(mem["ann_fp32_bytes"]) + " (fp32 parameters)",
             f"{fmt_bytes(mem['snn_total_bytes'])} = weights {fmt_bytes(mem['snn_weight_bytes'])} + biases "
             f"{fmt_bytes(mem['snn_bias_bytes'])} + neuron state {fmt_bytes(mem['snn_state_bytes'])} + input "
             f"{fmt_bytes(mem['input_buffer_bytes'])}", "the networks (no data)"],
            ["operations / inference", fmt_num(t["ann_macs"]) + " MACs (dense)",
             f"{fmt_num(t['acs'])} ACs + {fmt_num(t['macs'])} MACs",
             f"ANN: dense count, no data; SNN: mean over the {on}"]]
    for name, e in report["energy"].items():
        rows.append([f"energy ({name})", fmt_pj(e["ann_pj"]), fmt_pj(e["snn_pj"]),
                     f"ANN: dense; SNN: mean over the {on}"])
    rows.append(["time steps", "1", f"{meta['T']} (Lava: {report['latency']['lava_steps']})", "-"])
    if meta.get("teacher_accuracy") is not None or meta.get("accuracy") is not None:
        rows.append(["accuracy", fmt_frac(meta.get("teacher_accuracy")), fmt_frac(meta.get("accuracy")),
                     f"the same {samples_text(meta)} (SNN on {meta['backend']})"])
    if meta.get("float_accuracy") is not None:
        rows.append(["student accuracy, float", "", fmt_frac(meta["float_accuracy"]), f"the same {samples_text(meta)}"])
    return rows


def render_table(report: Mapping[str, Any]) -> str:
    """The terminal table: per-layer activity, operations, memory and cores, then totals."""
    meta = report["meta"]
    head = (f"kdsnn report: backend {meta['backend']}, target {meta['target']}, T={meta['T']}, "
            f"counts per inference, mean over the {samples_text(meta)}")
    header, rows = _layer_rows(report)
    lines = [head, _grid(header, rows, total=True)]
    mem, mp, lat = report["memory"], report["mapping"], report["latency"]
    for name, e in report["energy"].items():
        ann = f" vs ANN {fmt_pj(e['ann_pj'])} ({fmt_ratio(e['ann_over_snn'])})" if e["ann_pj"] is not None else ""
        lines.append(f"energy {name}: SNN {fmt_pj(e['snn_pj'])}{ann}")
    lines.append(f"memory: ANN fp32 {fmt_bytes(mem['ann_fp32_bytes'])} | SNN {fmt_bytes(mem['snn_total_bytes'])} "
                 f"(weights {fmt_bytes(mem['snn_weight_bytes'])}, biases {fmt_bytes(mem['snn_bias_bytes'])}, "
                 f"state {fmt_bytes(mem['snn_state_bytes'])}, input {fmt_bytes(mem['input_buffer_bytes'])})")
    fit = "fits" if mp["fits"] else "DOES NOT FIT (! = fan-in over the per-core limit)"
    lines.append(f"loihi: {mp['cores']} cores, {mp['chips']} chip(s), {fit}; latency {lat['T']} steps "
                 f"(Lava {lat['lava_steps']} = T + depth {lat['depth']})")
    for n in report.get("notes", []):
        lines.append(f"note: {n}")
    return "\n".join(lines)


def render_markdown(report: Mapping[str, Any], plots: list[str] | None = None) -> str:
    meta = report["meta"]
    out = [f"# kdsnn report ({meta['backend']}, {meta['target']}, T={meta['T']})", "",
           f"Schema `{report['schema']}` v{report['schema_version']}; created {meta.get('created', '-')}; "
           f"kdsnn {meta.get('kdsnn_version') or '-'}. All counts are per inference, averaged over the "
           f"{samples_text(meta)} run on {meta['backend']}.", "",
           "## ANN teacher vs SNN student", "",
           _grid(["", "ANN teacher", "SNN student", "measured on"], _summary_rows(report), md=True), "",
           "## Per layer", "", _grid(*_layer_rows(report), md=True), ""]
    ops_header = ["layer", "synapses", "ACs", "eff. ACs", "MACs", "eff. MACs", "dense SynOps",
                  "student MACs", "ANN MACs", "exact"]
    ops_rows = [[r["name"], fmt_num(r["synapses"]), fmt_num(r["acs"]), fmt_num(r["eff_acs"]),
                 fmt_num(r["macs"]), fmt_num(r["eff_macs"]), fmt_num(r["dense_synops"]),
                 fmt_num(r["student_ann_macs"]), fmt_num(r["ann_macs"]), "yes" if r["ops_exact"] else "est."]
                for r in report["layers"]]
    out += ["## Operations", "", _grid(ops_header, ops_rows, md=True), ""]
    mem_rows = [[r["name"], fmt_bytes(r["memory"]["ann_fp32_bytes"]), fmt_bytes(r["memory"]["student_fp32_bytes"]),
                 fmt_bytes(r["memory"]["snn_weight_bytes"]), fmt_bytes(r["memory"]["snn_bias_bytes"]),
                 fmt_bytes(r["memory"]["snn_state_bytes"]), fmt_bytes(r["memory"]["snn_total_bytes"])]
                for r in report["layers"]]
    m = report["memory"]
    mem_rows.append(["total", fmt_bytes(m["ann_fp32_bytes"]), fmt_bytes(m["student_fp32_bytes"]),
                     fmt_bytes(m["snn_weight_bytes"]), fmt_bytes(m["snn_bias_bytes"]),
                     fmt_bytes(m["snn_state_bytes"]), fmt_bytes(m["snn_total_bytes"])
                     + f" (incl. input {fmt_bytes(m['input_buffer_bytes'])})"])
    out += ["## Memory", "", _grid(["layer", "ANN fp32", "student fp32", "SNN weights", "SNN biases",
                                    "SNN state", "SNN total"], mem_rows, md=True), ""]
    lim = report["mapping"]["target"]
    map_rows = [[r["name"], str(r["mapping"]["cores"]), "yes" if r["mapping"]["fits"] else "no",
                 r["mapping"]["binding_limit"], str(r["mapping"]["cores_by_neurons"]),
                 str(r["mapping"]["cores_by_synaptic_memory"]), fmt_num(r["mapping"]["max_fan_in_axons"]),
                 fmt_bytes(r["mapping"]["synaptic_memory_bits"] / 8)] for r in report["layers"]]
    out += ["## Loihi mapping", "",
            f"Limits: {lim['neurons_per_core']} neurons/core, {fmt_bytes(lim['synaptic_memory_bits_per_core'] / 8)} "
            f"synaptic memory/core, {lim['max_fan_in_per_core']} input axons/core, {lim['cores_per_chip']} cores/chip "
            f"({lim.get('source', '')}). Total: **{report['mapping']['cores']} cores, {report['mapping']['chips']} chip(s)**.", "",
            _grid(["layer", "cores", "fits", "binding limit", "by neurons", "by syn. memory",
                   "max fan-in", "syn. memory"], map_rows, md=True), ""]
    e_rows = []
    for name, e in report["energy"].items():
        e_rows.append([name, e["version"], fmt_pj(e["snn_pj"]), fmt_pj(e["ann_pj"]),
                       fmt_pj(e["student_ann_pj"]), fmt_ratio(e["ann_over_snn"]), e["formula"], e["source"]])
    out += ["## Energy per inference", "",
            _grid(["model", "version", "SNN", "ANN teacher", "student as ANN", "ANN/SNN", "formula", "source"],
                  e_rows, md=True), ""]
    lat = report["latency"]
    out += ["## Latency", "", f"{lat['T']} steps per sample (intsim, zero synaptic delay); "
            f"{lat['lava_steps']} steps on Lava (T + depth {lat['depth']}).", ""]
    if report.get("notes"):
        out += ["## Notes", ""] + [f"- {n}" for n in report["notes"]] + [""]
    if plots:
        out += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    out += ["## Definitions", ""] + [f"- **{k}**: {v}" for k, v in report["definitions"].items()] + [""]
    return "\n".join(out)


# ------------------------------------------------------------------------------ outputs ---
def write_reports(report: Mapping[str, Any], out_dir: str | Path, json_too: bool = True) -> list[Path]:
    """report.json, report.md and plots/*.png into out_dir (each written atomically)."""
    d = ensure_dir(out_dir)
    paths: list[Path] = []
    if json_too:
        paths.append(write_json(d / REPORT_JSON, report))
    plots = write_plots(report, d)
    paths.append(write_text(d / REPORT_MD, render_markdown(report, [str(p.relative_to(d)) for p in plots])))
    return paths + plots


def load_report(folder: str | Path) -> dict[str, Any]:
    """Read folder/report.json (or a report.json path) and check its schema."""
    p = Path(folder)
    path = p / REPORT_JSON if p.is_dir() or not p.suffix else p
    if not path.is_file():
        raise KdsnnError(f"{path} does not exist; run `kdsnn export ... -o {p}` first")
    try:
        rep = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise KdsnnError(f"{path} is not valid JSON ({e}); re-run `kdsnn export`") from None
    if not isinstance(rep, dict) or rep.get("schema") != SCHEMA:
        raise KdsnnError(f"{path} is not a kdsnn report (schema {rep.get('schema') if isinstance(rep, dict) else None!r})")
    check_report(rep, path)
    return rep


# The sections every report has, with their JSON types (compiler/profile/definitions.py);
# the optional ones are checked when present.
SECTIONS = {"meta": dict, "layers": list, "totals": dict, "memory": dict, "mapping": dict, "latency": dict}
OPTIONAL_SECTIONS = {"definitions": dict, "connections": list, "energy": dict, "raster": dict, "notes": list}


def check_report(rep: dict[str, Any], path: Path) -> None:
    """schema_version a positive int this kdsnn reads, sections of the right JSON type, and a
    dry render (tables and markdown), so a malformed field is one line before anything is written."""
    v = rep.get("schema_version")
    if type(v) is not int:
        raise KdsnnError(f"{path}: report schema_version must be an integer, got {v!r} "
                         f"({type(v).__name__}); the file was altered, re-run `kdsnn export`")
    if v < 1:
        raise KdsnnError(f"{path}: report schema_version {v} is not a version (they start at 1); "
                         "re-run `kdsnn export`")
    if v > SCHEMA_VERSION:
        raise KdsnnError(f"{path}: report schema version {v} is newer than this kdsnn reads ({SCHEMA_VERSION}); "
                         "upgrade kdsnn")
    for key, typ in {**SECTIONS, **OPTIONAL_SECTIONS}.items():
        if key not in rep:
            if key in SECTIONS:
                raise KdsnnError(f"{path}: report has no '{key}' section; re-run `kdsnn export`")
            continue
        if not isinstance(rep[key], typ):
            raise KdsnnError(f"{path}: report '{key}' must be a JSON {'object' if typ is dict else 'array'}, "
                             f"got {type(rep[key]).__name__}; re-run `kdsnn export`")
    bad = next((i for i, x in enumerate(rep["layers"]) if not isinstance(x, dict)), None)
    if bad is not None:
        raise KdsnnError(f"{path}: report layers[{bad}] must be an object; re-run `kdsnn export`")
    try:
        render_table(rep)
        render_markdown(rep, [])
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError) as e:
        what = f"field {e.args[0]!r} is missing" if isinstance(e, KeyError) else f"a field is malformed ({e})"
        raise KdsnnError(f"{path}: report {what}; re-run `kdsnn export`") from None


_COMPARE: list[tuple[str, Callable[[Mapping[str, Any]], Any], Callable[[Any], str]]] = [
    ("backend", lambda r: r["meta"]["backend"], str),
    ("T", lambda r: r["meta"]["T"], str),
    ("samples", lambda r: r["meta"]["samples"], str),
    ("accuracy", lambda r: r["meta"].get("accuracy"), fmt_frac),
    ("spikes / inference", lambda r: r["totals"]["spikes"], fmt_num),
    ("firing rate", lambda r: r["totals"]["firing_rate"], fmt_frac),
    ("silent fraction", lambda r: r["totals"]["silent_fraction"], fmt_frac),
    ("ACs", lambda r: r["totals"]["acs"], fmt_num),
    ("MACs (graded)", lambda r: r["totals"]["macs"], fmt_num),
    ("eff. ACs", lambda r: r["totals"]["eff_acs"], fmt_num),
    ("ANN teacher MACs", lambda r: r["totals"]["ann_macs"], fmt_num),
    ("SNN memory", lambda r: r["memory"]["snn_total_bytes"], fmt_bytes),
    ("ANN fp32 memory", lambda r: r["memory"]["ann_fp32_bytes"], fmt_bytes),
    ("Loihi cores", lambda r: r["mapping"]["cores"], str),
    ("latency (Lava steps)", lambda r: r["latency"]["lava_steps"], str),
]


def render_compare(a: Mapping[str, Any], b: Mapping[str, Any], labels: tuple[str, str]) -> str:
    """Two reports side by side (columns named by their runs) with the ratio, then firing
    rate per layer."""
    la, lb = labels
    rows = []
    metrics = list(_COMPARE)
    for m in a["energy"]:
        if m in b["energy"]:
            metrics.append((f"energy {m} (SNN)", lambda r, m=m: r["energy"][m]["snn_pj"], fmt_pj))
    for name, get, fmt in metrics:
        va, vb = get(a), get(b)
        ratio = "-"
        if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and not isinstance(va, bool) and va:
            ratio = fmt_ratio(vb / va)
        rows.append([name, fmt(va), fmt(vb), ratio])
    out = [f"{la} vs {lb} (measured on the {samples_text(a['meta'])} and the {samples_text(b['meta'])})",
           _grid(["metric", la, lb, f"{lb} / {la}"], rows)]
    ra = {r["name"]: r for r in a["layers"]}
    lrows = []
    for r in b["layers"]:
        if r["name"] in ra:
            x = ra[r["name"]]
            lrows.append([r["name"], fmt_frac(x["firing_rate"]), fmt_frac(r["firing_rate"]),
                          fmt_num(x["acs"] + x["macs"]), fmt_num(r["acs"] + r["macs"])])
    if lrows:
        out.append(_grid(["layer", f"rate {la}", f"rate {lb}", f"SynOps {la}", f"SynOps {lb}"], lrows))
    return "\n".join(out)


def run_labels(a: Path, b: Path) -> tuple[str, str]:
    """Names for two runs from their paths: what differs once the common leading and trailing
    folders are dropped (runs/kd/export, runs/nokd/export -> kd, nokd)."""
    pa, pb = a.resolve().parts, b.resolve().parts
    if pa == pb:
        return str(a), str(b)
    lead = 0
    while lead < min(len(pa), len(pb)) - 1 and pa[lead] == pb[lead]:
        lead += 1
    trail = 0
    while trail < min(len(pa), len(pb)) - lead - 1 and pa[-1 - trail] == pb[-1 - trail]:
        trail += 1
    la = "/".join(pa[lead:len(pa) - trail]) or a.name
    lb = "/".join(pb[lead:len(pb) - trail]) or b.name
    return (la, lb) if la != lb else (str(a), str(b))
