"""Weights loaded at run time: the load image and the accelerator's weight loader.

With ``weights = "load"`` in the folding (:data:`dupnet.hw.folded.WEIGHT_SOURCES`) every weight
and threshold memory of the accelerator is empty at configuration (an iCE40 SPRAM, for one,
cannot be initialised by the bitstream) and written after reset through the top level's
``load`` stream; ``loaded`` rises when the last word is written, and input frames are held
(backpressure) until then. The Verilog does not depend on the artifact: another artifact of the
same config and folding is run by loading its image.

The load image is a sequence of ``LOAD_WORD_BITS``-bit words: for every conv layer in pipeline
order, every weight and threshold memory in the order of ``FoldedConv.memories`` (``w_rom0`` ..
``w_rom<PE-1>``, then ``t_rom`` or ``k_rom``), every memory word from address 0 up, each memory
word split into ``ceil(width / LOAD_WORD_BITS)`` load words, least significant first (the last
one zero-padded). docs/artifact.md, "Load image", has the file formats.
"""
from __future__ import annotations

from dataclasses import dataclass

from amaranth import Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from dupnet.sw.artifact import Artifact

from .folding import Folding
from .kinds import fold_network, hw_kind

__all__ = ["LOAD_WORD_BITS", "LoadSegment", "load_segments", "load_image", "WeightLoader"]

#: bits of one word of the load stream and of the load image
LOAD_WORD_BITS = 32


@dataclass(frozen=True)
class LoadSegment:
    """One memory the loader writes: its layer, name, depth and width, and its load words per
    memory word."""
    layer: str
    memory: str
    depth: int
    width: int

    @property
    def words_per_entry(self) -> int:
        return -(-self.width // LOAD_WORD_BITS)

    @property
    def load_words(self) -> int:
        return self.depth * self.words_per_entry


def load_segments(config, folding: Folding) -> list[LoadSegment]:
    """The memories of the load image, in load order (the weight and threshold memories of
    each layer, :attr:`FoldedConv.memories` order); empty unless ``folding.weights == "load"``."""
    if folding.weights != "load":
        return []
    return [LoadSegment(f.geometry.name, lm.name, lm.depth, lm.width)
            for f in fold_network(config, folding) for lm in f.memories if lm.loaded]


def load_image(artifact: Artifact, folding: Folding) -> tuple[list[LoadSegment], list[int]]:
    """The segments and the load words of ``artifact`` at ``folding`` (``weights = "load"``)."""
    from .mvtu import memory_images
    segments = load_segments(artifact.config, folding)
    images = {}
    for f in fold_network(artifact.config, folding):
        params = artifact.layers.get(f.geometry.index)
        if hw_kind(f.geometry).foldable and params is not None:
            images[f.geometry.name] = memory_images(f, params.weights, params.thresholds)
    words: list[int] = []
    mask = (1 << LOAD_WORD_BITS) - 1
    for seg in segments:
        image = images[seg.layer][seg.memory]
        for entry in image:
            v = int(entry) & ((1 << seg.width) - 1)
            words += [(v >> (k * LOAD_WORD_BITS)) & mask for k in range(seg.words_per_entry)]
    return segments, words


class WeightLoader(wiring.Component):
    """Writes the load stream into the weight and threshold memories, segment by segment.

    Parameters
    ----------
    segments : list of LoadSegment
        The memories in load order (:func:`load_segments`).

    Attributes
    ----------
    i : In(stream.Signature(unsigned(LOAD_WORD_BITS)))
        The load image's words (always ready until every memory is written).
    loaded : Out(1)
        Every memory is written (stays 1 until reset).
    ports : list of (addr, data, en) Signals
        Per segment, the write port signals to connect to the memory (``data`` is the
        assembled word, shared by every segment).
    """

    def __init__(self, segments: list[LoadSegment]):
        if not segments:
            raise ValueError("a weight loader needs at least one memory to write")
        self.segments = segments
        self.width = max(s.words_per_entry for s in segments) * LOAD_WORD_BITS
        super().__init__({"i": In(stream.Signature(unsigned(LOAD_WORD_BITS))),
                          "loaded": Out(1)})
        self.data = Signal(self.width)
        self.ports = [(Signal(range(max(2, s.depth)), name=f"ld_addr{n}"), self.data,
                       Signal(name=f"ld_en{n}")) for n, s in enumerate(segments)]

    def elaborate(self, platform):
        m = Module()
        segs = self.segments
        seg = Signal(range(len(segs) + 1))
        addr = Signal(range(max(2, max(s.depth for s in segs))))
        sub = Signal(range(max(2, max(s.words_per_entry for s in segs))))
        commit, done = Signal(), Signal()
        commit_seg = Signal.like(seg)
        commit_addr = Signal.like(addr)
        accept = Signal()
        m.d.comb += [self.i.ready.eq(~done), accept.eq(self.i.valid & self.i.ready),
                     self.loaded.eq(done & ~commit)]
        m.d.sync += commit.eq(0)
        with m.If(accept):
            m.d.sync += self.data.word_select(sub, LOAD_WORD_BITS).eq(self.i.payload)
            with m.Switch(seg):
                for n, s in enumerate(segs):
                    with m.Case(n):
                        self._advance(m, s, n, seg, addr, sub, commit, commit_seg,
                                      commit_addr, done, n == len(segs) - 1)
        for n, (p_addr, _, p_en) in enumerate(self.ports):
            m.d.comb += [p_addr.eq(commit_addr), p_en.eq(commit & (commit_seg == n))]
        return m

    @staticmethod
    def _advance(m, s: LoadSegment, n, seg, addr, sub, commit, commit_seg, commit_addr, done,
                 last_segment):
        """The counters after a load word of segment ``s``: the next sub-word, or (the
        entry's last) a commit of the entry next cycle and the next address / segment."""
        with m.If(sub == s.words_per_entry - 1):
            m.d.sync += [sub.eq(0), commit.eq(1), commit_seg.eq(n), commit_addr.eq(addr)]
            with m.If(addr == s.depth - 1):
                m.d.sync += [addr.eq(0), seg.eq(n + 1)]
                if last_segment:
                    m.d.sync += done.eq(1)
            with m.Else():
                m.d.sync += addr.eq(addr + 1)
        with m.Else():
            m.d.sync += sub.eq(sub + 1)
