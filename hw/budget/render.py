"""Render a budget report (the data of :func:`.report.build_report`) as Markdown, a
self-contained HTML page (PNG plots inlined as data URIs), PNG files and JSON."""
from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path
from typing import Any

from dupnet.files import atomic_write_bytes
from dupnet.html_page import escape, page, table

__all__ = ["render_markdown", "render_html", "make_plots", "write_report", "document"]

RES_LABEL = {"lut": "LUT", "ff": "FF", "bram": "BRAM", "spram": "SPRAM", "dsp": "DSP"}


# ------------------------------------------------------------------------------------------
# numbers

def _n(x: Any, nd: int = 0) -> str:
    if x is None:
        return "–"
    if isinstance(x, float) and (math.isinf(x) or math.isnan(x)):
        return "–"
    if isinstance(x, (int, float)):
        if nd == 0 and abs(x - round(x)) < 1e-9:
            return f"{int(round(x)):,}"
        return f"{x:,.{max(nd, 1)}f}"
    return str(x)


def _pct(x: Any) -> str:
    return "–" if x is None else f"{x:+.1f}%"


def _used(t: dict, r: str) -> str:
    res = t["fit"]["resources"][r]
    u = res["utilisation_pct"]
    return f"{_n(res['used'])} / {_n(res['capacity'])}" + (f" ({u:.0f}%)" if u is not None
                                                              else "")


# ------------------------------------------------------------------------------------------
# the document: a list of blocks rendered to Markdown and HTML alike

def document(rep: dict[str, Any], plots: dict[str, str]) -> list[tuple]:
    """The report as blocks, rendered alike to Markdown and HTML.

    Parameters
    ----------
    rep : the data of :func:`.report.build_report`
    plots : image source per plot name (``cycles``, ``resources``,
        ``analytic_vs_measured``); a plot that is absent is left out

    Returns
    -------
    list of tuple
        ``("h", level, text)``, ``("p", text)``, ``("ul", [items])``,
        ``("table", header, rows)``, ``("img", source, alt)``; texts may hold Markdown
        ``**bold**`` and ```code```.
    """
    return (_intro_blocks(rep) + _target_blocks(rep, plots) + _advice_blocks(rep)
            + _layer_blocks(rep, plots) + _memory_blocks(rep) + _preadd_blocks(rep)
            + _calibration_blocks(rep, plots)
            + [("p", f"Report built in {rep['seconds']:.1f} s (flow version "
                     f"{rep['flow_version']}).")])


def _intro_blocks(rep: dict[str, Any]) -> list[tuple]:
    """Title, design and pipeline summary, where the figures come from."""
    d, p = rep["design"], rep["pipeline"]
    return [("h", 1, f"FPGA budget: {d['name']}"),
            ("p", f"Top `{d['top']}`, design hash `{d['design_hash'][:16]}`, "
                  f"{_n(d['verilog_bytes'])} bytes of Verilog. Pipeline: "
                  f"{_n(p['cycles_per_frame'])} cycles/frame, bottleneck "
                  f"**{p['bottleneck_layer']}**."
             + (f" Folding: {_fold(d['folding'])}." if d.get("folding") else "")),
            ("p", "Measured figures are Yosys synthesis results (flattened design); fmax is "
                  "from nextpnr where an open place-and-route exists. Analytic figures are "
                  "the model of `dupnet.hw.analytic`, calibrated per family "
                  "(`dupnet/hw/budget/calibration.toml`). Tools: "
             + ", ".join(f"{k} {v}" for k, v in rep["tools"].items()) + ".")]


def _target_blocks(rep: dict[str, Any], plots: dict[str, str]) -> list[tuple]:
    """Resources, fit, headroom and fmax per target, with a note on each."""
    hdr = ["target", "LUT", "FF", "BRAM", "SPRAM", "DSP", "fits", "headroom", "binds first",
           "fmax (MHz)", "frames/s"]
    rows = []
    for t in rep["targets"]:
        f = t["fit"]
        rows.append([f"{t['name']} ({t['part']})", _used(t, "lut"), _used(t, "ff"),
                     _used(t, "bram"), _used(t, "spram"), _used(t, "dsp"),
                     "yes" if f["fits"] else "**no**",
                     "–" if f["headroom_pct"] is None else f"{f['headroom_pct']:.1f}%",
                     RES_LABEL[f["binding"]], _n(t["fmax_mhz"], 1), _n(t["fps"], 1)])
    blocks = [("h", 2, "Targets"), ("table", hdr, rows),
              ("ul", [_target_note(t) for t in rep["targets"]])] + _critical_path_blocks(rep)
    if "resources" in plots:
        blocks.append(("img", plots["resources"], "resource use vs capacity per target"))
    return blocks


def _critical_path_blocks(rep: dict[str, Any]) -> list[tuple]:
    """The critical path of every placed target: a short table, nothing when none has one.

    Parameters
    ----------
    rep : the data of :func:`.report.build_report`; a target's ``critical_path`` is
        :meth:`.parsers.CriticalPath.to_json` or None (absent in reports from before it)

    Returns
    -------
    list of tuple
        A paragraph and a table (target, clock, fmax, path summary, units crossed), as
        :func:`document` blocks.
    """
    rows = [[t["name"], f"`{cp['clock']}`", _n(t["fmax_mhz"], 1), cp["summary"],
             " -> ".join(f"`{u}`" for u in cp["units"]) or "–"]
            for t in rep["targets"] if (cp := t.get("critical_path"))]
    if not rows:
        return []
    return [("p", "Critical path (nextpnr, post-route, slowest clock): start and end cell as "
                  "unit (signal), the units it crosses, logic levels counted as nextpnr's "
                  "`logic` steps (carry-chain steps included)."),
            ("table", ["target", "clock", "fmax (MHz)", "critical path", "units crossed"],
             rows)]


def _target_note(t: dict[str, Any]) -> str:
    """What a target's LUT figure counts, its place-and-route outcome, synthesis time."""
    pr = t.get("pnr") or {}
    lut_note = f"LUT = {t['lut_label']}"
    if t.get("placed_logic") is not None:
        lut_note += f"; placed logic cells {_n(t['placed_logic'])}"
    msg = pr.get("message") or ""
    if pr.get("ok"):
        res = pr.get("result") or {}
        clocks = res.get("clocks", {})
        tgt = next(iter(clocks.values()), {}).get("target_mhz") if clocks else None
        msg = f"placed and routed (seed {pr.get('seed')}, target {_n(tgt)} MHz)"
    cached = "cached" if t["synth"]["cached"] else f"{t['synth']['seconds']:.0f} s"
    extra = (f"; unclassified cells: {', '.join(t['synth']['unclassified'])}"
             if t["synth"]["unclassified"] else "")
    return f"**{t['name']}**: {lut_note}; {msg}; synthesis {cached}{extra}."


def _advice_blocks(rep: dict[str, Any]) -> list[tuple]:
    """For each target the design does not fit: what would."""
    bad = [t for t in rep["targets"] if not t["fit"]["fits"]]
    if not bad:
        return []
    blocks: list[tuple] = [("h", 2, "What would fit")]
    for t in bad:
        blocks.append(("p", f"**{t['name']}** does not fit:"))
        blocks.append(("ul", t["advice"] or ["(no advice)"]))
    return blocks


def _layer_blocks(rep: dict[str, Any], plots: dict[str, str]) -> list[tuple]:
    """Cycles, memory bits and LUTs (estimated and measured per target) of every layer."""
    tnames = [t["name"] for t in rep["targets"]]
    hdr = ["layer", "cycles/frame", "ROM bits", "buffer bits", "LUT6 est."] + \
          [f"{n} LUT est./meas." for n in tnames]
    rows = []
    by_t = {t["name"]: {l["name"]: l for l in t["layers"]} for t in rep["targets"]}
    for l in rep["layers"]:
        name = f"**{l['name']}** (bottleneck)" if l["bottleneck"] else l["name"]
        if l.get("pe"):
            name += f" PE={l['pe']} SIMD={l['simd']}"
        row = [name, _n(l["cycles_per_frame"]), _n(l["rom_bits"]), _n(l["buffer_bits"]),
               _n(l["lut_estimate"])]
        for n in tnames:
            x = by_t[n][l["name"]]
            row.append(f"{_n(x['lut_calibrated'])} / {_n(x['lut_measured'])}")
        rows.append(row)
    blocks: list[tuple] = [("h", 2, "Layers"), ("table", hdr, rows)]
    glue = [f"{t['name']}: {_n(t['glue_measured']['lut'])} {t['lut_label']}"
            for t in rep["targets"] if t.get("glue_measured")]
    if glue:
        blocks.append(("p", "Top-level glue (input unpack, module boundaries) measured "
                            "outside the layers: " + "; ".join(glue) + ". Per-layer measured "
                            "numbers come from a hierarchy-preserving synthesis; their sum "
                            "can exceed the flattened total."))
    if "cycles" in plots:
        blocks.append(("img", plots["cycles"], "cycles per frame per layer"))
    return blocks


def _memory_blocks(rep: dict[str, Any]) -> list[tuple]:
    """Weight bits saved by duplication, ROM bits instantiated, BRAM use per target."""
    d, p = rep["design"], rep["pipeline"]
    blocks: list[tuple] = [("h", 2, "Memory")]
    mem = rep.get("memory")
    if mem:
        rows = [[r["layer"], f"w{r['w_dup']}/x{r['x_dup']}", _n(r["unique_weight_bits"]),
                 _n(r["weight_bits_without_dup"]), _n(r["saved_bits"]),
                 _n(r["weight_bits_without_dup"] / r["unique_weight_bits"], 2) + "x"]
                for r in mem["layers"]]
        rows.append(["**total**", "", _n(mem["unique_weight_bits"]),
                     _n(mem["weight_bits_without_dup"]), _n(mem["saved_bits"]),
                     _n(mem["ratio"], 2) + "x"])
        blocks.append(("p", "Stored unique weight bits (`ConvGeometry.unique_weight_bits`) vs "
                            "the bits the same layers need without weight duplication, every "
                            "weight channel stored, IFQ-style "
                            "(`ConvGeometry.weight_bits_without_dup`)."))
        blocks.append(("table", ["layer", "dup", "unique bits", "bits without dup", "saved",
                                 "ratio"], rows))
    if d.get("rom_bits_instantiated") is not None:
        blocks.append(("p", f"Weight ROM bits instantiated by the generator: "
                            f"{_n(d['rom_bits_instantiated'])} (analytic: "
                            f"{_n(p['rom_bits'])})."))
    rows = []
    for t in rep["targets"]:
        br = sum(1 for l in t["layers"] for m in l["memories"] if m["where"] == "bram")
        lo = sum(1 for l in t["layers"] for m in l["memories"] if m["where"] == "logic")
        rows.append([t["name"], _n(t["synth"]["resources"]["bram"], 1),
                     _n(t["fit"]["resources"]["bram"]["capacity"]),
                     _n(t["synth"]["resources"]["bram"] * t["bram_bits"] / 1024, 1),
                     _n(t["analytic"]["bram"], 1), f"{br} / {lo}"])
    blocks.append(("table", ["target", "BRAM blocks used", "of", "kbit reserved",
                             "analytic blocks", "memories in BRAM / logic (analytic)"], rows))
    return blocks


def _preadd_blocks(rep: dict[str, Any]) -> list[tuple]:
    """The pre-add of weight-sharing layers: on or off here, and what it saves."""
    pre = rep.get("preadd")
    if not pre:
        return []
    return [("h", 2, "Pre-add (layers with w_dup > 1)"),
            ("p", f"This design: preadd **{'on' if pre['in_design'] else 'off'}** "
                  f"({pre['arith']} datapath). Analytic LUT6 estimate of the weight-sharing "
                  f"layers at this folding with pre-add (the inputs sharing a weight bit "
                  f"summed once, shared by all PEs) and without: "
                  f"{_n(pre['lut_preadd'])} vs {_n(pre['lut_no_preadd'])} "
                  f"(ratio {_n(pre['ratio'], 2)}). Synthesized on one MVTU: "
                  f"`scripts/bench_hw.py` (preadd on/off)."),
            ("table", ["layer", "w_dup", "PE x SIMD", "LUT6 est. preadd",
                       "LUT6 est. no preadd"],
             [[r["layer"], str(r["w_dup"]), f"{r['pe']} x {r['simd']}",
               _n(r["lut_preadd"]), _n(r["lut_no_preadd"])] for r in pre["layers"]])]


def _calibration_blocks(rep: dict[str, Any], plots: dict[str, str]) -> list[tuple]:
    """Analytic estimates against synthesis results, per target and per layer."""
    rows = []
    for t in rep["targets"]:
        a, m, e = t["analytic"], t["synth"]["resources"], t["errors"]
        rows.append([t["name"], f"{_n(a['lut'])} / {_n(m['lut'])}", _pct(e["lut_pct"]),
                     f"{_n(a['ff'])} / {_n(m['ff'])}", _pct(e["ff_pct"]),
                     f"{_n(a['bram'], 1)} / {_n(m['bram'], 1)}", _pct(e["bram_pct"])])
    blocks = [("h", 2, "Analytic vs measured"),
              ("table", ["target", "LUT est. / meas.", "LUT error", "FF est. / meas.",
                         "FF error", "BRAM est. / meas.", "BRAM error"], rows),
              ("p", f"Calibration: {rep['calibration']['source']}.")]
    if "analytic_vs_measured" in plots:
        blocks.append(("img", plots["analytic_vs_measured"],
                       "analytic vs measured LUTs per layer"))
    return blocks


def _fold(f: dict | None) -> str:
    if not f:
        return ""
    return ", ".join(f"{k} {v['pe']}x{v['simd']}" for k, v in f.items() if isinstance(v, dict))


def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def render_markdown(rep: dict[str, Any], plots: dict[str, str] | None = None) -> str:
    out = []
    for b in document(rep, plots or {}):
        if b[0] == "h":
            out.append("#" * b[1] + " " + b[2] + "\n")
        elif b[0] == "p":
            out.append(b[1] + "\n")
        elif b[0] == "ul":
            out.append("\n".join(f"- {x}" for x in b[1]) + "\n")
        elif b[0] == "table":
            hdr, rows = b[1], b[2]
            lines = ["| " + " | ".join(map(_md_cell, hdr)) + " |",
                     "|" + "|".join("---" for _ in hdr) + "|"]
            lines += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in rows]
            out.append("\n".join(lines) + "\n")
        elif b[0] == "img":
            out.append(f"![{b[2]}]({b[1]})\n")
    return "\n".join(out)


def _inline_md(s: str) -> str:
    """`code` and **bold** of the Markdown text, for HTML."""
    import re
    s = escape(s)
    s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", s)


_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:1em 0;font-size:90%}td,th{border:1px solid
#ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}th{background:
#f0f0f0}code{background:#f4f4f4;padding:0 3px}img{max-width:100%;border:1px solid #ddd}"""


def render_html(rep: dict[str, Any], plot_files: dict[str, Path] | None = None) -> str:
    """One self-contained page: the PNGs are embedded as data URIs."""
    plots = {}
    for k, path in (plot_files or {}).items():
        data = base64.b64encode(Path(path).read_bytes()).decode()
        plots[k] = f"data:image/png;base64,{data}"
    return page(f"FPGA budget: {rep['design']['name']}",
                [_html_block(b) for b in document(rep, plots)], _CSS)


def _html_block(b: tuple) -> str:
    """One block of :func:`document` as HTML."""
    if b[0] == "h":
        return f"<h{b[1]}>{_inline_md(b[2])}</h{b[1]}>"
    if b[0] == "p":
        return f"<p>{_inline_md(b[1])}</p>"
    if b[0] == "ul":
        return "<ul>" + "".join(f"<li>{_inline_md(x)}</li>" for x in b[1]) + "</ul>"
    if b[0] == "table":
        return table(b[1], b[2], cell=lambda c: _inline_md(str(c)))
    if b[0] == "img":
        return f"<p><img src='{b[1]}' alt='{escape(b[2])}'></p>"
    raise ValueError(f"unknown block kind {b[0]!r}")


def make_plots(rep: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """cycles.png, resources.png, analytic_vs_measured.png in ``out_dir``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def save(fig, name: str) -> None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        atomic_write_bytes(out_dir / f"{name}.png", buf.getvalue())
        files[name] = out_dir / f"{name}.png"

    layers = rep["layers"]
    # per-layer cycles, bottleneck marked
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(layers) + 2), 3.2))
    names = [l["name"] for l in layers]
    cyc = [l["cycles_per_frame"] for l in layers]
    colors = ["tab:red" if l["bottleneck"] else "tab:blue" for l in layers]
    ax.bar(names, cyc, color=colors)
    for i, l in enumerate(layers):
        if l["bottleneck"]:
            ax.annotate("bottleneck", (i, cyc[i]), ha="center", va="bottom", fontsize=8,
                        color="tab:red")
    ax.set_ylabel("cycles / frame")
    ax.set_title(f"{rep['design']['name']}: cycles per frame per layer")
    ax.tick_params(axis="x", rotation=45)
    save(fig, "cycles")
    # resource use vs capacity
    res = ["lut", "ff", "bram", "spram", "dsp"]
    targets = rep["targets"]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.8 / max(1, len(targets))
    for i, t in enumerate(targets):
        vals = []
        for r in res:
            u = t["fit"]["resources"][r]["utilisation_pct"]
            vals.append(0 if u is None else u)
        xs = [j + i * width for j in range(len(res))]
        ax.bar(xs, vals, width=width, label=t["name"])
    ax.axhline(100, color="k", lw=1, ls="--")
    ax.set_xticks([j + width * (len(targets) - 1) / 2 for j in range(len(res))],
                  [RES_LABEL[r] for r in res])
    ax.set_ylabel("% of capacity")
    ax.set_title("resource use vs capacity")
    ax.legend(fontsize=8)
    save(fig, "resources")
    # analytic vs measured LUT per layer, one panel per target
    have = [t for t in targets if any(l["lut_measured"] is not None for l in t["layers"])]
    if have:
        fig, axes = plt.subplots(1, len(have), figsize=(4.2 * len(have), 3.4), squeeze=False)
        for ax, t in zip(axes[0], have):
            ls = t["layers"]
            x = range(len(ls))
            ax.bar([i - 0.2 for i in x], [l["lut_calibrated"] or 0 for l in ls], 0.4,
                   label="analytic (calibrated)")
            ax.bar([i + 0.2 for i in x], [l["lut_measured"] or 0 for l in ls], 0.4,
                   label="measured")
            ax.set_xticks(list(x), [l["name"] for l in ls], rotation=60, fontsize=7)
            ax.set_title(f"{t['name']} ({t['lut_label']})", fontsize=9)
        axes[0][0].set_ylabel("LUTs")
        axes[0][0].legend(fontsize=7)
        save(fig, "analytic_vs_measured")
    return files


def write_report(rep: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """report.json, report.md, report.html and the PNGs in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = make_plots(rep, out)
    md = render_markdown(rep, {k: p.name for k, p in plots.items()})
    atomic_write_bytes(out / "report.md", md.encode())
    atomic_write_bytes(out / "report.html", render_html(rep, plots).encode())
    atomic_write_bytes(out / "report.json", json.dumps(rep, indent=1, default=str).encode())
    return {"json": out / "report.json", "md": out / "report.md",
            "html": out / "report.html", **plots}
