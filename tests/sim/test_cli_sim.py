"""`dupnet sim`: clear errors, a passing run, and a failing run that names its waves."""
from __future__ import annotations

import re

import numpy as np
import pytest

from dupnet.cli import main
from dupnet.hw.pipeline import pipeline_model
from dupnet.sim.images import random_images
from dupnet.sim.network import CLOCK_PERIOD_NS, WAVES_AFTER, WAVES_BEFORE
from dupnet.sw.golden import GoldenModel
from dupnet.sw.random_artifact import random_artifact

from .cases import FEAT_PPB, config, folding, saved_case
from .vcd import printed_waves, rerun_waves, vcd_times, vcd_timescale_ps


@pytest.fixture
def art_path(tmp_path):
    p = tmp_path / "dup.dupnet"
    random_artifact(config("dup"), seed=1).save(p)
    return p


def test_sim_errors_are_messages(art_path, tmp_path, capsys):
    assert main(["sim", str(tmp_path / "missing.dupnet")]) == 2
    assert "artifact file not found" in capsys.readouterr().err
    np.save(tmp_path / "img.npy", np.zeros((5, 5, 3), np.uint8))
    assert main(["sim", str(art_path), "--image", str(tmp_path / "img.npy")]) == 2
    err = capsys.readouterr().err
    assert "5x5x3" in err and "6x6x3" in err and "Traceback" not in err
    (tmp_path / "f.toml").write_text("[conv9]\npe = 1\nsimd = 1\n")
    assert main(["sim", str(art_path), "--folding", str(tmp_path / "f.toml")]) == 2
    assert "unknown layer(s) 'conv9'" in capsys.readouterr().err
    assert main(["sim", str(art_path), "--folding", str(tmp_path / "nope.toml")]) == 2
    assert "folding file not found" in capsys.readouterr().err
    assert main(["sim", str(art_path), "--stall", "1.5"]) == 2
    assert "--stall" in capsys.readouterr().err
    assert main(["sim", str(art_path), "--waves-cycles", "0"]) == 2
    assert "--waves-cycles must be >= 1, got 0" in capsys.readouterr().err
    assert main(["sim", str(art_path), "--waves-from", "-1"]) == 2
    assert "--waves-from must be >= 0, got -1" in capsys.readouterr().err
    random_artifact(config("odd"), seed=1).save(tmp_path / "odd.dupnet")
    assert main(["sim", str(art_path), "--golden", str(tmp_path / "odd.dupnet")]) == 2
    err = capsys.readouterr().err
    assert "--golden" in err and "'sim-odd' differs" in err and "Traceback" not in err


@pytest.mark.sim
def test_sim_cli_passes_and_reports_cycles(art_path, tmp_path, capsys):
    fold = folding(config("dup"), "mixed")
    f = tmp_path / "fold.toml"
    f.write_text(fold.to_toml())
    rc = main(["sim", str(art_path), "--random", "2", "--frames", "3", "--stall", "0.2",
               "--folding", str(f), "--probes"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "PASS: 3 frame(s) bit-exact" in out and "cycles/frame measured" in out
    m = re.search(r"cycles/frame measured \S+ vs analytic (\d+)\b", out)
    assert m and int(m.group(1)) == pipeline_model(config("dup"), fold).cycles_per_frame, out


@pytest.fixture
def feat(tmp_path):
    """The ``feat`` design of the tool-path tests (``cases.saved_case``)."""
    return saved_case(tmp_path)


def _first_difference(actual, expected):
    """(frame, y, x, channel, expected, actual) of the first element in stream order (frame,
    raster, channel) where two [N, H, W, C] tensors differ."""
    d = np.argwhere(actual != expected)
    assert len(d), "the two golden models agree: no failure to see"
    f, y, x, c = (int(v) for v in d[0])
    return f, y, x, c, int(expected[f, y, x, c]), int(actual[f, y, x, c])


@pytest.mark.sim
def test_sim_cli_failing_run_names_mismatch_and_waves(feat, tmp_path, capsys):
    """A run compared with the golden model of another artifact (``--golden``, the test hook
    of the failure path) exits 1, names the first mismatch of each stream (layer, frame,
    pixel, channel, expected, actual: the first place the two golden models differ), and
    re-runs with waves around the first mismatch, whose file it names."""
    art_path, art, f, fold = feat
    other = random_artifact(config("feat"), seed=2)
    other.save(tmp_path / "other.dupnet")
    rc = main(["sim", str(art_path), "--random", "2", "--frames", "2", "--folding", str(f),
               "--pixels-per-beat", str(FEAT_PPB), "--probes",
               "--golden", str(tmp_path / "other.dupnet")])
    cap = capsys.readouterr()
    assert rc == 1, cap.out + cap.err
    assert "FAIL: RTL differs from the golden model" in cap.err
    images = random_images(config("feat"), 2, 0)
    hw, gold = GoldenModel(art).forward(images), GoldenModel(other).forward(images)
    names = [g.name for g in GoldenModel(art).geometry]
    for layer in ("conv1", names[-1]):      # the first probe, and the output stream
        k = names.index(layer)
        fr, y, x, c, e, a = _first_difference(hw[k], gold[k])
        assert (f"layer {layer}, frame {fr}, pixel (y={y}, x={x}), channel {c}: expected {e}, "
                f"got {a}") in cap.err, cap.err
    assert "re-running the same frames and stalls with waves on" in cap.err
    start, last, cycle, waves = rerun_waves(cap.err)
    assert (start, last) == (max(0, cycle - WAVES_BEFORE), cycle + WAVES_AFTER - 1)
    assert waves.is_file()
    first, end, _ = vcd_times(waves)
    period = CLOCK_PERIOD_NS * 1000 // vcd_timescale_ps(waves)
    assert first == start * period and first <= cycle * period <= end < (last + 1) * period


@pytest.mark.sim
def test_sim_cli_waves_window(feat, capsys):
    """``--waves-from C --waves-cycles N`` writes a wave file of cycles [C, C+N) only: its
    time stamps span exactly that window, and it is a fraction of the whole run's file."""
    art_path, _, f, _ = feat
    base = ["sim", str(art_path), "--random", "1", "--frames", "20", "--folding", str(f),
            "--pixels-per-beat", str(FEAT_PPB), "--probes"]   # the failing test's model
    assert main(base + ["--waves"]) == 0
    full = printed_waves(capsys.readouterr().out)
    start, cycles = 1000, 300
    assert main(base + ["--waves-from", str(start), "--waves-cycles", str(cycles)]) == 0
    out = capsys.readouterr().out
    assert f"waves (cycles {start}..{start + cycles - 1})" in out, out
    part = printed_waves(out)
    period = CLOCK_PERIOD_NS * 1000 // vcd_timescale_ps(part)
    f0, f1, _ = vcd_times(full)
    p0, p1, _ = vcd_times(part)
    assert f0 == 0 and f1 > (start + cycles) * period      # the whole run is longer
    assert p0 == start * period                             # first dump: the window's start
    assert (start + cycles - 1) * period <= p1 < (start + cycles) * period
    print(f"VCD sizes: whole run ({f1 // period} cycles) {full.stat().st_size} B, "
          f"window of {cycles} cycles {part.stat().st_size} B")
    assert part.stat().st_size * 4 < full.stat().st_size
