"""From an artifact to a verified simulation: generate (cached), build (cached), check, time.

* :func:`generate_cached` — ``dupnet.hw.generate.generate_verilog`` with an on-disk cache keyed
  by the artifact bytes, the folding, the options and a hash of the ``dupnet.hw`` sources (so a
  generator change regenerates); big designs take seconds to elaborate.
* :func:`network_streams` — the golden tensors of the output stream and of every probed layer,
  with their word layouts (docs/hardware.md section 2).
* :func:`simulate_artifact` — the whole-network bench (cocotb) on one artifact.
* :func:`check_timing` — measured cycles vs :func:`dupnet.hw.analytic.pipeline_model`.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path


import numpy as np

from dupnet.hw.kinds import output_layouts
from dupnet.hw.loader import load_image
from dupnet.sw.golden import GoldenModel

from .build import cache_root
from .network import SimResult, StreamCheck, Timing, WavesWindow, run_design

__all__ = ["DesignInfo", "generate_cached", "network_streams", "simulate_artifact",
           "check_timing", "TimingCheck", "hw_source_hash", "FRAME_TOLERANCE",
           "LATENCY_TOLERANCE"]

#: Measured steady-state cycles/frame and initiation interval may exceed the analytic
#: ``cycles_per_frame`` by this fraction (plus :data:`FRAME_SLACK_CYCLES`), never undercut it.
#: Both are 0: the two must equal the model exactly.  The model's bottleneck (a conv's
#: ``H*W*sf*nf`` MVTU beats, a pool's input pixels, the input beats ``H*W/P``) is a hard lower
#: bound, and every engine runs at its own rate across frame boundaries (docs/hardware.md,
#: section 5), so no measured design needs slack: the Amaranth simulations of
#: ``tests/hw/test_hw_top.py`` / ``test_hw_latency.py`` (balanced chains, pool-bound,
#: one-row / one-column maps), the ``tests/sim`` matrix on Verilator, dupnet-demo at
#: ``--target-cycles 65536`` (49,152) and dupnet-tinier-yolo at its default folding
#: (3,115,008) all measure exactly the model (docs/verification.md).  A design that needs a
#: tolerance gets it here, documented with its measured case.
FRAME_TOLERANCE = 0.0
FRAME_SLACK_CYCLES = 0
#: Measured first-output latency (frame 0, first input beat to first output word) may differ
#: from the analytic ``latency_cycles`` by this fraction of it, either way.  The model walks the
#: first frame pixel by pixel through every unit's registers (docs/hardware.md, section 4) and
#: equals the measured latency on every design above (tinier-yolo: 1,267,606 cycles); the 1 %
#: is what the timing check promises for any design.
LATENCY_TOLERANCE = 0.01


@dataclass
class DesignInfo:
    """The generated design as the benches need it."""
    verilog: str
    top_name: str
    design_hash: str
    summary: dict

    @property
    def model(self) -> dict:
        return self.summary["model"]


def hw_source_hash() -> str:
    """Hash of the ``dupnet.hw`` package sources (part of the generation cache key)."""
    import dupnet.hw as hwpkg
    h = hashlib.sha256()
    root = Path(hwpkg.__file__).parent
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def generate_cached(artifact, folding, pixels_per_beat: int = 1, probes: bool = False,
                    name: str = "dupnet_top", log=None) -> DesignInfo:
    """Generate the Verilog of ``artifact`` at ``folding``, reusing an identical earlier run."""
    from dupnet.hw.generate import generate_verilog
    key_src = json.dumps({"art": hashlib.sha256(artifact.to_bytes()).hexdigest(),
                          "folding": folding.to_dict(), "ppb": pixels_per_beat,
                          "probes": probes, "name": name, "hw": hw_source_hash()},
                         sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
    d = cache_root().parent / "generated" / key
    vfile, sfile = d / f"{name}.v", d / f"{name}.json"
    if vfile.is_file() and sfile.is_file():
        summary = json.loads(sfile.read_text())
        return DesignInfo(vfile.read_text(), name, summary["design"]["design_hash"], summary)
    if log:
        log(f"generating Verilog ({artifact.config.name}, probes={probes}) ...")
    des = generate_verilog(artifact, folding, pixels_per_beat=pixels_per_beat, probes=probes,
                           name=name)
    d.mkdir(parents=True, exist_ok=True)
    for path, text in ((vfile, des.verilog), (sfile, json.dumps(des.summary))):
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return DesignInfo(des.verilog, des.top_name, des.design_hash, des.summary)


def network_streams(artifact, folding, images: np.ndarray, probes: bool = False
                    ) -> tuple[StreamCheck, list[StreamCheck]]:
    """Golden tensors and word layouts of the output stream (and every layer's probe)."""
    outs = GoldenModel(artifact).forward(images)
    checks = [StreamCheck(g.name, f"probe_{g.name}", layout, t)
              for (g, layout), t in zip(output_layouts(artifact.config, folding), outs)]
    last = checks[-1]
    output = StreamCheck(last.layer, "o", last.layout, last.expected, passive=False)
    return output, (checks if probes else [])


@dataclass
class TimingCheck:
    """Measured vs analytic cycles, with the verdict."""
    measured_frame: float | None
    model_frame: int
    measured_latency: int | None
    model_latency: int
    measured_ii: float | None
    ok: bool
    notes: list[str]

    def __str__(self) -> str:
        def f(v):
            return "n/a" if v is None else (f"{v:.1f}" if isinstance(v, float) else str(v))
        return (f"cycles/frame measured {f(self.measured_frame)} vs analytic "
                f"{self.model_frame}; first-output latency measured "
                f"{f(self.measured_latency)} vs analytic {self.model_latency}; initiation "
                f"interval measured {f(self.measured_ii)}"
                + ("" if self.ok else " -- " + "; ".join(self.notes)))


def check_timing(timing: Timing, model: dict, frames_back_to_back: bool = True) -> TimingCheck:
    """Compare measured cycles (a no-stall run) with the analytic model (``summary["model"]``).

    Cycles/frame and the initiation interval must equal the model's ``cycles_per_frame``
    (:data:`FRAME_TOLERANCE` / :data:`FRAME_SLACK_CYCLES`, both 0: exact; never below the
    model, a lower bound); the first-output latency must lie within
    :data:`LATENCY_TOLERANCE` (1 %) of ``latency_cycles``.  Needs >= 2 back-to-back frames
    without stalls for the steady-state figures (the first-output latency: any no-stall run);
    a figure it needs that was not measured fails the check.
    """
    mf, ml = int(model["cycles_per_frame"]), int(model["latency_cycles"])
    notes = []
    # one frame: first input to last output includes the latency; not a steady-state figure
    fr = timing.frame_cycles if frames_back_to_back and len(timing.last_output) >= 2 else None
    ii = timing.initiation_interval
    hi = mf * (1 + FRAME_TOLERANCE) + FRAME_SLACK_CYCLES
    for what, v in (("cycles/frame", fr), ("initiation interval", ii)):
        if v is None:
            continue
        if v < mf:
            notes.append(f"{what} {v} below the analytic lower bound {mf}")
        elif v > hi:
            notes.append(f"{what} {v} above analytic {mf}" + (
                f" + {FRAME_TOLERANCE:.0%} + {FRAME_SLACK_CYCLES}" if hi > mf else
                " (must be equal)"))
    if frames_back_to_back and fr is None:
        notes.append(f"cycles/frame not measured: {len(timing.last_output)} frame(s) ended, "
                     f"2 back-to-back frames needed")
    lat = timing.latency
    if lat is None:
        notes.append("first-output latency not measured: no output word")
    elif abs(lat - ml) > LATENCY_TOLERANCE * ml:
        notes.append(f"latency {lat} differs from analytic {ml} by "
                     f"{(lat - ml) / max(1, ml):+.1%} (allowed: {LATENCY_TOLERANCE:.0%})")
    return TimingCheck(fr, mf, lat, ml, ii, not notes, notes)


def simulate_artifact(artifact, folding, images: np.ndarray, *, probes: bool = False,
                      pixels_per_beat: int = 1, scenario: str = "frames",
                      stall_in: float = 0.0, stall_out: float = 0.0, burst: int = 1,
                      seed: int = 0, waves: bool = False, design: DesignInfo | None = None,
                      golden_artifact=None, run_dir: Path | None = None, log=None,
                      waves_window: WavesWindow | None = None, reload_artifact=None
                      ) -> tuple[SimResult, DesignInfo]:
    """Generate (cached), build (cached) and simulate ``artifact``; compare with the golden
    model of ``golden_artifact`` (default: the same artifact).  ``waves_window``: the cycles
    that ``waves`` traces (default: the whole run).  A design with a load port
    (``folding.weights == "load"``) is loaded with ``artifact``'s image, and in the ``reset``
    scenario reloaded with ``reload_artifact``'s (default: the same)."""
    design = design or generate_cached(artifact, folding, pixels_per_beat, probes, log=log)
    out, prb = network_streams(golden_artifact or artifact, folding, images, probes)
    load = reload = None
    if folding.weights == "load":
        # the weights this run computes with: the artifact's, and after a reset (reset
        # scenario) ``reload_artifact``'s
        load = load_image(artifact, folding)[1]
        reload = load_image(reload_artifact or artifact, folding)[1]
    res = run_design(design.verilog, design.top_name, images, out, prb,
                     design_hash=design.design_hash, pixels_per_beat=pixels_per_beat,
                     scenario=scenario, stall_in=stall_in, stall_out=stall_out, burst=burst,
                     seed=seed, expected_cycles=int(design.model["cycles_per_frame"])
                     + int(design.model["latency_cycles"]), waves=waves,
                     waves_window=waves_window, run_dir=run_dir, log=log,
                     load_words=load, reload_words=reload)
    return res, design
