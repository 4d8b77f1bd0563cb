"""Parsers of Yosys / nextpnr output, on real logs captured from the tiny design
(tests/budget/capture_logs.py)."""
import gzip
import re
from pathlib import Path

import pytest

from dupnet.hw.budget.parsers import (CriticalPath, ParseError, PnrResult, cell_signal,
                                      cell_unit, parse_critical_paths, parse_nextpnr_log,
                                      parse_nextpnr_report, parse_stat_json, parse_stat_text,
                                      slowest_path, yosys_errors, yosys_pass_title)

DATA = Path(__file__).parent / "data"
FAMILIES = ["ice40", "ecp5", "xc7"]


def _text_counts(path: Path) -> dict[str, int]:
    """Independent reading of the text stat: the last '=== top ===' cell lines."""
    counts = {}
    for m in re.finditer(r"^\s+(\d+)\s{3}(\S+)$", path.read_text(), re.M):
        counts[m.group(2)] = int(m.group(1))
    return counts


@pytest.mark.parametrize("fam", FAMILIES)
def test_stat_json_equals_text_flat(fam):
    js = parse_stat_json((DATA / f"{fam}_flat.stat.json").read_text(), top="dupnet_top")
    tx = parse_stat_text((DATA / f"{fam}_flat.stat.txt").read_text(), top="dupnet_top")
    assert js.total() == tx.total() == _text_counts(DATA / f"{fam}_flat.stat.txt")
    assert js.total()  # the flat design has cells


@pytest.mark.parametrize("fam", FAMILIES)
def test_stat_hierarchy(fam):
    js = parse_stat_json((DATA / f"{fam}_hier.stat.json").read_text())
    tx = parse_stat_text((DATA / f"{fam}_hier.stat.txt").read_text())
    assert js.top == tx.top == "dupnet_top"          # found as the root of the hierarchy
    assert set(js.modules) == set(tx.modules)
    subs = {"dupnet_top.conv1_mvtu", "dupnet_top.conv1_window", "dupnet_top.pool1_pool"}
    assert set(js.submodules["dupnet_top"]) == subs
    # the total is the sum of the modules (each instantiated once)
    total = {}
    for m in js.modules:
        for t, n in js.modules[m].items():
            total[t] = total.get(t, 0) + n
    assert js.total() == total == tx.total()
    assert js.instance_paths() == {"dupnet_top": 1, **{s: 1 for s in subs}}


def test_stat_ice40_known_cells():
    cells = parse_stat_json((DATA / "ice40_flat.stat.json").read_text()).total()
    text = (DATA / "ice40_flat.stat.txt").read_text()
    luts = int(re.search(r"(\d+)\s+SB_LUT4", text).group(1))
    brams = int(re.search(r"(\d+)\s+SB_RAM40_4K", text).group(1))
    assert cells["SB_LUT4"] == luts and cells["SB_RAM40_4K"] == brams == 2


def test_stat_errors():
    with pytest.raises(ParseError, match="not JSON"):
        parse_stat_json("{")
    with pytest.raises(ParseError, match="modules"):
        parse_stat_json("{}")
    with pytest.raises(ParseError, match="no '=== module ==='"):
        parse_stat_text("nothing here")
    with pytest.raises(ParseError, match="top module 'nope'"):
        parse_stat_json((DATA / "ice40_flat.stat.json").read_text(), top="nope")


def test_yosys_log_helpers():
    log = gzip.decompress((DATA / "ice40_flat.yosys.log.gz").read_bytes()).decode()
    titles = [t for t in map(yosys_pass_title, log.splitlines()) if t]
    assert any("SYNTH_ICE40" in t for t in titles) and any("ABC9" in t for t in titles)
    assert yosys_errors(log) == []
    assert yosys_errors("x\nERROR: Module `foo' not found!\n") == ["Module `foo' not found!"]


@pytest.mark.parametrize("fam", ["ice40", "ecp5"])
def test_nextpnr_report_matches_log(fam):
    rep = parse_nextpnr_report((DATA / f"{fam}.nextpnr.report.json").read_text())
    log_text = (DATA / f"{fam}.nextpnr.log").read_text()
    log = parse_nextpnr_log(log_text)
    assert log.routed
    # the post-route figure is the last 'Max frequency' line of the log
    last = float(re.findall(r"Max frequency for clock '[^']+': ([0-9.]+) MHz", log_text)[-1])
    assert log.fmax_mhz == pytest.approx(last)
    assert rep.fmax_mhz == pytest.approx(last, abs=0.01)
    assert set(rep.clocks) == set(log.clocks) == {"clk"}
    assert log.clocks["clk"]["target_mhz"] == rep.clocks["clk"]["target_mhz"]
    for bel, (used, avail) in log.utilization.items():
        assert rep.utilization[bel] == (used, avail)
    logic = {"ice40": "ICESTORM_LC", "ecp5": "TRELLIS_COMB"}[fam]
    m = re.search(rf"{logic}:\s+(\d+)/\s*(\d+)", log_text)
    assert log.utilization[logic] == (int(m.group(1)), int(m.group(2)))


def test_nextpnr_failed_log():
    text = (DATA / "ice40.nextpnr.fail.log").read_text()
    r = parse_nextpnr_log(text)
    assert not r.routed and r.fmax_mhz is None
    used, avail = r.utilization["ICESTORM_RAM"]
    assert avail == 30 and used > avail
    assert "no BELs remaining" in text


# ------------------------------------------------------------------------------------------
# critical path: excerpts of real dupnet-demo logs (`dupnet report`, nextpnr 0.x via YoWASP),
# cut to the end of routing, the path report and the post-route fmax


def test_critical_path_ecp5():
    """ECP5: a weight-ROM read into a carry chain, all inside conv4's MVTU."""
    r = parse_nextpnr_log((DATA / "ecp5.critical_path.log").read_text())
    assert r.routed and r.fmax_mhz == pytest.approx(77.63)
    cp = r.critical_path
    assert cp == CriticalPath(clock="clk", total_ns=12.88, logic_ns=7.98, routing_ns=4.90,
                              start="conv4_mvtu.w_rom0.0.0",
                              end="conv4_mvtu.s0_TRELLIS_FF_Q_10", units=["conv4_mvtu"],
                              logic_levels=15)
    assert cp.summary == ("conv4_mvtu (w_rom0) -> conv4_mvtu (s0): 12.9 ns, 15 logic levels, "
                          "38% routing")


def test_critical_path_ice40():
    """iCE40: long synthesized names, a path across three units and a `$nextpnr_` cell."""
    r = parse_nextpnr_log((DATA / "ice40.critical_path.log").read_text())
    assert r.fmax_mhz == pytest.approx(26.44)
    cp = r.critical_path
    assert (cp.clock, cp.total_ns, cp.logic_ns, cp.routing_ns) == ("clk", 37.82, 14.18, 23.63)
    assert cp.start == "pool4_pool.fp_SB_DFFSR_Q_8_DFFLC"
    assert cp.end == "conv4_window.can_issue_SB_DFFSR_Q_D_SB_LUT4_O_LC"
    assert cp.units == ["pool4_pool", "conv4_mvtu", "conv4_window"]
    assert cp.logic_levels == 12
    assert cp.routing_pct == pytest.approx(100 * 23.63 / (14.18 + 23.63))
    assert cp.summary == ("pool4_pool (fp) -> conv4_window (can_issue) via conv4_mvtu: 37.8 ns, "
                          "12 logic levels, 62% routing")


def test_critical_path_last_block_wins():
    """Two reports for one clock (after placement, after routing): the last one counts. The
    file splices the path report of another real ECP5 run in front of the post-route one."""
    text = (DATA / "ecp5.critical_path.two_blocks.log").read_text()
    assert text.count("Critical path report for clock 'clk'") == 2
    first = parse_critical_paths(text.split("Routing complete")[0])["clk"]
    assert (first.start, first.units, first.total_ns) == ("pool1_pool.rowbuf.0.0",
                                                          ["pool1_pool"], 12.70)
    paths = parse_critical_paths(text)
    assert list(paths) == ["clk"]
    assert (paths["clk"].start, paths["clk"].end, paths["clk"].total_ns) == (
        "conv4_mvtu.w_rom0.0.0", "conv4_mvtu.s0_TRELLIS_FF_Q_10", 12.88)
    assert parse_nextpnr_log(text).critical_path == paths["clk"]


def test_critical_path_absent():
    assert parse_critical_paths("") == {}
    assert parse_nextpnr_log((DATA / "ice40.nextpnr.fail.log").read_text()).critical_path is None
    assert parse_nextpnr_report('{"fmax": {}}').critical_path is None


@pytest.mark.parametrize("fam", ["ice40", "ecp5"])
def test_critical_path_report_json_matches_log(fam):
    """nextpnr's --report JSON (what a fresh run records) and its log name the same path."""
    rep = parse_nextpnr_report((DATA / f"{fam}.nextpnr.report.json").read_text()).critical_path
    log = parse_nextpnr_log((DATA / f"{fam}.nextpnr.log").read_text()).critical_path
    assert rep is not None and log is not None
    assert (rep.clock, rep.start, rep.end, rep.units, rep.logic_levels) == (
        log.clock, log.start, log.end, log.units, log.logic_levels)
    for k in ("total_ns", "logic_ns", "routing_ns"):
        assert getattr(rep, k) == pytest.approx(getattr(log, k), abs=0.02)
    assert rep.units == ["conv1_mvtu"] and rep.start.startswith("conv1_mvtu.w_rom0.0.0")


def test_pnr_result_json_round_trip():
    r = parse_nextpnr_log((DATA / "ice40.critical_path.log").read_text())
    d = r.to_json()
    assert d["critical_path"]["units"] == ["pool4_pool", "conv4_mvtu", "conv4_window"]
    assert d["critical_path"]["summary"] == r.critical_path.summary
    assert d["critical_path"]["routing_pct"] == 62.5
    assert PnrResult.from_json(d) == r
    old = {k: v for k, v in d.items() if k != "critical_path"}   # cached before paths existed
    back = PnrResult.from_json(old)
    assert back.critical_path is None and back.fmax_mhz == r.fmax_mhz


def test_cell_names():
    assert cell_unit("conv4_mvtu.w_rom0.0.0") == "conv4_mvtu"
    assert cell_unit("$nextpnr_ICESTORM_LC_75") is None
    assert cell_unit("rst_SB_DFFSR_Q") is None
    assert cell_signal("conv4_mvtu.w_rom0.0.0") == "w_rom0"
    assert cell_signal("conv4_mvtu.s0_TRELLIS_FF_Q_10") == "s0"
    assert cell_signal("pool4_pool.rowbuf.0.0_WCLKE_SB_DFF_Q_D_SB_LUT4_O_I0") == "rowbuf"
    assert cell_signal("pool4_pool.o__valid_SB_LUT4_I2_1_O_SB_LUT4_O_LC") == "o__valid"
    assert cell_signal("conv5_adapt.psum_r0_TRELLIS_FF_Q_3") == "psum_r0"
    assert cell_signal("conv4_mvtu.t_rom$CCU2_COMB1") == "t_rom"
    assert cell_signal("pool4_pool.$signal_SB_DFFSR_Q_1_D_SB_LUT4_O_LC") is None


def test_slowest_path_follows_the_slowest_clock():
    a = CriticalPath("a", 10.0, 5.0, 5.0, "u.x", "u.y", ["u"], 3)
    b = CriticalPath("b", 8.0, 4.0, 4.0, "v.x", "v.y", ["v"], 2)
    paths = {"a": a, "b": b}
    assert slowest_path(paths, {"a": {"achieved_mhz": 100.0}, "b": {"achieved_mhz": 50.0}}) is b
    assert slowest_path(paths, {}) is a          # no fmax known: the longest path
    assert slowest_path({}, {}) is None
