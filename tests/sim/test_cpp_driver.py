"""The C++ stream driver (``dupnet sim --driver cpp``, :mod:`dupnet.sim.cppdriver`): the fast
path for full frames of big networks.

CI: on the 4x4 ``feat`` network at the folding of the CI case ``feat-wide+gated-ppb2`` (gated
datapath, wide folding, 2 pixels per input beat), one traced model serves every check: bit-exact
frames back to back, cycles against the analytic model, a wave window, and the first mismatch
named with its cycle.  Slow set: the failing CLI run that re-runs with waves, and one
416x416 frame of ``dupnet-tinier-yolo``, bit-exact.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from dupnet.cli import main
from dupnet.hw.pipeline import pipeline_model
from dupnet.sim.cppdriver import build_cpp_model, run_cpp
from dupnet.sim.design import check_timing, generate_cached, network_streams
from dupnet.sim.images import random_images
from dupnet.sim.network import (CLOCK_PERIOD_NS, WAVES_AFTER, WAVES_BEFORE, Timing,
                                new_run_dir)
from dupnet.sw.golden import GoldenModel
from dupnet.sw.random_artifact import random_artifact

from .cases import FEAT_PPB, config, saved_case
from .vcd import printed_waves, rerun_waves, vcd_times, vcd_timescale_ps

pytestmark = pytest.mark.sim


@pytest.fixture
def feat(tmp_path):
    """The ``feat`` design of the tool-path tests (``cases.saved_case``)."""
    return saved_case(tmp_path)


def _run_folder(out: str) -> Path:
    m = re.search(r"run folder (\S+)$", out, re.M)
    assert m, out
    return Path(m.group(1))


def test_cpp_driver_cli_bit_exact_cycles_and_window(feat, capsys):
    """``dupnet sim --driver cpp``: 30 frames back to back, every output word compared, cycles
    per frame and latency within the analytic model's tolerances; ``--waves-from/-cycles``
    writes exactly that window of cycles, a fraction of the whole run's file."""
    art_path, art, f, fold = feat
    frames = 30
    base = ["sim", str(art_path), "--driver", "cpp", "--random", "3", "--frames", str(frames),
            "--folding", str(f), "--pixels-per-beat", str(FEAT_PPB)]
    start, cycles = 1000, 300
    assert main(base + ["--waves-from", str(start), "--waves-cycles", str(cycles)]) == 0
    out = capsys.readouterr().out
    # every value of every frame compared, none differing
    images = random_images(config("feat"), 3, 0)
    values = frames * GoldenModel(art).forward(images)[-1][0].size
    assert f"PASS: {frames} frame(s) bit-exact ({values} values)" in out, out
    report = json.loads((_run_folder(out) / "report.json").read_text())
    sb = report["scoreboard"]
    assert (sb["ok"], sb["errors"], sb["compared"], sb["frames"]) == (True, 0, values, frames)
    # cycles vs the analytic model (no stalls, frames back to back)
    model = pipeline_model(art, fold, pixels_per_beat=FEAT_PPB)
    assert f"vs analytic {model.cycles_per_frame};" in out
    st = report["stats"]
    timing = Timing(st["frame_first_input"], st["frame_first_output"], st["frame_last_output"],
                    st["cycles"])
    assert len(timing.last_output) == frames
    tc = check_timing(timing, {"cycles_per_frame": model.cycles_per_frame,
                               "latency_cycles": model.latency_cycles})
    assert tc.ok, str(tc)
    # the wave window: cycles [start, start + cycles), as the cocotb bench numbers time
    part = printed_waves(out)
    period = CLOCK_PERIOD_NS * 1000 // vcd_timescale_ps(part)
    p0, p1, _ = vcd_times(part)
    assert p0 == start * period
    assert (start + cycles - 1) * period <= p1 < (start + cycles) * period
    assert main(base + ["--waves"]) == 0
    full = printed_waves(capsys.readouterr().out)
    f0, f1, _ = vcd_times(full)
    assert f0 == 0 and f1 >= (st["cycles"] - 8 - 1) * period    # every cycle of the run
    print(f"C++ driver VCD sizes: whole run ({st['cycles']} cycles) {full.stat().st_size} B, "
          f"window of {cycles} cycles {part.stat().st_size} B")
    assert part.stat().st_size * 4 < full.stat().st_size


def test_cpp_driver_loads_the_weights(tmp_path, capsys):
    """``dupnet sim --driver cpp`` on a design with a load port and SPRAM weights (Yosys' cell
    model): the driver streams the load image from reset while the frames wait; every output
    word compared, cycles = analytic; a second artifact in the same Verilog (the generator's
    output does not depend on it) passes with its own golden model."""
    import dataclasses

    from .cases import case_folding
    cfg = config("dup")
    fold = dataclasses.replace(case_folding(cfg, "mixed+load"), spram=("conv2",))
    f = tmp_path / "fold.toml"
    f.write_text(fold.to_toml())
    for seed in (7, 8):
        art = random_artifact(cfg, seed=seed)
        p = tmp_path / f"a{seed}.dupnet"
        art.save(p)
        assert main(["sim", str(p), "--driver", "cpp", "--random", "2", "--frames", "3",
                     "--folding", str(f)]) == 0
        out = capsys.readouterr().out
        assert "PASS: 3 frame(s) bit-exact" in out, out
        model = pipeline_model(art, fold)
        assert f"cycles/frame measured {model.cycles_per_frame} vs analytic " \
               f"{model.cycles_per_frame};" in out, out


def test_cpp_driver_names_first_mismatch_with_cycle(feat):
    """Compared with another artifact's golden model, the C++ driver's run fails, and the
    scoreboard names the first differing value (frame, pixel, channel, expected, actual) and
    the cycle of its word, which lies inside the run (the traced model of the test above)."""
    _, art, _, fold = feat
    cfg = config("feat")
    other = random_artifact(cfg, seed=2)
    images = random_images(cfg, 2, 0)
    design = generate_cached(art, fold, FEAT_PPB)
    model = build_cpp_model(design.verilog, design.top_name, design.design_hash, waves=True)
    out, _ = network_streams(other, fold, images)
    r = run_cpp(model, images, out.layer, out.layout, out.expected, new_run_dir("cpp-test"),
                in_width=FEAT_PPB * cfg.input_channels * cfg.input_bits,
                pixels_per_beat=FEAT_PPB)
    assert not r.ok
    hw = GoldenModel(art).forward(images)[-1]
    d = np.argwhere(hw != out.expected)
    f, y, x, c = (int(v) for v in d[0])
    m = r.scoreboard.first
    assert (m.layer, m.frame, m.y, m.x, m.channel) == (out.layer, f, y, x, c)
    assert (m.expected, m.actual) == (int(out.expected[f, y, x, c]), int(hw[f, y, x, c]))
    assert m.cycle is not None and r.stats["frame_first_output"][0] <= m.cycle <= r.cycles
    assert f"cycle {m.cycle}" in str(m)


@pytest.mark.slow
def test_cpp_cli_failing_run_reruns_with_waves(feat, tmp_path, capsys):
    """The failure path of ``--driver cpp``: exit 1, the first mismatch named, and a re-run
    with waves around it (the untraced model is built here)."""
    art_path, _, f, _ = feat
    random_artifact(config("feat"), seed=2).save(tmp_path / "other.dupnet")
    rc = main(["sim", str(art_path), "--driver", "cpp", "--random", "2", "--frames", "2",
               "--folding", str(f), "--pixels-per-beat", str(FEAT_PPB),
               "--golden", str(tmp_path / "other.dupnet")])
    cap = capsys.readouterr()
    assert rc == 1, cap.out + cap.err
    assert re.search(r"first: layer conv2, frame 0, pixel \(y=\d+, x=\d+\), channel \d+: "
                     r"expected -?\d+, got -?\d+ \(word \d+, cycle \d+\)", cap.err), cap.err
    start, last, cycle, waves = rerun_waves(cap.err)
    assert (start, last) == (max(0, cycle - WAVES_BEFORE), cycle + WAVES_AFTER - 1)
    period = CLOCK_PERIOD_NS * 1000 // vcd_timescale_ps(waves)
    first, end, _ = vcd_times(waves)
    assert first == start * period and first <= cycle * period <= end < (last + 1) * period


@pytest.mark.slow
def test_tinier_yolo_one_frame_bit_exact_cpp(sim_row):
    """``dupnet-tinier-yolo`` at the default folding (30 frames/s at 100 MHz): two 416x416x3
    frames back to back through the C++ driver (about a minute), every output word compared
    with the golden model, cycles/frame equal to the analytic model's and the first-output
    latency within its tolerance."""
    from dupnet.hw.autofold import DEFAULT_CLOCK_HZ, DEFAULT_FPS, auto_folding
    from dupnet.sim.images import builtin_images
    from dupnet.sw.config import load_config
    cfg = load_config("dupnet-tinier-yolo")
    art = random_artifact(cfg, seed=0, calibration_images=1)
    fold = auto_folding(cfg, target_cycles=DEFAULT_CLOCK_HZ // DEFAULT_FPS)
    design = generate_cached(art, fold)
    model = build_cpp_model(design.verilog, design.top_name, design.design_hash)
    images = builtin_images(cfg, 2)
    out, _ = network_streams(art, fold, images)
    r = run_cpp(model, images, out.layer, out.layout, out.expected, new_run_dir("cpp-yolo"),
                in_width=cfg.input_channels * cfg.input_bits)
    sb = r.scoreboard
    sim_row(case="net dupnet-tinier-yolo cpp 2 frames", result="passed" if r.ok else "FAILED",
            words=sb.words, model=design.model["cycles_per_frame"],
            latency=Timing(r.stats["frame_first_input"], r.stats["frame_first_output"],
                           r.stats["frame_last_output"], r.cycles).latency,
            model_lat=design.model["latency_cycles"], sim_s=f"{r.sim_wall_s:.1f}",
            **{"cyc/s": int(r.cycles_per_second)})
    assert r.ok, sb.summary()
    assert sb.compared == out.expected.size and sb.frame == 2
    st = r.stats
    tc = check_timing(Timing(st["frame_first_input"], st["frame_first_output"],
                             st["frame_last_output"], st["cycles"]), design.model)
    assert tc.ok, str(tc)
