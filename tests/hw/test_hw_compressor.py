"""Bit-heap compressor against Python sums: plain bits, XNOR pairs, mixed columns, random heaps."""
import numpy as np
import pytest
from amaranth import Module, Signal
from amaranth.sim import Simulator

from dupnet.hw.compressor import XnorPair, compress_heap, compressor_luts, heap_of_terms

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def _check(heap_spec, vectors, seed=0):
    """``heap_spec``: column -> list of "b" (plain bit) or "p" (XNOR pair); every input of the
    heap is a free signal; each vector assigns them all and the sum is compared."""
    m = Module()
    inputs, heap, layout = [], {}, []
    for col, kinds in heap_spec.items():
        for k in kinds:
            if k == "b":
                s = Signal(name=f"b{len(inputs)}")
                inputs.append(s)
                heap.setdefault(col, []).append(s)
                layout.append((col, [len(inputs) - 1], False))
            else:
                x, w = Signal(name=f"x{len(inputs)}"), Signal(name=f"w{len(inputs)}")
                inputs += [x, w]
                heap.setdefault(col, []).append(XnorPair(x, w))
                layout.append((col, [len(inputs) - 2, len(inputs) - 1], True))
    out = Signal(32)
    m.d.comb += out.eq(compress_heap(m, heap, "t"))
    rng = np.random.default_rng(len(inputs) + seed)
    vals = rng.integers(0, 2, size=(vectors, len(inputs)))

    def expected(v):
        total = 0
        for col, idx, is_pair in layout:
            bit = (1 - (v[idx[0]] ^ v[idx[1]])) if is_pair else v[idx[0]]
            total += int(bit) << col
        return total

    got = []

    async def bench(ctx):
        for v in vals:
            for s, b in zip(inputs, v):
                ctx.set(s, int(b))
            got.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == [expected(v) for v in vals]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 13, 40])
def test_single_column_plain_bits(n):
    _check({0: "b" * n}, 64)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 9, 64])
def test_single_column_xnor_pairs(n):
    _check({0: "p" * n}, 64)


def test_empty_heap_is_zero():
    m = Module()
    out = Signal(4)
    m.d.comb += out.eq(compress_heap(m, {}, "t"))
    m.d.comb += out.eq(compress_heap(m, {0: [], 3: []}, "u"))
    sim = Simulator(m)
    got = []

    async def bench(ctx):
        got.append(ctx.get(out))

    sim.add_testbench(bench)
    sim.run()
    assert got == [0]


@pytest.mark.parametrize("seed", range(12))
def test_random_heaps_of_singles_and_pairs(seed):
    """Random heaps: up to 8 columns (some empty), singles and XNOR pairs mixed in any order."""
    rng = np.random.default_rng(1000 + seed)
    spec = {}
    for col in range(int(rng.integers(1, 9))):
        n = int(rng.integers(0, 20))
        if n:
            spec[col] = "".join(rng.choice(["b", "p"], size=n))
    _check(spec, 96, seed)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 20])
def test_xnor_pairs_three_columns(n):
    """The MVTU's heap: n lanes of 3-bit activations, each bit XNOR'd with its weight bit."""
    _check({0: "p" * n, 1: "p" * n, 2: "p" * n}, 64)


def test_mixed_columns_with_gaps():
    _check({0: "pbpbb", 2: "bbbbbbbbb", 3: "p", 5: "pppbbbbb"}, 128)


@pytest.mark.parametrize("n,t", [(5, 3), (1, 1), (1, 4), (2, 2), (7, 1), (13, 4), (64, 1),
                                 (33, 2), (20, 3)])
def test_heap_of_terms_is_offset_form(n, t):
    """sum(w ? v : ~v) over t-bit terms: the complement is in the term's own width."""
    m = Module()
    vs = [Signal(t, name=f"v{i}") for i in range(n)]
    ws = [Signal(name=f"w{i}") for i in range(n)]
    out = Signal(16)
    m.d.comb += out.eq(compress_heap(m, heap_of_terms(list(zip(vs, ws))), "t"))
    rng = np.random.default_rng(n * 10 + t)
    cases = [(rng.integers(0, 1 << t, n), rng.integers(0, 2, n)) for _ in range(64)]
    top = (1 << t) - 1
    got = []

    async def bench(ctx):
        for v, w in cases:
            for s, x in zip(vs + ws, list(v) + list(w)):
                ctx.set(s, int(x))
            got.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == [sum(int(a) if b else top - int(a) for a, b in zip(v, w)) for v, w in cases]


def test_compressor_luts_counts_the_stage_schedule():
    """The analytic count follows the hardware's own schedule: small cases by hand."""
    assert compressor_luts(1, 1) == 1            # one XNOR
    assert compressor_luts(3, 1) == 2            # one full adder on three XNOR pairs
    assert compressor_luts(0, 3) == 0
    assert compressor_luts(2, 1) == 3            # a one-column adder (1) and two XNORs
    assert compressor_luts(4, 1) == 4            # full adder (2), then (s, c) + the 4th (XNOR, 1)
    # 64 lanes of 3 bits: about 1.35 LUT6 per lane-bit (XNORs folded into the first stage)
    assert 1.2 <= compressor_luts(64, 3) / 192 <= 1.45


@pytest.mark.parametrize("n,bits", [(32, 3), (64, 1)])
def test_synthesized_compressor_matches_its_count(n, bits):
    """``synth_xilinx`` maps one counter output to one LUT6 (the stage modules are kept apart
    during LUT mapping): the measured LUTs stay within 10 % of :func:`compressor_luts`. Flattened
    before mapping, abc9 duplicated logic to ~1.5x this count."""
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    from dupnet.hw.yosys import synth_xilinx_cells

    class Heap(wiring.Component):
        def __init__(self):
            super().__init__({"x": In(n * bits), "w": In(n), "o": Out(16)})

        def elaborate(self, platform):
            m = Module()
            terms = [(self.x[i * bits:(i + 1) * bits], self.w[i]) for i in range(n)]
            m.d.comb += self.o.eq(compress_heap(m, heap_of_terms(terms), "heap"))
            return m

    luts = synth_xilinx_cells(Heap(), "heap")["LUT"]
    want = compressor_luts(n, bits)
    assert abs(luts - want) <= 0.1 * want, (luts, want)


def _small_heap():
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class Heap(wiring.Component):
        def __init__(self):
            super().__init__({"x": In(12), "w": In(12), "o": Out(4)})

        def elaborate(self, platform):
            m = Module()
            terms = [(self.x[i:i + 1], self.w[i]) for i in range(12)]
            m.d.comb += self.o.eq(compress_heap(m, heap_of_terms(terms), "heap"))
            return m
    return Heap()


@pytest.mark.parametrize("synth,lut_cells", [
    ("synth_ecp5", {"LUT4": 1, "CCU2C": 2}),
    ("synth_ice40 -device u", {"SB_LUT4": 1})])
def test_synth_cells_counts_lut4_per_family(synth, lut_cells):
    """``synth_cells`` with a Lattice command counts LUT4s (ECP5: a CCU2C carry cell holds two)
    and no cell of another family."""
    from dupnet.hw.yosys import synth_cells
    cells = synth_cells(_small_heap(), "heap", synth)
    assert cells["LUT"] == sum(cells.get(k, 0) * n for k, n in lut_cells.items())
    assert cells["LUT"] > 0 and not any(k.startswith("LUT6") for k in cells)


def test_synth_cells_rejects_an_unknown_command():
    from dupnet.hw.yosys import synth_cells
    with pytest.raises(ValueError, match="unknown synthesis command 'synth_gowin'"):
        synth_cells(_small_heap(), "heap", "synth_gowin")


@pytest.mark.parametrize("n_terms,bits", [(1, 1), (2, 1), (64, 1), (18, 8), (27, 2)])
def test_pipeline_register_half_way(n_terms, bits):
    """With a ``register``, the sum of random offset-form terms comes out one clock later,
    exact; the register sits after half of the stages (one stage at most: on the sum), and
    holds :func:`pipeline_bits` bits."""
    from dupnet.hw.compressor import compressor_stages, pipeline_bits, pipeline_split
    rng = np.random.default_rng(n_terms * 10 + bits)
    m = Module()
    xs = [Signal(bits, name=f"x{i}") for i in range(n_terms)]
    ws = [Signal(name=f"w{i}") for i in range(n_terms)]
    heap = heap_of_terms(list(zip(xs, ws)))
    regs = []

    def register(values):
        out = [Signal(v.shape(), name=f"r{len(regs) + i}") for i, v in enumerate(values)]
        m.d.sync += [o.eq(v) for o, v in zip(out, values)]
        regs.extend(out)
        return out
    out = Signal(32)
    m.d.comb += out.eq(compress_heap(m, heap, "t", register))
    n = compressor_stages(heap)
    assert pipeline_split(heap) == (n // 2 - 1 if n >= 2 else None)
    assert sum(len(r) for r in regs) == pipeline_bits(heap) > 0
    vecs = [(rng.integers(0, 1 << bits, n_terms), rng.integers(0, 2, n_terms))
            for _ in range(20)]
    mask = (1 << bits) - 1

    async def bench(ctx):
        prev = None
        for x, w in vecs:
            for s, v in zip(xs, x):
                ctx.set(s, int(v))
            for s, v in zip(ws, w):
                ctx.set(s, int(v))
            await ctx.tick()
            for s in xs + ws:          # new inputs: a registered sum does not see them yet
                ctx.set(s, 0)
            got = ctx.get(out)
            want = sum(int(v) if wb else (~int(v)) & mask for v, wb in zip(x, w))
            assert got == want, (got, want)
            prev = got
        assert prev is not None

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
