"""Weights loaded at run time (``weights = "load"``): the same Verilog for every artifact of a
config, the load image, and in the Amaranth simulator: load, run, reset, load another artifact,
run again; frames sent before the load ends are held; a reset in mid-load restarts it."""
import dataclasses
import random

import numpy as np
import pytest

from dupnet.hw.folding import Folding
from dupnet.hw.generate import generate_verilog
from dupnet.hw.kinds import output_layouts
from dupnet.hw.loader import LOAD_WORD_BITS, load_image, load_segments
from dupnet.hw.stream_layout import image_beats
from dupnet.hw.stream_sim import get_n, put_all, run_sim, write_words
from dupnet.hw.top import DupNetAccelerator
from dupnet.sw.golden import GoldenModel
from dupnet.sw.random_artifact import random_artifact

from .test_hw_top import FOLDINGS, _WithReset

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

LOAD = {name: dataclasses.replace(f, weights="load") for name, f in FOLDINGS.items()}
# one neuron fold everywhere: thresholds and the last layer's offsets that a ROM design keeps
# as constants are memories here
LOAD["one-fold"] = Folding({"conv1": (4, 3), "conv2": (8, 4), "conv3": (4, 8), "conv4": (6, 4)},
                           weights="load")
# conv2 and conv3's weight and threshold words streamed from one shared SPRAM bank
LOAD["banked"] = dataclasses.replace(LOAD["serial"], bank=("conv2", "conv3"))


def test_verilog_does_not_depend_on_the_artifact(small_cfg):
    a, b = random_artifact(small_cfg, seed=1), random_artifact(small_cfg, seed=2)
    for name in ("mixed", "one-fold"):
        va, vb = generate_verilog(a, LOAD[name]).verilog, generate_verilog(b, LOAD[name]).verilog
        assert va == vb, name
    # with ROMs the weights are in the Verilog (the check above can fail)
    assert generate_verilog(a, FOLDINGS["mixed"]).verilog != \
        generate_verilog(b, FOLDINGS["mixed"]).verilog


def test_load_image_layout(small_art):
    folding = LOAD["one-fold"]
    segments, words = load_image(small_art, folding)
    assert [s.memory for s in segments if s.layer == "conv1"] == \
        ["w_rom", "t_rom"]
    conv1 = next(s for s in segments if s.layer == "conv1" and s.memory == "w_rom")
    pe = folding.layers["conv1"][0]
    assert conv1.width % pe == 0 and conv1.width > conv1.width // pe   # PE slices side by side
    assert segments[-1].memory == "k_rom"          # the xnor last layer's offsets
    assert len(words) == sum(s.load_words for s in segments)
    assert all(0 <= w < 1 << LOAD_WORD_BITS for w in words)
    assert load_segments(small_art.config, FOLDINGS["mixed"]) == []
    # two artifacts, two images, one layout
    seg_b, words_b = load_image(random_artifact(small_art.config, seed=9), folding)
    assert seg_b == segments and words_b != words


def _expected(art, folding, imgs):
    gold = GoldenModel(art).forward(imgs)[-1]
    layout = output_layouts(art.config, folding)[-1][1]
    return layout.pack(gold, last_every=gold[0].size // layout.lanes)


def _images(cfg, n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, cfg.input_height, cfg.input_width, cfg.input_channels))


async def _reset(ctx, top):
    ctx.set(top.cd.rst, 1)
    await ctx.tick()
    ctx.set(top.cd.rst, 0)


@pytest.mark.parametrize("name", ["mixed", "one-fold", "mixed-gated", "banked"])
def test_load_run_reset_reload_run(small_cfg, name):
    """Artifact A is loaded while its frames already wait at the input (held, never computed
    on stale weights); then reset, a third of B's image, reset (mid-load), B's whole image and
    B's frames: every output word equals each artifact's golden model."""
    _load_run_reload(small_cfg, LOAD[name])


def _load_run_reload(small_cfg, folding):
    art_a, art_b = random_artifact(small_cfg, seed=11), random_artifact(small_cfg, seed=12)
    imgs_a, imgs_b = _images(small_cfg, 2, 1), _images(small_cfg, 2, 2)
    dut = DupNetAccelerator(art_a, folding)
    top = _WithReset(dut)
    _, words_a = load_image(art_a, folding)
    _, words_b = load_image(art_b, folding)
    want_a, want_b = _expected(art_a, folding, imgs_a), _expected(art_b, folding, imgs_b)
    got_a, got_b, phase = [], [], {"b": False, "loaded_before": None}

    async def frames(ctx):
        await put_all(ctx, dut.i, image_beats(imgs_a), 0.2, random.Random(3))

    async def loads(ctx):
        await put_all(ctx, dut.load, words_a, 0.3, random.Random(4))

    async def consumer(ctx):
        got_a.extend(await get_n(ctx, dut.o, len(want_a), 0.2, random.Random(5)))
        await _reset(ctx, top)
        phase["loaded_before"] = ctx.get(dut.loaded)
        await put_all(ctx, dut.load, words_b[:len(words_b) // 3])
        await _reset(ctx, top)
        await put_all(ctx, dut.load, words_b, 0.3, random.Random(6))
        while not ctx.get(dut.loaded):
            await ctx.tick()
        phase["b"] = True
        await put_all(ctx, dut.i, image_beats(imgs_b), 0.2, random.Random(7))

    async def consumer_b(ctx):
        while not phase["b"]:
            await ctx.tick()
        got_b.extend(await get_n(ctx, dut.o, len(want_b), 0.2, random.Random(8)))

    run_sim(top, [frames, loads], [consumer, consumer_b], max_cycles=200_000)
    assert got_a == want_a
    assert phase["loaded_before"] == 0          # reset clears `loaded`
    assert got_b == want_b


def test_frames_are_held_until_loaded(small_art):
    """``i.ready`` stays low from reset until the last memory word is written (a load word
    that packs several is written one memory word per cycle, the load stream waiting), and
    ``load.ready`` low after it."""
    folding = LOAD["mixed"]
    dut = DupNetAccelerator(small_art, folding)
    segments, words = load_image(small_art, folding)
    assert any(s.entries_per_word > 1 for s in segments)      # narrow memories packed
    seen = {"ready_before": 0, "loaded_at": None, "load_ready_after": 0}

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.load.valid, 1)
        for w in words:
            ctx.set(dut.load.payload, w)
            await ctx.tick().until(dut.load.ready)
            seen["ready_before"] |= ctx.get(dut.i.ready)
        ctx.set(dut.load.valid, 0)
        for cycle in range(40):
            if ctx.get(dut.loaded) and seen["loaded_at"] is None:
                seen["loaded_at"] = cycle
            if seen["loaded_at"] is None:
                seen["ready_before"] |= ctx.get(dut.i.ready)
            else:
                seen["load_ready_after"] |= ctx.get(dut.load.ready)
            await ctx.tick()

    run_sim(dut, [], [bench], max_cycles=40 * len(words) + 100)
    assert seen["ready_before"] == 0
    last = segments[-1]
    assert seen["loaded_at"] is not None and seen["loaded_at"] <= last.entries_per_word + 1
    assert seen["load_ready_after"] == 0


# ---- weights in iCE40 SPRAM (SB_SPRAM256KA), loaded through the load port

SPRAM = dataclasses.replace(LOAD["mixed"], spram=("conv2", "conv3"))


def test_spram_design_instantiates_the_cells_and_lints(small_art):
    """The generated Verilog instantiates one SB_SPRAM256KA per 16 bits of width and 16384
    words of depth of each SPRAM weight memory, and passes the lint with Yosys' model of the
    cell (the model Verilator simulates)."""
    from dupnet.hw.kinds import fold_network
    from dupnet.hw.lint import lint_verilog
    from dupnet.hw.spram import spram_blocks
    design = generate_verilog(small_art, SPRAM)
    want = sum(spram_blocks(m.depth, m.width) for f in fold_network(small_art.config, SPRAM)
               for m in getattr(f, "memories", []) if m.spram)
    # conv2 (PE 4) and conv3 (PE 2): one weight memory each, the PE slices side by side, one
    # block each (a memory per PE took 4 + 2 blocks)
    assert want == 1 + 1
    assert design.verilog.count("  SB_SPRAM256KA ") == want
    r = lint_verilog(design.verilog, top=design.top_name)
    assert r.ok, r.output[-3000:]


def test_spram_needs_load_weights(small_cfg):
    from dupnet.hw.folded import FoldingError
    from dupnet.hw.folding import validate_folding
    with pytest.raises(FoldingError, match=r"layer 2 \(conv2\): weights in SPRAM need "
                                           r"weights = \"load\""):
        validate_folding(small_cfg, dataclasses.replace(FOLDINGS["mixed"], spram=("conv2",)))
    with pytest.raises(FoldingError, match=r"field 'spram' names unknown conv layer\(s\) "
                                           r"'conv9'"):
        validate_folding(small_cfg, dataclasses.replace(SPRAM, spram=("conv9",)))


def test_spram_memory_blocks_in_depth_and_width():
    """A 40000 x 20 memory: 2 columns x 3 rows of blocks, the row picked by the high address
    bits and registered for the read data."""
    from amaranth.back import rtlil

    from dupnet.hw.spram import GENERATOR_PLATFORM, SpramMemory
    mem = SpramMemory(40000, 20)
    assert mem.blocks == 6
    text = rtlil.convert(mem, platform=GENERATOR_PLATFORM, ports=[
        mem.read_port().addr, mem.read_port().en, mem.read_port().data,
        mem.write_port().addr, mem.write_port().data, mem.write_port().en])
    assert text.count("cell \\SB_SPRAM256KA") == 6


def test_spram_behavioural_model_in_the_amaranth_simulator(small_cfg):
    """The Amaranth simulator runs the SPRAM memories' equivalent model: load, run, reload."""
    _load_run_reload(small_cfg, SPRAM)


@pytest.mark.parametrize("depth,width", [(37, 3), (20, 1), (9, 8), (5, 20)])
def test_spram_memory_packs_narrow_words(depth, width):
    """Narrow words packed (a power of two per 16-bit SPRAM word, the last partly used),
    written as packed words, read back word by word with the registered read."""
    from dupnet.hw.spram import SpramMemory, spram_packing, spram_shape
    mem = SpramMemory(depth, width)
    n = spram_packing(width)
    assert n == {3: 4, 1: 16, 8: 2, 20: 1}[width]
    rng = np.random.default_rng(depth)
    words = [int(v) for v in rng.integers(0, 1 << width, size=depth)]
    packed = [sum(w << (k * width) for k, w in enumerate(words[i:i + n]))
              for i in range(0, depth, n)]
    assert len(packed) == spram_shape(depth, width)[0]
    got = []

    async def bench(ctx):
        wp, rp = mem.write_port(), mem.read_port()
        await write_words(ctx, wp, packed)
        for a in list(range(depth)) + [0]:
            ctx.set(rp.addr, a)
            await ctx.tick()
            got.append(ctx.get(rp.data))

    run_sim(mem, [], [bench], max_cycles=10 * depth + 100)
    assert got[:depth] == words
