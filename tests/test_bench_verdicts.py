"""The verdict logic of every benchmark (scripts/bench*.py) on planted numbers: a met target
passes, a missed target or a failed correctness check fails and gives a non-zero exit status,
and scripts/bench.py reports a failing bench and exits non-zero. Nothing here measures or
synthesizes anything: the measuring functions are replaced by planted figures."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))
import benchlib  # noqa: E402  (scripts/ is no package)


def load(name: str):
    """Import ``scripts/<name>.py`` by path (as ``benchscript_<name>``)."""
    mod_name = f"benchscript_{name}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    spec.loader.exec_module(mod)
    return mod


def oks(vs) -> list[bool]:
    return [v.ok for v in vs]


# --------------------------------------------------------------------------- benchlib

def test_verdict_figure_and_ratio():
    v = benchlib.verdict("x s", 59.9, None, 60, cmp="<", unit="s")
    assert v.ok and v.line.startswith("VERDICT PASS x s: 59.9 s; target < 60 s")
    v = benchlib.verdict("x s", 60.0, None, 60, cmp="<", unit="s")
    assert not v.ok and v.line.startswith("VERDICT FAIL")
    # ratio target: the figure beside its baseline, with the ratio
    v = benchlib.verdict("fps", 150, 100, 1.0, cmp=">=", judge="ratio", baseline_name="torch")
    assert v.ok and "150 vs torch 100 = 1.50x; target ratio >= 1x" in v.line
    v = benchlib.verdict("fps", 99, 100, 1.0, cmp=">=", judge="ratio")
    assert not v.ok and "0.99x" in v.line
    # a figure target still prints the baseline and ratio
    v = benchlib.verdict("lut/lane-bit", 2.01, 5.05, 2.0, cmp="<=", baseline_name="FINN")
    assert not v.ok and "vs FINN 5.05 = 0.40x" in v.line


def test_verdict_not_a_number_never_passes():
    for cmp in ("<", "<=", ">", ">=", "=="):
        assert not benchlib.verdict("n", math.nan, None, 1.0, cmp=cmp).ok
    assert not benchlib.verdict("inf", math.inf, 1.0, 15.0, cmp="<=").ok
    assert not benchlib.verdict("zero/zero", 0.0, 0.0, 1.0, cmp=">=", judge="ratio").ok
    with pytest.raises(ValueError):
        benchlib.verdict("r", 1.0, None, 1.0, judge="ratio")
    with pytest.raises(ValueError):
        benchlib.verdict("r", 1.0, None, 1.0, cmp="=<")


def test_check_and_exit_code():
    good, bad = benchlib.check("a", True, "fine"), benchlib.check("b", False, "3 differ")
    assert good.line == "VERDICT PASS a: fine" and bad.line == "VERDICT FAIL b: 3 differ"
    assert benchlib.exit_code([good]) == 0
    assert benchlib.exit_code([good, bad]) == 1
    assert benchlib.exit_code([]) == 1                  # judged nothing: not a pass
    said = []
    vs = benchlib.Verdicts(echo=said.append)
    vs.add(good, bad)
    assert vs.exit_code() == 1 and said[:2] == [good.line, bad.line] and "1 missed" in said[-1]
    assert benchlib.verdict_lines("x\nVERDICT PASS a: 1\n  VERDICT FAIL b: 2\nVERDICTS\n") == \
        ["VERDICT PASS a: 1", "VERDICT FAIL b: 2"]


# --------------------------------------------------------------------------- bench_golden

def test_golden(monkeypatch, capsys):
    g = load("bench_golden")
    fast = {"golden (reference)": 10.0, "golden": 120.0, "torch float": 100.0, "torch QAT": 50.0}
    slow = dict(fast, golden=80.0)
    assert oks(g.verdicts("demo", fast, True)) == [True, True]
    assert oks(g.verdicts("demo", slow, True)) == [True, False]
    assert oks(g.verdicts("demo", fast, False)) == [False, True]
    monkeypatch.setattr(g, "versions", lambda: "planted")
    for planted, rc in (((fast, True), 0), ((slow, True), 1), ((fast, False), 1)):
        monkeypatch.setattr(g, "bench", lambda name, repeat, p=planted: p)
        assert g.main(["--configs", "dupnet-demo"]) == rc
    assert "VERDICT FAIL golden dupnet-demo GoldenModel == ReferenceGoldenModel" in \
        capsys.readouterr().out


# --------------------------------------------------------------------------- bench_hw

def _hw_results(seconds=20.0, lint=True, luts=900, finn=4277, lb=512, lane=1.1) -> dict:
    return {"elaboration": {"seconds": seconds}, "lint_ok": lint,
            "lut_per_lane_bit": [{"a_bits": 1, "pe": 8, "simd": 64, "luts": luts,
                                  "lut_per_lane_bit": luts / lb, "finn_estimate": finn,
                                  "finn_per_lane_bit": finn / lb}],
            "w1a1": {"lut6_per_lane_bit": lane, "finn_lut6_per_lane_bit": finn / lb}}


@pytest.mark.parametrize("planted, expect", [
    ({}, [True, True, True, True, True]),
    ({"seconds": 61.0}, [False, True, True, True, True]),
    ({"lint": False}, [True, False, True, True, True]),
    ({"luts": 1100}, [True, True, True, False, True]),          # 2.15 LUT6 per lane-bit > 2
    ({"luts": 1000, "finn": 900}, [True, True, False, True, True]),   # not below FINN's
    ({"lane": 1.25}, [True, True, True, True, False]),      # a W1A1 lane above 1.2 LUT6
])
def test_hw(monkeypatch, planted, expect):
    h = load("bench_hw")
    res = _hw_results(**planted)
    assert oks(h.verdicts(res)) == expect
    monkeypatch.setattr(h, "bench_elaboration", lambda r: r.update(
        elaboration=res["elaboration"], lint_ok=res["lint_ok"]))
    monkeypatch.setattr(h, "bench_luts", lambda r, pe, simd, quick: r.update(
        lut_per_lane_bit=res["lut_per_lane_bit"]))
    monkeypatch.setattr(h, "bench_lane_bits", lambda r, pe, simd, a_bits: r.update(
        w1a1=res["w1a1"]))
    monkeypatch.setattr(h, "bench_preadd", lambda r: None)
    assert h.main([]) == (0 if all(expect) else 1)
    assert h.main(["--skip-elab", "--skip-synth"]) == 1        # nothing judged


# --------------------------------------------------------------------------- bench_sim

def _small(**kw) -> dict:
    s = {"cpp_bit_exact": True, "cpp_compared": 4608, "cpp_errors": 0,
         "cocotb_bit_exact": True, "cocotb_compared": 4608, "cocotb_errors": 0,
         "amaranth_bit_exact": True, "amaranth_compared": 4608, "amaranth_errors": 0,
         "cpp_timing_ok": True, "cpp_timing": "planted", "cocotb_timing_ok": True,
         "cocotb_timing": "planted"}
    s.update(kw)
    return s


def _big(**kw) -> dict:
    b = {"bit_exact": True, "values_compared": 5070, "errors": 0,
         "three_frames_bit_exact": True, "three_frames_values_compared": 15210,
         "three_frames_errors": 0, "timing_ok": True, "timing_check": "planted",
         "build_s": 22.0, "sim_wall_s": 10.9}
    b.update(kw)
    return b


@pytest.mark.parametrize("small, big, bad", [
    ({}, {}, None),
    ({"cpp_bit_exact": False, "cpp_errors": 3}, {}, "sim small Verilator + C++ driver bit-exact"),
    ({"amaranth_compared": 0}, {}, "sim small Amaranth sim bit-exact"),   # nothing compared
    ({"cocotb_timing_ok": False}, {}, "sim small cocotb cycles vs analytic"),
    ({}, {"three_frames_bit_exact": False}, "sim tinier-yolo 3 frames bit-exact"),
    ({}, {"timing_ok": False}, "sim tinier-yolo 3 frames cycles vs analytic"),
    ({}, {"build_s": 301.0}, "sim tinier-yolo Verilator build"),
    ({}, {"sim_wall_s": 75.0}, "sim tinier-yolo one frame wall"),
])
def test_sim(monkeypatch, capsys, small, big, bad):
    s = load("bench_sim")
    vs = s.verdicts({"small": _small(**small), "tinier_yolo": _big(**big)})
    failed = [v.line for v in vs if not v.ok]
    assert len(vs) == 10
    assert (failed == []) if bad is None else (len(failed) == 1
                                               and failed[0].startswith(f"VERDICT FAIL {bad}:"))
    monkeypatch.setattr(s, "toolchain_line", lambda: "planted")
    monkeypatch.setattr(s, "bench_small", lambda: _small(**small))
    monkeypatch.setattr(s, "bench_big", lambda threads, opt: _big(**big))
    assert s.main([]) == (0 if bad is None else 1)


# --------------------------------------------------------------------------- bench_train

def _rows(ap_dup=0.871, ap_ifq=0.862, size_dup=5837, size_ifq=9523) -> list[dict]:
    """Summary rows (one seed each) as bench_train.summarize makes them."""
    t = load("bench_train")
    runs = [{"variant": n, "config": n, "recipe": "", "seed": 0, "ap": ap,
             "detection_rate": 0.8, "fp": 105}
            for n, ap in (("dupnet-demo", ap_dup), ("dupnet-demo-ifq", ap_ifq),
                          ("dupnet-demo-float", 0.943))]
    costs = {"dupnet-demo": {"size_bytes": size_dup, "compute": 7.3e6},
             "dupnet-demo-ifq": {"size_bytes": size_ifq, "compute": 12.4e6},
             "dupnet-demo-float": {"size_bytes": 243302, "compute": 24.9e6}}
    return t.summarize(runs, costs)


@pytest.mark.parametrize("planted, expect", [
    ({}, [True, True, True]),
    ({"ap_dup": 0.80}, [True, True, False]),                 # AP lost against IFQ
    ({"ap_dup": 0.853}, [True, True, True]),                 # within the 0.01 floor (1 seed)
    ({"ap_dup": 0.0, "ap_ifq": 0.0}, [True, True, True]),    # equal AP is equal
    ({"ap_dup": math.nan}, [True, True, False]),             # NaN never passes
    ({"size_dup": 9523}, [False, True, True]),               # not smaller than IFQ
])
def test_train(monkeypatch, tmp_path, planted, expect):
    t = load("bench_train")
    rows = _rows(**planted)
    assert oks(t.verdicts(rows)) == expect
    assert oks(t.verdicts(rows[:1])) == [False]              # the IFQ baseline missing
    runs = [{"variant": r["variant"], "config": r["config"], "recipe": "", "seed": 0,
             "ap": r["ap"][0], "detection_rate": 0.8, "fp": 105} for r in rows]
    costs = {r["config"]: {k: r[k] for k in ("size_bytes", "compute")} for r in rows}
    monkeypatch.setattr(t, "measure", lambda args: (runs, costs, {
        "threads": 1, "epochs": 1, "batch_size": 32, "seeds": [0], "torch": "x",
        "wall_s": 0.0}))
    monkeypatch.setattr(t, "markdown_table", lambda rows: "")
    assert t.main(["--out", str(tmp_path)]) == (0 if all(expect) else 1)


# --------------------------------------------------------------------------- bench_report

def _report_rows(lut=-5.0, bram=0.0) -> list[dict]:
    return [{"design": "bench-oos-variant", "target": "ice40-up5k", "lut_err": lut,
             "bram_err": bram, "ff_err": 1.0},
            {"design": "dupnet-demo@lut-budget-5000", "target": "ecp5-25f", "lut_err": 3.0,
             "bram_err": -2.0, "ff_err": 30.0}]


def test_report_verdicts(capsys):
    r = load("bench_report")
    base = _report_rows(lut=-58.0, bram=10.0)
    assert oks(r.verdicts(_report_rows(), base)) == [True, True]
    assert oks(r.verdicts(_report_rows(lut=15.0), base)) == [True, True]
    assert oks(r.verdicts(_report_rows(lut=-15.1), base)) == [False, True]
    assert oks(r.verdicts(_report_rows(bram=math.inf), base)) == [True, False]
    assert oks(r.verdicts([], [])) == [False, False]         # no design judged
    line = r.verdicts(_report_rows(lut=-20.0), base)[0].line
    assert "(bench-oos-variant on ice40-up5k)" in line and "20 % vs uncalibrated 58 %" in line
    assert r.pct_error(0, 0) == 0 and r.pct_error(1, 0) == math.inf
    assert r.pct_error(115, 100) == pytest.approx(15.0)
    calib = {"meta": {"designs": ["dupnet-demo", "dupnet-tinier-yolo"]}}
    assert r.judge(calib, _report_rows(), base) == 0
    assert r.judge(calib, _report_rows(lut=30.0), base) == 1
    assert "VERDICT FAIL report out-of-sample LUT" in capsys.readouterr().out


def test_report_designs_unseen():
    r = load("bench_report")
    shipped = {"meta": {"designs": ["dupnet-demo", "dupnet-tinier-yolo"]}}
    assert r.unseen_check(shipped, r.OOS_DESIGNS).ok
    # a calibration fitted on the variant (e.g. --calibrate --configs <its toml>) is caught
    seen = {"meta": {"designs": ["dupnet-demo", "bench-oos-variant"]}}
    v = r.unseen_check(seen, r.OOS_DESIGNS)
    assert not v.ok and "SEEN: bench-oos-variant" in v.line
    assert r.judge(seen, _report_rows(), _report_rows()) == 1
    assert not r.unseen_check({"ecp5": {}}, r.OOS_DESIGNS).ok     # provenance unknown
    # the verdict designs: one config that is not shipped, one folding that is not the default
    from dupnet.sw.config import builtin_config_names
    shipped_names = set(builtin_config_names())
    designs = [(r.load_config(c).name, f) for c, f in r.OOS_DESIGNS.values()]
    assert any(n not in shipped_names for n, _ in designs)
    assert any(f != r.DEFAULT_FOLDING for _, f in designs)


# --------------------------------------------------------------------------- bench_fps

def _fps_report(fps, fits=True, cycles=778752) -> dict:
    """A planted ``dupnet report`` JSON with one target (the keys bench_fps reads)."""
    return {"pipeline": {"cycles_per_frame": cycles},
            "targets": [{"synth": {"resources": {"lut": 18222.0, "ff": 7457.0, "bram": 55.0,
                                                 "spram": 0.0}},
                         "fmax_mhz": None if fps is None else fps * cycles / 1e6, "fps": fps,
                         "fit": {"fits": fits},
                         "critical_path": {"summary": "conv5 (t_rom) -> conv5 (o)"}}]}


@pytest.mark.parametrize("fps,fits,expect", [
    (102.0, True, [True, True]), (99.9, True, [True, False]), (120.0, False, [False, True]),
    (None, True, [True, False])])        # no fmax (placement failed): never a pass
def test_fps_verdicts(fps, fits, expect):
    f = load("bench_fps")
    d = f.DESIGNS[0]
    m = f.from_report(d.name, _fps_report(fps, fits), 1.0)
    assert (m.cycles_per_frame, m.lut, m.bram, m.fps, m.fits) == (778752, 18222.0, 55.0, fps,
                                                                  fits)
    vs = f.judge(d, m)
    assert oks(vs) == expect
    assert "vs recorded 37.1" in vs[1].line
    # a design without a frames/s target is judged on fitting only
    assert oks(f.judge(f.DESIGNS[2], m)) == [fits]


def test_fps_main(monkeypatch, tmp_path, capsys):
    f = load("bench_fps")
    planted = {"tinier-yolo@ecp5-25f": 102.0, "demo@ice40-up5k": 25.0, "demo@ecp5-25f": 3000.0}
    monkeypatch.setattr(f, "measure", lambda d, work, cache, dupnet: f.from_report(
        d.name, _fps_report(planted[d.name]), 1.0))
    out = tmp_path / "fps.json"
    assert f.main(["--only", "tinier-yolo@ecp5-25f", "--json", str(out)]) == 0
    assert [r["fps"] for r in json.loads(out.read_text())] == [102.0]
    assert f.main([]) == 1                       # the UP5K demo misses its 30 frames/s
    assert "VERDICT FAIL fps demo@ice40-up5k frames/s" in capsys.readouterr().out
    assert f.main(["--only", "nonsense"]) == 2

    def broken(d, work, cache, dupnet):
        raise RuntimeError("dupnet report exited 1")
    monkeypatch.setattr(f, "measure", broken)
    assert f.main(["--only", "demo@ecp5-25f"]) == 1


# --------------------------------------------------------------------------- bench.py

def _cmd(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_bench_collects_and_fails(monkeypatch, tmp_path, capsys):
    b = load("bench")
    ok = b.run_bench("ok", _cmd("print('VERDICT PASS ok x: 1 vs 2 = 0.50x; target <= 1')"))
    miss = b.run_bench("miss", _cmd("print('info'); print('VERDICT FAIL miss x: 3 > 2'); "
                                    "raise SystemExit(1)"))
    crash = b.run_bench("crash", _cmd("print('VERDICT PASS a: ok'); raise RuntimeError('boom')"))
    silent = b.run_bench("silent", _cmd("print('no verdict here')"))
    liar = b.run_bench("liar", _cmd("print('VERDICT FAIL l: missed')"))
    assert (ok.rc, ok.why, ok.verdicts) == (0, "", ["VERDICT PASS ok x: 1 vs 2 = 0.50x; "
                                                    "target <= 1"])
    assert miss.rc == 1 and miss.failed_verdicts == ["VERDICT FAIL miss x: 3 > 2"] and miss.why
    assert crash.rc == 1 and "without a VERDICT FAIL" in crash.why
    assert silent.rc == 0 and "no VERDICT line" in silent.why
    assert liar.rc == 0 and "despite a VERDICT FAIL" in liar.why
    assert b.summary([ok])[1] == 0
    for bad in (miss, crash, silent, liar):
        text, rc = b.summary([ok, bad])
        assert rc == 1 and f"failed: {bad.name}" in text
    text, _ = b.summary([ok, crash])
    assert "RuntimeError: boom" in text              # why: the last lines of its output
    # main over planted bench scripts
    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text("print('VERDICT PASS g: fine')\n")
    bad.write_text("print('VERDICT FAIL b: 2 > 1')\nraise SystemExit(1)\n")
    monkeypatch.setattr(b, "BENCHES", {"good": [str(good)], "bad": [str(bad)]})
    assert b.main(["--only", "good"]) == 0
    assert b.main(["--only", "good,bad"]) == 1
    out = capsys.readouterr().out
    assert "===== bench summary =====" in out and "VERDICT FAIL b: 2 > 1" in out


def test_sim_timing_not_measured_fails():
    from types import SimpleNamespace
    s = load("bench_sim")

    class TC(SimpleNamespace):
        def __str__(self):
            return "planted"
    assert s._timing(TC(ok=True, measured_frame=11664.0)) == (True, "planted")
    ok, text = s._timing(TC(ok=True, measured_frame=None))     # a run that stopped early
    assert not ok and "not measured" in text
    assert not s._timing(TC(ok=False, measured_frame=11664.0))[0]
