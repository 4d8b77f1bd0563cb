"""Scoreboard, word packing and stall patterns (pure Python, no simulator)."""
from __future__ import annotations

import numpy as np
import pytest

from dupnet.hw.stream_layout import WordLayout, image_beats
from dupnet.sim.scoreboard import Scoreboard
from dupnet.sim.stream import StallPattern


def _tensor(seed=0, shape=(3, 4, 6), lo=-50, hi=50):
    return np.random.default_rng(seed).integers(lo, hi, size=shape)


def test_pack_unpack_roundtrip_signed_with_last():
    t = _tensor()
    lay = WordLayout(3, 8, signed=True, has_last=True)
    words = lay.pack(t, last_every=t.size // 3)
    vals, last = lay.unpack(words)
    assert np.array_equal(vals.reshape(t.shape), t)
    assert last.tolist() == [False] * (len(words) - 1) + [True]


def test_image_beats_layout():
    img = np.arange(2 * 3 * 2).reshape(2, 3, 2)
    beats = image_beats(img, pixels_per_beat=3)
    assert len(beats) == 2
    # pixel p, channel c at [(p*C + c)*8 +: 8]
    assert (beats[0] >> ((1 * 2 + 1) * 8)) & 0xFF == img[0, 1, 1]
    with pytest.raises(ValueError):
        image_beats(img, pixels_per_beat=4)


def test_scoreboard_passes_exact_stream():
    t = _tensor(shape=(2, 3, 3, 6))
    lay = WordLayout(2, 8, signed=True, has_last=True)
    sb = Scoreboard("convX", lay, [t[0], t[1]])
    for f in range(2):
        for w in lay.pack(t[f], last_every=t[f].size // 2):
            sb.push(w)
    sb.finish()
    assert sb.ok and sb.compared == t.size and sb.frame == 2


def test_scoreboard_reports_first_mismatch_location():
    t = _tensor(shape=(3, 4, 6))
    lay = WordLayout(3, 8, signed=True, has_last=True)
    words = lay.pack(t, last_every=t.size // 3)
    bad = t.copy()
    bad[2, 1, 4] += 1          # y=2, x=1, channel 4 -> word (2*4+1)*2 + 1, lane 1
    bad[2, 3, 0] -= 3          # a later one: not the first
    bad_words = lay.pack(bad, last_every=t.size // 3)
    sb = Scoreboard("conv7", lay, [t])
    for w in bad_words:
        sb.push(w, cycle=100)
    sb.finish()
    assert not sb.ok and sb.errors == 2
    m = sb.first
    assert (m.layer, m.frame, m.y, m.x, m.channel) == ("conv7", 0, 2, 1, 4)
    assert (m.expected, m.actual) == (int(t[2, 1, 4]), int(t[2, 1, 4]) + 1)
    assert "layer conv7" in str(m) and "pixel (y=2, x=1), channel 4" in str(m)
    assert len(words) == len(bad_words)


def test_scoreboard_unsigned_codes_and_framing_errors():
    t = np.random.default_rng(1).integers(0, 4, size=(2, 2, 4))
    lay = WordLayout(4, 2, signed=False)
    words = lay.pack(t)
    sb = Scoreboard("pool1", lay, [t])
    for w in words[:-1]:
        sb.push(w)
    sb.finish()
    assert not sb.ok and sb.first.kind == "missing"
    sb = Scoreboard("pool1", lay, [t])
    for w in words + [words[0]]:
        sb.push(w)
    assert not sb.ok and sb.first.kind == "extra"


def test_scoreboard_checks_last_marker():
    t = _tensor(shape=(1, 2, 2))
    lay = WordLayout(2, 8, signed=True, has_last=True)
    words = lay.pack(t)          # no last bit set anywhere
    sb = Scoreboard("o", lay, [t])
    for w in words:
        sb.push(w)
    assert not sb.ok and sb.first.kind == "last" and sb.first.expected == 1


def test_stall_pattern_reproducible_and_rate():
    a = StallPattern(0.3, seed=5)
    b = StallPattern(0.3, seed=5)
    sa = [a.next() for _ in range(20000)]
    assert sa == [b.next() for _ in range(20000)]
    assert abs(sum(sa) / len(sa) - 0.3) < 0.02
    c = StallPattern(0.3, seed=6)
    assert sa != [c.next() for _ in range(20000)]
    bursty = StallPattern(0.4, seed=1, burst=5)
    sb = [bursty.next() for _ in range(40000)]
    assert abs(sum(sb) / len(sb) - 0.4) < 0.04
    runs = sum(1 for i in range(1, len(sb)) if sb[i] and not sb[i - 1])
    assert sum(sb) / max(runs, 1) > 3          # mean burst length near 5
    fx = StallPattern(fixed=[1, 0])
    assert [fx.next() for _ in range(3)] == [True, False, True]
    assert not any(StallPattern(0.0).next() for _ in range(100))
    with pytest.raises(ValueError):
        StallPattern(1.0)
