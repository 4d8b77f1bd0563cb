"""Analytic model of the accelerator: the one place for cycles, memory bits and LUT/FF estimates.

The generator (:mod:`dupnet.hw.top`), the CLI summary, the budget reports and the testbenches
import these numbers from here and never re-derive them.

Per conv layer with folding (PE, SIMD)::

    sf = k*k*C'/SIMD            input folds per output pixel and neuron fold
    nf = C_out/PE               neuron folds per output pixel
    cycles_per_frame = H*W*sf*nf

The LUT/FF estimates model the micro-architecture of :mod:`dupnet.hw.mvtu` (per arithmetic: the
default ``"xnor"`` LUT6 bit-heap compressor per PE counted by
:func:`dupnet.hw.compressor.compressor_luts`, or the ``"gated"`` carry-chain adder trees with a
shared input-sum tree and ``acc = 2*S - T``), the window unit and the adapters, for LUT6
devices. They are estimates: ``scripts/bench_hw.py`` and the budget reports
put Yosys figures beside them.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from dupnet.sw.config import (ConvGeometry, NetworkConfig, PoolGeometry, ceil_div,
                              network_geometry)

#: MVTU datapath arithmetics (docs/hardware.md): ``"xnor"`` offset form with a LUT6 bit-heap
#: compressor (the default), ``"gated"`` AND-gated carry-chain adder trees with ``2*S - T``,
#: ``"addsub"`` the naive signed add/sub tree (the LUT benchmark's baseline)
ARITHMETICS = ("xnor", "gated", "addsub")
DEFAULT_ARITH = ARITHMETICS[0]

__all__ = ["ARITHMETICS", "DEFAULT_ARITH", "LayerModel", "PipelineModel", "layer_model",
           "pool_model", "pipeline_model",
           "window_depth", "adder_tree_luts", "finn_mvau_lut_estimate", "REFERENCE_CLOCK_HZ",
           "weight_rom_shape", "offset_threshold_bits", "offset_sum_max", "threshold_rom_shape",
           "preadd_term_bits", "pool_rowbuf_depth", "PIPELINE_DEPTH",
           "WINDOW_SLACK_PIXELS"]

REFERENCE_CLOCK_HZ = 100_000_000
#: register stages from an accepted MVTU input chunk to its output register
PIPELINE_DEPTH = 3


#: Line-buffer slack of a window unit beyond its minimum ``(k-1)*W + k + 1`` pixels:
#: ``ceil(W/2) + WINDOW_SLACK_PIXELS``.  Why: the upstream of a conv layer delivers in bursts
#: (a stride-2 pool emits a whole output row during every second input row; a stride-1 pool
#: emits its bottom row after the frame; a k=3 window needs ``W+1`` pixels of the next frame
#: before its first output).  When the upstream engine runs at the same cycles/frame as this
#: one (a balanced pipeline) a k=3 window behind a stride-2 pool must hold about
#: ``2.5*W + 4`` pixels for both engines to stay busy (the fluid bound; measured on
#: dupnet-tinier-yolo: slack ``W/2`` runs at the analytic cycles/frame, ``3W/8`` at +15 %,
#: ``W/4`` at +28 %, 8 pixels at +96 %, the former ``2W + 4`` rounded up to a power of two at
#: +14 %).  ``WINDOW_SLACK_PIXELS`` covers the pipeline latencies on top of the fluid bound.
WINDOW_SLACK_PIXELS = 8


def window_depth(k: int, width: int) -> int:
    """Line-buffer depth (pixels): the window's minimum ``(k-1)*W + k + 1`` (the rows the
    window spans plus the pixel being written) plus ``ceil(W/2) + WINDOW_SLACK_PIXELS`` of
    slack for bursty upstreams; exact (the addresses wrap at the depth, no power of two)."""
    return (k - 1) * width + k + 1 + (width + 1) // 2 + WINDOW_SLACK_PIXELS


def pool_rowbuf_depth(stride: int, width: int) -> int:
    """Row-buffer depth (pixels) of the max-pool."""
    return max(1, width // 2) if stride == 2 else max(1, width - 1)


def weight_rom_shape(g: ConvGeometry, pe: int, simd: int) -> tuple[int, int]:
    """``(width, depth)`` of each of the PE weight ROMs: unique bits only."""
    width = simd // g.w_dup if simd % g.w_dup == 0 else 1
    depth = (g.out_channels // pe) * g.k * g.k * g.c_unique // width
    return width, depth


def offset_sum_max(g: ConvGeometry, simd: int, preadd: bool = True) -> int:
    """Largest offset sum ``S'`` of the ``"xnor"`` MVTU: every term at its complement's maximum,
    ``2^t - 1`` for a ``t``-bit term (``t = b``, or the pre-sum's width with ``preadd``), over
    the ``k*k*C'/g`` terms of a window (``g = min(SIMD, w_dup)`` inputs per pre-summed term).
    Equals ``acc_max`` without pre-add; above it with pre-add (a pre-sum of ``g`` inputs stays
    below ``2^t - 1``)."""
    use_pre = preadd and g.w_dup > 1
    gsize = min(simd, g.w_dup) if use_pre else 1
    t = preadd_term_bits(g, simd) if use_pre else g.in_bits
    return (g.window // gsize) * ((1 << t) - 1)


def offset_threshold_bits(g: ConvGeometry, simd: int, preadd: bool = True) -> int:
    """Bits of one threshold as the ``"xnor"`` MVTU stores it (and of its ``S'``
    accumulators): unsigned, on ``S' = acc + K``, clamped to ``[0, offset_sum_max + 1]``."""
    return (offset_sum_max(g, simd, preadd) + 1).bit_length()


def adder_tree_luts(n: int, width: int) -> int:
    """LUT6 (one per result bit, carry chain) of a balanced tree adding ``n`` unsigned values."""
    widths = [width] * n
    luts = 0
    while len(widths) > 1:
        nxt = []
        for i in range(0, len(widths) - 1, 2):
            w = max(widths[i], widths[i + 1]) + 1
            luts += w
            nxt.append(w)
        if len(widths) % 2:
            nxt.append(widths[-1])
        widths = nxt
    return luts


def finn_mvau_lut_estimate(pe: int, simd: int, mw: int, w_bits: int, a_bits: int,
                           out_bits: int | None, acc_bits: int, tmem: int,
                           lut_mult: bool = True) -> int:
    """FINN's analytic MVAU LUT model (``MVAU.lut_estimation`` in FINN's
    ``matrixvectoractivation.py``, after Blott et al., FINN-R 2018), weights in BRAM
    (``c2 = 0``), thresholds in distributed RAM, LUT multipliers; the accumulator width is
    FINN's ``min(acc_bits, ceil(alpha + log2(1 + 2^-alpha) + 1))`` with unsigned inputs."""
    W, A, P, Q = w_bits, a_bits, pe, simd
    c0, c1 = 300, 1.1
    mult_luts = Q * (2 * math.ceil((W + A) / 6) - 1) * (W + A) if lut_mult else 0
    addertree_luts = (W + A) * (2 * Q - 1)
    alpha = math.log2(mw) + W + A - 1
    acc = min(acc_bits, math.ceil(alpha + math.log2(1 + 2 ** -alpha) + 1))
    thr_luts = comp_luts = 0
    if out_bits is not None:
        thr_luts = (2 ** out_bits - 1) * acc * math.ceil(tmem / 64)
        comp_luts = (2 ** out_bits - 1) * acc
    return int(c0 + c1 * (P * (mult_luts + addertree_luts + acc + thr_luts + comp_luts)))


@dataclass
class LayerModel:
    """Analytic figures of one layer (conv or maxpool) at one folding."""
    name: str
    kind: str                      # "conv" | "maxpool"
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    cycles_per_frame: int
    rom_bits: int = 0              # weight ROM bits (= unique weight bits)
    threshold_rom_bits: int = 0
    buffer_bits: int = 0           # line / row buffer memory bits
    lut_estimate: int = 0
    ff_estimate: int = 0
    mux_lut_estimate: int = 0      # of lut_estimate: the window unit's chunk multiplexer
    pe: int | None = None
    simd: int | None = None
    sf: int | None = None
    nf: int | None = None
    lanes: int | None = None
    k: int | None = None
    w_dup: int | None = None
    x_dup: int | None = None
    in_bits: int | None = None
    out_bits: int | None = None
    acc_bits: int | None = None
    is_last: bool = False
    preadd: bool | None = None
    arith: str | None = None
    stride: int | None = None

    @property
    def in_pixels(self) -> int:
        return self.in_shape[0] * self.in_shape[1]

    @property
    def out_pixels(self) -> int:
        return self.out_shape[0] * self.out_shape[1]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["in_shape"], d["out_shape"] = list(self.in_shape), list(self.out_shape)
        return {k: v for k, v in d.items() if v is not None}


def _check_conv_folding(g: ConvGeometry, pe: int, simd: int) -> None:
    from .folding import FoldingError
    where = f"layer {g.index} ({g.name})"
    for name, v in (("pe", pe), ("simd", simd)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise FoldingError(f"{where}: field '{name}' must be a positive integer, got {v!r}")
    if g.out_channels % pe:
        raise FoldingError(f"{where}: field 'pe' ({pe}) must divide C_out = {g.out_channels}")
    if g.c_dup % simd:
        raise FoldingError(f"{where}: field 'simd' ({simd}) must divide C' = x_dup*C_in = "
                           f"{g.x_dup}*{g.in_channels} = {g.c_dup}")
    if g.w_dup > 1 and simd % g.w_dup and g.w_dup % simd:
        raise FoldingError(f"{where}: field 'simd' ({simd}) and w_dup ({g.w_dup}) are "
                           f"incompatible: one must divide the other, so that a SIMD chunk "
                           f"holds whole weight-sharing groups or lies inside one")


def threshold_rom_shape(g: ConvGeometry, pe: int, simd: int, arith: str = DEFAULT_ARITH,
                        preadd: bool = True) -> tuple[int, int] | None:
    """``(depth, width)`` of an MVTU's threshold ROM (hidden layers: ``2^b - 1`` thresholds per
    PE lane; ``"xnor"`` stores them offset, :func:`offset_threshold_bits` wide) or, for an
    ``"xnor"`` last layer, of its offset ROM (``-K`` per lane, ``acc_bits`` wide); None when
    there is none (one neuron fold: the values are constants)."""
    nf = g.out_channels // pe
    if nf == 1:
        return None
    if g.act_bits is None:
        return (nf, pe * g.acc_bits) if arith == "xnor" else None
    tb = offset_threshold_bits(g, simd, preadd) if arith == "xnor" else g.threshold_bits
    return nf, pe * g.n_thresholds * tb


def preadd_term_bits(g: ConvGeometry, simd: int) -> int:
    """Width of a pre-summed term: ``min(SIMD, w_dup)`` inputs of ``b`` bits added by a
    balanced tree (one bit per level)."""
    return g.in_bits + max(0, (min(simd, g.w_dup) - 1).bit_length())


def layer_model(g: ConvGeometry, pe: int, simd: int, preadd: bool = True,
                arith: str = DEFAULT_ARITH) -> LayerModel:
    """Analytic model of one conv layer (window unit + MVTU + gather) at folding (PE, SIMD)."""
    from .compressor import compressor_luts
    if arith not in ARITHMETICS:
        raise ValueError(f"arith must be one of {', '.join(map(repr, ARITHMETICS))}, "
                         f"got {arith!r}")
    _check_conv_folding(g, pe, simd)
    kk = g.k * g.k
    sf = kk * g.c_dup // simd
    nf = g.out_channels // pe
    cycles = g.height * g.width * sf * nf
    b = g.in_bits
    use_pre = preadd and g.w_dup > 1
    acc = g.acc_bits
    # ---- LUTs
    if use_pre:
        groups = max(1, simd // g.w_dup)
        gw = preadd_term_bits(g, simd)
        shared = adder_tree_luts(min(simd, g.w_dup), b) * groups
        terms, term_bits = groups, gw
    else:
        shared = 0
        terms, term_bits = simd, b
    if arith == "xnor":
        # compressor, accumulator; thresholds on S' (or the last layer's -K start)
        per_pe = compressor_luts(terms, term_bits) + acc
        thr_bits = offset_threshold_bits(g, simd, use_pre)
    else:
        if use_pre:
            per_pe_tree = adder_tree_luts(terms, term_bits) + terms * term_bits * (terms == 1)
        else:
            per_pe_tree = adder_tree_luts(simd, b) + (simd * b if simd == 1 else 0)
        shared += adder_tree_luts(simd, b) + acc          # T tree + T accumulator
        per_pe = per_pe_tree + acc + acc                   # S accumulator, 2S - T
        thr_bits = g.threshold_bits
    if g.act_bits is not None:
        per_pe += g.n_thresholds * thr_bits + g.act_bits * g.n_thresholds // 2
    chunks = g.c_dup // simd
    mux = simd * b * ceil_div(chunks, 4) if chunks > 1 else 0
    window_ctrl = 80 + 2 * max(1, (window_depth(g.k, g.width)).bit_length())
    luts = shared + pe * per_pe + mux + window_ctrl + 40
    # ---- FFs
    out_bits = g.out_bits
    ff = (simd * b               # MVTU input register
          + pe * (acc + 1)       # S accumulators
          + (2 * acc if arith != "xnor" else 0)    # T accumulator and its copy
          + pe * out_bits        # output register
          + g.in_channels * b    # window: the pixel word read from the line buffer
          + 120)                 # counters and valid bits
    if not g.is_last and nf > 1:
        ff += 2 * g.out_channels * out_bits  # gather buffer + output register
    # threshold ROM (hidden layers) or, xnor last layer, the per-neuron offset ROM (-K)
    thr_rom = threshold_rom_shape(g, pe, simd, arith, use_pre)
    thr_rom = thr_rom[0] * thr_rom[1] if thr_rom else 0
    depth = window_depth(g.k, g.width)
    return LayerModel(
        name=g.name, kind="conv", in_shape=(g.height, g.width, g.in_channels),
        out_shape=g.out_shape, cycles_per_frame=cycles, rom_bits=g.unique_weight_bits,
        threshold_rom_bits=thr_rom, buffer_bits=depth * g.in_channels * b,
        lut_estimate=int(luts), ff_estimate=int(ff), mux_lut_estimate=int(mux), pe=pe,
        simd=simd, sf=sf, nf=nf,
        lanes=pe * simd, k=g.k, w_dup=g.w_dup, x_dup=g.x_dup, in_bits=b, out_bits=out_bits,
        acc_bits=g.acc_bits, is_last=g.is_last, preadd=use_pre, arith=arith)


def pool_model(g: PoolGeometry) -> LayerModel:
    """Analytic model of a max-pool unit (full pixels in and out)."""
    pix_bits = g.channels * g.bits
    cycles = g.height * g.width
    if g.stride == 1:
        # the bottom row is flushed while the next frame's first row comes in (W outputs for W
        # inputs), the right-edge output of a row while the next row's first pixel comes in;
        # what is left: 2 cycles per frame (the last row's edge output ahead of the flush),
        # 1 for a one-row map, and one per row for a one-column map (every pixel is an edge)
        cycles += g.height if g.width == 1 else (1 if g.height == 1 else 2)
    # per pixel bit, from synth_xilinx of the dupnet-demo and dupnet-tinier-yolo pools
    # (2026-11-26): the channel-wise max and its multiplexers; stride 1 also the edge
    # replicate, the pending right-edge output and the bottom-row flush paths
    luts = 60 + pix_bits * (5 if g.stride == 2 else 13) // 2
    ff = 60 + pix_bits * (3 if g.stride == 2 else 6)
    return LayerModel(
        name=g.name, kind="maxpool", in_shape=(g.height, g.width, g.channels),
        out_shape=g.out_shape, cycles_per_frame=cycles,
        buffer_bits=pool_rowbuf_depth(g.stride, g.width) * pix_bits,
        lut_estimate=int(luts), ff_estimate=int(ff), in_bits=g.bits, out_bits=g.bits,
        stride=g.stride)


@dataclass
class PipelineModel:
    """Analytic model of the whole accelerator."""
    network: str
    layers: list[LayerModel]
    pixels_per_beat: int
    input_cycles_per_frame: int
    latency_cycles: int
    extra_luts: int = 0
    extra_ffs: int = 0
    folding: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def cycles_per_frame(self) -> int:
        """Bottleneck cycles per frame in steady state (back-to-back frames)."""
        return max([self.input_cycles_per_frame] + [m.cycles_per_frame for m in self.layers])

    @property
    def bottleneck_layer(self) -> str:
        best = max(self.layers, key=lambda m: m.cycles_per_frame)
        return best.name if best.cycles_per_frame >= self.input_cycles_per_frame else "input"

    @property
    def rom_bits(self) -> int:
        return sum(m.rom_bits for m in self.layers)

    @property
    def threshold_rom_bits(self) -> int:
        return sum(m.threshold_rom_bits for m in self.layers)

    @property
    def buffer_bits(self) -> int:
        return sum(m.buffer_bits for m in self.layers)

    @property
    def lut_estimate(self) -> int:
        return sum(m.lut_estimate for m in self.layers) + self.extra_luts

    @property
    def ff_estimate(self) -> int:
        return sum(m.ff_estimate for m in self.layers) + self.extra_ffs

    @property
    def conv_layers(self) -> list[LayerModel]:
        return [m for m in self.layers if m.kind == "conv"]

    def layer(self, name: str) -> LayerModel:
        for m in self.layers:
            if m.name == name:
                return m
        raise KeyError(name)

    def fps(self, clock_hz: float = REFERENCE_CLOCK_HZ) -> float:
        return clock_hz / self.cycles_per_frame

    def to_json(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "pixels_per_beat": self.pixels_per_beat,
            "cycles_per_frame": self.cycles_per_frame,
            "bottleneck_layer": self.bottleneck_layer,
            "latency_cycles": self.latency_cycles,
            "input_cycles_per_frame": self.input_cycles_per_frame,
            "reference_clock_hz": REFERENCE_CLOCK_HZ,
            "fps_at_reference_clock": round(self.fps(), 3),
            "rom_bits": self.rom_bits,
            "threshold_rom_bits": self.threshold_rom_bits,
            "buffer_bits": self.buffer_bits,
            "lut_estimate": self.lut_estimate,
            "ff_estimate": self.ff_estimate,
            "folding": {k: {"pe": v[0], "simd": v[1]} for k, v in self.folding.items()},
            "layers": [m.to_json() for m in self.layers],
        }


def _config_of(artifact_or_config: Any) -> NetworkConfig:
    if isinstance(artifact_or_config, NetworkConfig):
        return artifact_or_config
    cfg = getattr(artifact_or_config, "config", None)
    if isinstance(cfg, NetworkConfig):
        return cfg
    raise TypeError(f"expected an Artifact or a NetworkConfig, got {type(artifact_or_config)}")


def pipeline_model(artifact_or_config: Any, folding: Any, pixels_per_beat: int = 1,
                   preadd: bool | None = None) -> PipelineModel:
    """Analytic model of the whole pipeline for a folding (:class:`~dupnet.hw.folding.Folding`
    or a plain ``{name: (pe, simd)}`` mapping)."""
    from .folding import Folding, check_pixels_per_beat, validate_folding
    cfg = _config_of(artifact_or_config)
    if not isinstance(folding, Folding):
        folding = Folding(dict(folding))
    validate_folding(cfg, folding)
    if preadd is None:
        preadd = folding.preadd
    check_pixels_per_beat(cfg, pixels_per_beat)
    hw_pixels = cfg.input_height * cfg.input_width
    layers: list[LayerModel] = []
    for g in network_geometry(cfg):
        if isinstance(g, ConvGeometry):
            pe, simd = folding[g.name]
            layers.append(layer_model(g, pe, simd, preadd=preadd, arith=folding.arith))
        else:
            layers.append(pool_model(g))
    input_cycles = hw_pixels // pixels_per_beat
    # latency: walk the pipeline; a stage's input pixel interval is set by its slowest upstream
    t = 0.0
    upstream = input_cycles
    for m, g in zip(layers, network_geometry(cfg)):
        interval = max(1.0, upstream / max(1, m.in_pixels))
        if m.kind == "conv":
            pad = g.k // 2
            wait_pixels = pad * g.width + pad + 1
            t += wait_pixels * interval + (m.sf or 1) + PIPELINE_DEPTH
            if not m.is_last:
                t += (m.nf - 1) * (m.sf or 1) + 1    # gather: all chunks of the first pixel
        else:
            t += (g.width + 2) * interval + 2
        upstream = max(upstream, m.cycles_per_frame)
    unpack_bits = pixels_per_beat * cfg.input_channels * cfg.input_bits
    extra_luts = 20 + (unpack_bits * (pixels_per_beat > 1))
    extra_ffs = 2 * unpack_bits + 20
    return PipelineModel(network=cfg.name, layers=layers, pixels_per_beat=pixels_per_beat,
                         input_cycles_per_frame=input_cycles, latency_cycles=int(math.ceil(t)),
                         extra_luts=extra_luts, extra_ffs=extra_ffs,
                         folding={k: tuple(v) for k, v in folding.layers.items()})
