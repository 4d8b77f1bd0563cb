"""Several cyclically read memories in one SPRAM bank, each read out as a stream.

A layer's weight memory is read in address order, over and over (one word per input fold, the
address wrapping at the end), and its threshold memory one word per neuron fold, in order: each
is a *stream* of words, not a random-access memory. :class:`StreamBank` stores several such
memories in one single-port memory of 16-bit words (iCE40 SPRAM blocks,
:class:`~dupnet.hw.spram.SpramMemory`) and keeps a small FIFO per stream filled: a static slot
table gives each stream a share of the port's reads at least its consumer's peak rate, so a
consumer that takes at most its declared rate never finds its stream empty once the FIFOs
are filled (``tests/hw/test_hw_stream_bank.py`` measures that at the peak rates).

Layout: stream ``s`` occupies SPRAM words ``[base_s, base_s + length_s)``; a word narrower than
16 bits is packed ``spram_packing(width)`` to an SPRAM word (the first in the least significant
bits), a wider one takes ``ceil(width/16)`` consecutive SPRAM words (least significant first).
The loader writes the whole bank (:meth:`StreamBank.image`) through ``w`` before ``run`` rises.

``Folding.bank`` names the banked layers: their MVTUs take the words from the bank's streams
(ports ``w`` and ``t``), the top level builds the bank (docs/hardware.md, "Stream bank").
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .adapters import Gather
from .folded import FoldedConv
from .spram import SPRAM_WIDTH, SpramMemory, bank_words, spram_packing, spram_parts

__all__ = ["BankStream", "StreamBank", "slot_table", "bank_keeps_up", "layer_streams",
           "bank_streams",
           "bank_image", "BANK_SLOTS", "BANK_FIFO_DEPTH", "BANK_SEGMENT"]

#: the load image's segment of the bank (its layer and memory names)
BANK_SEGMENT = ("bank", "stream_bank")

#: length of the slot table (reads per round)
BANK_SLOTS = 32
#: SPRAM words each stream's FIFO holds
BANK_FIFO_DEPTH = 4


@dataclass(frozen=True)
class BankStream:
    """One memory of a bank, read cyclically: ``depth`` words of ``width`` bits, taken by its
    consumer at most ``rate`` words per cycle (a fraction up to 1)."""
    name: str
    depth: int
    width: int
    rate: Fraction

    def __post_init__(self):
        if self.depth < 1 or self.width < 1:
            raise ValueError(f"bank stream {self.name}: depth and width must be positive, got "
                             f"{self.depth} x {self.width}")
        if not 0 < Fraction(self.rate) <= 1:
            raise ValueError(f"bank stream {self.name}: rate must be in (0, 1] words per "
                             f"cycle, got {self.rate}")

    @property
    def packing(self) -> int:
        """Memory words per SPRAM word (1 from 9 bits up)."""
        return spram_packing(self.width)

    @property
    def parts(self) -> int:
        """SPRAM words per memory word (1 up to 16 bits)."""
        return spram_parts(self.width)

    @property
    def length(self) -> int:
        """SPRAM words the stream occupies (:func:`~dupnet.hw.spram.bank_words`)."""
        return bank_words(self.depth, self.width)

    @property
    def spram_rate(self) -> Fraction:
        """SPRAM words per cycle its consumer takes at its peak rate: ``rate * length /
        depth`` (a stream whose depth is not a multiple of the packing reads a part-filled
        SPRAM word once per pass)."""
        return Fraction(self.rate) * self.length / self.depth


def layer_streams(layer: FoldedConv) -> list[BankStream]:
    """The streams of a banked conv layer (``layer.banked``), its ports ``w`` and ``t``: the
    weight memory, a word per input fold at most (one per ``weight_rom_repeat`` folds), and
    the threshold memory, a word per neuron fold (every ``sf`` cycles at most)."""
    w, t, name = layer.weight_memory, layer.threshold_rom, layer.geometry.name
    return [BankStream(f"{name}.w_rom", w.depth, w.width,
                       Fraction(1, layer.weight_rom_repeat)),
            BankStream(f"{name}.{layer.threshold_rom_name}", t.depth, t.width,
                       Fraction(1, layer.sf))]


def bank_streams(layers) -> list[BankStream]:
    """The bank's streams: :func:`layer_streams` of every banked conv of ``layers`` (folded
    layers, pipeline order)."""
    return [s for f in layers if getattr(f, "banked", False) for s in layer_streams(f)]


def bank_image(streams: Sequence[BankStream], contents: Sequence[Sequence[int]]) -> list[int]:
    """The bank's SPRAM words from each stream's memory words (in stream order): narrow words
    packed, the first in the least significant bits; wide ones least significant part
    first."""
    out: list[int] = []
    mask = (1 << SPRAM_WIDTH) - 1
    for s, words in zip(streams, contents, strict=True):
        if len(words) != s.depth:
            raise ValueError(f"bank stream {s.name}: {len(words)} words given, depth is "
                             f"{s.depth}")
        for i in range(0, s.depth, s.packing):
            value = sum((w & ((1 << s.width) - 1)) << (k * s.width)
                        for k, w in enumerate(words[i:i + s.packing]))
            out += [(value >> (p * SPRAM_WIDTH)) & mask for p in range(s.parts)]
    return out


def bank_keeps_up(streams: Sequence[BankStream], slots: int = BANK_SLOTS) -> bool:
    """The bank's read port serves these streams at their peak rates (:func:`slot_table`
    would not refuse them)."""
    return sum(_slots_needed(s, slots) for s in streams) <= slots


def _slots_needed(s: BankStream, slots: int) -> int:
    """Read slots per round of one stream: its peak rate, plus one of margin."""
    return math.ceil(s.spram_rate * slots) + 1


def slot_table(streams: Sequence[BankStream], slots: int = BANK_SLOTS) -> list[int | None]:
    """The bank's read schedule: ``slots`` entries, each a stream index or None (idle).
    Stream ``s`` gets ``ceil(spram_rate * slots) + 1`` entries (its peak rate, and one slot
    per round of margin: the slots of a round and the consumer's words are not in phase),
    spread evenly (smooth weighted round robin). Raises ``ValueError`` when the shares exceed
    the port, naming every stream's need."""
    need = [_slots_needed(s, slots) for s in streams]
    if sum(need) > slots:
        parts = ", ".join(f"{s.name} {n}" for s, n in zip(streams, need))
        raise ValueError(f"stream bank over-subscribed: the streams need {sum(need)} of "
                         f"{slots} read slots per round ({parts}): put fewer or slower "
                         f"memories in one bank")
    weights = need + [slots - sum(need)]            # the last entry: idle slots
    current = [0] * len(weights)
    table: list[int | None] = []
    for _ in range(slots):
        current = [c + w for c, w in zip(current, weights)]
        pick = max(range(len(weights)), key=lambda i: (current[i], -i))
        current[pick] -= slots
        table.append(pick if pick < len(streams) else None)
    return table


class StreamBank(wiring.Component):
    """Memories read cyclically, stored in one SPRAM bank (see the module docstring).

    Parameters
    ----------
    streams : sequence of BankStream
        The memories, in layout order.

    Attributes
    ----------
    o<s> : Out(stream.Signature(unsigned(width_s)))
        Stream ``s``'s words, address 0 up, then from 0 again, forever (once ``run`` is high).
    run : In(1)
        The bank is written (the load has ended): reads start.
    w_addr, w_data, w_en : In
        The loader's write port: SPRAM word ``w_addr`` (16 bits, :meth:`image` order) is written
        where ``w_en``; used only while ``run`` is low.
    bases : list of int
        Each stream's first SPRAM word.
    words : int
        SPRAM words of the bank.
    """

    def __init__(self, streams: Sequence[BankStream]):
        if not streams:
            raise ValueError("a stream bank needs at least one stream")
        self.streams = list(streams)
        self.table = slot_table(self.streams)
        self.bases = []
        base = 0
        for s in self.streams:
            self.bases.append(base)
            base += s.length
        self.words = base
        members = {f"o{n}": Out(stream.Signature(unsigned(s.width)))
                   for n, s in enumerate(self.streams)}
        members.update(run=In(1), w_addr=In(range(max(2, self.words))),
                       w_data=In(SPRAM_WIDTH), w_en=In(1))
        super().__init__(members)

    def image(self, contents: Sequence[Sequence[int]]) -> list[int]:
        """The bank's SPRAM words (:func:`bank_image`)."""
        return bank_image(self.streams, contents)

    def elaborate(self, platform):
        m = Module()
        m.submodules.store = store = SpramMemory(max(1, self.words), SPRAM_WIDTH)
        rp, wp = store.read_port(), store.write_port()
        m.d.comb += [wp.addr.eq(self.w_addr), wp.data.eq(self.w_data),
                     wp.en.eq(self.w_en & ~self.run)]
        n = len(self.streams)
        slot = Signal(range(len(self.table)))
        m.d.sync += slot.eq(_wrap(slot, len(self.table) - 1, 0))
        owner = Signal(range(n + 1))          # the stream whose slot this is (n: idle)
        with m.Switch(slot):
            for t, who in enumerate(self.table):
                with m.Case(t):
                    m.d.comb += owner.eq(n if who is None else who)
        # the read issued last cycle (its data arrives now) and for which stream
        issued = Signal()
        issued_to = Signal(range(max(2, n)))
        m.d.comb += rp.en.eq(0)
        m.d.sync += issued.eq(0)
        fifos = []
        for i, s in enumerate(self.streams):
            fifo = SyncFIFOBuffered(width=SPRAM_WIDTH, depth=BANK_FIFO_DEPTH)
            m.submodules[f"fifo{i}"] = fifo
            fifos.append(fifo)
            ptr = Signal(range(max(2, self.words)), name=f"ptr{i}", init=self.bases[i])
            in_flight = issued & (issued_to == i)
            room = Signal(name=f"room{i}")
            m.d.comb += room.eq(fifo.level + in_flight < BANK_FIFO_DEPTH)
            with m.If(self.run & (owner == i) & room):
                m.d.comb += [rp.addr.eq(ptr), rp.en.eq(1)]
                last = self.bases[i] + s.length - 1
                m.d.sync += [ptr.eq(_wrap(ptr, last, self.bases[i])),
                             issued.eq(1), issued_to.eq(i)]
            m.d.comb += [fifo.w_data.eq(rp.data), fifo.w_en.eq(issued & (issued_to == i))]
            self._gearbox(m, i, s, fifo)
        return m

    def _gearbox(self, m, i, s: BankStream, fifo):
        """Stream ``i``'s memory words from its FIFO of SPRAM words."""
        o = getattr(self, f"o{i}")
        if s.parts > 1:
            m.submodules[f"gather{i}"] = gather = Gather(SPRAM_WIDTH, s.parts)
            wiring.connect(m, fifo.r_stream, gather.i)
            m.d.comb += [o.valid.eq(gather.o.valid), o.payload.eq(gather.o.payload[:s.width]),
                         gather.o.ready.eq(o.ready)]
            return
        if s.packing == 1:
            m.d.comb += [o.valid.eq(fifo.r_rdy), o.payload.eq(fifo.r_data[:s.width]),
                         fifo.r_en.eq(o.ready)]
            return
        # several memory words per SPRAM word: the word within it, and the memory word's
        # address (the stream's last SPRAM word may hold fewer)
        sub = Signal(range(s.packing), name=f"sub{i}")
        pos = Signal(range(max(2, s.depth)), name=f"pos{i}")
        done = Signal(name=f"word_done{i}")
        m.d.comb += [o.valid.eq(fifo.r_rdy),
                     o.payload.eq(fifo.r_data.word_select(sub, s.width)),
                     done.eq((sub == s.packing - 1) | (pos == s.depth - 1)),
                     fifo.r_en.eq(o.ready & done)]
        with m.If(o.valid & o.ready):
            m.d.sync += [sub.eq(Mux(done, 0, sub + 1)), pos.eq(_wrap(pos, s.depth - 1, 0))]


def _wrap(value, last: int, first: int):
    """``value + 1``, back to ``first`` after ``last``."""
    return Mux(value == last, first, value + 1)
