"""The accelerator top level: input pixel stream -> one engine per layer -> accumulator stream.

See ``docs/hardware.md`` for the port contract (bit layouts, frame marker, probes).
"""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from amaranth import Module, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from dupnet.sw.artifact import Artifact
from dupnet.sw.config import network_geometry

from .adapters import Unpack, WidthAdapter
from .folding import Folding, check_pixels_per_beat, validate_folding
from .kinds import fold_network, hw_kind
from .loader import LOAD_WORD_BITS, WeightLoader, load_segments
from .stream_bank import StreamBank, bank_streams
from .stream_layout import WordLayout

__all__ = ["DupNetAccelerator", "ProbeSignature", "output_layout"]


class ProbeSignature(wiring.Signature):
    """An observation copy of a stream: ``valid``, ``ready``, ``payload``, all outputs."""

    def __init__(self, width: int):
        super().__init__({"valid": Out(1), "ready": Out(1), "payload": Out(unsigned(width))})


def output_layout(artifact: Artifact, folding: Folding) -> WordLayout:
    """Word layout of the top level's output stream: the last layer's accumulators, ``PE``
    signed lanes of ``acc_bits``, ``last`` above them."""
    last = fold_network(artifact.config, folding)[-1]
    return hw_kind(last.geometry).output_layout(last)


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
    load : In(stream.Signature(unsigned(32)))
        Present with ``weights = "load"``: the load image's words (:mod:`dupnet.hw.loader`),
        accepted from reset until every weight and threshold memory is written.
    loaded : Out(1)
        Present with ``weights = "load"``: the memories are written; ``i`` is held (not
        ready) until then.
    probe_<layer> : Out(ProbeSignature)
        Present with ``probes=True``: each layer's output stream.
    engines : list of (str, LayerEngine)
        Per layer, in pipeline order, the components its kind built
        (:meth:`dupnet.hw.kinds.HwLayerKind.engine`).
    adapters : dict of str to WidthAdapter
        Per layer whose input lanes differ from the stream into it (the previous layer's
        output lanes, whole pixels for the first), the width adapter in front of it.
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
        folding = dataclasses.replace(folding, preadd=self.preadd)
        #: per layer (name, LayerEngine), in pipeline order
        self.engines = []
        self.adapters: dict[str, WidthAdapter] = {}
        probe_widths: dict[str, int] = {}
        lanes, bits = cfg.input_channels, cfg.input_bits
        for f in fold_network(cfg, folding):
            g, kind = f.geometry, hw_kind(f.geometry)
            if f.in_lanes != lanes:
                self.adapters[g.name] = WidthAdapter(bits, lanes, f.in_lanes)
            lanes, bits = f.out_lanes, kind.output_layout(f).bits
            engine = kind.engine(f, artifact.layers.get(g.index))
            self.engines.append((g.name, engine))
            probe_widths[g.name] = len(engine.stages[engine.output][1].o.payload)
        self.geometry = geoms
        last = self.engines[-1][1]
        out_w = len(last.stages[-1][1].o.payload)
        members = {"i": In(stream.Signature(unsigned(pixels_per_beat * pix_bits))),
                   "o": Out(stream.Signature(unsigned(out_w)))}
        #: the stream bank of the banked layers (``folding.bank``), else None
        streams = bank_streams(fold_network(cfg, folding))
        self.bank = StreamBank(streams) if streams else None
        #: the weight loader (``weights = "load"``), else None
        self.loader = None
        if folding.weights == "load":
            self.loader = WeightLoader(load_segments(cfg, folding))
            members["load"] = In(stream.Signature(unsigned(LOAD_WORD_BITS)))
            members["loaded"] = Out(1)
        if probes:
            for name, w in probe_widths.items():
                members[f"probe_{name}"] = Out(ProbeSignature(w))
        super().__init__(members)

    @property
    def rom_bits_instantiated(self) -> int:
        """Sum of depth x width over every weight ROM ``Memory`` instantiated in the design."""
        return sum(engine.rom_bits for _, engine in self.engines)

    def elaborate(self, platform):
        m = Module()
        m.submodules.unpack = self.unpack
        if self.loader is None:
            wiring.connect(m, wiring.flipped(self.i), self.unpack.i)
        else:
            self._connect_loader(m)
        src = self.unpack.o
        for name, engine in self.engines:
            if name in self.adapters:
                m.submodules[f"{name}_adapt"] = adapter = self.adapters[name]
                wiring.connect(m, src, adapter.i)
                src = adapter.o
            for suffix, unit in engine.stages:
                m.submodules[f"{name}_{suffix}"] = unit
                wiring.connect(m, src, unit.i)
                src = unit.o
            if self.probes:
                out = engine.stages[engine.output][1].o
                probe = getattr(self, f"probe_{name}")
                m.d.comb += [probe.valid.eq(out.valid), probe.ready.eq(out.ready),
                             probe.payload.eq(out.payload)]
        wiring.connect(m, src, wiring.flipped(self.o))
        if self.bank is not None:
            m.submodules.bank = self.bank
            ports = [p for _, engine in self.engines for p in engine.bank_ports]
            for n, port in enumerate(ports):
                wiring.connect(m, getattr(self.bank, f"o{n}"), port)
        return m

    def _connect_loader(self, m):
        """The loader writes every engine's load ports; input frames wait for ``loaded``."""
        m.submodules.loader = loader = self.loader
        wiring.connect(m, wiring.flipped(self.load), loader.i)
        ports = [p for _, engine in self.engines for _, p in engine.load_ports]
        if self.bank is not None:         # the last segment (load_segments)
            bank = self.bank
            ports.append(SimpleNamespace(addr=bank.w_addr, data=bank.w_data, en=bank.w_en))
            m.d.comb += bank.run.eq(loader.loaded)
        assert len(ports) == len(loader.ports)       # both from FoldedConv.memories
        for wp, (addr, data, en) in zip(ports, loader.ports):
            m.d.comb += [wp.addr.eq(addr), wp.data.eq(data[:len(wp.data)]), wp.en.eq(en)]
        ok = loader.loaded
        m.d.comb += [self.loaded.eq(ok), self.unpack.i.payload.eq(self.i.payload),
                     self.unpack.i.valid.eq(self.i.valid & ok),
                     self.i.ready.eq(self.unpack.i.ready & ok)]
