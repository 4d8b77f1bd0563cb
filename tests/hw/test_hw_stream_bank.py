"""StreamBank: several memories in one SPRAM bank, each read cyclically as a stream; every
word compared, and no stream ever empty when its consumer takes words at its peak rate."""
import dataclasses
import random
from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pytest
from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from dupnet.hw.folded import FoldedConv, FoldingError
from dupnet.hw.mvtu import MVTU, memory_images
from dupnet.hw.reference import window_chunks
from dupnet.hw.stream_bank import (BANK_SLOTS, BankStream, StreamBank, bank_keeps_up,
                                   layer_streams, slot_table)
from dupnet.hw.stream_layout import pack_lanes
from dupnet.hw.stream_sim import get_n_timed, put_all, run_sim, write_words
from dupnet.sw.config import ConvGeometry
from dupnet.sw.golden import conv_acc, threshold

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

#: a threshold-like wide stream, a packed weight stream, a one-bit weight stream, a full word
STREAMS = [BankStream("t_rom", 5, 42, Fraction(1, 12)),
           BankStream("w6", 21, 6, Fraction(1, 2)),
           BankStream("w1", 37, 1, Fraction(1)),
           BankStream("w16", 10, 16, Fraction(1, 5))]


def bank_write_port(dut):
    """The loader's write port of a bank (or of a harness exposing it)."""
    return SimpleNamespace(addr=dut.w_addr, data=dut.w_data, en=dut.w_en)


def contents(streams, seed=0):
    rng = random.Random(seed)
    return [[rng.getrandbits(s.width) for _ in range(s.depth)] for s in streams]


def run_bank(streams, words_per_stream, seed=0, warmup=80, rates=None):
    """Load the bank, then pull every stream at its peak rate (or at ``rates``: a word
    whenever the rate's credit reaches one). Returns the memories' words, the words read per
    stream and the cycles, after ``warmup``, where a consumer wanted a word and its stream had
    none."""
    dut = StreamBank(streams)
    mem = contents(streams, seed)
    image = dut.image(mem)
    got = [[] for _ in streams]
    starved = [[] for _ in streams]

    async def loader(ctx):
        await write_words(ctx, bank_write_port(dut), image)
        ctx.set(dut.run, 1)

    def consumer(i, s):
        port = getattr(dut, f"o{i}")
        rate = s.rate if rates is None else rates[i]

        async def pull(ctx):
            await ctx.tick().until(dut.run)
            credit, cycle = Fraction(0), 0
            while len(got[i]) < words_per_stream:
                credit = min(credit + rate, Fraction(1))
                want = credit >= 1
                ctx.set(port.ready, want)
                _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload)
                if want and valid:
                    got[i].append(payload)
                    credit -= 1
                elif want and cycle >= warmup:
                    starved[i].append(cycle)
                cycle += 1
            ctx.set(port.ready, 0)
        return pull

    run_sim(dut, [loader], [consumer(i, s) for i, s in enumerate(streams)],
            max_cycles=len(image) + 200 * words_per_stream + 1000)
    return mem, got, starved


def test_every_word_in_cyclic_order_and_never_starved_at_the_peak_rates():
    mem, got, starved = run_bank(STREAMS, words_per_stream=100)
    for s, words, want, hungry in zip(STREAMS, got, mem, starved):
        expected = [want[n % s.depth] for n in range(len(words))]
        assert words == expected, f"{s.name}: got {words[:8]}..., want {expected[:8]}..."
        assert not hungry, f"{s.name} empty when its consumer wanted a word at {hungry[:5]}"


def test_consumer_above_its_declared_rate_is_held_not_fed_wrong_words():
    """A consumer that takes more than it declared waits for words (valid low); the words it
    gets are still the memory's, in order."""
    slow = [BankStream("a", 9, 16, Fraction(1, 8)), BankStream("b", 7, 3, Fraction(1, 8))]
    mem, got, starved = run_bank(slow, 40, rates=[Fraction(1), Fraction(1)])
    for s, words, want in zip(slow, got, mem):
        assert words == [want[n % s.depth] for n in range(len(words))]
    assert all(starved), "a consumer at 8x its declared rate must find its stream empty"


def test_image_packs_narrow_words_and_splits_wide_ones():
    bank = StreamBank([BankStream("n", 3, 6, Fraction(1, 4)), BankStream("w", 2, 20, Fraction(1, 4))])
    assert bank.bases == [0, 2] and bank.words == 6
    img = bank.image([[0b000001, 0b100000, 0b111111], [0xABCDE, 0x12345]])
    assert img == [0b100000_000001, 0b111111, 0xBCDE, 0xA, 0x2345, 0x1]
    with pytest.raises(ValueError, match="bank stream n: 2 words given, depth is 3"):
        bank.image([[1, 2], [1, 2]])


def test_slot_table_gives_each_stream_its_share_evenly():
    table = slot_table(STREAMS)
    assert len(table) == BANK_SLOTS
    for i, s in enumerate(STREAMS):
        mine = [t for t, who in enumerate(table) if who == i]
        assert len(mine) >= s.spram_rate * BANK_SLOTS
        gaps = [(b - a) % BANK_SLOTS for a, b in zip(mine, mine[1:] + mine[:1])]
        assert max(gaps) <= -(-BANK_SLOTS // len(mine)) + 1, (s.name, gaps)


def test_over_subscribed_bank_refused_naming_the_streams():
    heavy = [BankStream("conv1_w", 100, 16, Fraction(3, 4)),
             BankStream("conv2_w", 100, 16, Fraction(1, 2))]
    assert bank_keeps_up(STREAMS) and not bank_keeps_up(heavy)   # = slot_table's verdict
    with pytest.raises(ValueError, match=r"over-subscribed: the streams need 42 of 32 read "
                                         r"slots per round \(conv1_w 25, conv2_w 17\)"):
        StreamBank(heavy)
    with pytest.raises(ValueError, match="rate must be in"):
        BankStream("x", 4, 4, Fraction(2))


def test_bank_in_spram_cells_lints():
    """Elaborated for Verilog the bank is SB_SPRAM256KA cells (one per 16K words), and the
    Verilog passes Verilator's lint with Yosys' model of the cell."""
    from amaranth.back import rtlil

    from dupnet.hw.lint import lint_verilog
    from dupnet.hw.spram import GENERATOR_PLATFORM
    from dupnet.hw.yosys import rtlil_to_verilog
    bank = StreamBank(STREAMS)
    il = rtlil.convert(bank, name="bank", emit_src=False, platform=GENERATOR_PLATFORM)
    verilog = rtlil_to_verilog(il)
    assert verilog.count("  SB_SPRAM256KA ") == 1
    r = lint_verilog(verilog, top="bank")
    assert r.ok, r.output[-3000:]


# --------------------------------------------------------------------------- a banked MVTU

class BankedMvtu(wiring.Component):
    """An MVTU whose weight and threshold words come from a StreamBank (test harness): the
    MVTU's ``i`` and ``o``, the bank's write port and ``run``."""

    def __init__(self, mvtu, bank):
        self.mvtu, self.bank = mvtu, bank
        super().__init__({"i": In(stream.Signature(len(mvtu.i.payload))),
                          "o": Out(stream.Signature(len(mvtu.o.payload))),
                          "run": In(1), "w_addr": In(range(max(2, bank.words))),
                          "w_data": In(16), "w_en": In(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.mvtu, m.submodules.bank = self.mvtu, self.bank
        wiring.connect(m, wiring.flipped(self.i), self.mvtu.i)
        wiring.connect(m, self.mvtu.o, wiring.flipped(self.o))
        wiring.connect(m, self.bank.o0, self.mvtu.w)
        wiring.connect(m, self.bank.o1, self.mvtu.t)
        m.d.comb += [self.bank.run.eq(self.run), self.bank.w_addr.eq(self.w_addr),
                     self.bank.w_data.eq(self.w_data), self.bank.w_en.eq(self.w_en)]
        return m


def run_banked_mvtu(banked, frames=3, stall=0.0, seed=1):
    """dupnet-demo-like conv (w_dup 4, PE 1, SIMD 4: one-bit weight words) as a ROM MVTU or
    fed by a bank; returns the outputs and their cycles (all checked against numpy)."""
    g = ConvGeometry(index=0, name="convb", k=3, height=3, width=4, in_channels=8,
                     out_channels=4, w_dup=4, x_dup=1, in_bits=2, act_bits=2, is_last=False)
    layer = FoldedConv(g, 1, 4, weights="load" if banked else "rom", banked=banked)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 4, size=(frames, g.height, g.width, g.in_channels))
    weights = rng.choice(np.array([-1, 1], dtype=np.int8),
                         size=(g.out_channels, g.k, g.k, g.c_unique))
    acc = conv_acc(x, weights, g)
    thr = np.sort(rng.choice(acc.reshape(-1), size=(g.out_channels, g.n_thresholds)), axis=1)
    want = [pack_lanes(row, 2) for row in threshold(acc, thr).reshape(-1, 1)]
    mvtu = MVTU(layer, weights, thr)
    if banked:
        streams = layer_streams(layer)
        bank = StreamBank(streams)
        images = memory_images(layer, weights, thr)
        image = bank.image([images["w_rom"], images[layer.threshold_rom_name]])
        dut = BankedMvtu(mvtu, bank)
    else:
        dut, image = mvtu, []
    ins = [pack_lanes(row, 2) for img in x for row in window_chunks(img, 3, 4, 1, layer.nf)]
    timed = []

    async def producer(ctx):
        if banked:
            await write_words(ctx, bank_write_port(dut), image)
            ctx.set(dut.run, 1)
            await ctx.tick().repeat(40)           # the FIFOs fill
        await put_all(ctx, dut.i, ins, stall, random.Random(seed))

    async def consumer(ctx):
        timed.extend(await get_n_timed(ctx, dut.o, len(want)))

    run_sim(dut, [producer], [consumer], max_cycles=40 * len(ins) + 2000)
    got = [p for _, p in timed]
    assert got == want, f"first difference at beat {next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)}"
    return [c for c, _ in timed]


def test_banked_mvtu_bit_exact_and_as_fast_as_its_rom_twin():
    """Fed by a bank at its peak rates, the MVTU gives the ROM MVTU's outputs at the same
    intervals (no cycle lost waiting for a weight or threshold word)."""
    rom = run_banked_mvtu(False)
    banked = run_banked_mvtu(True)
    steps = lambda cs: [b - a for a, b in zip(cs, cs[1:])]
    assert steps(banked) == steps(rom)
    run_banked_mvtu(True, stall=0.4, seed=2)          # random stalls: still every word


def test_banked_layer_refused_without_load_or_on_the_last_layer():
    g = ConvGeometry(index=3, name="conv4", k=3, height=3, width=4, in_channels=8,
                     out_channels=4, w_dup=4, x_dup=1, in_bits=2, act_bits=None, is_last=True)
    with pytest.raises(FoldingError, match=r"layer 3 \(conv4\): streamed \(banked\) weights"):
        FoldedConv(g, 1, 4, weights="load", banked=True)
    hidden = dataclasses.replace(g, act_bits=2, is_last=False)
    with pytest.raises(FoldingError, match="need weights = \"load\""):
        FoldedConv(hidden, 1, 4, banked=True)
