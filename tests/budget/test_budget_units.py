"""Fit/headroom arithmetic, the device list, memory mapping, calibration fit, module->layer
mapping and rendering (no tools run)."""
import json
import re

import numpy as np
import pytest

from dupnet.hw.budget.calibration import (FEATURES, calibrated_layer, fit_lut_coefficients,
                                          load_calibration, write_calibration)
from dupnet.hw.budget.devices import (RESOURCES, UnknownTargetError, get_device, load_devices,
                                      parse_targets)
from dupnet.hw.budget.fit import fit_summary, frames_per_second, pct_error
from dupnet.hw.budget.flow import resources_of
from dupnet.hw.budget.memory import Memory, blocks_for, place_memory
from dupnet.hw.budget.report import layer_of_module, memory_savings
from dupnet.sw.config import conv_geometries, load_config


def test_fit_arithmetic():
    s = fit_summary({"lut": 4000, "ff": 1000, "bram": 27, "spram": 0, "dsp": 0},
                    {"lut": 5000, "ff": 5000, "bram": 30, "spram": 4, "dsp": 8})
    assert s.fits
    assert s.binding == "bram"                       # 90% beats 80%
    assert s.headroom_pct == pytest.approx(10.0)
    assert s.use("lut").headroom_pct == pytest.approx(20.0)
    s = fit_summary({"lut": 6000, "bram": 10}, {"lut": 5000, "bram": 30, "ff": 1, "spram": 0,
                                                "dsp": 1})
    assert not s.fits and s.over == ["lut"] and s.binding == "lut"
    assert s.headroom_pct == pytest.approx(-20.0)
    # a resource the device lacks: needs any -> does not fit, binds
    s = fit_summary({"spram": 1}, {"lut": 10, "ff": 10, "bram": 1, "spram": 0, "dsp": 0})
    assert not s.fits and s.binding == "spram"
    assert json.dumps(s.to_json())                   # no inf in the JSON
    assert frames_per_second(100.0, 1_000_000) == pytest.approx(100.0)
    assert frames_per_second(None, 10) is None
    assert pct_error(115, 100) == pytest.approx(15.0)
    assert pct_error(0, 0) == 0.0 and pct_error(1, 0) is None


def test_device_list():
    devs = load_devices()
    assert list(devs) == ["ice40-up5k", "ecp5-25f", "artix7-35t"]
    up5k = devs["ice40-up5k"]
    assert up5k.capacity == {"lut": 5280, "ff": 5280, "bram": 30, "spram": 4, "dsp": 8}
    assert up5k.bram_bits * up5k.capacity["bram"] == 120 * 1024
    assert devs["ecp5-25f"].bram_bits * devs["ecp5-25f"].capacity["bram"] == 1008 * 1024
    a7 = devs["artix7-35t"]
    assert (a7.capacity["lut"], a7.capacity["ff"], a7.capacity["dsp"]) == (20800, 41600, 90)
    assert a7.bram_bits * a7.capacity["bram"] == 1800 * 1024 and not a7.has_pnr
    assert [d.name for d in parse_targets("ecp5-25f, ice40-up5k")] == ["ecp5-25f", "ice40-up5k"]
    assert len(parse_targets("all")) == 3
    with pytest.raises(UnknownTargetError) as e:
        parse_targets("ice40-up5k,virtex9")
    assert "'virtex9'" in str(e.value)
    for name in devs:
        assert name in str(e.value)
    with pytest.raises(UnknownTargetError, match="known targets"):
        get_device("nope")


def test_new_target_is_one_entry(tmp_path):
    from dupnet.hw.budget.devices import _default_path
    text = _default_path().read_text() + """
[devices.ice40-up3k]
family = "ice40"
capacity = { lut = 2800, ff = 2800, bram = 20, spram = 4, dsp = 4 }
bram_bits = 4096
synth = "synth_ice40 -device u"
pnr = "nextpnr-ice40"
pnr_args = ["--up3k", "--package", "sg48"]
"""
    p = tmp_path / "devices.toml"
    p.write_text(text)
    d = parse_targets("ice40-up3k", p)[0]
    assert d.family.name == "ice40" and d.capacity["lut"] == 2800 and d.has_pnr


def test_cell_classification():
    ice, ecp, xc7 = (get_device(n) for n in ("ice40-up5k", "ecp5-25f", "artix7-35t"))
    r, unk = resources_of({"SB_LUT4": 10, "SB_DFFESR": 3, "SB_DFF": 2, "SB_RAM40_4K": 1,
                           "SB_CARRY": 4, "SB_MAC16": 1, "WEIRD": 2}, ice)
    assert (r["lut"], r["ff"], r["bram"], r["dsp"]) == (10, 5, 1, 1) and unk == ["WEIRD"]
    r, _ = resources_of({"LUT4": 10, "CCU2C": 3, "TRELLIS_FF": 7, "DP16KD": 2,
                         "MULT18X18D": 1}, ecp)
    assert (r["lut"], r["ff"], r["bram"], r["dsp"]) == (16, 7, 2, 1)
    r, unk = resources_of({"LUT6": 5, "LUT2": 1, "FDRE": 4, "FDSE": 1, "RAMB18E1": 3,
                           "RAMB36E1": 1, "RAM64M": 2, "DSP48E1": 2, "CARRY4": 9}, xc7)
    assert (r["lut"], r["ff"], r["bram"], r["dsp"]) == (14, 5, 2.5, 2) and unk == []


def test_memory_mapping():
    ice = get_device("ice40-up5k")
    c = load_calibration()["ice40"]
    assert blocks_for(512, 8, ice.family.block_shapes) == 1
    assert blocks_for(256, 17, ice.family.block_shapes) == 2
    assert blocks_for(4096, 2, ice.family.block_shapes) == 2
    xc7 = get_device("artix7-35t").family.block_shapes
    assert blocks_for(16384, 1, xc7) == 1
    assert blocks_for(18432, 1, xc7) == 1          # packed 9 words per 2048 x 9 row
    assert blocks_for(18433, 1, xc7) == 2
    assert place_memory(Memory("rom", 512, 8, True), ice, c).where == "bram"
    assert place_memory(Memory("rom", 32, 8, True), ice, c).where == "logic"
    a7 = get_device("artix7-35t")
    p = place_memory(Memory("rom", 2048, 18, True), a7, load_calibration()["xc7"])
    assert p.where == "bram" and p.blocks == 1.0   # two RAMB18 = one RAMB36 unit


def test_layer_of_module():
    names = ["conv1", "conv10", "pool1"]
    assert layer_of_module("dupnet_top.conv1_mvtu", names) == "conv1"
    assert layer_of_module("dupnet_top.conv10_window", names) == "conv10"
    assert layer_of_module("dupnet_top.pool1_pool.sub", names) == "pool1"
    assert layer_of_module("dupnet_top.unpack", names) is None
    assert layer_of_module("dupnet_top", names) is None


def test_memory_savings_uses_geometry():
    cfg = load_config("dupnet-demo")
    s = memory_savings(cfg)
    gs = conv_geometries(cfg)
    assert s["unique_weight_bits"] == sum(g.unique_weight_bits for g in gs)
    assert s["weight_bits_without_dup"] == sum(g.weight_bits_without_dup for g in gs)
    assert s["saved_bits"] > 0 and s["ratio"] > 1


def test_calibration_fit_recovers_coefficients(tmp_path):
    rng = np.random.default_rng(1)
    true = {"logic": 1.7, "mux_logic": 3.1, "pool_logic": 2.5, "rom_lut_bits": 0.06,
            "ram_lut_bits": 0.0, "const": 25.0}
    samples = []
    for _ in range(30):
        pool = bool(rng.integers(0, 2))
        est = float(rng.integers(50, 3000))
        mux = 0.0 if pool else float(rng.integers(0, 500))
        f = {"logic": 0.0 if pool else est, "mux_logic": mux, "pool_logic": est if pool else 0.0,
             "rom_lut_bits": float(rng.integers(0, 20000)), "ram_lut_bits": 0.0, "const": 1.0}
        samples.append((f, sum(true[k] * f[k] for k in FEATURES)))
    coefs, err = fit_lut_coefficients(samples)
    for k in FEATURES:
        assert coefs[k] == pytest.approx(true[k], rel=1e-3, abs=1e-3)
    assert err < 1e-6
    # write and read back
    calib = load_calibration()
    calib["ice40"] = dict(calib["ice40"], **coefs)
    p = write_calibration(calib, tmp_path / "calibration.toml")
    again = load_calibration(p)
    assert again["ice40"]["logic"] == pytest.approx(1.7, rel=1e-5)
    layer = {"name": "x", "kind": "conv", "lut_estimate": 100, "ff_estimate": 10,
             "mux_lut_estimate": 30,
             "memories": [{"name": "w", "depth": 16, "width": 4, "rom": True}]}
    e = calibrated_layer(layer, None, get_device("ice40-up5k"), again)
    assert e.lut == pytest.approx(1.7 * 70 + 3.1 * 30 + coefs["rom_lut_bits"] * 64
                                  + coefs["const"], rel=1e-4)
    assert e.bram == 0


def test_render_without_tools(tmp_path):
    """A report built from canned tool results renders to Markdown, HTML, JSON and PNGs."""
    from dupnet.hw.budget import report as R
    from dupnet.hw.budget.flow import PnrRun, SynthResult
    from dupnet.hw.budget.parsers import PnrResult
    from dupnet.hw.budget.render import write_report

    from .tiny_design import design_input
    devs = parse_targets("ice40-up5k,artix7-35t")

    def fake_run_all(design, devices, cache_dir, jobs, pnr, per_module, seed, progress):
        flat, hier, pnrs = {}, {}, {}
        for d in devices:
            res = {r: 0.0 for r in RESOURCES}
            res.update(lut=6000.0 if d.name == "ice40-up5k" else 300.0, ff=100.0, bram=2.0)
            flat[d.name] = SynthResult(d.name, "flat", {}, res, [])
            hier[d.name] = SynthResult(d.name, "hier", {}, res, [], modules={
                "dupnet_top": {"lut": 10.0}, "dupnet_top.conv1_mvtu": dict(res, lut=200.0),
                "dupnet_top.pool1_pool": {"lut": 40.0}},
                module_instances={"dupnet_top": 1, "dupnet_top.conv1_mvtu": 1,
                                  "dupnet_top.pool1_pool": 1})
            pnrs[d.name] = PnrRun(d.name, d.has_pnr, PnrResult(50.0, {"clk": {
                "achieved_mhz": 50.0, "target_mhz": 48.0}}) if d.has_pnr else None)
        return flat, hier, pnrs

    mp = pytest.MonkeyPatch()
    mp.setattr(R, "_run_all", fake_run_all)
    try:
        rep = R.build_report(design_input(), devs, cache_dir=None)
    finally:
        mp.undo()
    ice, a7 = rep["targets"]
    assert not ice["fit"]["fits"] and ice["fit"]["binding"] == "lut" and ice["advice"]
    assert a7["fit"]["fits"] and a7["fmax_mhz"] is None and ice["fmax_mhz"] == 50.0
    assert ice["fps"] == pytest.approx(50e6 / 4096, abs=0.1)
    assert ice["layers"][0]["lut_measured"] == 200 and ice["glue_measured"]["lut"] == 10
    files = write_report(rep, tmp_path)
    md = files["md"].read_text()
    assert "| ice40-up5k" in md and "**no**" in md and "cycles.png" in md
    assert ice["critical_path"] is None and "Critical path" not in md   # none recorded
    html = files["html"].read_text()
    assert "data:image/png;base64," in html and "<table>" in html
    assert json.loads(files["json"].read_text())["format"] == "dupnet-budget-report"
    for k in ("cycles", "resources", "analytic_vs_measured"):
        assert files[k].read_bytes()[:4] == b"\x89PNG"


def test_render_critical_path(tmp_path):
    """Each placed target's critical path lands in report.json and in a table of the Markdown:
    ECP5 from the place-and-route result, iCE40 (a result cached before paths were recorded)
    from its stored gzipped log."""
    import gzip
    from pathlib import Path

    from dupnet.hw.budget import report as R
    from dupnet.hw.budget.flow import PnrRun, SynthResult
    from dupnet.hw.budget.parsers import PnrResult, parse_nextpnr_log
    from dupnet.hw.budget.render import render_html, render_markdown

    from .tiny_design import design_input
    data = Path(__file__).parent / "data"
    ice_log = tmp_path / "pnr.log.gz"
    ice_log.write_bytes(gzip.compress((data / "ice40.critical_path.log").read_bytes()))
    ecp5 = parse_nextpnr_log((data / "ecp5.critical_path.log").read_text())
    ice = PnrResult(26.44, {"clk": {"achieved_mhz": 26.44, "target_mhz": 48.0}})

    def fake_run_all(design, devices, cache_dir, jobs, pnr, per_module, seed, progress):
        res = {r: 0.0 for r in RESOURCES} | {"lut": 300.0, "ff": 100.0, "bram": 2.0}
        flat = {d.name: SynthResult(d.name, "flat", {}, res, []) for d in devices}
        return flat, {}, {"ice40-up5k": PnrRun("ice40-up5k", True, ice, log=str(ice_log)),
                          "ecp5-25f": PnrRun("ecp5-25f", True, ecp5)}

    mp = pytest.MonkeyPatch()
    mp.setattr(R, "_run_all", fake_run_all)
    try:
        rep = R.build_report(design_input(), parse_targets("ice40-up5k,ecp5-25f"),
                             cache_dir=None, per_module=False)
    finally:
        mp.undo()
    t_ice, t_ecp5 = rep["targets"]
    assert t_ecp5["critical_path"] == ecp5.critical_path.to_json()
    assert t_ecp5["critical_path"]["units"] == ["conv4_mvtu"]
    assert t_ice["critical_path"]["start"] == "pool4_pool.fp_SB_DFFSR_Q_8_DFFLC"
    assert t_ice["critical_path"]["units"] == ["pool4_pool", "conv4_mvtu", "conv4_window"]
    assert t_ice["pnr"]["result"]["critical_path"] == t_ice["critical_path"]
    ice_summary = ("pool4_pool (fp) -> conv4_window (can_issue) via conv4_mvtu: 37.8 ns, "
                   "12 logic levels, 62% routing")
    assert t_ice["critical_path"]["summary"] == ice_summary
    md = render_markdown(json.loads(json.dumps(rep)))
    assert (f"| ice40-up5k | `clk` | 26.4 | {ice_summary} | "
            f"`pool4_pool` -> `conv4_mvtu` -> `conv4_window` |") in md
    assert ("| ecp5-25f | `clk` | 77.6 | conv4_mvtu (w_rom0) -> conv4_mvtu (s0): 12.9 ns, "
            "15 logic levels, 38% routing | `conv4_mvtu` |") in md
    assert md.index("## Targets") < md.index("| target | clock | fmax (MHz) | critical path")
    assert "conv4_window (can_issue) via conv4_mvtu" in render_html(rep)


@pytest.mark.parametrize("width,spram_msg", [(192, "SPRAM cannot help.*needs 12 SPRAM blocks"),
                                             (48, "moving pool4 rowbuf there would free about 3")])
def test_memory_layout_advice(width, spram_msg):
    """Wide, shallow buffers: the advice names the worst one, the packed block count, and
    whether SPRAM (16 bits wide per block, 4 blocks on the UP5K) can take them."""
    from dupnet.hw.budget.advice import _memory_layout_advice
    from dupnet.hw.budget.calibration import load_calibration
    model = {"layers": [{"name": "pool4", "kind": "maxpool", "lut_estimate": 0,
                         "ff_estimate": 0, "memories": [
                             {"name": "rowbuf", "depth": 7, "width": width, "rom": False}]}]}
    dev = parse_targets("ice40-up5k")[0]
    msgs = " ".join(_memory_layout_advice(model, {}, dev, load_calibration()))
    blocks = width // 16
    assert f"pool4 rowbuf (7 x {width} bits" in msgs
    assert f"about 1 blocks instead of {blocks}" in msgs
    assert re.search(spram_msg, msgs), msgs


def test_fit_ff_scale():
    from dupnet.hw.budget.calibration import fit_ff_scale
    scale, err = fit_ff_scale([(100.0, 120.0), (200.0, 240.0), (1000.0, 1200.0)])
    assert scale == pytest.approx(1.2) and err == pytest.approx(0.0, abs=1e-12)
    scale, err = fit_ff_scale([(100.0, 100.0), (100.0, 300.0)])
    assert scale == pytest.approx(2.0) and err == pytest.approx((1.0 + 1 / 3) / 2)
    with pytest.raises(ValueError, match="no samples"):
        fit_ff_scale([])


def test_preadd_comparison_on_the_demo():
    from dupnet.hw.analytic import layer_model
    from dupnet.hw.budget.report import preadd_comparison
    from dupnet.hw.autofold import choose_folding
    cfg = load_config("dupnet-demo")
    fold, _ = choose_folding(cfg)
    pre = preadd_comparison(cfg, fold.to_dict())
    shared = [g for g in conv_geometries(cfg) if g.w_dup > 1]
    assert [r["layer"] for r in pre["layers"]] == [g.name for g in shared] and shared
    g = shared[0]
    pe, simd = fold[g.name]
    assert pre["layers"][0]["lut_no_preadd"] == layer_model(g, pe, simd, preadd=False).lut_estimate
    assert pre["in_design"] is True and pre["arith"] == "xnor"
    assert preadd_comparison(load_config("dupnet-demo-float"), fold.to_dict()) is None


def test_fit_memory_cost_recovers_the_rule():
    """Block counts generated with block_cost 128 and logic_cost_ram 0.25 on ECP5: the fit
    finds a (block_cost, logic_cost_ram) pair that reproduces every count."""
    from dupnet.hw.budget.calibration import fit_memory_cost
    from dupnet.hw.budget.memory import place_layer_memories
    dev = get_device("ecp5-25f")
    base = dict(load_calibration()["ecp5"], logic_cost_rom=0.0625)
    true = dict(base, block_cost=128.0, logic_cost_ram=0.25)
    layers = []
    for i, (d, w, rom) in enumerate([(512, 36, True), (64, 84, True), (32, 192, False),
                                     (400, 48, False), (12, 1024, False), (4096, 4, True),
                                     (1052, 24, False), (7, 192, False)]):
        layers.append({"name": f"l{i}", "kind": "conv", "lut_estimate": 0, "ff_estimate": 0,
                       "memories": [{"name": "m", "depth": d, "width": w, "rom": rom}]})
    samples = [(l, None, dev, sum(p.blocks for p in place_layer_memories(l, None, dev, true)))
               for l in layers]
    assert len({s[3] > 0 for s in samples}) == 2          # some in block RAM, some not
    cost, ram_cost, err = fit_memory_cost(samples, dict(base, block_cost=64.0,
                                                        logic_cost_ram=0.0625))
    assert err == 0
    fitted = dict(base, block_cost=cost, logic_cost_ram=ram_cost)
    for l, _, _, blocks in samples:
        assert sum(p.blocks for p in place_layer_memories(l, None, dev, fitted)) == blocks


def test_expected_clock_plans_frames_per_second(tmp_path):
    """``expected_mhz`` (the measured fmax) is the clock the device fit plans frames/s at; a
    ``--clock-mhz`` wins; without it, ``pnr_freq_mhz``; a bad value is refused with the file,
    the device and the field named."""
    import dataclasses

    from dupnet.hw.budget.devicefit import device_clock_mhz
    from dupnet.hw.budget.devices import DeviceError, _default_path
    devs = load_devices()
    ecp5 = devs["ecp5-25f"]
    assert 0 < ecp5.expected_mhz < ecp5.pnr_freq_mhz
    assert device_clock_mhz(ecp5) == ecp5.expected_mhz
    assert device_clock_mhz(ecp5, 60) == 60.0
    assert device_clock_mhz(dataclasses.replace(ecp5, expected_mhz=0.0)) == ecp5.pnr_freq_mhz
    p = tmp_path / "devices.toml"
    import re
    text, n = re.subn(r"(?m)^expected_mhz = \d+", 'expected_mhz = "x"', _default_path().read_text(),
                      count=1)                      # the first device: ice40-up5k
    assert n == 1
    p.write_text(text)
    with pytest.raises(DeviceError, match=r"devices.toml \[devices.ice40-up5k\]: field "
                                          r"'expected_mhz' must be a clock in MHz \(a number "
                                          r">= 0\), got 'x'"):
        load_devices(p)


def test_memory_mapping_streams_hidden_layers_from_a_bank_on_the_up5k():
    """dupnet-tinier-yolo at PE = SIMD = 1 on the UP5K: ROM weights need far more block RAM
    than there is; of the two SPRAM mappings the stream bank (every hidden layer's weight and
    threshold words in one bank, the last layer's weights in a block of its own) needs fewer
    block RAMs than each layer's weights in blocks of their own (thresholds in block RAM)."""
    import dataclasses

    from dupnet.hw.budget.devicefit import _own_spram, estimate_point, memory_mapping
    from dupnet.hw.folding import Folding, validate_folding
    from dupnet.sw.config import conv_geometries, load_config
    cfg = load_config("dupnet-tinier-yolo")
    up5k, calib = get_device("ice40-up5k"), load_calibration()
    one = Folding({g.name: (1, 1) for g in conv_geometries(cfg)})
    mapped = memory_mapping(cfg, one, up5k, calib)
    validate_folding(cfg, mapped)
    assert mapped.weights == "load"
    assert mapped.bank == tuple(f"conv{i}" for i in range(1, 8)) and mapped.spram == ("conv8",)
    own = _own_spram(cfg, dataclasses.replace(one, weights="load"), 4)
    bram = [estimate_point(cfg, f, up5k, calib).estimate for f in (mapped, own)]
    assert bram[0]["bram"] < bram[1]["bram"] and bram[0]["spram"] <= 4
