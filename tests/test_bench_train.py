"""scripts/bench_train.py: the statistics, the table and the verdict rule on planted numbers
(no training), and one tiny real run (2 seeds, 1 epoch, 32 images) that is reused, extended
and refused as the resume rules say."""
from __future__ import annotations

import json
import math
import statistics

import pytest

from .test_bench_verdicts import load, oks


def _runs(aps: dict[str, list[float]]) -> list[dict]:
    out = []
    for variant, values in aps.items():
        config, _, recipe = variant.partition(" +")
        for seed, ap in enumerate(values):
            out.append({"variant": variant, "config": config, "recipe": recipe, "seed": seed,
                        "ap": ap, "detection_rate": ap - 0.05, "fp": 105, "epochs": 60,
                        "train_s": 100.0 + seed, "images_per_s": 300.0})
    return out


COSTS = {"dupnet-demo": {"weights": "binary", "size_bytes": 5876, "binary_ops": 7305216,
                         "float_ops": 1536, "compute": 7306752,
                         "bare_step_images_per_s": 290.0},
         "dupnet-demo-ifq": {"weights": "binary", "size_bytes": 9492, "binary_ops": 12435456,
                             "float_ops": 1536, "compute": 12436992},
         "dupnet-demo-float": {"weights": "float", "size_bytes": 243264, "binary_ops": 0,
                               "float_ops": 24870912, "compute": 24870912}}


def test_statistics():
    t = load("bench_train")
    assert t.mean_std([0.8, 0.9, 1.0]) == (pytest.approx(0.9), pytest.approx(0.1))
    assert t.mean_std([0.5]) == (0.5, 0.0)
    assert all(math.isnan(x) for x in t.mean_std([]))
    a, b = [0.86, 0.87, 0.88], [0.85, 0.87, 0.89]
    se = math.sqrt(statistics.variance(a) / 3 + statistics.variance(b) / 3)
    assert t.diff_se(a, b) == pytest.approx(se)
    assert math.isnan(t.diff_se([0.8], b))
    assert t.ap_tolerance(a, b) == pytest.approx(max(0.01, 2 * se))
    assert t.ap_tolerance([0.8], b) == 0.01                       # one seed: the floor alone
    wide = [0.70, 0.80, 0.90]
    assert t.ap_tolerance(wide, b) == pytest.approx(2 * t.diff_se(wide, b)) and \
        t.ap_tolerance(wide, b) > 0.1


@pytest.mark.parametrize("dup, ifq, ok", [
    ([0.87, 0.88, 0.86], [0.86, 0.86, 0.87], True),               # better
    ([0.84, 0.85, 0.83], [0.86, 0.86, 0.87], False),              # 2.3 points worse, tight
    ([0.80, 0.90, 0.85], [0.86, 0.88, 0.87], True),               # 2 points worse, wide spread
    ([0.855], [0.86], True),                                      # one seed, within 0.01
    ([0.845], [0.86], False),                                     # one seed, beyond 0.01
])
def test_ap_verdict_uses_the_measured_spread(dup, ifq, ok):
    t = load("bench_train")
    summary = t.summarize(_runs({"dupnet-demo": dup, "dupnet-demo-ifq": ifq}), COSTS)
    vs = t.verdicts(summary)
    assert oks(vs) == [True, True, ok]
    assert f"over {len(dup)} seeds" in vs[2].line and "tolerance" in vs[2].line


def test_summary_table_and_recipe_lines():
    t = load("bench_train")
    runs = _runs({"dupnet-demo-float": [0.94, 0.95, 0.93],
                  "dupnet-demo": [0.87, 0.88, 0.86], "dupnet-demo-ifq": [0.86, 0.86, 0.87],
                  "dupnet-demo +init": [0.91, 0.92, 0.90],
                  "dupnet-demo +distill": [0.87, 0.89, 0.86]})
    s = t.summarize(runs, COSTS)
    assert [r["variant"] for r in s] == ["dupnet-demo-float", "dupnet-demo", "dupnet-demo-ifq",
                                         "dupnet-demo +init", "dupnet-demo +distill"]
    d = s[1]
    assert d["n"] == 3 and d["seeds"] == [0, 1, 2]
    assert d["ap_mean"] == pytest.approx(0.87) and d["ap_std"] == pytest.approx(0.01)
    assert d["size_bytes"] == 5876 and d["train_s_mean"] == pytest.approx(101.0)
    assert s[3]["recipe"] == "init" and s[3]["size_bytes"] == 5876     # costs by config
    md = t.markdown_table(s)
    assert "| dupnet-demo | binary | 3 | 0.870 +- 0.010 |" in md
    assert "| 5.7 | 7.3 M | 7.3 M |" in md and "| 237.6 | 0.0 M | 24.9 M |" in md
    assert "1.62x smaller, 41% less compute, AP +0.7 points" in md
    lines = t.recipe_lines(s)
    assert lines[0].startswith("recipe dupnet-demo +init vs dupnet-demo: AP +4.0 +- ")
    assert lines[0].endswith("helps (beyond the spread)")
    assert lines[1].endswith("within the spread")
    assert t.markdown_table([]).startswith("(no network trained)")


def test_plan_and_options(tmp_path):
    t = load("bench_train")
    args = t.parse_args(["--recipes", "init,distill", "--out", str(tmp_path), "--epochs", "7",
                         "--distill-weight", "0.5"])
    assert [v.label for v in t.plan(args)] == [
        "dupnet-demo-float", "dupnet-demo", "dupnet-demo-ifq", "dupnet-demo +init",
        "dupnet-demo +distill"]
    o = t.run_options(args, t.Variant("dupnet-demo", "init+distill"), 2)
    twin = str(tmp_path / "dupnet-demo-float" / "seed2")
    assert (o.seed, o.epochs, o.init_from, o.distill_from, o.distill_weight) == \
        (2, 7, twin, twin, 0.5)
    assert t.run_options(args, t.Variant("dupnet-demo"), 0).init_from is None
    args = t.parse_args(["dupnet-demo", "--recipes", "init"])
    assert [v.label for v in t.plan(args)] == ["dupnet-demo-float", "dupnet-demo",
                                               "dupnet-demo +init"]
    with pytest.raises(SystemExit):
        t.parse_args(["--recipes", "magic"])


def test_tiny_run_is_reused_resumed_and_refused(tmp_path, capsys):
    """A real run (about 20 s on one core): 2 seeds x 4 variants, then the same command
    again (every run reused), then one more epoch (resumed), then other data (refused)."""
    t = load("bench_train")
    base = ["dupnet-demo", "dupnet-demo-ifq", "--recipes", "init,distill", "--n-train", "32",
            "--n-test", "8", "--threads", "1", "--quiet", "--out", str(tmp_path)]
    rc = t.main(base + ["--seeds", "2", "--epochs", "1"])
    out = capsys.readouterr()
    assert rc in (0, 1) and "VERDICT" in out.out and "AP@0.5 mean +- std" in out.out
    doc = json.loads((tmp_path / "bench-train.json").read_text())
    assert [r["variant"] for r in doc["summary"]] == [
        "dupnet-demo-float", "dupnet-demo", "dupnet-demo-ifq", "dupnet-demo +init",
        "dupnet-demo +distill"]
    assert all(r["n"] == 2 for r in doc["summary"]) and len(doc["runs"]) == 10
    assert {r["how"] for r in doc["runs"]} == {"trained"}
    assert (tmp_path / "bench-train.md").read_text().startswith("| network |")
    assert t.main(base + ["--seeds", "2", "--epochs", "1"]) == rc
    doc2 = json.loads((tmp_path / "bench-train.json").read_text())
    assert {r["how"] for r in doc2["runs"]} == {"reused"}
    assert [r["ap"] for r in doc2["runs"]] == [r["ap"] for r in doc["runs"]]
    capsys.readouterr()
    t.main(base + ["--seeds", "1", "--epochs", "2"])
    doc3 = json.loads((tmp_path / "bench-train.json").read_text())
    assert {r["how"] for r in doc3["runs"]} == {"resumed after epoch 1"}
    assert all(r["epochs"] == 2 for r in doc3["runs"])
    with pytest.raises(SystemExit, match="n_train: 32 -> 16"):
        t.main([a if a != "32" else "16" for a in base] + ["--seeds", "1", "--epochs", "2"])
