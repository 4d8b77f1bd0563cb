"""dupnet.explore without training: the Pareto front, the axes and their errors, the device
estimate (calibrated analytic model under a device's capacity)."""
import dataclasses

import pytest

from dupnet.cli import main
from dupnet.explore import (ExploreError, ExploreOptions, device_clock,
                            device_estimate, make_variants, pareto_front, parse_clocks,
                            parse_int_list, variant_config)
from dupnet.hw.autofold import auto_folding
from dupnet.hw.budget.calibration import load_calibration
from dupnet.hw.budget.devices import load_devices
from dupnet.sw.config import conv_geometries, load_config

from .conftest import FAST


# -- Pareto -------------------------------------------------------------------------------------

def test_pareto_front_max_ap_min_cost():
    pts = [(0.80, 10.0), (0.85, 12.0), (0.70, 11.0), (0.85, 15.0), (0.90, 20.0), (0.60, 5.0)]
    assert pareto_front(pts, ("max", "min")) == [0, 1, 4, 5]


def test_pareto_front_max_max_and_ties():
    pts = [(0.8, 100.0), (0.8, 100.0), (0.7, 200.0), (0.6, 150.0), (0.9, 50.0)]
    assert pareto_front(pts, ("max", "max")) == [0, 1, 2, 4]     # equal points both stay
    assert pareto_front([], ("max", "min")) == []
    assert pareto_front([(1, 2, 3)], ("max", "min", "max")) == [0]


def test_pareto_front_checks_its_input():
    with pytest.raises(ValueError, match="senses"):
        pareto_front([(1, 2)], ("max", "up"))
    with pytest.raises(ValueError, match="2 senses"):
        pareto_front([(1, 2, 3)], ("max", "min"))


# -- axes ---------------------------------------------------------------------------------------

def test_parse_int_list():
    assert parse_int_list("1,2, 4,2", "--w-dup") == [1, 2, 4]
    for text, msg in (("", "empty list"), (" , ", "empty list"), ("1,x", "'x' is not an "
                      "integer"), ("0", "0 must be >= 1")):
        with pytest.raises(ExploreError, match=msg) as e:
            parse_int_list(text, "--w-dup")
        assert "--w-dup" in str(e.value)


def test_variants_are_the_product_of_the_axes(tiny_cfg):
    base = load_config(tiny_cfg)
    opts = ExploreOptions(config=str(tiny_cfg), out="x", w_dup=[1, 4], act_bits=[1, 3],
                          x_dup=[1])
    vs = make_variants(base, opts)
    assert [v.name for v in vs] == ["w1-a1-x1", "w1-a3-x1", "w4-a1-x1", "w4-a3-x1"]
    g = {x.name: x for x in conv_geometries(vs[3].config)}
    assert vs[3].config.name == "explore-tiny-w4-a3-x1"
    assert (g["conv0"].x_dup, g["conv4"].x_dup) == (1, 1)          # first and last conv
    assert (g["conv0"].act_bits, g["conv2"].act_bits, g["conv4"].act_bits) == (3, 3, None)
    assert g["conv2"].w_dup == 4                                   # the duplicating layer
    base_only = make_variants(base, ExploreOptions(config=str(tiny_cfg), out="x"))
    assert [v.name for v in base_only] == ["base"] and base_only[0].config.name == base.name


def test_w_dup_applies_where_it_divides(tiny_cfg):
    # dupnet-demo: conv2 C' = 16, conv3 C' = 32, conv4 C' = 64: 32 divides conv3 and conv4
    cfg = variant_config(load_config("dupnet-demo"), {"w_dup": 32})
    assert [g.w_dup for g in conv_geometries(cfg)] == [1, 2, 32, 32, 1]


@pytest.mark.parametrize("axes, message", [
    ({"w_dup": 3}, "--w-dup 3: divides the input channels C' of none of the layers of "
                   "explore-tiny that duplicate weights (conv2 C'=4)"),
    ({"act_bits": 9}, "variant a9 (--act-bits 9) is not a valid config"),
])
def test_bad_axis_values_name_the_value_and_why(tiny_cfg, axes, message):
    with pytest.raises(ExploreError) as e:
        variant_config(load_config(tiny_cfg), axes)
    assert message in str(e.value)


def test_w_dup_needs_a_duplicating_layer():
    with pytest.raises(ExploreError, match="no layer that duplicates weights"):
        variant_config(load_config("dupnet-demo-ifq"), {"w_dup": 2})


def test_clocks():
    devs = load_devices()
    assert device_clock(devs["ice40-up5k"]) == (devs["ice40-up5k"].expected_mhz,
                                                "device file expected_mhz (measured fmax)")
    assert device_clock(devs["artix7-35t"])[0] == 100.0                 # no pnr clock
    clocks = parse_clocks("60,artix7-35t=120", list(devs))
    assert device_clock(devs["artix7-35t"], clocks) == (120.0, "--clock-mhz")
    assert device_clock(devs["ecp5-25f"], clocks) == (60.0, "--clock-mhz")
    with pytest.raises(ExploreError, match="'nope' is not one of the devices"):
        parse_clocks("nope=3", list(devs))
    with pytest.raises(ExploreError, match="not a number"):
        parse_clocks("fast", list(devs))


# -- device estimates ---------------------------------------------------------------------------

def _device(name, **capacity):
    d = load_devices()[name]
    return dataclasses.replace(d, capacity={**d.capacity, **capacity})


def test_device_estimate_is_the_fastest_fitting_folding():
    """The device estimate is fit_device's design: fits within the LUT margin, and the next
    LUT6 budget of the auto-folding does not fit."""
    from dupnet.hw.budget.devicefit import DEFAULT_MARGIN, estimate_point, memory_mapping
    cfg, calib = load_config("dupnet-demo"), load_calibration()
    ecp = device_estimate(cfg, _device("ecp5-25f"), calib)
    assert ecp["fits"] and ecp["lut"] <= 24288 * DEFAULT_MARGIN and ecp["bram"] <= 56
    mhz = _device("ecp5-25f").expected_mhz           # the measured fmax of the device file
    assert ecp["fps"] == pytest.approx(mhz * 1e6 / ecp["cycles_per_frame"], abs=0.1)
    assert ecp["clock_mhz"] == mhz and "[conv1]" in ecp["folding_toml"]
    assert set(ecp["folding"]) == {"conv1", "conv2", "conv3", "conv4", "conv5"}
    # a device a third as big: a slower folding that fits it, and one LUT6 more does not
    small = _device("ecp5-25f", lut=ecp["lut"] // 3)
    est = device_estimate(cfg, small, calib)
    assert est["fits"] and est["lut"] <= small.capacity["lut"] * DEFAULT_MARGIN
    assert est["cycles_per_frame"] > ecp["cycles_per_frame"]
    f = memory_mapping(cfg, auto_folding(cfg, lut_budget=est["lut6_budget"] + 1), small, calib)
    assert not estimate_point(cfg, f, small, calib).fit.fits
    # nothing fits a tiny device: the most folded design, reported as not fitting
    none = device_estimate(cfg, _device("ecp5-25f", lut=100, bram=1), calib)
    assert not none["fits"] and set(none["over"]) >= {"lut"}
    assert none["cycles_per_frame"] >= est["cycles_per_frame"]


# -- command-line errors ------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--w-dup", "3"], "--w-dup 3: divides the input channels C' of none"),
    (["--w-dup", ""], "--w-dup '': empty list"),
    (["--act-bits", "2,x"], "--act-bits: 'x' is not an integer"),
    (["--device", "ice40-up5k,virtex9"], "unknown target 'virtex9'; known targets"),
    (["--device", ","], "--device ',': empty list"),
    (["--only", "w7"], "--only w7: not a variant of these axes; the variants are w1, w2"),
    (["--clock-mhz", "0"], "the clock must be > 0 MHz"),
    (["--jobs", "0"], "--jobs must be >= 1"),
])
def test_cli_errors_name_the_value(tiny_cfg, tmp_path, capsys, argv, message):
    base = ["explore", str(tiny_cfg), "-o", str(tmp_path / "x"), "--w-dup", "1,2"]
    assert main(base + argv + FAST) == 2
    err = capsys.readouterr().err
    assert "dupnet explore: error:" in err and message in err and "Traceback" not in err
    assert not (tmp_path / "x" / "variants").exists()              # nothing trained


def test_cli_collect_errors(tmp_path, capsys):
    assert main(["explore", str(tmp_path), "--collect"]) == 2
    assert "no explore-options.json" in capsys.readouterr().err
    assert main(["explore", str(tmp_path), "--collect", "--epochs", "2"]) == 2
    assert "--epochs not allowed with it" in capsys.readouterr().err
    assert main(["explore", "dupnet-demo", "--w-dup", "1"]) == 2
    assert "-o DIR is required" in capsys.readouterr().err
