"""The budget report end to end on the tiny design with the real tools (Yosys, nextpnr),
one target per family; the full dupnet-demo report on three targets is marked slow."""
import json

import pytest

from dupnet.cli import main
from dupnet.hw.budget import flow
from dupnet.hw.budget.devices import parse_targets
from dupnet.hw.budget.render import write_report
from dupnet.hw.budget.report import build_report

from .tiny_design import ROM_DEPTH, ROM_WIDTH, TOP, design_input, model, verilog


def test_tiny_report_lattice(tmp_path, monkeypatch):
    devs = parse_targets("ice40-up5k,ecp5-25f")
    cache = tmp_path / "cache"
    rep = build_report(design_input(), devs, cache_dir=cache, per_module={"ecp5-25f"})
    ice, ecp = rep["targets"]
    for t in (ice, ecp):
        assert not t["synth"]["cached"] and not t["pnr"]["cached"]      # a cold cache
        assert t["fit"]["fits"], t["fit"]
        assert t["pnr"]["ok"] and t["fmax_mhz"] > 5
        assert t["fps"] == pytest.approx(t["fmax_mhz"] * 1e6 / 4096, rel=1e-3)
        assert t["placed_logic"] >= t["synth"]["resources"]["lut"] * 0.9
        assert t["synth"]["resources"]["lut"] > 20 and t["synth"]["resources"]["ff"] > 20
        assert not t["synth"]["unclassified"]
    # the 512x8 weight ROM and the 64x8 line buffer: one EBR each on the iCE40
    assert ice["synth"]["resources"]["bram"] == 2 == ice["analytic"]["bram"]
    assert ice["fit"]["binding"] == "bram"
    # per-module synthesis attributes the ROM block to conv1
    conv1 = ecp["layers"][0]
    assert conv1["name"] == "conv1" and conv1["lut_measured"] > 0
    assert conv1["bram_measured"] == ecp["synth"]["resources"]["bram"] >= 1
    assert ice["layers"][0]["lut_measured"] is None          # no per-module run asked
    assert rep["pipeline"]["rom_bits"] == ROM_DEPTH * ROM_WIDTH
    files = write_report(rep, tmp_path / "out")
    assert "ice40-up5k" in files["md"].read_text()
    # cached: no tool runs, same numbers
    def no_tool(tool, *args, **kwargs):
        raise AssertionError(f"{tool} ran although its result is cached")
    monkeypatch.setattr(flow, "run_tool", no_tool)
    again = build_report(design_input(), devs, cache_dir=cache, per_module={"ecp5-25f"})
    for a, b in zip(rep["targets"], again["targets"]):
        assert b["synth"]["cached"] and b["pnr"]["cached"]
        assert a["synth"]["resources"] == b["synth"]["resources"]
        assert a["fmax_mhz"] == b["fmax_mhz"]


def test_tiny_report_xilinx(tmp_path):
    rep = build_report(design_input(), parse_targets("artix7-35t"), cache_dir=tmp_path,
                       per_module=False)
    t = rep["targets"][0]
    assert t["fit"]["fits"] and t["fmax_mhz"] is None and t["fps"] is None
    assert "no open place-and-route" in t["pnr"]["message"]
    assert t["synth"]["resources"]["lut"] > 20 and not t["synth"]["unclassified"]


def _rtl_dir(tmp_path):
    d = tmp_path / "rtl"
    d.mkdir()
    (d / f"{TOP}.v").write_text(verilog())
    (d / f"{TOP}.json").write_text(json.dumps({"design": {"top_name": TOP}, "model": model()}))
    return d


def test_cli_on_rtl_dir(tmp_path, capsys):
    out = tmp_path / "report"
    rc = main(["report", str(_rtl_dir(tmp_path)), "--target", "ecp5-25f", "--no-pnr",
               "--no-per-module", "-o", str(out), "--cache-dir", str(tmp_path / "c"), "-q"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "ecp5-25f" in text and "fits" in text
    rep = json.loads((out / "report.json").read_text())
    assert rep["targets"][0]["name"] == "ecp5-25f"
    assert (out / "report.html").exists() and (out / "resources.png").exists()


def test_cli_unknown_target(tmp_path, capsys):
    rc = main(["report", str(_rtl_dir(tmp_path)), "--target", "ice40-up5k,spartan2",
               "-o", str(tmp_path / "r")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "'spartan2'" in err and "ice40-up5k, ecp5-25f, artix7-35t" in err


@pytest.mark.slow
def test_demo_report_three_targets(tmp_path):
    art = tmp_path / "demo.dupnet"
    assert main(["init", "dupnet-demo", "-o", str(art)]) == 0
    out = tmp_path / "report"
    assert main(["report", str(art), "--target", "ice40-up5k,ecp5-25f,artix7-35t",
                 "-o", str(out), "--cache-dir", str(tmp_path / "c"), "-q"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert [t["name"] for t in rep["targets"]] == ["ice40-up5k", "ecp5-25f", "artix7-35t"]
    for t in rep["targets"]:
        assert all(l["lut_measured"] is not None for l in t["layers"])
        if t["fit"]["fits"] and t["name"] != "artix7-35t":
            assert t["fmax_mhz"] > 0
        if not t["fit"]["fits"]:
            assert t["advice"]
    assert rep["memory"]["saved_bits"] > 0


def _up5k_synthesis(tmp_path, fold):
    """The UP5K target of a synthesis-only report (flat) of the small hardware-test config's
    random artifact (seed 5) at ``fold``."""
    from dupnet.hw.budget.report import design_input_from_generated
    from dupnet.hw.generate import generate_verilog
    from dupnet.sw.random_artifact import random_artifact

    from ..hw.conftest import small_config
    art = random_artifact(small_config(), seed=5)
    gen = generate_verilog(art, fold)
    rep = build_report(design_input_from_generated(gen, art, gen.folding),
                       parse_targets("ice40-up5k"), cache_dir=tmp_path / "cache", pnr=False,
                       per_module=False)
    return rep["targets"][0]


def test_spram_and_block_ram_measured_equal_the_model(tmp_path):
    """A generated network with load-time weights and two layers' weights in SPRAM (packed
    narrow words), synthesized for the iCE40 UP5K: the SB_SPRAM256KA cells and the block RAMs
    Yosys reports equal the analytic memory mapping's counts."""
    from dupnet.hw.folding import Folding
    ice = _up5k_synthesis(tmp_path, Folding({"conv1": (2, 3), "conv2": (4, 2), "conv3": (2, 8),
                                             "conv4": (3, 4)},
                                            weights="load", spram=("conv2", "conv3")))
    # conv2 (PE 4) and conv3 (PE 2): one weight memory each, the PE slices packed side by side
    # into one block each (a memory per PE took 4 + 2)
    assert ice["synth"]["resources"]["spram"] == ice["analytic"]["spram"] == 2
    assert ice["synth"]["resources"]["bram"] == ice["analytic"]["bram"]
    assert not ice["synth"]["unclassified"]


def test_stream_bank_measured_equals_the_model(tmp_path):
    """Two hidden layers' weight and threshold words in one stream bank, one layer's weights
    in SPRAM of their own, synthesized for the UP5K: SPRAM (the bank's block and the own one)
    and block RAM measured = the analytic mapping (the bank's shares rounded up)."""
    from dupnet.hw.folding import Folding
    ice = _up5k_synthesis(tmp_path, Folding({"conv1": (1, 1), "conv2": (1, 1), "conv3": (1, 4),
                                             "conv4": (1, 1)}, preadd=False, weights="load",
                                            bank=("conv2", "conv3"), spram=("conv4",)))
    assert ice["synth"]["resources"]["spram"] == ice["analytic"]["spram"] == 2
    assert ice["synth"]["resources"]["bram"] == ice["analytic"]["bram"]
    assert not ice["synth"]["unclassified"]
