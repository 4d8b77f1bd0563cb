"""Folding files, validation and automatic folding."""
import json

import pytest

from dupnet.hw.pipeline import pipeline_model
from dupnet.hw.autofold import auto_folding
from dupnet.hw.folded import FoldingError
from dupnet.hw.folding import Folding, load_folding, validate_folding


def test_load_toml_and_json_roundtrip(tmp_path, small_cfg):
    f = Folding({"conv1": (2, 3), "conv2": (4, 2), "conv3": (2, 8), "conv4": (3, 4)},
                preadd=False)
    (tmp_path / "f.toml").write_text(f.to_toml())
    (tmp_path / "f.json").write_text(f.to_json())
    for name in ("f.toml", "f.json"):
        g = load_folding(tmp_path / name, small_cfg)
        assert g.layers == f.layers and g.preadd is False and g.arith == "xnor"
    f.arith = "gated"
    (tmp_path / "g.toml").write_text(f.to_toml())
    assert load_folding(tmp_path / "g.toml", small_cfg).arith == "gated"
    f.kp = {"conv1": 3, "conv3": 3}
    (tmp_path / "k.toml").write_text(f.to_toml())
    (tmp_path / "k.json").write_text(f.to_json())
    for name in ("k.toml", "k.json"):
        g = load_folding(tmp_path / name, small_cfg)
        assert g.kp == {"conv1": 3, "conv3": 3} and g.kernel_positions("conv2") == 1


@pytest.mark.parametrize("text,match", [
    ('[conv1]\npe = 3\nsimd = 1\n', "conv1.*'pe' \\(3\\) must divide C_out = 4"),
    ('[conv1]\npe = 1\nsimd = 4\n', "conv1.*'simd' \\(4\\) must divide C'"),
    ('[conv3]\npe = 1\nsimd = 3\n', "conv3.*'simd'"),
    ('[convX]\npe = 1\nsimd = 1\n', "unknown layer.*convX"),
    ('[conv1]\npe = 1\n', "conv1.*missing field 'simd'"),
    ('[conv1]\npe = "2"\nsimd = 1\n', "conv1.*'pe' must be a positive integer"),
    ('[conv1]\npe = 1\nsimd = 1\nfoo = 2\n', "unknown field.*foo"),
    ('[conv1]\npe = 1\nsimd = 1\nkp = 2\n', "conv1.*'kp' \\(2\\) must be 1 or the kernel size"),
    ('[conv1]\npe = 1\nsimd = 1\nkp = 0\n', "conv1.*'kp' must be a positive integer"),
    ('[conv1\n', "not valid TOML"),
    ('arith = "fast"\n[conv1]\npe = 1\nsimd = 1\n', "field 'arith' must be one of 'xnor'"),
])
def test_bad_folding_files(tmp_path, small_cfg, text, match):
    p = tmp_path / "bad.toml"
    full = text
    if "conv1]" in text and "convX" not in text and "[conv1\n" != text:
        full += "".join(f"[{n}]\npe = 1\nsimd = {s}\n" for n, s in
                        (("conv2", 1), ("conv3", 4), ("conv4", 1)) if f"[{n}]" not in text)
    p.write_text(full)
    with pytest.raises(FoldingError, match=match):
        load_folding(p, small_cfg)


def test_missing_layer_and_w_dup_compat(small_cfg):
    with pytest.raises(FoldingError, match="conv4.*missing"):
        validate_folding(small_cfg, Folding({"conv1": (1, 1), "conv2": (1, 1), "conv3": (1, 4)}))
    # conv3 has w_dup = 4, C' = 8: SIMD 2 and 8 are fine (one divides the other), 1 too
    for s in (1, 2, 4, 8):
        validate_folding(small_cfg, Folding({"conv1": (1, 1), "conv2": (1, 1), "conv3": (1, s),
                                             "conv4": (1, 1)}))


def test_file_not_found(tmp_path):
    with pytest.raises(FoldingError, match="not found"):
        load_folding(tmp_path / "nope.toml")
    (tmp_path / "x.yaml").write_text("a: 1")
    with pytest.raises(FoldingError, match=".toml or .json"):
        load_folding(tmp_path / "x.yaml")


def test_auto_folding_target(small_cfg):
    for target in (20_000, 5_000, 1_000):
        f = auto_folding(small_cfg, target_cycles=target)
        validate_folding(small_cfg, f)
        pm = pipeline_model(small_cfg, f)
        assert pm.cycles_per_frame <= target
    loose = pipeline_model(small_cfg, auto_folding(small_cfg, target_cycles=20_000))
    tight = pipeline_model(small_cfg, auto_folding(small_cfg, target_cycles=1_000))
    assert tight.lut_estimate > loose.lut_estimate


def test_auto_folding_impossible(small_cfg):
    with pytest.raises(FoldingError, match="impossible.*input stream"):
        auto_folding(small_cfg, target_cycles=10)
    with pytest.raises(FoldingError, match="impossible"):
        auto_folding(small_cfg, lut_budget=10)
    with pytest.raises(FoldingError, match="exactly one"):
        auto_folding(small_cfg)


def test_auto_folding_lut_budget(small_cfg):
    big = auto_folding(small_cfg, lut_budget=10**7)
    small_budget = pipeline_model(small_cfg, auto_folding(small_cfg, target_cycles=10**9))
    budget = small_budget.lut_estimate + 600
    f = auto_folding(small_cfg, lut_budget=budget)
    pm = pipeline_model(small_cfg, f)
    assert pm.lut_estimate <= budget
    assert pm.cycles_per_frame <= small_budget.cycles_per_frame
    assert pipeline_model(small_cfg, big).cycles_per_frame <= pm.cycles_per_frame
    json.dumps(pm.to_json())


def test_auto_folding_demo_below_kernel_floor_names_the_layer():
    """dupnet-demo at 12287 cycles/frame: conv1 (64x64, k=3) needs 64*64*3 = 12288 even
    fully unfolded (one row of the kernel per cycle) -> a FoldingError naming conv1, not a bare
    AssertionError; 12288 itself works, with KP = k in conv1 (36864 cycles/frame, the floor of
    one kernel position per cycle, is met with KP = 1)."""
    from dupnet.sw.config import load_config
    cfg = load_config("dupnet-demo")
    with pytest.raises(FoldingError, match=r"conv1.*H\*W\*k = 64\*64\*3 = 12288"):
        auto_folding(cfg, target_cycles=12287)
    f = auto_folding(cfg, target_cycles=12288)
    assert pipeline_model(cfg, f).cycles_per_frame <= 12288
    assert f.kernel_positions("conv1") == 3
    assert auto_folding(cfg, target_cycles=36864).kernel_positions("conv1") == 1


def test_auto_folding_every_target_folds_or_says_why(small_cfg):
    """Around every reachable per-layer cycle count: a folding that meets the target, or a
    FoldingError (never another exception)."""
    from dupnet.hw.analytic import layer_model
    from dupnet.hw.folded import FoldedConv
    from dupnet.sw.config import conv_geometries, load_config

    def folds_within(cfg, field, limit, **request):
        """auto_folding(**request) meets ``limit`` on the model's ``field``, or says it is
        impossible."""
        try:
            f = auto_folding(cfg, **request)
        except FoldingError as e:
            assert "impossible" in str(e)
            return
        assert getattr(pipeline_model(cfg, f), field) <= limit

    for cfg in (small_cfg, load_config("dupnet-demo")):
        cycles = sorted({layer_model(g, pe, s).cycles_per_frame for g in conv_geometries(cfg)
                         for pe, s in FoldedConv.candidates(g)})
        for t in sorted({c + d for c in cycles for d in (-1, 0)}):
            folds_within(cfg, "cycles_per_frame", t, target_cycles=t)
        for budget in (1, 10**3, 10**4, 10**5, 10**6):
            folds_within(cfg, "lut_estimate", budget, lut_budget=budget)


@pytest.mark.parametrize("kw,match", [
    ({"target_cycles": 10**6, "pixels_per_beat": 0}, "pixels_per_beat"),
    ({"target_cycles": 10**6, "pixels_per_beat": 5}, "pixels_per_beat"),
    ({"target_cycles": 0}, "positive integer"),
    ({"target_cycles": 1.5}, "positive integer"),
    ({"lut_budget": -3}, "positive integer"),
])
def test_auto_folding_bad_arguments(small_cfg, kw, match):
    with pytest.raises(FoldingError, match=match):
        auto_folding(small_cfg, **kw)


def test_auto_folding_kp_policy():
    """``kp_policy="cheapest"`` emits a row of the window per beat wherever that option has the
    smaller LUT estimate for the same target, so the design is never larger in LUTs and meets
    the same target; "needed" only where one position per beat cannot meet it. On
    dupnet-tinier-yolo at 519,168 cycles/frame the policies differ (conv2-6 get KP = 3)."""
    from dupnet.sw.config import load_config
    cfg = load_config("dupnet-tinier-yolo")
    target = 519_168
    needed = auto_folding(cfg, target_cycles=target)
    cheapest = auto_folding(cfg, target_cycles=target, kp_policy="cheapest")
    pn, pc = pipeline_model(cfg, needed), pipeline_model(cfg, cheapest)
    assert pn.cycles_per_frame <= target and pc.cycles_per_frame <= target
    assert pc.lut_estimate < pn.lut_estimate
    assert set(needed.kp) == {"conv1"}
    assert {"conv2", "conv3", "conv4", "conv5", "conv6"} <= set(cheapest.kp)
    with pytest.raises(FoldingError, match="kp_policy must be one of needed, cheapest, got 'x'"):
        auto_folding(cfg, target_cycles=target, kp_policy="x")


def test_device_fit_keeps_the_faster_kp_policy(monkeypatch):
    """``fit_device`` runs the fastest-fitting search once per KP policy and keeps the design
    with fewer cycles/frame (ties: fewer LUTs)."""
    from dupnet.hw.budget import devicefit
    from dupnet.hw.budget.devices import load_devices
    from dupnet.sw.config import load_config
    seen = []
    real = devicefit._fastest

    def spy(config, device, calib, margin, clock_mhz, most, kp_policy):
        p = real(config, device, calib, margin, clock_mhz, most, kp_policy)
        seen.append((kp_policy, p.model.cycles_per_frame, p.estimate["lut"]))
        return p
    monkeypatch.setattr(devicefit, "_fastest", spy)
    cfg = load_config("dupnet-demo")
    p = devicefit.fit_device(cfg, load_devices()["ecp5-25f"])
    assert [s[0] for s in seen] == ["needed", "cheapest"]
    assert (p.model.cycles_per_frame, p.estimate["lut"]) == min((c, l) for _, c, l in seen)
    assert p.fit.fits


def test_bank_field_roundtrip_and_errors(tmp_path, small_cfg):
    """``bank = [...]``: written and read back (TOML, JSON); unknown layers, a ROM design,
    the last layer and a bank whose streams outrun its read port are refused by name."""
    f = Folding({"conv1": (1, 1), "conv2": (1, 1), "conv3": (1, 4), "conv4": (1, 1)},
                preadd=False, weights="load", bank=("conv2", "conv3"))
    for name, text in (("b.toml", f.to_toml()), ("b.json", f.to_json())):
        (tmp_path / name).write_text(text)
        assert load_folding(tmp_path / name, small_cfg).bank == ("conv2", "conv3")
    bad = {"unknown": (dict(bank=("conv9",)), r"field 'bank' names unknown conv layer\(s\) "
                                              r"'conv9'"),
           "rom": (dict(weights="rom"), r"layer 2 \(conv2\): streamed \(banked\) weights need "
                                        r"weights = \"load\""),
           "last": (dict(bank=("conv4",)), r"layer 5 \(conv4\): streamed \(banked\)"),
           "fast": (dict(layers={"conv1": (2, 3), "conv2": (4, 2), "conv3": (2, 8),
                                 "conv4": (3, 4)}, preadd=True),
                    r"field 'bank': stream bank over-subscribed: .*conv3.t_rom")}
    import dataclasses
    for key, (change, msg) in bad.items():
        with pytest.raises(FoldingError, match=msg):
            validate_folding(small_cfg, dataclasses.replace(f, **change))
    with pytest.raises(FoldingError, match="field 'bank' must be a list of conv layer names"):
        (tmp_path / "x.json").write_text(json.dumps({**f.to_dict(), "bank": "conv2"}))
        load_folding(tmp_path / "x.json", small_cfg)
