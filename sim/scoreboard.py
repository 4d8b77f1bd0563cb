"""Scoreboard: compare stream words with golden-model tensors, element by element.

A stream carries an NHWC tensor as :class:`dupnet.hw.stream_layout.WordLayout` describes
(``lanes`` channels per word, an optional ``last`` frame marker above them, the same layout
the generator builds). :class:`Scoreboard` unpacks every word it is given,
compares each lane with the expected tensor, checks the ``last`` marker and frame length, and
keeps the first mismatch with its layer, frame, pixel (y, x), channel, expected and actual
value.  Nothing is sampled: every word and every lane is compared.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dupnet.hw.stream_layout import WordLayout, unpack_lanes

__all__ = ["Mismatch", "Scoreboard"]


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
        row = exp[y, x, j * lay.lanes:(j + 1) * lay.lanes]
        for l, v in enumerate(unpack_lanes(word, lay.lanes, lay.bits, lay.signed)):
            e = int(row[l])
            if not lay.signed:
                e &= mask
            self.compared += 1
            if v != e:
                self._error(Mismatch(self.layer, self.frame, self.word, y, x,
                                     j * lay.lanes + l, e, v, cycle=cycle))
        is_end = self.word == h * w * wpp - 1
        if lay.has_last:
            lb = (word >> lay.last_bit) & 1
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
