"""Unit benches of the hardware engines (window unit, MVTU, max-pool) on Verilator + cocotb.

A :class:`UnitVariant` is one engine instance (geometry, duplication factors, folding) with its
input words and the golden output tensors; :func:`run_unit_bench` puts several variants of a
unit into one wrapper design (one Verilator build), runs :mod:`dupnet.sim.tb_units` (which is
``cocotb.parametrize``-d over variant and stall pattern) and returns one result per
(variant, stall) pair.

Expected outputs come from the golden model (:mod:`dupnet.sw.golden`: ``conv_acc``,
``threshold``, ``maxpool``, ``duplicate_inputs``) and from :func:`window_reference`, which
states the window unit's stream order (docs/hardware.md section 5) independently of the
generator's own reference helpers.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from dupnet.hw.folded import FoldedConv, FoldedPool
from dupnet.hw.mvtu import MVTU
from dupnet.hw.pool import MaxPool
from dupnet.hw.stream_layout import WordLayout
from dupnet.hw.window import WindowUnit
from dupnet.sw.config import ConvGeometry, PoolGeometry
from dupnet.sw.golden import conv_acc, duplicate_inputs, maxpool, threshold

from .build import build_model, run_cocotb
from .network import new_run_dir
from .scoreboard import Mismatch

__all__ = ["UnitVariant", "StallSpec", "UnitResult", "run_unit_bench", "window_variant",
           "mvtu_variant", "pool_variant", "window_reference", "wrapper_component",
           "DEFAULT_STALLS"]


@dataclass
class StallSpec:
    name: str
    p_in: float
    p_out: float
    seed: int = 0
    burst: int = 1


DEFAULT_STALLS = [StallSpec("nostall", 0.0, 0.0), StallSpec("random", 0.3, 0.3, seed=7),
                  StallSpec("bursty", 0.5, 0.4, seed=11, burst=4)]


@dataclass
class UnitVariant:
    """One engine to test.

    Attributes
    ----------
    name : str
        Identifier (used in the cocotb test name).
    layer : str
        Name in mismatch reports.
    make : callable
        Returns the Amaranth component (ports ``i``, ``o``).
    in_words : list of int
        Every input word, all frames.
    expected : ndarray ``[frames, H, W, C]``
        Golden output tensors; each output word carries ``layout.lanes`` consecutive
        elements of the ``C`` axis.
    layout : WordLayout
    beats_per_frame : int
        The no-stall cycles per frame of the unit (the analytic figure: one word per cycle
        on the busier side once primed, plus a stride-1 pool's edge and flush cycles).
    """
    name: str
    layer: str
    make: Callable[[], Any]
    in_words: list[int]
    expected: np.ndarray
    layout: WordLayout
    beats_per_frame: int
    params: dict = field(default_factory=dict)


@dataclass
class UnitResult:
    variant: str
    stall: str
    ok: bool
    report: dict

    @property
    def first(self) -> dict | None:
        return self.report.get("scoreboard", {}).get("first")

    def describe(self) -> str:
        sb = self.report.get("scoreboard", {})
        if self.ok:
            return (f"{self.variant}/{self.stall}: {sb.get('words')} words bit-exact, "
                    f"{self.report.get('cycles')} cycles")
        first = Mismatch(**sb["first"]) if sb.get("first") else "no report"
        return f"{self.variant}/{self.stall}: {sb.get('errors')} error(s); first: {first}"


# ----------------------------------------------------------------------------------------------
# references

def window_reference(x: np.ndarray, k: int, simd: int, x_dup: int = 1, repeat: int = 1
                     ) -> np.ndarray:
    """The window unit's output stream of one ``[H, W, C]`` frame, as ``[H, W, n*simd]``:
    per output pixel, ``repeat`` times, for (ky, kx) in raster order, ``X' = concat([x]*x_dup)``
    in SIMD chunks, zeros outside the image ("same" padding)."""
    h, w, c = x.shape
    g = ConvGeometry(0, "w", k, h, w, c, 1, 1, x_dup, 8, None, True)
    xd = duplicate_inputs(np.asarray(x, dtype=np.int64)[None], g)[0]
    pad = k // 2
    xp = np.zeros((h + 2 * pad, w + 2 * pad, xd.shape[-1]), dtype=np.int64)
    xp[pad:pad + h, pad:pad + w] = xd
    out = np.empty((h, w, repeat * k * k * xd.shape[-1]), dtype=np.int64)
    for y in range(h):
        for xx in range(w):
            win = xp[y:y + k, xx:xx + k].reshape(-1)
            out[y, xx] = np.tile(win, repeat)
    return out


def _chunks(images: np.ndarray, bits: int, lanes: int) -> list[int]:
    """The images as a stream of ``lanes``-code words, pixel by pixel (a unit's input)."""
    return WordLayout(lanes, bits, signed=False).pack(images)


def window_variant(name: str, height: int, width: int, channels: int, k: int, simd: int,
                   x_dup: int = 1, repeat: int = 1, bits: int = 2, frames: int = 2,
                   seed: int = 0) -> UnitVariant:
    """A window-unit variant with random ``bits``-bit input codes."""
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 1 << bits, size=(frames, height, width, channels))
    exp = np.stack([window_reference(im, k, simd, x_dup, repeat) for im in imgs])
    layer = FoldedConv.of(height, width, channels, repeat, k, 1, simd, x_dup=x_dup,
                          in_bits=bits, name=name)

    def make():
        return WindowUnit(layer)
    return UnitVariant(name, name, make, _chunks(imgs, bits, layer.in_lanes), exp,
                       WordLayout(simd, bits, signed=False), layer.cycles_per_frame,
                       dict(h=height, w=width, c=channels, k=k, simd=simd, x_dup=x_dup,
                            repeat=repeat, bits=bits))


def mvtu_variant(name: str, height: int, width: int, channels: int, out_channels: int, k: int,
                 pe: int, simd: int, w_dup: int = 1, x_dup: int = 1, in_bits: int = 2,
                 act_bits: int | None = 2, preadd: bool = True, frames: int = 2,
                 seed: int = 0) -> UnitVariant:
    """An MVTU variant fed with window chunks of random codes (hidden layer if ``act_bits``,
    else a last layer emitting accumulators with ``last``)."""
    rng = np.random.default_rng(seed)
    layer = FoldedConv.of(height, width, channels, out_channels, k, pe, simd, w_dup=w_dup,
                          x_dup=x_dup, in_bits=in_bits, act_bits=act_bits, preadd=preadd,
                          name=name)
    g = layer.geometry
    wts = rng.choice(np.array([-1, 1], dtype=np.int8), size=(out_channels, k, k, g.c_unique))
    imgs = rng.integers(0, 1 << in_bits, size=(frames, height, width, channels))
    acc = conv_acc(imgs, wts, g)
    thr = None
    if act_bits is not None:
        flat = acc.reshape(-1, out_channels)
        q = np.quantile(flat, np.arange(1, g.n_thresholds + 1) / (g.n_thresholds + 1), axis=0).T
        thr = np.sort(np.ceil(q).astype(np.int64), axis=1)
        thr[0, :] = g.threshold_min                       # one always-met channel
        if out_channels > 1:
            thr[1, :] = g.threshold_max                   # one never-met channel
        exp = threshold(acc, thr)
        lay = WordLayout(pe, act_bits, signed=False)
    else:
        exp = acc
        lay = WordLayout(pe, g.acc_bits, signed=True, has_last=True)
    chunks = np.concatenate([window_reference(im, k, simd, x_dup, layer.nf).reshape(-1)
                             for im in imgs])
    words = WordLayout(simd, in_bits, signed=False).pack(chunks)
    frame_beats = layer.output_beats_per_frame if act_bits is None else None

    def make():
        return MVTU(layer, wts, thr, frame_beats=frame_beats)
    return UnitVariant(name, name, make, words, exp, lay, len(words) // frames,
                       dict(h=height, w=width, c=channels, c_out=out_channels, k=k, pe=pe,
                            simd=simd, w_dup=w_dup, x_dup=x_dup, preadd=preadd,
                            act_bits=act_bits))


def pool_variant(name: str, height: int, width: int, channels: int, stride: int,
                 bits: int = 2, frames: int = 2, seed: int = 0,
                 lanes: int | None = None) -> UnitVariant:
    """A max-pool variant with random codes, ``lanes`` channels per beat (default: whole
    pixels); golden :func:`dupnet.sw.golden.maxpool`."""
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 1 << bits, size=(frames, height, width, channels))
    exp = maxpool(imgs, stride)
    layer = FoldedPool(PoolGeometry(0, name, stride, height, width, channels, bits), lanes)

    def make():
        return MaxPool(layer)
    return UnitVariant(name, name, make, _chunks(imgs, bits, layer.lanes), exp,
                       WordLayout(layer.lanes, bits, signed=False), layer.cycles_per_frame,
                       dict(h=height, w=width, c=channels, stride=stride, bits=bits,
                            lanes=layer.lanes))


# ----------------------------------------------------------------------------------------------
# wrapper and run

def wrapper_component(variants: Sequence[UnitVariant]):
    """One Amaranth component holding every variant; ports ``v<k>_i`` / ``v<k>_o``."""
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    comps = [v.make() for v in variants]
    members = {}
    for k, c in enumerate(comps):
        members[f"v{k}_i"] = c.signature.members["i"]
        members[f"v{k}_o"] = c.signature.members["o"]

    class UnitWrapper(wiring.Component):
        def __init__(self):
            super().__init__(members)

        def elaborate(self, platform):
            m = Module()
            for k, c in enumerate(comps):
                m.submodules[f"u{k}_{variants[k].name}"] = c
                wiring.connect(m, wiring.flipped(getattr(self, f"v{k}_i")), c.i)
                wiring.connect(m, c.o, wiring.flipped(getattr(self, f"v{k}_o")))
            return m
    return UnitWrapper()


def wrapper_verilog(variants: Sequence[UnitVariant], name: str = "unit_bench") -> str:
    from amaranth.back import verilog
    from .toolchain import ensure_amaranth_yosys
    ensure_amaranth_yosys()
    return verilog.convert(wrapper_component(variants), name=name, emit_src=False)


def run_unit_bench(variants: Sequence[UnitVariant], stalls: Sequence[StallSpec] = (),
                   tag: str = "units", run_dir: Path | None = None, waves: bool = False,
                   log=None) -> list[UnitResult]:
    """Build one wrapper of ``variants`` and run every (variant, stall) combination."""
    stalls = list(stalls) or DEFAULT_STALLS
    names = [v.name for v in variants]
    if len(set(names)) != len(names) or not all(n.isidentifier() for n in names):
        raise ValueError(f"variant names must be unique identifiers: {names}")
    verilog = wrapper_verilog(variants, name=f"{tag}_bench")
    model = build_model(verilog, f"{tag}_bench", waves=waves, log=log)
    run_dir = Path(run_dir).resolve() if run_dir else new_run_dir(tag)   # cocotb runs elsewhere
    run_dir.mkdir(parents=True, exist_ok=True)
    jv = []
    for k, v in enumerate(variants):
        np.savez(run_dir / f"{v.name}.npz", expected=np.asarray(v.expected, dtype=np.int64))
        (run_dir / f"{v.name}_in.json").write_text(json.dumps([hex(w) for w in v.in_words]))
        frames = v.expected.shape[0]
        slow = 1.0 / max(0.05, min((1 - s.p_in) * (1 - s.p_out) for s in stalls))
        jv.append({"name": v.name, "layer": v.layer, "in_prefix": f"v{k}_i",
                   "out_prefix": f"v{k}_o", "data": f"{v.name}.npz",
                   "in_words": f"{v.name}_in.json",
                   "layout": {"lanes": v.layout.lanes, "bits": v.layout.bits,
                              "signed": v.layout.signed, "has_last": v.layout.has_last},
                   "max_cycles": int((frames + 2) * v.beats_per_frame * slow * 4 + 2000),
                   "params": v.params})
    job = {"variants": jv, "stalls": [s.__dict__ for s in stalls]}
    (run_dir / "job.json").write_text(json.dumps(job, indent=1))
    results = run_cocotb(model, "dupnet.sim.tb_units", run_dir,
                         env={"DUPNET_SIM_JOB": str(run_dir / "job.json")}, waves=waves)
    junit = _junit_cases(results)
    out = []
    for v in variants:
        for s in stalls:
            rp = run_dir / f"report_{v.name}_{s.name}.json"
            rep = json.loads(rp.read_text()) if rp.is_file() else {}
            passed = junit.get(f"unit/variant={v.name}/stall={s.name}")
            ok = bool(rep) and rep["scoreboard"]["ok"] and not rep["timed_out"] \
                and passed is not False
            out.append(UnitResult(v.name, s.name, ok, rep))
    return out


def _junit_cases(path: Path) -> dict[str, bool]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {}
    out = {}
    for tc in root.iter("testcase"):
        bad = tc.find("failure") is not None or tc.find("error") is not None
        out[tc.get("name", "")] = not bad
    return out
