"""Scoreboard: compare stream words with golden-model tensors, element by element.

A stream carries an NHWC tensor in raster order, channel-minor: each word holds ``lanes``
consecutive channels of one pixel (lane ``l`` at bits ``[l*bits +: bits]``, two's complement
when ``signed``), ``C / lanes`` words per pixel, and optionally a 1-bit ``last`` frame marker at
bit ``lanes*bits`` (set on the final word of each frame, clear elsewhere).
:class:`WordLayout` describes that; :class:`Scoreboard` unpacks every word it is given,
compares each lane with the expected tensor, checks the ``last`` marker and frame length, and
keeps the first mismatch with its layer, frame, pixel (y, x), channel, expected and actual
value.  Nothing is sampled: every word and every lane is compared.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["WordLayout", "Mismatch", "Scoreboard", "pack_words", "unpack_words",
           "pack_pixels"]


@dataclass(frozen=True)
class WordLayout:
    """How one stream word packs ``lanes`` channel values.

    Attributes
    ----------
    lanes : int
        Channel values per word (PE of the producing layer).
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
        return self.lanes * self.bits + int(self.has_last)

    @classmethod
    def from_width(cls, width: int, bits: int, channels: int, signed: bool,
                   has_last: bool, where: str = "stream") -> "WordLayout":
        """Infer ``lanes`` from a port width; raise if it does not fit ``bits``/``channels``."""
        body = width - int(has_last)
        if body <= 0 or body % bits:
            raise ValueError(f"{where}: payload width {width} is not lanes*{bits}"
                             f"{' + 1 (last)' if has_last else ''}")
        lanes = body // bits
        if channels % lanes:
            raise ValueError(f"{where}: {lanes} lanes per word do not divide {channels} channels")
        return cls(lanes, bits, signed, has_last)


def unpack_words(words, layout: WordLayout) -> tuple[np.ndarray, np.ndarray]:
    """Words (ints) -> lane values ``[n, lanes]`` (int64) and last bits ``[n]``."""
    n = len(words)
    vals = np.empty((n, layout.lanes), dtype=np.int64)
    last = np.zeros(n, dtype=bool)
    mask = (1 << layout.bits) - 1
    half = 1 << (layout.bits - 1)
    for i, w in enumerate(words):
        w = int(w)
        for l in range(layout.lanes):
            v = (w >> (l * layout.bits)) & mask
            if layout.signed and v >= half:
                v -= 1 << layout.bits
            vals[i, l] = v
        if layout.has_last:
            last[i] = bool((w >> (layout.lanes * layout.bits)) & 1)
    return vals, last


def pack_words(values: np.ndarray, layout: WordLayout, last_every: int | None = None) -> list[int]:
    """Inverse of :func:`unpack_words` for a flat array of element values (raster, C-minor).

    ``last_every``: set the last bit on every ``last_every``-th word (frame length in words).
    """
    flat = np.asarray(values, dtype=np.int64).reshape(-1, layout.lanes)
    mask = (1 << layout.bits) - 1
    out = []
    for i, row in enumerate(flat):
        w = 0
        for l, v in enumerate(row.tolist()):
            w |= (int(v) & mask) << (l * layout.bits)
        if layout.has_last and last_every and (i + 1) % last_every == 0:
            w |= 1 << (layout.lanes * layout.bits)
        out.append(w)
    return out


def pack_pixels(image: np.ndarray, pixels_per_beat: int = 1, bits: int = 8) -> list[int]:
    """Input beats of an ``H x W x C`` image: pixel ``p`` channel ``c`` at ``[(p*C+c)*bits +: bits]``.

    The pixel count must divide by ``pixels_per_beat``.
    """
    img = np.asarray(image, dtype=np.int64)
    h, w, c = img.shape
    n = h * w
    if n % pixels_per_beat:
        raise ValueError(f"{h}x{w} pixels do not divide into beats of {pixels_per_beat}")
    flat = img.reshape(n // pixels_per_beat, pixels_per_beat * c)
    # vectorised packing via Python ints (beats can be wider than 64 bits)
    shifts = [k * bits for k in range(pixels_per_beat * c)]
    return [sum(int(v) << s for v, s in zip(row, shifts)) for row in flat.tolist()]


@dataclass
class Mismatch:
    """The first difference found (or a framing error when ``kind`` is not ``"value"``)."""
    layer: str
    frame: int
    word: int                 # word index within the frame
    y: int | None
    x: int | None
    channel: int | None
    expected: int | None
    actual: int | None
    kind: str = "value"       # value | last | extra | missing
    cycle: int | None = None

    def __str__(self) -> str:
        at = f"layer {self.layer}, frame {self.frame}"
        if self.kind == "value":
            return (f"{at}, pixel (y={self.y}, x={self.x}), channel {self.channel}: expected "
                    f"{self.expected}, got {self.actual} (word {self.word}"
                    f"{'' if self.cycle is None else f', cycle {self.cycle}'})")
        if self.kind == "last":
            return (f"{at}, word {self.word} (pixel y={self.y}, x={self.x}): 'last' marker is "
                    f"{self.actual}, expected {self.expected}"
                    f"{'' if self.cycle is None else f' (cycle {self.cycle})'}")
        if self.kind == "extra":
            return f"{at}: unexpected word {self.word} after the expected frames"
        return f"{at}: only {self.word} word(s) received, {self.expected} expected"

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Scoreboard:
    """Compare one stream against expected NHWC tensors, frame after frame.

    Parameters
    ----------
    layer : str
        Name used in reports (the layer that produces the stream).
    layout : WordLayout
    expected : list of ndarray
        One ``[H, W, C]`` tensor per frame, in the order frames are sent.

    Call :meth:`push` with each word (and its cycle), then :meth:`finish`; ``ok``,
    ``first``, ``errors`` and ``compared`` tell the result.
    """

    def __init__(self, layer: str, layout: WordLayout, expected: list[np.ndarray]):
        self.layer = layer
        self.layout = layout
        self.expected: list[np.ndarray] = []
        self.shape = None
        for t in expected:
            self.add_frame(t)
        self.frame = 0
        self.word = 0
        self.compared = 0           # lane values compared
        self.words = 0
        self.errors = 0             # value mismatches + framing errors
        self.first: Mismatch | None = None
        self.frame_end_cycles: list[int] = []
        self.first_word_cycles: list[int] = []

    def add_frame(self, t: np.ndarray) -> None:
        t = np.asarray(t, dtype=np.int64)
        if t.ndim != 3:
            raise ValueError(f"{self.layer}: expected tensors are [H, W, C], got {t.shape}")
        if t.shape[2] % self.layout.lanes:
            raise ValueError(f"{self.layer}: {self.layout.lanes} lanes do not divide "
                             f"{t.shape[2]} channels")
        self.expected.append(t)

    def reset_frame(self) -> None:
        """Forget a partial frame (after a reset in mid-frame, the frame is abandoned)."""
        if self.word and self.frame < len(self.expected):
            self.expected.pop(self.frame)
        self.word = 0

    def _words_per_frame(self, f: int) -> int:
        h, w, c = self.expected[f].shape
        return h * w * c // self.layout.lanes

    def _error(self, m: Mismatch) -> None:
        self.errors += 1
        if self.first is None:
            self.first = m

    def push(self, word: int, cycle: int | None = None) -> None:
        lay = self.layout
        self.words += 1
        if self.frame >= len(self.expected):
            self._error(Mismatch(self.layer, self.frame, self.word, None, None, None, None,
                                 word, kind="extra", cycle=cycle))
            self.word += 1
            return
        exp = self.expected[self.frame]
        h, w, c = exp.shape
        wpp = c // lay.lanes
        pix, j = divmod(self.word, wpp)
        y, x = divmod(pix, w)
        if self.word == 0 and cycle is not None:
            self.first_word_cycles.append(cycle)
        mask = (1 << lay.bits) - 1
        half = 1 << (lay.bits - 1)
        row = exp[y, x, j * lay.lanes:(j + 1) * lay.lanes]
        for l in range(lay.lanes):
            v = (word >> (l * lay.bits)) & mask
            if lay.signed and v >= half:
                v -= 1 << lay.bits
            e = int(row[l])
            if not lay.signed:
                e &= mask
            self.compared += 1
            if v != e:
                self._error(Mismatch(self.layer, self.frame, self.word, y, x,
                                     j * lay.lanes + l, e, v, cycle=cycle))
        is_end = self.word == h * w * wpp - 1
        if lay.has_last:
            lb = (word >> (lay.lanes * lay.bits)) & 1
            if lb != int(is_end):
                self._error(Mismatch(self.layer, self.frame, self.word, y, x, None,
                                     int(is_end), lb, kind="last", cycle=cycle))
        self.word += 1
        if is_end:
            if cycle is not None:
                self.frame_end_cycles.append(cycle)
            self.frame += 1
            self.word = 0

    def finish(self) -> None:
        """Report frames that did not arrive completely."""
        if self.frame < len(self.expected):
            self._error(Mismatch(self.layer, self.frame, self.word, None, None, None,
                                 self._words_per_frame(self.frame), self.word, kind="missing"))

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def summary(self) -> str:
        if self.ok:
            return (f"{self.layer}: {self.frame} frame(s), {self.words} words, "
                    f"{self.compared} values bit-exact")
        return (f"{self.layer}: {self.errors} error(s) in {self.words} words; first: "
                f"{self.first}")

    def to_dict(self) -> dict:
        return {"layer": self.layer, "ok": self.ok, "frames": self.frame, "words": self.words,
                "compared": self.compared, "errors": self.errors,
                "first": None if self.first is None else self.first.to_dict(),
                "first_word_cycles": self.first_word_cycles,
                "frame_end_cycles": self.frame_end_cycles}
