"""Host side of a whole-design simulation: write a job, build/reuse the model, run, read back.

:func:`run_design` is the one entry point used by ``dupnet sim``, the regression tests and the
benchmarks.  It takes any design with the top-level stream contract (``clk``, ``rst``, input
stream ``i__*`` of pixels, output stream ``o__*`` with a ``last`` bit at the MSB, optional
probe streams), the input images and the golden tensors of every stream it should check, and
returns a :class:`SimResult` with the scoreboards' verdicts and the measured cycles.

Waves: ``waves=True`` traces the run; a :class:`WavesWindow` (cycles, the numbering of the
reports) keeps only a span of it, so that the file of a long run stays small
(:func:`WavesWindow.around` a mismatch: what ``dupnet sim`` re-runs a failing run with).
"""
from __future__ import annotations

import json
import os
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from dupnet.hw.stream_layout import WordLayout

from ..files import atomic_save_npy, atomic_write_text
from .build import STEPS_PER_NS, VerilatedModel, build_model, cache_root, run_cocotb
from .toolchain import waves_format

__all__ = ["StreamCheck", "SimResult", "run_design", "new_run_dir", "Timing", "WavesWindow",
           "CLOCK_PERIOD_NS", "WAVES_BEFORE", "WAVES_AFTER"]

#: Clock period of the cocotb benches: cycle ``c`` starts at ``c * CLOCK_PERIOD_NS`` ns.
CLOCK_PERIOD_NS = 10
#: Default wave window of a failing run's re-run: this many cycles before the first mismatch
#: (the cause is earlier than the wrong word) and after it.
WAVES_BEFORE = 3000
WAVES_AFTER = 1000


@dataclass(frozen=True)
class WavesWindow:
    """Cycles ``[start, start + cycles)`` of a run to trace (``cycles`` None: to the end).

    Cycle numbers are those the run reports (frame cycles, a mismatch's ``cycle``).
    """
    start: int = 0
    cycles: int | None = None

    def __post_init__(self):
        if self.start < 0 or (self.cycles is not None and self.cycles < 1):
            raise ValueError(f"bad waves window: start {self.start}, cycles {self.cycles}")

    @classmethod
    def around(cls, cycle: int, before: int = WAVES_BEFORE, after: int = WAVES_AFTER
               ) -> "WavesWindow":
        """The window from ``before`` cycles before ``cycle`` to ``after`` cycles after it."""
        start = max(0, cycle - before)
        return cls(start, cycle + after - start)

    @property
    def until(self) -> int | None:
        """First cycle after the window (None: open-ended)."""
        return None if self.cycles is None else self.start + self.cycles

    def steps(self, period_steps: int) -> tuple[int, int | None]:
        """The window in simulation time steps, for a clock of ``period_steps``."""
        return (self.start * period_steps,
                None if self.until is None else self.until * period_steps)

    def __str__(self) -> str:
        return (f"cycles {self.start}.." + ("end" if self.until is None else
                                            f"{self.until - 1}"))


@dataclass
class StreamCheck:
    """One stream to compare: its port prefix, word layout and golden ``[N, H, W, C]``."""
    layer: str
    prefix: str
    layout: WordLayout
    expected: np.ndarray
    passive: bool = True      # probes are observed, never back-pressured by the bench


@dataclass
class Timing:
    """Measured cycles (no-stall runs are the ones comparable with the analytic model)."""
    first_input: list[int]        # cycle of each frame's first input beat
    first_output: list[int]       # cycle of each frame's first output word
    last_output: list[int]        # cycle of each frame's last output word
    total_cycles: int

    @property
    def latency(self) -> int | None:
        """First-output latency of frame 0: first output word - first input beat (cycles)."""
        if self.first_input and self.first_output:
            return self.first_output[0] - self.first_input[0]
        return None

    @property
    def frame_cycles(self) -> int | None:
        """Cycles per frame in steady state: spacing of the last two frame ends (back-to-back
        frames; the pipeline needs two or three frames to reach steady state, because the line
        buffers let the input run ahead of the bottleneck at first), or first input to last
        output for a single frame."""
        if len(self.last_output) >= 2:
            return self.last_output[-1] - self.last_output[-2]
        if self.last_output and self.first_input:
            return self.last_output[0] - self.first_input[0] + 1
        return None

    @property
    def initiation_interval(self) -> int | None:
        """Spacing of the last two frames' first output words: how often the pipeline starts
        a new frame in steady state (back-to-back frames)."""
        if len(self.first_output) >= 2:
            return self.first_output[-1] - self.first_output[-2]
        return None

    @property
    def input_spacing(self) -> int | None:
        """Spacing of the last two frames' first input beats.  Not a steady-state figure for
        short runs: the line/row buffers let the input run ahead of the bottleneck by up to
        their capacity, so for small images this is below the cycles/frame (reported only)."""
        if len(self.first_input) >= 2:
            return self.first_input[-1] - self.first_input[-2]
        return None

    def to_dict(self) -> dict:
        return {"first_input": self.first_input, "first_output": self.first_output,
                "last_output": self.last_output, "total_cycles": self.total_cycles,
                "latency": self.latency, "frame_cycles": self.frame_cycles,
                "initiation_interval": self.initiation_interval,
                "input_spacing": self.input_spacing}


@dataclass
class SimResult:
    ok: bool
    report: dict
    run_dir: Path
    model: VerilatedModel
    wall_s: float
    sim_wall_s: float
    waves: Path | None = None
    message: str = ""
    waves_window: WavesWindow | None = None

    @property
    def scoreboards(self) -> list[dict]:
        return self.report.get("scoreboards", [])

    @property
    def first_mismatch(self) -> dict | None:
        for sb in self.scoreboards:
            if sb["first"] is not None:
                return sb["first"]
        return None

    @property
    def first_error_cycle(self) -> int | None:
        """The earliest cycle of any stream's first error (probes see it before the output)."""
        cycles = [sb["first"]["cycle"] for sb in self.scoreboards
                  if sb["first"] is not None and sb["first"].get("cycle") is not None]
        return min(cycles) if cycles else None

    @property
    def timing(self) -> Timing:
        out = self.scoreboards[0] if self.scoreboards else {}
        return Timing(first_input=self.report.get("frame_first_input", []),
                      first_output=out.get("first_word_cycles", []),
                      last_output=out.get("frame_end_cycles", []),
                      total_cycles=self.report.get("end_cycle", 0)
                      - self.report.get("start_cycle", 0))

    @property
    def cycles_per_second(self) -> float:
        return self.timing.total_cycles / max(self.report.get("wall_s", 0.0), 1e-9)

    def describe_failure(self) -> str:
        lines = [self.message] if self.message else []
        for sb in self.scoreboards:
            if not sb["ok"]:
                from .scoreboard import Mismatch
                first = Mismatch(**sb["first"]) if sb["first"] else None
                lines.append(f"{sb['errors']} error(s) in stream of layer {sb['layer']}; "
                             f"first: {first}")
        if self.report.get("timed_out"):
            lines.append(f"timed out after {self.report['max_cycles']} cycles")
        if self.waves:
            lines.append(f"waves ({self.waves_window}): {self.waves}")
        lines.append(f"log: {self.run_dir / 'sim.log'}")
        return "\n".join(lines)


def new_run_dir(tag: str) -> Path:
    """A fresh folder for one run, under the cache's ``runs/`` (kept for post-mortem)."""
    base = cache_root().parent / "sim-runs"
    base.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for k in range(1000):
        d = base / f"{tag}-{stamp}-{os.getpid()}-{k}"
        try:
            d.mkdir()
            return d
        except FileExistsError:
            continue
    raise RuntimeError("could not create a run folder")


def run_design(verilog: str, top: str, images: np.ndarray, output: StreamCheck,
               probes: Sequence[StreamCheck] = (), *, design_hash: str | None = None,
               pixels_per_beat: int = 1, scenario: str = "frames", stall_in: float = 0.0,
               stall_out: float = 0.0, burst: int = 1, seed: int = 0,
               max_cycles: int | None = None, expected_cycles: int | None = None,
               waves: bool = False, waves_window: WavesWindow | None = None,
               run_dir: Path | None = None, reset_after: int | None = None,
               log=None, model: VerilatedModel | None = None,
               load_words: Sequence[int] | None = None,
               reload_words: Sequence[int] | None = None) -> SimResult:
    """Simulate ``verilog`` on ``images`` and compare ``output`` (and ``probes``) bit-exactly.

    Parameters
    ----------
    images : ndarray ``[N, H, W, C]`` uint8 codes
    output : StreamCheck
        The output stream (``prefix="o"``) with the golden last-layer tensors.
    probes : sequence of StreamCheck
        Probed layer streams (generated with ``probes=True``).
    scenario : {"frames", "reset"}
        See :mod:`dupnet.sim.tb_network`.
    stall_in, stall_out : float
        Probability of a stalled cycle on the input (valid) / output (ready) side.
    seed : int
        Seed of both stall patterns.
    max_cycles : int, optional
        Simulation time limit; by default derived from ``expected_cycles`` (or generous).
    waves : bool
        Build with tracing and write ``run_dir/waves.fst`` (``.vcd`` without lz4).
    waves_window : WavesWindow, optional
        Trace only these cycles (default: the whole run).
    load_words, reload_words : sequence of int, optional
        A design with a load port: the load image sent from reset, and (``reset`` scenario)
        the image loaded after the reset (default: the same).
    """
    t0 = time.perf_counter()
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be [N, H, W, C], got shape {images.shape}")
    if scenario == "reset" and images.shape[0] < 2:
        raise ValueError("the reset scenario needs at least 2 frames")
    if model is None:
        model = build_model(verilog, top, design_hash, waves=waves, log=log)
    run_dir = Path(run_dir).resolve() if run_dir else new_run_dir(top)   # cocotb runs elsewhere
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_save_npy(run_dir / "images.npy", images.astype(np.int64))
    streams = []
    for k, s in enumerate([output, *probes]):
        fname = f"expected_{k}_{s.layer}.npy"
        atomic_save_npy(run_dir / fname, np.asarray(s.expected, dtype=np.int64))
        streams.append({"layer": s.layer, "prefix": s.prefix, "expected": fname,
                        "passive": s.passive,
                        "layout": {"lanes": s.layout.lanes, "bits": s.layout.bits,
                                   "signed": s.layout.signed, "has_last": s.layout.has_last}})
    if max_cycles is None:
        n = images.shape[0]
        base = expected_cycles or (images.shape[1] * images.shape[2] * 64)
        slow = 1.0 / max(1e-3, (1 - stall_in) * (1 - stall_out))
        max_cycles = int((n + 2) * base * slow * 3 + 10_000)
    job = {"images": "images.npy", "output": streams[0], "probes": streams[1:],
           "pixels_per_beat": pixels_per_beat, "scenario": scenario, "stall_in": stall_in,
           "stall_out": stall_out, "burst": burst, "seed": seed, "max_cycles": max_cycles,
           "reset_after": reset_after, "period_ns": CLOCK_PERIOD_NS}
    for key, words in (("load", load_words), ("reload", reload_words)):
        if words is not None:
            atomic_save_npy(run_dir / f"{key}.npy", np.asarray(words, dtype=np.int64))
            job[key] = f"{key}.npy"
    atomic_write_text(run_dir / "job.json", json.dumps(job, indent=1))
    report_path = run_dir / "report.json"
    if report_path.exists():
        report_path.unlink()
    t1 = time.perf_counter()
    window = (waves_window or WavesWindow()).steps(CLOCK_PERIOD_NS * STEPS_PER_NS)
    results = run_cocotb(model, "dupnet.sim.tb_network", run_dir,
                         env={"DUPNET_SIM_JOB": str(run_dir / "job.json")}, seed=seed,
                         waves=waves, waves_window=window)
    sim_wall = time.perf_counter() - t1
    message = ""
    if report_path.is_file():
        report = json.loads(report_path.read_text())
    else:
        report = {}
        message = f"the testbench wrote no report (it failed early); see {run_dir / 'sim.log'}"
    ok = bool(report) and _junit_ok(results) and all(sb["ok"] for sb in report["scoreboards"]) \
        and not report.get("timed_out")
    if report and not _junit_ok(results) and not message:
        message = f"the cocotb test failed; see {run_dir / 'sim.log'}"
    w = run_dir / f"waves.{waves_format()}"
    return SimResult(ok, report, run_dir, model, time.perf_counter() - t0, sim_wall,
                     waves=w if waves and w.exists() else None, message=message,
                     waves_window=(waves_window or WavesWindow()) if waves else None)


def _junit_ok(path: Path) -> bool:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return False
    n = bad = 0
    for ts in root.iter("testsuite"):
        n += int(ts.get("tests", 0))
        bad += int(ts.get("failures", 0)) + int(ts.get("errors", 0))
    for tc in root.iter("testcase"):
        if tc.find("failure") is not None or tc.find("error") is not None:
            bad += 1
    return n > 0 and bad == 0
