"""`dupnet weights` (the load image) and `--device` / `--fps` (the design chosen for an FPGA)
from the command line: files and their consistency, the chosen design's estimate within the
device, and errors that name the problem."""
from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest

from dupnet.cli import main
from dupnet.hw.budget.devicefit import DEFAULT_MARGIN
from dupnet.hw.budget.devices import load_devices
from dupnet.hw.folding import load_folding
from dupnet.hw.loader import load_image
from dupnet.sw.artifact import Artifact
from dupnet.sw.random_artifact import random_artifact

from dupnet.sw.config import parse_config

from ..tiny_configs import tiny_config_toml


@pytest.fixture
def art_path(tmp_path):
    p = tmp_path / "tiny.dupnet"
    random_artifact(parse_config(tomllib.loads(tiny_config_toml("tiny"))), seed=3).save(p)
    return p


def test_weights_writes_bin_hex_and_table(art_path, tmp_path, capsys):
    rtl = tmp_path / "rtl"
    assert main(["rtl", str(art_path), "--weights", "load", "-o", str(rtl)]) == 0
    assert 'weights = "load"' in (rtl / "folding.toml").read_text()
    assert "load__payload" in (rtl / "dupnet_top.v").read_text()
    out = tmp_path / "w"
    assert main(["weights", str(art_path), "--folding", str(rtl / "folding.toml"),
                 "-o", str(out)]) == 0
    meta = json.loads((out / "weights.json").read_text())
    raw = np.frombuffer((out / "weights.bin").read_bytes(), "<u4")
    hexw = [int(line, 16) for line in (out / "weights.hex").read_text().split()]
    art = Artifact.load(art_path)
    _, words = load_image(art, load_folding(rtl / "folding.toml", art.config))
    assert list(raw) == hexw == words and meta["words"] == len(words)
    assert sum(s["words"] for s in meta["segments"]) == len(words)
    assert meta["segments"][0]["first_word"] == 0
    assert f"{len(words)} words of 32 bits" in capsys.readouterr().out


def test_device_choice_fits_with_margin(art_path, tmp_path, capsys):
    rtl = tmp_path / "rtl"
    assert main(["rtl", str(art_path), "--device", "ice40-up5k", "-o", str(rtl)]) == 0
    out = capsys.readouterr().out
    mhz = load_devices()["ice40-up5k"].expected_mhz     # the measured fmax, not nextpnr's 48
    assert f"folding for ice40-up5k (the most frames/s at {mhz:g} MHz" in out, out
    # the folding file it wrote reloads, and its estimate is within the device
    from dupnet.hw.budget.devicefit import estimate_point
    from dupnet.hw.budget.calibration import load_calibration
    art = Artifact.load(art_path)
    dev = load_devices()["ice40-up5k"]
    p = estimate_point(art.config, load_folding(rtl / "folding.toml", art.config), dev,
                       load_calibration())
    assert p.fit.fits and p.estimate["lut"] <= DEFAULT_MARGIN * dev.capacity["lut"]


@pytest.mark.parametrize("argv, message", [
    (["--device", "virtex9"], "unknown device 'virtex9'; the device file lists"),
    (["--device", "ice40-up5k", "--target-cycles", "1000"],
     "--device chooses the folding; it cannot be combined with --target-cycles"),
    (["--fps", "100", "--lut-budget", "3000"],
     "--fps chooses the folding; it cannot be combined with --lut-budget"),
    (["--clock-mhz", "50"], "--clock-mhz is the clock of --fps; give --fps too"),
    (["--device", "ice40-up5k", "--fps", "1e9"], "is out of reach for"),
])
def test_device_errors_name_the_problem(art_path, tmp_path, capsys, argv, message):
    assert main(["rtl", str(art_path), "-o", str(tmp_path / "r")] + argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


def test_nothing_fits_names_the_binding_resource(tmp_path, capsys):
    """dupnet-tinier-yolo on the UP5K: its line buffers alone need more block RAM than the
    device has, whatever the folding (docs/STATUS.md)."""
    p = tmp_path / "ty.dupnet"
    assert main(["init", "dupnet-tinier-yolo", "-o", str(p)]) == 0
    capsys.readouterr()
    assert main(["rtl", str(p), "--device", "ice40-up5k", "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "does not fit ice40-up5k even at its most folded design" in err
    assert "BRAM" in err and "over by" in err
