"""Weights loaded at run time: the load image and the accelerator's weight loader.

With ``weights = "load"`` in the folding (:data:`dupnet.hw.folded.WEIGHT_SOURCES`) every weight
and threshold memory of the accelerator is empty at configuration (an iCE40 SPRAM, for one,
cannot be initialised by the bitstream) and written after reset through the top level's
``load`` stream; ``loaded`` rises when the last word is written, and input frames are held
(backpressure) until then. The Verilog does not depend on the artifact: another artifact of the
same config and folding is run by loading its image.

The load image is a sequence of ``LOAD_WORD_BITS``-bit words: for every conv layer in pipeline
order, every weight and threshold memory in the order of ``FoldedConv.memories`` (``w_rom``, the
PEs' weight words side by side, then ``t_rom`` or ``k_rom``), every memory word from address 0
up; the memories of banked layers (``Folding.bank``) are not among them but form the last
segment, the stream bank's 16-bit words (:func:`~dupnet.hw.stream_bank.bank_image`). A memory
word wider than a load word is split into ``ceil(width / LOAD_WORD_BITS)`` load words, least
significant first (the last one zero-padded); a narrower one shares a load word with the next
``LOAD_WORD_BITS // width - 1`` words of the same memory, the first in the least significant
bits (a memory's last load word may be partly unused; the next memory starts a new word).
docs/artifact.md, "Load image", has the file formats.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from dupnet.sw.artifact import Artifact

from .folding import Folding
from .kinds import fold_network, hw_kind
from .spram import SPRAM_WIDTH, spram_shape
from .stream_bank import BANK_SEGMENT, bank_image, bank_streams
from .stream_layout import pack_lanes, unpack_lanes

__all__ = ["LOAD_WORD_BITS", "LoadSegment", "load_segments", "load_image", "write_load_image",
           "WeightLoader"]

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
    #: memory words per written word (an SPRAM memory packs narrow words, :func:`spram_shape`)
    packing: int = 1

    @property
    def words_per_entry(self) -> int:
        """Load words per memory word (1 when several memory words share a load word)."""
        return -(-self.width // LOAD_WORD_BITS)

    @property
    def entries_per_word(self) -> int:
        """Memory words per load word (1 when a memory word takes one or more load words)."""
        return max(1, LOAD_WORD_BITS // self.width)

    @property
    def load_words(self) -> int:
        return -(-self.depth // self.entries_per_word) * self.words_per_entry


def load_segments(config, folding: Folding) -> list[LoadSegment]:
    """The memories of the load image, in load order (the weight and threshold memories of
    each layer, :attr:`FoldedConv.memories` order, then the stream bank's 16-bit words when
    layers are banked); empty unless ``folding.weights == "load"``."""
    if folding.weights != "load":
        return []
    layers = fold_network(config, folding)
    segs = [_segment(f.geometry.name, lm)
            for f in layers for lm in f.memories if lm.loaded and not lm.banked]
    streams = bank_streams(layers)
    if streams:
        segs.append(LoadSegment(*BANK_SEGMENT, sum(s.length for s in streams), SPRAM_WIDTH))
    return segs


def _segment(layer: str, lm) -> LoadSegment:
    """The words the loader writes into memory ``lm``: an SPRAM memory's packed words
    (:func:`spram_shape`), else the memory's own."""
    if not lm.spram:
        return LoadSegment(layer, lm.name, lm.depth, lm.width)
    depth, width = spram_shape(lm.depth, lm.width)
    return LoadSegment(layer, lm.name, depth, width, width // lm.width)


def load_image(artifact: Artifact, folding: Folding) -> tuple[list[LoadSegment], list[int]]:
    """The segments and the load words of ``artifact`` at ``folding`` (``weights = "load"``)."""
    from .mvtu import memory_images
    segments = load_segments(artifact.config, folding)
    images: dict[str, dict[str, list[int]]] = {}
    layers = fold_network(artifact.config, folding)
    for f in layers:
        params = artifact.layers.get(f.geometry.index)
        if hw_kind(f.geometry).foldable and params is not None:
            images[f.geometry.name] = memory_images(f, params.weights, params.thresholds)
    images[BANK_SEGMENT[0]] = {BANK_SEGMENT[1]: bank_image(
        bank_streams(layers), [images[f.geometry.name][lm.name] for f in layers
                               for lm in f.memories if lm.banked])}
    words: list[int] = []
    for seg in segments:
        # the written words (an SPRAM memory's packed words), then the load words: several
        # written words per load word, or one written word over several load words
        image = _pack(images[seg.layer][seg.memory], seg.packing, seg.width // seg.packing)
        for v in _pack(image, seg.entries_per_word, seg.width):
            words += unpack_lanes(v, seg.words_per_entry, LOAD_WORD_BITS)
    return segments, words


def _pack(entries: list[int], n: int, width: int) -> list[int]:
    """``n`` consecutive ``width``-bit entries per word, the first in the least significant
    bits (:func:`~dupnet.hw.stream_layout.pack_lanes` on each group)."""
    return [pack_lanes(entries[i:i + n], width) for i in range(0, len(entries), n)]


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
        k = Signal(range(max(2, max(s.entries_per_word for s in segs))))
        commit, unpacking, done = Signal(), Signal(), Signal()
        commit_seg = Signal.like(seg)
        commit_addr = Signal.like(addr)
        accept = Signal()
        m.d.comb += [self.i.ready.eq(~done & ~unpacking),
                     accept.eq(self.i.valid & self.i.ready),
                     self.loaded.eq(done & ~commit & ~unpacking)]
        m.d.sync += commit.eq(0)
        state = (seg, addr, sub, k, commit, commit_seg, commit_addr, unpacking, done)
        for n, s in enumerate(segs):
            # (an If per segment, not a Switch: Yosys writes a Switch without a default case,
            # which the lint flags)
            with m.If(seg == n):
                if s.entries_per_word > 1:
                    self._packed(m, s, n, state, accept, n == len(segs) - 1)
                else:
                    self._split(m, s, n, state, accept, n == len(segs) - 1)
        for n, (p_addr, _, p_en) in enumerate(self.ports):
            m.d.comb += [p_addr.eq(Mux(unpacking, addr, commit_addr)),
                         p_en.eq((commit & (commit_seg == n)) | (unpacking & (seg == n)))]
        return m

    @staticmethod
    def _next_entry(m, s, n, seg, addr, done, last_segment):
        """Address of the next memory word, or the next segment after the last."""
        with m.If(addr == s.depth - 1):
            m.d.sync += [addr.eq(0), seg.eq(n + 1)]
            if last_segment:
                m.d.sync += done.eq(1)
        with m.Else():
            m.d.sync += addr.eq(addr + 1)

    def _split(self, m, s, n, state, accept, last_segment):
        """A memory word of one or more load words: each load word fills its slice of
        ``data``; after the last the word is written (``commit``) in the next cycle."""
        seg, addr, sub, k, commit, commit_seg, commit_addr, unpacking, done = state
        with m.If(accept):
            for k in range(s.words_per_entry):       # (an If per slice: a variable
                with m.If(sub == k):                 # word_select is a Switch, see above)
                    m.d.sync += self.data[k * LOAD_WORD_BITS:(k + 1) * LOAD_WORD_BITS].eq(
                        self.i.payload)
            with m.If(sub == s.words_per_entry - 1):
                m.d.sync += [sub.eq(0), commit.eq(1), commit_seg.eq(n), commit_addr.eq(addr)]
                self._next_entry(m, s, n, seg, addr, done, last_segment)
            with m.Else():
                m.d.sync += sub.eq(sub + 1)

    def _packed(self, m, s, n, state, accept, last_segment):
        """Several memory words per load word: the word is taken into ``data``, then one
        memory word is written per cycle (``unpacking``, the load stream waits), the next
        from the next ``width`` bits, until the word or the memory ends."""
        seg, addr, sub, k, commit, commit_seg, commit_addr, unpacking, done = state
        with m.If(accept):
            m.d.sync += [self.data.eq(self.i.payload), unpacking.eq(1), k.eq(0)]
        with m.If(unpacking):
            m.d.sync += [self.data.eq(self.data >> s.width), k.eq(k + 1)]
            with m.If((k == s.entries_per_word - 1) | (addr == s.depth - 1)):
                m.d.sync += unpacking.eq(0)
            self._next_entry(m, s, n, seg, addr, done, last_segment)


def write_load_image(artifact: Artifact, folding: Folding, out_dir) -> dict[str, Any]:
    """Write the load image of ``artifact`` at ``folding`` (its ``weights`` field is taken as
    ``"load"``) into ``out_dir``, atomically: ``weights.bin`` (little-endian
    ``LOAD_WORD_BITS``-bit words), ``weights.hex`` (``$readmemh``: one word per line, 8 hex
    digits) and ``weights.json`` (the segments: layer, memory, depth, width, first word and
    word count; the word count and the binary's SHA-256)."""
    import dataclasses
    import hashlib
    import json
    from pathlib import Path

    import numpy as np

    from dupnet.files import atomic_write_bytes, atomic_write_text

    folding = dataclasses.replace(folding, weights="load")
    segments, words = load_image(artifact, folding)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    raw = np.asarray(words, dtype="<u4").tobytes()
    files = {"bin": out / "weights.bin", "hex": out / "weights.hex",
             "json": out / "weights.json"}
    atomic_write_bytes(files["bin"], raw)
    atomic_write_text(files["hex"], "".join(f"{w:08x}\n" for w in words))
    first, table = 0, []
    for s in segments:
        table.append({"layer": s.layer, "memory": s.memory, "depth": s.depth, "width": s.width,
                      "words_per_entry": s.words_per_entry, "first_word": first,
                      "words": s.load_words})
        first += s.load_words
    meta = {"config": artifact.config.name, "word_bits": LOAD_WORD_BITS, "words": len(words),
            "sha256": hashlib.sha256(raw).hexdigest(), "folding": folding.to_dict(),
            "segments": table}
    atomic_write_text(files["json"], json.dumps(meta, indent=1) + "\n")
    return files
