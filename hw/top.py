"""The accelerator top level: input pixel stream -> one engine per layer -> accumulator stream.

See ``docs/hardware.md`` for the port contract (bit layouts, frame marker, probes).
"""
from __future__ import annotations

from typing import Any

from amaranth import Module, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from dupnet.sw.artifact import Artifact
from dupnet.sw.config import ConvGeometry, PoolGeometry, network_geometry

from .adapters import Gather, Unpack
from .folding import Folding, check_pixels_per_beat, validate_folding
from .mvtu import MVTU
from .pool import MaxPool
from .window import WindowUnit

__all__ = ["DupNetAccelerator", "ProbeSignature", "output_layout"]


class ProbeSignature(wiring.Signature):
    """An observation copy of a stream: ``valid``, ``ready``, ``payload``, all outputs."""

    def __init__(self, width: int):
        super().__init__({"valid": Out(1), "ready": Out(1), "payload": Out(unsigned(width))})


def output_layout(artifact: Artifact, folding: Folding) -> dict[str, int]:
    """Widths of the output payload: ``pe``, ``acc_bits``, ``data_bits``, ``last_bit``."""
    g = [x for x in network_geometry(artifact.config) if isinstance(x, ConvGeometry)][-1]
    pe = folding[g.name][0]
    return {"pe": pe, "acc_bits": g.acc_bits, "data_bits": pe * g.acc_bits,
            "last_bit": pe * g.acc_bits, "width": pe * g.acc_bits + 1,
            "channels": g.out_channels, "beats_per_pixel": g.out_channels // pe}


class DupNetAccelerator(wiring.Component):
    """The whole dataflow accelerator of an artifact at a folding.

    Parameters
    ----------
    artifact : Artifact
        Integer network (unique weight bits, thresholds, geometry).
    folding : Folding
        (PE, SIMD) per conv layer; validated here.
    pixels_per_beat : int
        Input pixels per beat ``P`` (must divide ``H*W``).
    probes : bool
        Add ``probe_<layer>`` observation ports (docs/hardware.md).
    preadd : bool or None
        Override ``folding.preadd``.

    Attributes
    ----------
    i : In(stream.Signature(unsigned(P*C_in*8)))
        Pixels, pixel ``p`` channel ``c`` at ``[(p*C_in + c)*8 +: 8]``, raster order.
    o : Out(stream.Signature(unsigned(PE_L*acc_bits + 1)))
        Last-layer accumulators, lane ``j`` at ``[j*acc_bits +: acc_bits]`` (signed), ``last``
        at the MSB; NHWC beat order.
    probe_<layer> : Out(ProbeSignature)
        Present with ``probes=True``: each layer's output stream.
    mvtus : dict of str -> MVTU
    units : list of (layer name, kind, component)
    """

    def __init__(self, artifact: Artifact, folding: Folding, pixels_per_beat: int = 1,
                 probes: bool = False, preadd: bool | None = None):
        cfg = artifact.config
        if not isinstance(folding, Folding):
            folding = Folding(dict(folding))
        validate_folding(cfg, folding)
        check_pixels_per_beat(cfg, pixels_per_beat)
        self.artifact, self.folding = artifact, folding
        self.pixels_per_beat, self.probes = pixels_per_beat, probes
        self.preadd = folding.preadd if preadd is None else preadd
        geoms = network_geometry(cfg)
        pix_bits = cfg.input_channels * cfg.input_bits
        self.unpack = Unpack(pix_bits, pixels_per_beat)
        self.units: list[tuple[str, str, Any]] = []
        self.mvtus: dict[str, MVTU] = {}
        self.windows: dict[str, WindowUnit] = {}
        self.gathers: dict[str, Gather] = {}
        self.pools: dict[str, MaxPool] = {}
        probe_widths: dict[str, int] = {}
        for g in geoms:
            if isinstance(g, ConvGeometry):
                pe, simd = folding[g.name]
                p = artifact.layers[g.index]
                nf = g.out_channels // pe
                win = WindowUnit(g.height, g.width, g.in_channels, g.in_bits, g.k, simd,
                                 x_dup=g.x_dup, repeat=nf, name=g.name)
                mv = MVTU(g, p.weights, p.thresholds, pe, simd, preadd=self.preadd,
                          arith=folding.arith,
                          frame_beats=(g.height * g.width * nf) if g.is_last else None)
                self.windows[g.name], self.mvtus[g.name] = win, mv
                self.units.append((g.name, "conv", mv))
                if not g.is_last:
                    self.gathers[g.name] = Gather(pe * g.act_bits, nf)
                probe_widths[g.name] = len(mv.o.payload)
            else:
                assert isinstance(g, PoolGeometry)
                pool = MaxPool(g.height, g.width, g.channels, g.bits, g.stride, name=g.name)
                self.pools[g.name] = pool
                self.units.append((g.name, "maxpool", pool))
                probe_widths[g.name] = g.channels * g.bits
        self.geometry = geoms
        last = [g for g in geoms if isinstance(g, ConvGeometry)][-1]
        out_w = len(self.mvtus[last.name].o.payload)
        members = {"i": In(stream.Signature(unsigned(pixels_per_beat * pix_bits))),
                   "o": Out(stream.Signature(unsigned(out_w)))}
        if probes:
            for name, w in probe_widths.items():
                members[f"probe_{name}"] = Out(ProbeSignature(w))
        super().__init__(members)

    @property
    def rom_bits_instantiated(self) -> int:
        """Sum of depth x width over every weight ROM ``Memory`` instantiated in the design."""
        return sum(mv.rom_bits for mv in self.mvtus.values())

    def elaborate(self, platform):
        m = Module()
        m.submodules.unpack = self.unpack
        wiring.connect(m, wiring.flipped(self.i), self.unpack.i)
        src = self.unpack.o
        for g in self.geometry:
            if isinstance(g, ConvGeometry):
                win, mv = self.windows[g.name], self.mvtus[g.name]
                m.submodules[f"{g.name}_window"] = win
                m.submodules[f"{g.name}_mvtu"] = mv
                wiring.connect(m, src, win.i)
                wiring.connect(m, win.o, mv.i)
                out = mv.o
                if g.name in self.gathers:
                    ga = self.gathers[g.name]
                    m.submodules[f"{g.name}_gather"] = ga
                    wiring.connect(m, mv.o, ga.i)
                    src = ga.o
                else:
                    src = mv.o
            else:
                pool = self.pools[g.name]
                m.submodules[f"{g.name}_pool"] = pool
                wiring.connect(m, src, pool.i)
                out = src = pool.o
            if self.probes:
                probe = getattr(self, f"probe_{g.name}")
                m.d.comb += [probe.valid.eq(out.valid), probe.ready.eq(out.ready),
                             probe.payload.eq(out.payload)]
        wiring.connect(m, src, wiring.flipped(self.o))
        return m
