"""Unit benches on Verilator: window unit, MVTU, max-pool.

Each test builds ONE wrapper holding a matrix of variants (geometry, duplication factors,
folding) and runs the cocotb test ``dupnet.sim.tb_units.unit``, which is
``cocotb.parametrize``-d over variant x stall pattern; every output word is compared with the
golden model, and every stall-free run takes exactly the analytic cycles per frame.  The CI
subset (``sim``) is small; the full matrix is ``sim`` + ``slow``.
"""
from __future__ import annotations

import pytest

from dupnet.sim.units import (DEFAULT_STALLS, StallSpec, mvtu_variant, pool_variant,
                              run_unit_bench, window_variant)

pytestmark = pytest.mark.sim

CI_STALLS = [StallSpec("nostall", 0.0, 0.0), StallSpec("random", 0.3, 0.3, seed=5)]


def _check(variants, results, sim_row, unit):
    """Every word bit-exact, and in the stall-free runs exactly the analytic rate."""
    bad = [r.describe() for r in results if not r.ok]
    words = sum(r.report.get("scoreboard", {}).get("words", 0) for r in results)
    sim_row(case=f"unit {unit} ({len(results)} variant x stall)",
            result="passed" if not bad else "FAILED", words=words,
            sim_s=f"{sum(r.report.get('wall_s', 0.0) for r in results):.1f}")
    assert not bad, "\n".join(bad)
    # No-stall runs: the interval between the last two frame ends (frames sent back to back)
    # is exactly the analytic cycles per frame, no tolerance.
    beats = {v.name: v.beats_per_frame for v in variants}
    slow = []
    for r in results:
        if r.stall != "nostall":
            continue
        ends = r.report["scoreboard"]["frame_end_cycles"]
        assert len(ends) >= 2, f"{r.variant}: frame ends at {ends}"
        measured = ends[-1] - ends[-2]
        exact = measured == beats[r.variant]
        sim_row(case=f"unit {unit} {r.variant} nostall", result="passed" if exact else "SLOW",
                **{"cycles/frame": measured, "model": beats[r.variant]})
        if not exact:
            slow.append(f"{r.variant}: {measured} cycles/frame, analytic {beats[r.variant]}")
    assert not slow, "\n".join(slow)


def _run(variants, stalls, tag, sim_row, unit):
    _check(variants, run_unit_bench(variants, stalls, tag=tag), sim_row, unit)


WINDOW_CI = [
    window_variant("w3x_dup2", 5, 7, 3, k=3, simd=2, x_dup=2, repeat=2, seed=1),
    window_variant("w1_wide", 4, 3, 6, k=1, simd=6, seed=2),
    window_variant("w3_simd1", 3, 5, 5, k=3, simd=1, seed=3),
]
WINDOW_FULL = WINDOW_CI + [
    window_variant("w3_odd_big", 7, 9, 3, k=3, simd=3, repeat=3, bits=8, seed=4),
    window_variant("w3_w1", 4, 1, 2, k=3, simd=2, seed=5),
    window_variant("w1_h1", 1, 6, 4, k=1, simd=2, x_dup=3, repeat=2, seed=6),
]

MVTU_CI = [
    mvtu_variant("m_wdup2", 3, 4, 8, 6, k=3, pe=3, simd=4, w_dup=2, seed=1),
    mvtu_variant("m_xdup2_last", 3, 3, 3, 6, k=1, pe=2, simd=3, x_dup=2, act_bits=None,
                 in_bits=2, seed=2),
    mvtu_variant("m_pe1_simd1", 2, 3, 3, 5, k=3, pe=1, simd=1, act_bits=3, seed=3),
]
MVTU_FULL = MVTU_CI + [
    mvtu_variant("m_wdup4_nopre", 3, 3, 8, 4, k=3, pe=2, simd=8, w_dup=4, preadd=False, seed=4),
    mvtu_variant("m_wdup4_inside", 3, 3, 8, 4, k=3, pe=4, simd=2, w_dup=4, seed=5),
    mvtu_variant("m_wide", 2, 2, 6, 6, k=3, pe=6, simd=6, act_bits=1, seed=6),
    mvtu_variant("m_img_last", 3, 5, 3, 6, k=3, pe=3, simd=6, x_dup=2, in_bits=8,
                 act_bits=None, seed=7),
    mvtu_variant("m_k1_act4", 4, 4, 12, 9, k=1, pe=3, simd=6, w_dup=3, act_bits=4, seed=8),
]

POOL_CI = [
    pool_variant("p_s2", 4, 6, 3, stride=2, seed=1),
    pool_variant("p_s1_odd", 5, 7, 3, stride=1, seed=2),
    # chunk-serial: 2 and 3 beats per pixel
    pool_variant("p_s2_chunks", 4, 6, 8, stride=2, seed=7, lanes=4),
    pool_variant("p_s1_chunks", 5, 7, 6, stride=1, seed=8, lanes=2),
]
POOL_FULL = POOL_CI + [
    pool_variant("p_s1_1row", 1, 5, 2, stride=1, seed=3),
    pool_variant("p_s1_1col", 4, 1, 5, stride=1, bits=3, seed=4),
    pool_variant("p_s2_2x2", 2, 2, 7, stride=2, seed=5),
    pool_variant("p_s1_wide", 3, 3, 16, stride=1, seed=6),
    pool_variant("p_s1_1row_chunks", 1, 5, 4, stride=1, seed=9, lanes=1),
    pool_variant("p_s1_1col_chunks", 4, 1, 6, stride=1, bits=3, seed=10, lanes=3),
]


def test_window_unit(sim_row):
    _run(WINDOW_CI, CI_STALLS, "window_ci", sim_row, "window")


def test_mvtu(sim_row):
    _run(MVTU_CI, CI_STALLS, "mvtu_ci", sim_row, "mvtu")


def test_maxpool(sim_row):
    _run(POOL_CI, CI_STALLS, "pool_ci", sim_row, "maxpool")


@pytest.mark.slow
@pytest.mark.parametrize("unit,variants", [("window", WINDOW_FULL), ("mvtu", MVTU_FULL),
                                           ("maxpool", POOL_FULL)])
def test_unit_full_matrix(unit, variants, sim_row):
    _run(variants, DEFAULT_STALLS, f"{unit}_full", sim_row, f"{unit} full")


def test_unit_bench_catches_wrong_expectation():
    """The unit bench can fail: a golden tensor off by one in one place is reported."""
    v = pool_variant("p_bad", 4, 6, 3, stride=2, seed=1)
    v.expected = v.expected.copy()
    v.expected[1, 1, 2, 0] ^= 1
    res = run_unit_bench([v], [StallSpec("nostall", 0.0, 0.0)], tag="pool_ci")
    assert not res[0].ok
    f = res[0].first
    assert (f["frame"], f["y"], f["x"], f["channel"]) == (1, 1, 2, 0)
