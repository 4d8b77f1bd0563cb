"""The stream word layout: how a stream between engines packs a tensor into words.

One place for it, used by the generator (port widths, ROM words), the numpy references of
:mod:`dupnet.hw.reference`, the Amaranth tests and the cocotb scoreboard.

A stream carries an NHWC tensor in raster order, channel-minor. Each word holds ``lanes``
consecutive channels of one pixel, lane ``l`` at bits ``[l*bits +: bits]`` (two's complement
when ``signed``), ``C / lanes`` words per pixel, and optionally a 1-bit ``last`` frame marker
at bit ``lanes*bits``, set on the final word of each frame. The input stream is the special
case of ``P`` whole pixels per word: pixel ``p`` channel ``c`` at ``[(p*C + c)*bits +: bits]``
(:func:`image_beats`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["WordLayout", "pack_lanes", "unpack_lanes", "image_beats"]


def pack_lanes(values, bits: int) -> int:
    """Pack integers (two's complement, ``bits`` each) into one int, lane 0 lowest."""
    v = 0
    mask = (1 << bits) - 1
    for i, x in enumerate(values):
        v |= (int(x) & mask) << (i * bits)
    return v


def unpack_lanes(word: int, n: int, bits: int, signed: bool = False) -> list[int]:
    """Inverse of :func:`pack_lanes`: ``n`` lanes of ``bits`` bits."""
    mask = (1 << bits) - 1
    out = []
    for i in range(n):
        x = (int(word) >> (i * bits)) & mask
        if signed and x >> (bits - 1):
            x -= 1 << bits
        out.append(x)
    return out


@dataclass(frozen=True)
class WordLayout:
    """How one stream word packs ``lanes`` channel values.

    Attributes
    ----------
    lanes : int
        Channel values per word (PE of the producing layer; all channels of a pixel for a
        max-pool).
    bits : int
        Width of one lane.
    signed : bool
        Lanes are two's complement (accumulators) or unsigned (codes).
    has_last : bool
        A ``last`` bit sits at bit ``lanes*bits``.
    """
    lanes: int
    bits: int
    signed: bool
    has_last: bool = False

    @property
    def width(self) -> int:
        """Payload width: ``lanes*bits``, plus one for ``last``."""
        return self.lanes * self.bits + int(self.has_last)

    @property
    def last_bit(self) -> int:
        """Bit index of the ``last`` marker (the first bit above the lanes)."""
        return self.lanes * self.bits

    def pack(self, values: np.ndarray, last_every: int | None = None) -> list[int]:
        """Words of a flat or NHWC array of element values (raster, channel-minor).

        ``last_every``: set the last bit on every ``last_every``-th word (the frame length in
        words); needs ``has_last``.
        """
        flat = np.asarray(values, dtype=np.int64).reshape(-1, self.lanes)
        out = [pack_lanes(row, self.bits) for row in flat.tolist()]
        if self.has_last and last_every:
            for i in range(last_every - 1, len(out), last_every):
                out[i] |= 1 << self.last_bit
        return out

    def unpack(self, words) -> tuple[np.ndarray, np.ndarray]:
        """Words (ints) -> lane values ``[n, lanes]`` (int64) and last bits ``[n]``."""
        n = len(words)
        vals = np.empty((n, self.lanes), dtype=np.int64)
        last = np.zeros(n, dtype=bool)
        for i, w in enumerate(words):
            vals[i] = unpack_lanes(w, self.lanes, self.bits, self.signed)
            if self.has_last:
                last[i] = bool((int(w) >> self.last_bit) & 1)
        return vals, last


def image_beats(images: np.ndarray, pixels_per_beat: int = 1, bits: int = 8) -> list[int]:
    """Input beats of one ``[H, W, C]`` image or an ``[N, H, W, C]`` batch (frames in order):
    pixel ``p`` of a beat, channel ``c`` at ``[(p*C + c)*bits +: bits]``. Raises
    :class:`ValueError` when a frame's pixels do not divide into beats of
    ``pixels_per_beat``."""
    a = np.asarray(images, dtype=np.int64)
    if a.ndim == 3:
        a = a[None]
    _, h, w, c = a.shape
    if (h * w) % pixels_per_beat:
        raise ValueError(f"{h}x{w} pixels do not divide into beats of {pixels_per_beat}")
    return [pack_lanes(row, bits) for row in a.reshape(-1, pixels_per_beat * c).tolist()]
