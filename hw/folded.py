"""A layer as the hardware builds it: the one place for the folding arithmetic.

:class:`FoldedConv` is a conv layer's geometry (:class:`~dupnet.sw.config.ConvGeometry`) at one
folding (PE output lanes, SIMD input lanes, pre-add, MVTU arithmetic). It validates itself on
creation (:class:`FoldingError`, naming the layer and the field) and derives every shape the
generator, the analytic model, the budget reports and the testbenches use::

    sf     = k*k*C'/(SIMD*KP)   input folds per output pixel and neuron fold
    nf     = C_out/PE           neuron folds per output pixel
    chunks = C'/SIMD            SIMD-wide chunks of one (duplicated) pixel
    KP                          kernel positions per beat: 1, or k (a row of the window)
    cycles_per_frame = H*W*sf*nf

and the layer's memories (:class:`LayerMemory`, named by the constants below), each with one
:class:`MemoryShape` ``(depth, width)``. :class:`FoldedPool` does the same for a max-pool.
Nothing here imports Amaranth: the models and the reports use it without elaborating anything.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from dupnet.errors import DupnetError
from dupnet.sw.config import ConvGeometry, PoolGeometry

__all__ = ["FoldingError", "ARITHMETICS", "DEFAULT_ARITH", "WEIGHT_SOURCES", "MemoryShape", "LayerMemory",
           "FoldedConv", "FoldedPool", "WEIGHT_ROM", "THRESHOLD_ROM", "OFFSET_ROM",
           "LINE_BUFFER", "ROW_BUFFER", "PIXEL_BUFFER", "WINDOW_SLACK_PIXELS", "window_depth",
           "pool_rowbuf_depth", "divisors", "buffer_lanes"]

#: MVTU datapath arithmetics (docs/hardware.md): ``"xnor"`` offset form with a LUT6 bit-heap
#: compressor (the default), ``"gated"`` AND-gated carry-chain adder trees with ``2*S - T``,
#: ``"addsub"`` the naive signed add/sub tree (the LUT benchmark's baseline)
ARITHMETICS = ("xnor", "gated", "addsub")
DEFAULT_ARITH = ARITHMETICS[0]

#: Where the weights and thresholds come from: ``"rom"`` memories initialised by the bitstream
#: (the default), or ``"load"`` memories written through the accelerator's load port after
#: reset (:mod:`dupnet.hw.loader`; the Verilog does not depend on the artifact's values)
WEIGHT_SOURCES = ("rom", "load")

#: memory names, as the generated Verilog, the budget reports and Yosys scripts know them
WEIGHT_ROM = "w_rom"          # the PEs' weight words side by side
THRESHOLD_ROM = "t_rom"       # hidden layers with nf > 1: thresholds per neuron fold
OFFSET_ROM = "k_rom"          # "xnor" last layer with nf > 1: -K per neuron fold
LINE_BUFFER = "linebuf"       # the window unit's line buffer
ROW_BUFFER = "rowbuf"         # the max-pool's row buffer
PIXEL_BUFFER = "pixbuf"       # a stride-1 max-pool's one-pixel delay (several chunks)
#: a stride-1 pool's pixel buffer of at most this many words is read at both candidate
#: addresses of the next cycle (two read ports: a copy of the buffer), so its read address
#: does not follow the pool's handshake; a deeper one (block RAM) is read at one
PIXEL_BUFFER_DUAL_READ_DEPTH = 64

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


class FoldingError(DupnetError):
    """A folding is invalid or a folding request cannot be met (names the layer and field)."""


class MemoryShape(NamedTuple):
    """``(depth, width)`` of one memory: ``depth`` words of ``width`` bits."""
    depth: int
    width: int

    @property
    def bits(self) -> int:
        return self.depth * self.width


@dataclass(frozen=True)
class LayerMemory:
    """One memory of a layer: its name (one of the constants above), its
    shape, whether it is a ROM (an init image: weights, thresholds) or a RAM, and whether the
    load port writes it (weights and thresholds with ``weights = "load"``)."""
    name: str
    depth: int
    width: int
    rom: bool
    loaded: bool = False
    spram: bool = False       # built from SPRAM blocks (the budget counts them as SPRAM)
    banked: bool = False      # held in the shared stream bank (its SPRAM words)

    @property
    def bits(self) -> int:
        return self.depth * self.width


def divisors(n: int) -> list[int]:
    """The positive divisors of ``n``, ascending."""
    return [d for d in range(1, n + 1) if n % d == 0]


def window_depth(k: int, width: int, banks: int = 1) -> int:
    """Line-buffer depth (pixels): the window's minimum ``(k-1)*W + k + 1`` (the rows the
    window spans plus the pixel being written) plus ``ceil(W/2) + WINDOW_SLACK_PIXELS`` of
    slack for bursty upstreams, rounded up to a multiple of ``banks`` (the line buffer of a
    window that reads ``banks`` kernel positions per beat is split into that many banks);
    exact otherwise (the addresses wrap at the depth, no power of two)."""
    depth = (k - 1) * width + k + 1 + (width + 1) // 2 + WINDOW_SLACK_PIXELS
    return -(-depth // banks) * banks


def pool_rowbuf_depth(stride: int, width: int) -> int:
    """Row-buffer depth (pixels) of the max-pool: ``W/2`` running maxima of a stride-2 pool,
    ``W`` horizontal maxima of a stride-1 pool (the right column's pixel itself at ``W-1``)."""
    return max(1, width // 2) if stride == 2 else width


def buffer_lanes(channels: int, simd: int) -> int:
    """Channels per word of a window unit's line buffer (and of the stream into it): one
    SIMD-wide chunk when SIMD divides the pixel's ``C`` channels (the window reads one word per
    chunk, no multiplexer), else the whole pixel (SIMD a multiple of C, or a chunk that
    straddles the copies of an input-duplicated pixel: the chunk is selected from the word)."""
    return simd if channels % simd == 0 else channels


def _positive_int(where: str, name: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise FoldingError(f"{where}: field '{name}' must be a positive integer, got {v!r}")


@dataclass(frozen=True)
class FoldedConv:
    """A conv layer at a folding.

    Parameters
    ----------
    geometry : ConvGeometry
        The layer.
    pe, simd : int
        Output lanes (divide ``C_out``) and input lanes (divide ``C' = x_dup*C_in``; with
        ``w_dup > 1`` one of SIMD, w_dup divides the other, so that a chunk holds whole
        weight-sharing groups or lies inside one).
    preadd : bool
        Pre-add the inputs that share a weight bit. Stored as in effect: False when
        ``w_dup == 1``.
    arith : str
        The MVTU arithmetic, one of :data:`ARITHMETICS`.
    weights : str
        One of :data:`WEIGHT_SOURCES`: ROMs initialised with the artifact (``"rom"``) or
        memories written through the load port (``"load"``: the thresholds, and the last
        layer's offsets, are in a memory even with one neuron fold).
    spram : bool
        The PE weight memories are iCE40 SPRAM blocks (:mod:`dupnet.hw.spram`; needs
        ``weights = "load"``: SPRAM has no initial contents).
    kp : int
        Kernel positions per beat: 1 (the window emits one position's chunk per cycle), or
        ``k`` (a whole row of the window: the chunk of each of its ``k`` positions, so the
        MVTU takes ``KP*SIMD`` lanes per cycle; the line buffer is split into ``k`` banks).
    banked : bool
        The weight and threshold words come as streams from a shared
        :class:`~dupnet.hw.stream_bank.StreamBank` (the MVTU has no memory of its own: ports
        ``w`` and ``t``); needs ``weights = "load"``, hidden layers only.

    Raises
    ------
    FoldingError
        On any invalid field, naming the layer, the field and the arithmetic.
    """
    geometry: ConvGeometry
    pe: int
    simd: int
    preadd: bool = True
    arith: str = DEFAULT_ARITH
    weights: str = "rom"
    spram: bool = False
    kp: int = 1
    banked: bool = False

    def __post_init__(self):
        g, where = self.geometry, self.where
        _positive_int(where, "pe", self.pe)
        _positive_int(where, "simd", self.simd)
        if g.out_channels % self.pe:
            raise FoldingError(f"{where}: field 'pe' ({self.pe}) must divide C_out = "
                               f"{g.out_channels}")
        if g.c_dup % self.simd:
            raise FoldingError(f"{where}: field 'simd' ({self.simd}) must divide C' = x_dup*C_in"
                               f" = {g.x_dup}*{g.in_channels} = {g.c_dup}")
        if g.w_dup > 1 and self.simd % g.w_dup and g.w_dup % self.simd:
            raise FoldingError(f"{where}: field 'simd' ({self.simd}) and w_dup ({g.w_dup}) are "
                               f"incompatible: one must divide the other, so that a SIMD chunk "
                               f"holds whole weight-sharing groups or lies inside one")
        if self.arith not in ARITHMETICS:
            raise FoldingError(f"{where}: field 'arith' must be one of "
                               f"{', '.join(map(repr, ARITHMETICS))}, got {self.arith!r}")
        if self.weights not in WEIGHT_SOURCES:
            raise FoldingError(f"{where}: field 'weights' must be one of "
                               f"{', '.join(map(repr, WEIGHT_SOURCES))}, got {self.weights!r}")
        _positive_int(where, "kp", self.kp)
        if self.kp not in (1, g.k):
            raise FoldingError(f"{where}: field 'kp' ({self.kp}) must be 1 or the kernel size "
                               f"k = {g.k} (kernel positions per beat: one, or a row of the "
                               f"{g.k}x{g.k} window)")
        if self.spram and self.weights != "load":
            raise FoldingError(f"{where}: weights in SPRAM need weights = \"load\" (SPRAM "
                               f"has no initial contents; the load port writes it)")
        if self.banked and (self.weights != "load" or self.spram or g.act_bits is None):
            raise FoldingError(f"{where}: streamed (banked) weights need weights = \"load\", "
                               f"no SPRAM memory of the layer's own, and a hidden layer")
        object.__setattr__(self, "preadd", bool(self.preadd) and g.w_dup > 1)

    @property
    def where(self) -> str:
        """``layer <index> (<name>)``, the prefix of every message about this layer."""
        return f"layer {self.geometry.index} ({self.geometry.name})"

    # ---- folds
    @property
    def sf(self) -> int:
        """Input folds per output pixel and neuron fold: ``k*k*C'/(SIMD*KP)``."""
        g = self.geometry
        return g.k * g.k * g.c_dup // (self.simd * self.kp)

    @property
    def mvtu_lanes(self) -> int:
        """Input lanes of the MVTU per cycle: ``KP*SIMD`` (``KP`` positions, each a SIMD-wide
        chunk; lane ``p*SIMD + l`` is lane ``l`` of position ``p``)."""
        return self.kp * self.simd

    @property
    def nf(self) -> int:
        """Neuron folds per output pixel: ``C_out/PE``."""
        return self.geometry.out_channels // self.pe

    @property
    def chunks(self) -> int:
        """SIMD-wide chunks of one duplicated pixel: ``C'/SIMD``."""
        return self.geometry.c_dup // self.simd

    @property
    def lanes(self) -> int:
        return self.pe * self.mvtu_lanes

    @property
    def cycles_per_frame(self) -> int:
        g = self.geometry
        return g.height * g.width * self.sf * self.nf

    @property
    def output_beats_per_frame(self) -> int:
        """MVTU output beats per frame: ``H*W*nf``."""
        return self.geometry.height * self.geometry.width * self.nf

    # ---- weights
    @property
    def chunk_weight_bits(self) -> int:
        """Stored (unique) weight bits of one position's SIMD-wide chunk: ``SIMD/w_dup``, or 1
        when SIMD < w_dup (the bit is read again for ``w_dup/SIMD`` chunks)."""
        return self.simd // self.geometry.w_dup if self.simd % self.geometry.w_dup == 0 else 1

    @property
    def weight_rom(self) -> MemoryShape:
        """Shape of one PE's slice of the weight memory (unique bits only): a word of
        ``KP*max(1, SIMD/w_dup)`` bits per input fold. The memory (:attr:`weight_memory`)
        holds the ``PE`` slices side by side: every PE reads the same address."""
        g = self.geometry
        width = self.kp * self.chunk_weight_bits
        depth = self.nf * g.k * g.k * g.c_unique // width
        return MemoryShape(depth, width)

    @property
    def weight_memory(self) -> MemoryShape:
        """Shape of the weight memory: :attr:`weight_rom`'s depth, ``PE`` slices wide (one
        memory, not one per PE: a block RAM holds several narrow slices)."""
        w = self.weight_rom
        return MemoryShape(w.depth, self.pe * w.width)

    @property
    def weight_rom_repeat(self) -> int:
        """Input folds that read the same weight word (``w_dup/SIMD`` when SIMD < w_dup)."""
        g = self.geometry
        return g.w_dup // self.simd if self.simd < g.w_dup else 1

    # ---- terms of the MVTU sum
    @property
    def term_group(self) -> int:
        """Inputs summed into one term before the weight applies: ``min(SIMD, w_dup)`` with
        pre-add, else 1."""
        return min(self.simd, self.geometry.w_dup) if self.preadd else 1

    @property
    def terms(self) -> int:
        """Terms per input fold (per PE): ``KP*SIMD / term_group``."""
        return self.mvtu_lanes // self.term_group

    @property
    def term_bits(self) -> int:
        """Width of a term: ``b``, or a pre-sum of ``term_group`` inputs added by a balanced
        tree (one bit per level)."""
        return self.geometry.in_bits + max(0, (self.term_group - 1).bit_length())

    @property
    def offset_sum_max(self) -> int:
        """Largest offset sum ``S'`` of the ``"xnor"`` MVTU: every term at its complement's
        maximum, ``2^t - 1`` for a ``t``-bit term, over the ``k*k*C'/term_group`` terms of a
        window. Equals ``acc_max`` without pre-add; above it with pre-add (a pre-sum of
        several inputs stays below ``2^t - 1``)."""
        return (self.geometry.window // self.term_group) * ((1 << self.term_bits) - 1)

    @property
    def offset_threshold_bits(self) -> int:
        """Bits of one threshold as the ``"xnor"`` MVTU stores it (and of its ``S'``
        accumulators): unsigned, on ``S' = acc + K``, clamped to ``[0, offset_sum_max + 1]``."""
        return (self.offset_sum_max + 1).bit_length()

    @property
    def stored_threshold_bits(self) -> int:
        """Bits of one stored threshold of this arithmetic."""
        if self.arith == "xnor":
            return self.offset_threshold_bits
        return self.geometry.threshold_bits

    # ---- memories
    @property
    def threshold_rom(self) -> MemoryShape | None:
        """Shape of the threshold ROM (hidden layers: ``2^b - 1`` thresholds per PE lane) or,
        for an ``"xnor"`` last layer, of its offset ROM (``-K`` per lane, ``acc_bits`` wide);
        None when there is none (one neuron fold with ROM weights: the values are constants)."""
        g = self.geometry
        if self.nf == 1 and self.weights == "rom":
            return None
        if g.act_bits is None:
            return MemoryShape(self.nf, self.pe * g.acc_bits) if self.arith == "xnor" else None
        return MemoryShape(self.nf, self.pe * g.n_thresholds * self.stored_threshold_bits)

    @property
    def threshold_rom_name(self) -> str:
        return THRESHOLD_ROM if self.geometry.act_bits is not None else OFFSET_ROM

    @property
    def in_lanes(self) -> int:
        """Channels per beat of the layer's input stream, and per line-buffer word
        (:func:`buffer_lanes`)."""
        return buffer_lanes(self.geometry.in_channels, self.simd)

    @property
    def words_per_pixel(self) -> int:
        """Line-buffer words (input beats) per pixel: ``C_in / in_lanes``."""
        return self.geometry.in_channels // self.in_lanes

    @property
    def out_lanes(self) -> int:
        """Channels per beat of the layer's output stream: the PE lanes of one neuron fold."""
        return self.pe

    @property
    def window_pixels(self) -> int:
        """Pixels the line buffer holds (:func:`window_depth`, a multiple of ``KP``)."""
        return window_depth(self.geometry.k, self.geometry.width, self.kp)

    @property
    def line_buffer(self) -> MemoryShape:
        """One bank of the window unit's line buffer (``KP`` banks; pixel slot ``s`` in bank
        ``s mod KP``): ``window_pixels/KP`` pixels of :attr:`words_per_pixel` words of
        :attr:`in_lanes` codes."""
        g = self.geometry
        return MemoryShape(self.window_pixels // self.kp * self.words_per_pixel,
                           self.in_lanes * g.in_bits)

    @property
    def line_buffer_names(self) -> list[str]:
        """The line-buffer bank memories' names: ``linebuf``, or ``linebuf<b>`` per bank."""
        return [LINE_BUFFER] if self.kp == 1 else [f"{LINE_BUFFER}{b}" for b in range(self.kp)]

    @property
    def memories(self) -> list[LayerMemory]:
        """Every memory of the layer: the weight memory, the threshold (or offset) ROM when
        there is one (with ``weights = "load"``: written through the load port, in this
        order; ``banked``: held in the shared stream bank), the line buffer."""
        w, rom = self.weight_memory, self.weights == "rom"
        out = [LayerMemory(WEIGHT_ROM, w.depth, w.width, rom, not rom, self.spram, self.banked)]
        t = self.threshold_rom
        if t is not None:
            out.append(LayerMemory(self.threshold_rom_name, t.depth, t.width, rom, not rom,
                                   banked=self.banked))
        lb = self.line_buffer
        out += [LayerMemory(name, lb.depth, lb.width, False) for name in self.line_buffer_names]
        return out

    @classmethod
    def of(cls, height: int, width: int, in_channels: int, out_channels: int, k: int, pe: int,
           simd: int, *, w_dup: int = 1, x_dup: int = 1, in_bits: int = 2,
           act_bits: int | None = 2, preadd: bool = True, arith: str = DEFAULT_ARITH,
           name: str = "conv", index: int = 0, weights: str = "rom",
           kp: int = 1) -> "FoldedConv":
        """A folded layer from plain numbers (unit tests, benchmarks): the geometry of a conv
        of ``k x k`` on ``height x width x in_channels`` codes of ``in_bits`` bits, a hidden
        layer with ``act_bits`` output bits or (None) a last layer."""
        g = ConvGeometry(index=index, name=name, k=k, height=height, width=width,
                         in_channels=in_channels, out_channels=out_channels, w_dup=w_dup,
                         x_dup=x_dup, in_bits=in_bits, act_bits=act_bits,
                         is_last=act_bits is None)
        return cls(g, pe, simd, preadd=preadd, arith=arith, weights=weights, kp=kp)

    @classmethod
    def candidates(cls, g: ConvGeometry) -> list[tuple[int, int]]:
        """Every valid ``(PE, SIMD)`` of a conv layer."""
        simds = [s for s in divisors(g.c_dup)
                 if g.w_dup == 1 or s % g.w_dup == 0 or g.w_dup % s == 0]
        return [(pe, s) for pe in divisors(g.out_channels) for s in simds]

    @staticmethod
    def kernel_options(g: ConvGeometry) -> list[int]:
        """The valid kernel positions per beat (``KP``) of a conv layer: 1, and ``k`` when
        ``k > 1``."""
        return [1, g.k] if g.k > 1 else [1]


@dataclass(frozen=True)
class FoldedPool:
    """A max-pool as the hardware builds it: chunk-serial, ``lanes`` channels per beat in and
    out (``lanes = C``: whole pixels), one chunk compared per cycle.

    Parameters
    ----------
    geometry : PoolGeometry
        The pool.
    lanes : int or None
        Channels per beat (divides ``C``); None: the whole pixel.

    Raises
    ------
    FoldingError
        A stride other than 1 or 2, a stride-2 pool on an odd map, or lanes that do not divide
        the channels (naming the layer).
    """
    geometry: PoolGeometry
    lanes: int | None = None

    def __post_init__(self):
        g = self.geometry
        where = f"layer {g.index} ({g.name})"
        if g.stride not in (1, 2):
            raise FoldingError(f"{where}: pool stride must be 1 or 2, got {g.stride}")
        if g.stride == 2 and (g.height % 2 or g.width % 2):
            raise FoldingError(f"{where}: stride-2 pool needs an even map, got "
                               f"{g.height}x{g.width}")
        if self.lanes is None:
            object.__setattr__(self, "lanes", g.channels)
        _positive_int(where, "lanes", self.lanes)
        if g.channels % self.lanes:
            raise FoldingError(f"{where}: field 'lanes' ({self.lanes}) must divide the pool's "
                               f"C = {g.channels} channels")

    @classmethod
    def of(cls, height: int, width: int, channels: int, bits: int, stride: int,
           name: str = "pool", index: int = 0, lanes: int | None = None) -> "FoldedPool":
        """A pool from plain numbers (unit tests, benchmarks)."""
        return cls(PoolGeometry(index=index, name=name, stride=stride, height=height,
                                width=width, channels=channels, bits=bits), lanes)

    @property
    def chunks(self) -> int:
        """Beats per pixel: ``C / lanes``."""
        return self.geometry.channels // self.lanes

    @property
    def in_lanes(self) -> int:
        return self.lanes

    @property
    def out_lanes(self) -> int:
        return self.lanes

    @property
    def cycles_per_frame(self) -> int:
        """One input chunk per cycle: ``H*W*chunks``. A stride-1 pool emits the last rows'
        right-edge pixel and its bottom row in the output slots of the next frame's first row
        and first pixel of the second row (which emit nothing), so it keeps that rate across
        frames; only a one-row map waits: its frame's last input after the flush, ``chunks +
        1`` cycles more."""
        g = self.geometry
        cycles = g.height * g.width * self.chunks
        if g.stride == 1 and g.height == 1:
            cycles += self.chunks + 1
        return cycles

    @property
    def row_buffer(self) -> MemoryShape:
        """``pool_rowbuf_depth`` pixels of ``chunks`` words of ``lanes`` codes."""
        g = self.geometry
        return MemoryShape(pool_rowbuf_depth(g.stride, g.width) * self.chunks,
                           self.lanes * g.bits)

    @property
    def pixel_buffer(self) -> MemoryShape | None:
        """A stride-1 pool's one-pixel delay: ``chunks`` words of ``lanes`` codes."""
        g = self.geometry
        return MemoryShape(self.chunks, self.lanes * g.bits) if g.stride == 1 else None

    @property
    def pixel_buffer_reads(self) -> int:
        """Read ports of the pixel buffer (each a copy of it in the FPGA's memories): 2 for a
        small one (:data:`PIXEL_BUFFER_DUAL_READ_DEPTH`), else 1; 0 without one."""
        pb = self.pixel_buffer
        if pb is None:
            return 0
        return 2 if pb.depth <= PIXEL_BUFFER_DUAL_READ_DEPTH else 1

    @property
    def memories(self) -> list[LayerMemory]:
        """The row buffer and (stride 1) the pixel buffer, once per read port."""
        rb = self.row_buffer
        out = [LayerMemory(ROW_BUFFER, rb.depth, rb.width, False)]
        pb = self.pixel_buffer
        for _ in range(self.pixel_buffer_reads):
            out.append(LayerMemory(PIXEL_BUFFER, pb.depth, pb.width, False))
        return out
