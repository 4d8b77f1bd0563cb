"""``dupnet flow``: the whole toolkit end to end on one config, into one run folder.

Steps (each records its status, wall time and a summary in ``RUN/flow.json``):

1. ``train``        QAT training on the data set (``RUN/train/checkpoint.pt``; resumes)
2. ``evaluate``     AP@0.5 and FDDB-style rate of the PyTorch model on the test split
3. ``export``       the integer artifact ``RUN/model.dupnet``
4. ``equivalence``  golden model vs PyTorch eval on every activation code of test images
5. ``rtl``          Verilog + analytic model (``RUN/rtl/``), linted with Verilator
6. ``simulate``     Verilator: test images through the whole accelerator, every output word
                    compared with the golden model, cycles measured vs analytic
7. ``report``       FPGA budget on the targets (``RUN/report/``)
8. ``detections``   annotated PNGs from the golden model and from the RTL's output words
                    (``RUN/detections/``), which must be identical
9. ``index``        ``RUN/index.html`` tying it together

An interrupted flow resumes from the first unfinished step; a failed step stops the flow with
its message and keeps everything produced so far (rerun to retry from that step).
"""
from __future__ import annotations

import dataclasses
import io
import json
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import DupnetError
from .files import atomic_write_bytes
from .html_page import escape as esc, page, table

__all__ = ["FlowOptions", "run_flow", "STEPS", "FlowError"]


class FlowError(DupnetError):
    """A flow step failed; the message names the step and where its output is."""


@dataclass
class FlowOptions:
    config: str = "dupnet-demo"
    out: str = "runs/demo"
    data: str = "builtin"
    epochs: int | None = None          # None: the training recipe's default
    n_train: int | None = None
    n_test: int | None = None
    sim_images: int = 3                # built-in test images through the RTL
    targets: str = "ice40-up5k,ecp5-25f,artix7-35t"
    folding: str | None = None         # folding file; default: automatic (target_fps at clock)
    target_fps: float = 1000.0
    clock_mhz: float = 100.0
    pnr: bool = True
    quiet: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class _Ctx:
    opts: FlowOptions
    run: Path
    state: dict[str, Any]
    say: Callable[[str], None]
    cache: dict[str, Any] = field(default_factory=dict)

    def summary(self, step: str) -> dict[str, Any]:
        return self.state["steps"].get(step, {}).get("summary", {})

    # lazily loaded shared objects -----------------------------------------------------------
    def config(self):
        if "config" not in self.cache:
            from .sw.config import load_config
            self.cache["config"] = load_config(self.opts.config)
        return self.cache["config"]

    def artifact(self):
        if "artifact" not in self.cache:
            from .sw.artifact import Artifact
            self.cache["artifact"] = Artifact.load(self.run / "model.dupnet")
        return self.cache["artifact"]

    def folding(self):
        if "folding" not in self.cache:
            from .hw.folding import load_folding
            self.cache["folding"] = load_folding(self.run / "rtl" / "folding.toml")
        return self.cache["folding"]

    def test_images(self, n: int):
        from .sw.data import load_split
        ds = load_split(self.config(), self.opts.data, "test", n=n)
        samples = [ds[i] for i in range(min(n, len(ds)))]
        return np.stack([s.image for s in samples]).astype(np.uint8), samples


# ----------------------------------------------------------------------------------------------
# Steps

def _step_train(ctx: _Ctx) -> dict[str, Any]:
    from .sw.checkpoint import checkpoint_path
    from .sw.train import TrainOptions, train
    o = ctx.opts
    opts = TrainOptions()
    changes = {"data": o.data}
    if o.epochs is not None:
        changes["epochs"] = o.epochs
    if o.n_train is not None:
        changes["n_train"] = o.n_train
    if o.n_test is not None:
        changes["n_test"] = o.n_test
    opts = dataclasses.replace(opts, **changes)
    run = ctx.run / "train"
    resume = checkpoint_path(run).exists()
    if resume:
        ctx.say(f"resuming training from {checkpoint_path(run)}")
    res = train(ctx.config(), run, opts, resume=resume, progress=not o.quiet,
                evaluate=False)
    return {"epochs": res.epochs, "images_per_s": round(res.images_per_s, 1),
            "checkpoint": str(checkpoint_path(run).relative_to(ctx.run)),
            "final_loss": (res.history[-1].get("loss") if res.history and
                           isinstance(res.history[-1], dict) else None)}


def _metrics_dict(m) -> dict[str, Any]:
    return m.to_dict() if hasattr(m, "to_dict") else dict(m)


def _step_evaluate(ctx: _Ctx) -> dict[str, Any]:
    from .sw.evaluation import evaluate_path
    _, _, m = evaluate_path(ctx.run / "train", data=ctx.opts.data, n=ctx.opts.n_test)
    return {"pytorch": _metrics_dict(m)}


def _step_export(ctx: _Ctx) -> dict[str, Any]:
    from .sw.checkpoint import checkpoint_path
    from .sw.config import conv_geometries
    from .sw.export import export_checkpoint
    art = export_checkpoint(checkpoint_path(ctx.run / "train"))
    art.save(ctx.run / "model.dupnet")
    ctx.cache["artifact"] = art
    gs = conv_geometries(art.config)
    return {"artifact": "model.dupnet",
            "bytes": (ctx.run / "model.dupnet").stat().st_size,
            "on_chip_bits": sum(g.on_chip_bits for g in gs),
            "unique_weight_bits": sum(g.unique_weight_bits for g in gs),
            "weight_bits_without_dup": sum(g.weight_bits_without_dup for g in gs)}


def _step_equivalence(ctx: _Ctx) -> dict[str, Any]:
    from .sw.checkpoint import load_run
    from .sw.equivalence import compare_with_golden, equivalence_ok
    from .sw.evaluation import evaluate_path
    _, model = load_run(ctx.run / "train")
    images, _ = ctx.test_images(32)
    rep = compare_with_golden(model, ctx.artifact(), images)
    summary = {k: rep[k] for k in ("codes", "mismatches", "ties", "acc_equal", "acc_compared",
                                   "head_err")}
    summary["images"] = int(len(images))
    summary["per_layer"] = [list(x) for x in rep["per_layer"]]
    if not equivalence_ok(rep):
        raise FlowError(f"golden model and PyTorch eval differ: {rep['mismatches']} of "
                        f"{rep['codes']} codes ({rep['ties']} ties), last-layer accumulators "
                        f"equal: {rep['acc_equal']}")
    _, _, m = evaluate_path(ctx.run / "model.dupnet", data=ctx.opts.data, n=ctx.opts.n_test)
    summary["golden_metrics"] = _metrics_dict(m)
    return summary


def _step_rtl(ctx: _Ctx) -> dict[str, Any]:
    from .hw.autofold import choose_folding
    from .hw.generate import generate_verilog, write_design
    from .hw.lint import lint_verilog
    art = ctx.artifact()
    o = ctx.opts
    folding, _ = choose_folding(art.config, o.folding,
                                target_cycles=int(o.clock_mhz * 1e6 / o.target_fps))
    design = generate_verilog(art, folding)
    out = ctx.run / "rtl"
    write_design(design, out)
    ctx.cache.pop("folding", None)
    lint = lint_verilog(design.verilog, top=design.top_name)
    s = design.summary.get("model", design.summary)
    return {"top": design.top_name, "verilog": f"rtl/{design.top_name}.v",
            "design_hash": design.design_hash, "rom_bits_instantiated":
            design.rom_bits_instantiated, "lint": _lint_text(lint),
            "cycles_per_frame": s.get("cycles_per_frame"),
            "bottleneck_layer": s.get("bottleneck_layer"),
            "latency_cycles": s.get("latency_cycles"), "model": s}


def _lint_text(lint) -> str:
    return "clean (verilator --lint-only -Wall, documented waivers)" if lint.ok \
        else f"FAILED: {lint.output[:2000]}"


def _step_simulate(ctx: _Ctx) -> dict[str, Any]:
    from .sim.design import check_timing, simulate_artifact
    images, _ = ctx.test_images(ctx.opts.sim_images)
    sim_dir = ctx.run / "sim"
    sim_dir.mkdir(parents=True, exist_ok=True)
    log_lines: list[str] = []

    def log(msg: str) -> None:
        log_lines.append(msg)
        ctx.say(msg)
    res, design = simulate_artifact(ctx.artifact(), ctx.folding(), images, run_dir=sim_dir,
                                    log=log)
    timing = res.timing
    tc = check_timing(timing, design.model)
    lines = [f"frames: {len(images)} built-in test images, back to back",
             f"result: {'PASS' if res.ok else 'FAIL'} (every output word compared with the "
             f"golden model)",
             f"cycles/frame measured {tc.measured_frame} vs analytic {tc.model_frame}",
             f"first-output latency measured {tc.measured_latency} vs analytic "
             f"{tc.model_latency}",
             f"simulated {timing.total_cycles} cycles in {res.sim_wall_s:.1f} s wall "
             f"({res.cycles_per_second:,.0f} cycles/s)"]
    lines += [f"note: {n}" for n in tc.notes]
    atomic_write_bytes(sim_dir / "summary.log", ("\n".join(log_lines + lines) + "\n").encode())
    if not res.ok:
        raise FlowError("the RTL simulation failed (a mismatch with the golden model, or a "
                        "testbench error):\n" + res.describe_failure())
    rtl_out = res.run_dir / "rtl_output.npy"
    if not rtl_out.exists():
        raise FlowError(f"the simulation did not leave the captured output words {rtl_out}")
    np.save(sim_dir / "images.npy", images)
    if rtl_out.resolve() != (sim_dir / "rtl_output.npy").resolve():
        np.save(sim_dir / "rtl_output.npy", np.load(rtl_out))
    return {"ok": res.ok, "frames": int(len(images)), "measured_frame_cycles": tc.measured_frame,
            "analytic_frame_cycles": tc.model_frame, "measured_latency": tc.measured_latency,
            "analytic_latency": tc.model_latency, "timing_ok": tc.ok, "timing_notes": tc.notes,
            "cycles_per_second": round(res.cycles_per_second), "log": "sim/summary.log"}


def _step_report(ctx: _Ctx) -> dict[str, Any]:
    from .hw.budget.devices import load_devices, parse_targets
    from .hw.budget.flow import default_cache_dir
    from .hw.budget.render import write_report
    from .hw.budget.report import build_report, design_input_from_generated
    from .hw.generate import generate_verilog
    art = ctx.artifact()
    folding = ctx.folding()
    devices = parse_targets(ctx.opts.targets, None)
    design = design_input_from_generated(generate_verilog(art, folding), art, folding)
    rep = build_report(design, devices, cache_dir=default_cache_dir(), pnr=ctx.opts.pnr,
                       progress=ctx.say, all_devices=load_devices(None))
    files = write_report(rep, ctx.run / "report")
    targets = []
    for t in rep["targets"]:
        f = t["fit"]
        targets.append({"name": t["name"], "fits": f["fits"], "binding": f["binding"],
                        "headroom_pct": f["headroom_pct"], "fmax_mhz": t["fmax_mhz"],
                        "fps": t["fps"],
                        "resources": {k: {"used": v["used"], "capacity": v["capacity"]}
                                      for k, v in f["resources"].items()}})
    return {"targets": targets,
            "files": {k: str(Path(v).relative_to(ctx.run)) for k, v in files.items()}}


class _ReplayModel:
    """Model interface over accumulators captured from the RTL (for the detection drawing)."""

    def __init__(self, golden, accs: np.ndarray):
        self.config, self._golden, self._accs, self._i = golden.config, golden, accs, 0

    def __call__(self, images):
        acc = self._accs[self._i:self._i + len(images)]
        self._i += len(images)
        return acc

    def decode_inputs(self, acc):
        return self._golden.decode_inputs(acc)


def _step_detections(ctx: _Ctx) -> dict[str, Any]:
    from .sw.detect import detect_image, draw_boxes
    from .sw.golden import GoldenModel
    images = np.load(ctx.run / "sim" / "images.npy")
    rtl_acc = np.load(ctx.run / "sim" / "rtl_output.npy")
    golden = GoldenModel(ctx.artifact())
    replay = _ReplayModel(golden, rtl_acc)
    out = ctx.run / "detections"
    items, identical = [], True
    for i, img in enumerate(images):
        gb, gs = detect_image(golden, img)
        rb, rs = detect_image(replay, img)
        same = gb.shape == rb.shape and np.array_equal(gb, rb) and np.array_equal(gs, rs)
        identical &= bool(same)
        for tag, b, s in (("golden", gb, gs), ("rtl", rb, rs)):
            buf = io.BytesIO()
            draw_boxes(img, b, s).resize((img.shape[1] * 4, img.shape[0] * 4)).save(
                buf, format="PNG")
            atomic_write_bytes(out / f"{i:02d}_{tag}.png", buf.getvalue())
        items.append({"image": i, "boxes": gb.round(2).tolist(),
                      "scores": gs.round(4).tolist(), "rtl_identical": bool(same)})
    if not identical:
        raise FlowError("detections from the RTL output differ from the golden ones "
                        f"(see {out})")
    return {"images": items, "identical": identical}


def _step_index(ctx: _Ctx) -> dict[str, Any]:
    page = _render_index(ctx)
    atomic_write_bytes(ctx.run / "index.html", page.encode())
    return {"index": "index.html"}


STEPS: list[tuple[str, str, Callable[[_Ctx], dict[str, Any]]]] = [
    ("train", "QAT training on the data set", _step_train),
    ("evaluate", "AP@0.5 of the PyTorch model on the test split", _step_evaluate),
    ("export", "integer artifact", _step_export),
    ("equivalence", "golden model vs PyTorch eval, every activation code", _step_equivalence),
    ("rtl", "Verilog + analytic model, Verilator lint", _step_rtl),
    ("simulate", "Verilator simulation vs golden, cycles vs analytic", _step_simulate),
    ("report", "FPGA budget per target (yosys / nextpnr)", _step_report),
    ("detections", "annotated detections, golden vs RTL", _step_detections),
    ("index", "index.html", _step_index),
]


# ----------------------------------------------------------------------------------------------
# Driver

def _save_state(run: Path, state: dict[str, Any]) -> None:
    atomic_write_bytes(run / "flow.json", json.dumps(state, indent=2, default=str).encode())


def _load_state(run: Path, opts: FlowOptions) -> dict[str, Any]:
    path = run / "flow.json"
    if not path.exists():
        return {"options": opts.to_dict(), "steps": {}}
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise FlowError(f"{path}: unreadable flow state ({e}); delete it to start afresh") \
            from None
    if state.get("options", {}).get("config") != opts.config:
        raise FlowError(f"{run} holds a flow of config {state['options'].get('config')!r}, "
                        f"not {opts.config!r}: use another -o or delete it")
    state["options"] = opts.to_dict()
    return state


def run_flow(opts: FlowOptions, only_until: str | None = None) -> dict[str, Any]:
    run = Path(opts.out)
    run.mkdir(parents=True, exist_ok=True)
    state = _load_state(run, opts)

    def say(msg: str) -> None:
        if not opts.quiet:
            print(f"    {msg}", file=sys.stderr, flush=True)
    ctx = _Ctx(opts, run, state, say)
    ctx.config()  # a bad config fails before any work
    t_flow = time.monotonic()
    n = len(STEPS)
    for i, (name, what, fn) in enumerate(STEPS, 1):
        st = state["steps"].get(name, {})
        if st.get("status") == "done":
            print(f"[{i}/{n}] {name}: done earlier ({st.get('seconds', 0):.1f} s), skipped",
                  file=sys.stderr)
            continue
        print(f"[{i}/{n}] {name}: {what} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        state["steps"][name] = {"status": "running", "started": time.time()}
        _save_state(run, state)
        try:
            summary = fn(ctx)
        except KeyboardInterrupt:
            state["steps"][name] = {"status": "interrupted"}
            _save_state(run, state)
            raise
        except Exception as e:  # noqa: BLE001 - every failure is recorded, then reported
            dt = time.monotonic() - t0
            detail = str(e) if isinstance(e, DupnetError) else traceback.format_exc()
            state["steps"][name] = {"status": "failed", "seconds": dt, "error": detail}
            _save_state(run, state)
            raise FlowError(f"step '{name}' failed after {dt:.1f} s: {e}\n"
                            f"everything produced so far is kept in {run}; "
                            f"rerun the same command to retry from this step") from None
        dt = time.monotonic() - t0
        state["steps"][name] = {"status": "done", "seconds": dt, "summary": summary}
        _save_state(run, state)
        print(f"[{i}/{n}] {name}: done in {dt:.1f} s", file=sys.stderr, flush=True)
        if only_until == name:
            break
    state["total_seconds_this_invocation"] = time.monotonic() - t_flow
    _save_state(run, state)
    return state


# ----------------------------------------------------------------------------------------------
# index.html

_INDEX_STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
                "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
                "padding:3px 8px;text-align:right}th{background:#eee}td:first-child{text-align:"
                "left}figure{display:inline-block;margin:8px}img{image-rendering:pixelated;"
                "margin:2px}")


def _render_index(ctx: _Ctx) -> str:
    """``RUN/index.html``: every step's figures as this run measured them."""
    cfg = ctx.config()
    parts = [f"<h1>DupNet flow: {esc(cfg.name)}</h1>",
             f"<p>{esc(cfg.description)} &mdash; run folder <code>{esc(ctx.run)}</code>. "
             "Every figure below was measured by this run.</p>"]
    for section in (_index_steps, _index_accuracy, _index_accelerator, _index_simulation,
                    _index_budget, _index_detections):
        parts += section(ctx)
    return page(f"DupNet flow {cfg.name}", parts, _INDEX_STYLE)


def _index_steps(ctx: _Ctx) -> list[str]:
    """Status and time of every step."""
    steps = ctx.state["steps"]
    rows = [[n, steps.get(n, {}).get("status", "-"), f"{steps.get(n, {}).get('seconds', 0):.1f} s",
             w] for n, w, _ in STEPS]
    return ["<h2>Steps</h2>", table(["step", "status", "time", "what"], rows)]


def _index_accuracy(ctx: _Ctx) -> list[str]:
    """The paper-style table (size, compute, AP) and the golden-vs-PyTorch comparison."""
    from .sw.config import load_config
    from .sw.table import network_cost
    cfg = ctx.config()
    ev, eq = ctx.summary("evaluate"), ctx.summary("equivalence")
    ap_t = ev.get("pytorch", {}).get("ap")
    ap_g = eq.get("golden_metrics", {}).get("ap")
    rows = []
    for name in (cfg.name, f"{cfg.name}-ifq", f"{cfg.name}-float"):
        try:
            c = cfg if name == cfg.name else load_config(name)
        except DupnetError:
            continue
        k = network_cost(c)
        rows.append([k.name, k.weights, f"{k.size_bytes / 1024:.2f} KiB",
                     f"{k.binary_ops / 1e6:.2f} M", f"{k.float_ops / 1e6:.2f} M",
                     f"{ap_t:.3f} (PyTorch), {ap_g:.3f} (golden)" if name == cfg.name
                     and ap_t is not None and ap_g is not None else
                     "not trained by this flow (see scripts/bench_train.py)"])
    parts = ["<h2>Size, compute, accuracy</h2>",
             table(["network", "weights", "on-chip size", "binary ops/frame",
                    "float ops/frame", "AP@0.5 (test split)"], rows)]
    if ev.get("pytorch"):
        parts.append("<p>PyTorch model metrics: " + esc(json.dumps(ev["pytorch"])) + "</p>")
    if eq:
        parts.append(f"<p>Golden model vs PyTorch eval on {eq.get('images')} test images: "
                     f"{eq.get('codes'):,} activation codes compared, {eq.get('mismatches')} "
                     f"mismatches, {eq.get('ties')} ties; last-layer accumulators equal: "
                     f"{eq.get('acc_equal')}.</p>")
    return parts


def _index_accelerator(ctx: _Ctx) -> list[str]:
    """Per-layer folding and cycles of the analytic model, bottleneck and lint."""
    rtl = ctx.summary("rtl")
    layers = rtl.get("model", {}).get("layers", [])
    if not layers:
        return []
    rows = [[l.get("name"), l.get("kind", ""), l.get("pe", ""), l.get("simd", ""),
             f"{l.get('cycles_per_frame', 0):,}", f"{l.get('rom_bits', 0):,}",
             f"{l.get('buffer_bits', 0):,}", l.get("lut_estimate", "")]
            for l in layers]
    return ["<h2>Accelerator (analytic model)</h2>",
            f"<p>Bottleneck <b>{esc(rtl.get('bottleneck_layer'))}</b>: "
            f"{rtl.get('cycles_per_frame'):,} cycles/frame; weight ROM bits instantiated "
            f"{rtl.get('rom_bits_instantiated'):,}; lint: {esc(rtl.get('lint'))}. "
            f"Verilog: <a href='{esc(rtl.get('verilog'))}'>{esc(rtl.get('verilog'))}</a></p>",
            table(["layer", "kind", "PE", "SIMD", "cycles/frame", "ROM bits", "buffer bits",
                   "LUT est."], rows)]


def _index_simulation(ctx: _Ctx) -> list[str]:
    """The Verilator run: equality with the golden model, cycles vs analytic."""
    sim = ctx.summary("simulate")
    if not sim:
        return []
    return ["<h2>Simulation (Verilator)</h2>",
            f"<p>{sim.get('frames')} frames back to back, every output word equal to the "
            f"golden model: <b>{sim.get('ok')}</b>. Cycles/frame measured "
            f"{sim.get('measured_frame_cycles')} vs analytic "
            f"{sim.get('analytic_frame_cycles')}; first-output latency "
            f"{sim.get('measured_latency')} vs {sim.get('analytic_latency')}; "
            f"{sim.get('cycles_per_second'):,} cycles/s. "
            f"<a href='{esc(sim.get('log'))}'>log</a></p>"]


def _index_budget(ctx: _Ctx) -> list[str]:
    """Fit, resources and fmax per FPGA target, and a link to the full report."""
    rep = ctx.summary("report")
    if not rep:
        return []
    rows = []
    for t in rep["targets"]:
        r = t["resources"]
        rows.append([t["name"], "fits" if t["fits"] else "does not fit", t["binding"],
                     "-" if t["headroom_pct"] is None else f"{t['headroom_pct']:.1f}%",
                     *(f"{r[k]['used']:g} / {r[k]['capacity']:g}" if k in r else "-"
                       for k in ("lut", "ff", "bram", "dsp")),
                     f"{t['fmax_mhz']:.1f} MHz, {t['fps']:.1f} fps" if t["fmax_mhz"]
                     else "synthesis only"])
    report_html = esc(rep.get("files", {}).get("html", ""))
    return ["<h2>FPGA budget</h2>",
            table(["target", "fit", "binds first", "headroom", "LUT", "FF", "BRAM", "DSP",
                   "fmax"], rows),
            f"<p>Full report: <a href='{report_html}'>{report_html}</a></p>"]


def _index_detections(ctx: _Ctx) -> list[str]:
    """The annotated images, golden beside RTL."""
    det = ctx.summary("detections")
    if not det:
        return []
    cells = "".join(
        f"<figure><img src='detections/{d['image']:02d}_golden.png'>"
        f"<img src='detections/{d['image']:02d}_rtl.png'><figcaption>image {d['image']}: "
        f"golden (left) and RTL (right), identical: {d['rtl_identical']}"
        "</figcaption></figure>" for d in det["images"])
    return ["<h2>Detections</h2>", f"<div class='figs'>{cells}</div>"]
