"""Whole-network RTL regression: generated accelerator vs the golden model, on Verilator.

Every output word and every probed layer's stream is compared; frames run back to back with
random valid/ready stalls; a reset in mid-frame is followed by bit-exact frames; cycles/frame,
first-output latency and initiation interval of stall-free runs are checked against
``dupnet.hw.analytic.pipeline_model`` (tolerances in ``dupnet.sim.design``).
CI subset: marked ``sim``; the rest of the matrix: ``sim`` + ``slow``.

A case's folding is ``KIND[+OPTION...]``: ``min``/``mixed``/``wide`` (``cases.folding``), then
``gated`` (the MVTU datapath ``arith = "gated"``) and ``nopreadd`` (``preadd = false``).
The CI subset runs every user-facing folding option on Verilator at least once: the ``gated``
datapath, ``preadd = false``, the wide folding (PE = C_out, SIMD = C') and multi-pixel input
beats, on the 4x4 ``feat`` network (a build costs seconds).
"""
from __future__ import annotations

import numpy as np
import pytest

from dupnet.sim.design import check_timing, simulate_artifact
from dupnet.sw.artifact import Artifact
from dupnet.sw.random_artifact import random_artifact

from .cases import case_folding, config, folding

pytestmark = pytest.mark.sim


def _images(cfg, n, seed=0, kind="random"):
    rng = np.random.default_rng(seed)
    shape = (n, cfg.input_height, cfg.input_width, cfg.input_channels)
    if kind == "random":
        return rng.integers(0, 256, size=shape)
    # structured test images: ramps, extremes (all 0 / all 255), checkerboard
    y, x = np.mgrid[:cfg.input_height, :cfg.input_width]
    pats = [np.zeros(shape[1:3]), np.full(shape[1:3], 255), (y * 37 + x * 11) % 256,
            ((y + x) % 2) * 255]
    return np.stack([np.repeat(pats[i % len(pats)][..., None], cfg.input_channels, -1)
                     for i in range(n)]).astype(np.int64)


def _row(sim_row, case, res, design, timing=None):
    t = res.timing
    words = sum(sb["words"] for sb in res.scoreboards)
    sim_row(case=case, result="passed" if res.ok else "FAILED", words=words,
            **{"cycles/frame": t.frame_cycles, "model": design.model["cycles_per_frame"],
               "latency": t.latency, "model_lat": design.model["latency_cycles"],
               "build_s": f"{res.model.stamp.get('build_seconds', 0):.0f}",
               "sim_s": f"{res.sim_wall_s:.1f}", "cyc/s": int(res.cycles_per_second)})


# (config, folding, stall, images, pixels_per_beat)
CI_CASES = [("dup", "mixed", 0.3, "random", 1), ("odd", "min", 0.25, "test", 1),
            # gated datapath (with pre-add), wide folding, 2 pixels per beat
            ("feat", "wide+gated", 0.3, "random", 2),
            # no pre-add (SIMD = 2 covers a weight-sharing pair), 4 pixels per beat
            ("feat", "mixed+nopreadd", 0.3, "test", 4),
            # a row of the window per beat (banked line buffers) behind both pool kinds
            ("dup", "mixed+kp", 0.3, "random", 2)]
SLOW_CASES = [("dup", "min", 0.3, "random", 1), ("dup", "wide", 0.5, "test", 1),
              ("odd", "wide", 0.3, "random", 1), ("odd", "mixed", 0.4, "test", 5),
              ("dup", "mixed", 0.0, "test", 2), ("odd", "wide+gated+nopreadd", 0.3, "random", 7),
              ("dup", "mixed+gated", 0.2, "test", 2), ("odd", "wide+kp", 0.3, "random", 1),
              ("dup", "min+kp+gated", 0.3, "test", 1)]


def _case(name, fold_kind, stall, kind, ppb, sim_row, seed=1, reset=True):
    cfg = config(name)
    art = random_artifact(cfg, seed=seed)
    fold = case_folding(cfg, fold_kind)
    case = f"net {name}/{fold_kind} ppb={ppb}"
    # 1) stall-free back-to-back frames: bit-exact and timing vs the analytic model
    res, des = simulate_artifact(art, fold, _images(cfg, 3, seed, kind), probes=True,
                                 pixels_per_beat=ppb)
    _row(sim_row, case + " nostall", res, des)
    assert res.ok, res.describe_failure()
    tc = check_timing(res.timing, des.model)
    assert tc.ok, str(tc)
    # 2) random valid/ready stalls on input and output, every probe compared
    res, des = simulate_artifact(art, fold, _images(cfg, 3, seed + 1, "random"), probes=True,
                                 pixels_per_beat=ppb, stall_in=stall, stall_out=stall,
                                 seed=seed, design=des)
    _row(sim_row, case + f" stall={stall}", res, des)
    assert res.ok, res.describe_failure()
    if not reset:
        return
    # 3) reset in mid-frame, then bit-exact frames
    res, des = simulate_artifact(art, fold, _images(cfg, 2, seed + 2, "random"), probes=True,
                                 pixels_per_beat=ppb, scenario="reset", stall_in=stall / 2,
                                 stall_out=stall / 2, seed=seed + 1, design=des)
    _row(sim_row, case + " reset", res, des)
    assert res.ok, res.describe_failure()


@pytest.mark.parametrize("name,fold_kind,stall,kind,ppb", CI_CASES,
                         ids=[f"{c[0]}-{c[1]}" + (f"-ppb{c[4]}" if c[4] > 1 else "")
                              for c in CI_CASES])
def test_network_ci(name, fold_kind, stall, kind, ppb, sim_row):
    # the feat cases are there for their folding options; reset is covered by the others
    _case(name, fold_kind, stall, kind, ppb, sim_row, reset=name != "feat")


def test_load_port_reload_another_artifact(sim_row):
    """Weights loaded at run time on Verilator: artifact A's image streams in on ``load``
    while A's frames already wait at the input (held until ``loaded``), A's frames compared;
    then (reset scenario) a reset in mid-frame, half of artifact B's image, a reset in
    mid-load, B's whole image and B's frames compared with B's golden model, on the same
    Verilog (the design does not depend on the artifact)."""
    cfg = config("dup")
    art_a, art_b = random_artifact(cfg, seed=3), random_artifact(cfg, seed=4)
    fold = case_folding(cfg, "mixed+load")
    res, des = simulate_artifact(art_a, fold, _images(cfg, 2, 3), probes=True, stall_in=0.3,
                                 stall_out=0.3, seed=2)
    _row(sim_row, "net dup/mixed+load A", res, des)
    assert res.ok, res.describe_failure()
    res, des = simulate_artifact(art_a, fold, _images(cfg, 3, 4), probes=True,
                                 scenario="reset", stall_in=0.2, stall_out=0.2, seed=3,
                                 design=des, golden_artifact=art_b, reload_artifact=art_b)
    _row(sim_row, "net dup/mixed+load reset, reload B", res, des)
    assert res.ok, res.describe_failure()
    # the check can fail: B's frames compared with A's golden model
    res, _ = simulate_artifact(art_a, fold, _images(cfg, 3, 4), scenario="reset", seed=3,
                               design=des, golden_artifact=art_a, reload_artifact=art_b)
    assert not res.ok


def test_spram_weights_on_verilator(sim_row):
    """Two layers' weights in SB_SPRAM256KA cells, simulated by Yosys' own model of the cell
    (the Verilog Yosys maps to SPRAM): loaded through the load port, frames with stalls and a
    reset scenario with a reload, every word compared."""
    import dataclasses
    cfg = config("dup")
    art = random_artifact(cfg, seed=5)
    fold = dataclasses.replace(case_folding(cfg, "mixed+load"), spram=("conv2", "conv3"))
    des = _stalls_then_reset(sim_row, art, fold, "net dup/mixed+load+spram", 5)
    assert "SB_SPRAM256KA" in des.verilog


def _stalls_then_reset(sim_row, art, fold, case, seed, design=None):
    """Frames with random stalls (images of ``seed``), then the reset scenario with a reload
    (images of ``seed + 1``), every word compared; returns the design."""
    cfg = art.config
    res, des = simulate_artifact(art, fold, _images(cfg, 2, seed), probes=True, stall_in=0.3,
                                 stall_out=0.3, seed=seed - 1, design=design)
    _row(sim_row, case, res, des)
    assert res.ok, res.describe_failure()
    res, des = simulate_artifact(art, fold, _images(cfg, 2, seed + 1), scenario="reset",
                                 seed=seed, design=des)
    _row(sim_row, case + " reset", res, des)
    assert res.ok, res.describe_failure()
    return des


def test_stream_bank_on_verilator(sim_row):
    """Both hidden layers' weight and threshold words streamed from one stream bank in
    SB_SPRAM256KA cells (Yosys' model of the cell on Verilator), written through the load
    port: frames with stalls, then the reset scenario with a reload, every word compared."""
    from dupnet.hw.folding import Folding
    cfg = config("dup")
    art = random_artifact(cfg, seed=7)
    fold = Folding({"conv1": (1, 2), "conv2": (1, 2), "conv3": (1, 2)}, weights="load",
                   bank=("conv1", "conv2"))
    # stall-free: the bank keeps up, so cycles/frame and latency are the analytic model's
    res, des = simulate_artifact(art, fold, _images(cfg, 3, 9), probes=True)
    assert des.verilog.count("  SB_SPRAM256KA ") == 1
    _row(sim_row, "net dup/serial+load+bank nostall", res, des)
    assert res.ok, res.describe_failure()
    tc = check_timing(res.timing, des.model)
    assert tc.ok, str(tc)
    _stalls_then_reset(sim_row, art, fold, "net dup/serial+load+bank", 7, design=des)


@pytest.mark.slow
@pytest.mark.parametrize("name,fold_kind,stall,kind,ppb", SLOW_CASES,
                         ids=[f"{c[0]}-{c[1]}-ppb{c[4]}" for c in SLOW_CASES])
def test_network_matrix(name, fold_kind, stall, kind, ppb, sim_row):
    _case(name, fold_kind, stall, kind, ppb, sim_row, seed=5)


def _first_difference(clean, bad, layer_names):
    """(layer, y, x, channel) of the first element, in stream order, where two golden runs
    differ; layers in pipeline order."""
    for name, a, b in zip(layer_names, clean, bad):
        d = np.argwhere(a[0] != b[0])
        if len(d):
            y, x, c = d[0]          # argwhere is in raster, channel-minor order
            return name, int(y), int(x), int(c)
    return None


@pytest.mark.parametrize("what", ["weight", pytest.param("threshold", marks=pytest.mark.slow)])
def test_corrupted_design_is_caught_with_location(what, sim_row):
    """Flip one stored weight bit (or move one threshold) of conv2 in the artifact, generate
    and simulate that design, compare with the golden model of the *uncorrupted* artifact: the
    scoreboard must report the mismatch at the first affected layer, pixel and channel."""
    from dupnet.sw.golden import GoldenModel
    cfg = config("dup")
    art = random_artifact(cfg, seed=1)
    fold = folding(cfg, "mixed")
    imgs = _images(cfg, 1, 9, "random")
    bad = Artifact.from_bytes(art.to_bytes())
    clean_out = GoldenModel(art).forward(imgs)
    names = [g.name for g in GoldenModel(art).geometry]
    idx = names.index("conv2")
    rng = np.random.default_rng(0)
    for _ in range(200):       # pick a corruption that changes the output of this image
        trial = Artifact.from_bytes(bad.to_bytes())
        tp = trial.layers[idx]
        o = int(rng.integers(tp.weights.shape[0]))
        if what == "weight":
            pos = tuple(int(rng.integers(s)) for s in tp.weights.shape[1:])
            tp.weights[(o,) + pos] *= -1
        else:
            t = int(rng.integers(tp.thresholds.shape[1]))
            tp.thresholds[o, t] = max(tp.thresholds[o, t] - 3, tp.thresholds[o, t - 1]
                                      if t else -10**6)
        trial.validate()
        if _first_difference(clean_out, GoldenModel(trial).forward(imgs), names):
            bad = trial
            break
    want = _first_difference(clean_out, GoldenModel(bad).forward(imgs), names)
    assert want is not None and want[0] == "conv2"
    res, des = simulate_artifact(bad, fold, imgs, probes=True, golden_artifact=art)
    assert not res.ok
    conv2 = next(sb for sb in res.scoreboards if sb["layer"] == "conv2")
    m = conv2["first"]
    assert (m["layer"], m["y"], m["x"], m["channel"]) == want
    assert m["expected"] == int(clean_out[idx][0, want[1], want[2], want[3]])
    # the layer before is clean, so the report points at the corrupted layer
    assert next(sb for sb in res.scoreboards if sb["layer"] == "pool1")["ok"]
    assert f"channel {want[3]}" in res.describe_failure()
    sim_row(case=f"corrupted {what} caught", result="caught",
            words=sum(sb["words"] for sb in res.scoreboards))


@pytest.mark.slow
def test_demo_bit_exact_with_builtin_images(sim_row):
    """dupnet-demo (64x64x1) at an auto folding: built-in test images, back to back."""
    from dupnet.hw.autofold import auto_folding
    from dupnet.sim.images import builtin_images
    from dupnet.sw.config import load_config
    cfg = load_config("dupnet-demo")
    art = random_artifact(cfg, seed=2)
    fold = auto_folding(cfg, target_cycles=65536)
    res, des = simulate_artifact(art, fold, builtin_images(cfg, 3))
    _row(sim_row, "net dupnet-demo target=65536", res, des)
    assert res.ok, res.describe_failure()


@pytest.mark.slow
def test_demo_timing():
    from dupnet.hw.autofold import auto_folding
    from dupnet.sim.images import builtin_images
    from dupnet.sw.config import load_config
    cfg = load_config("dupnet-demo")
    art = random_artifact(cfg, seed=2)
    fold = auto_folding(cfg, target_cycles=65536)
    res, des = simulate_artifact(art, fold, builtin_images(cfg, 3))
    assert res.ok, res.describe_failure()
    tc = check_timing(res.timing, des.model)
    assert tc.ok, str(tc)
