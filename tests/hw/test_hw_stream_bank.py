"""StreamBank: several memories in one SPRAM bank, each read cyclically as a stream; every
word compared, and no stream ever empty when its consumer takes words at its peak rate."""
import random
from fractions import Fraction

import pytest

from dupnet.hw.stream_bank import BANK_SLOTS, BankStream, StreamBank, slot_table
from dupnet.hw.stream_sim import run_sim

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

#: a threshold-like wide stream, a packed weight stream, a one-bit weight stream, a full word
STREAMS = [BankStream("t_rom", 5, 42, Fraction(1, 12)),
           BankStream("w6", 21, 6, Fraction(1, 2)),
           BankStream("w1", 37, 1, Fraction(1)),
           BankStream("w16", 10, 16, Fraction(1, 5))]


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
        for addr, word in enumerate(image):
            ctx.set(dut.w_addr, addr)
            ctx.set(dut.w_data, word)
            ctx.set(dut.w_en, 1)
            await ctx.tick()
        ctx.set(dut.w_en, 0)
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
