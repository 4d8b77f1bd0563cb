"""Folding files, validation and automatic folding."""
import json

import pytest

from dupnet.hw.analytic import pipeline_model
from dupnet.hw.folding import Folding, FoldingError, auto_folding, load_folding, validate_folding


def test_load_toml_and_json_roundtrip(tmp_path, small_cfg):
    f = Folding({"conv1": (2, 3), "conv2": (4, 2), "conv3": (2, 8), "conv4": (3, 4)},
                preadd=False)
    (tmp_path / "f.toml").write_text(f.to_toml())
    (tmp_path / "f.json").write_text(f.to_json())
    for name in ("f.toml", "f.json"):
        g = load_folding(tmp_path / name, small_cfg)
        assert g.layers == f.layers and g.preadd is False


@pytest.mark.parametrize("text,match", [
    ('[conv1]\npe = 3\nsimd = 1\n', "conv1.*'pe' \\(3\\) must divide C_out = 4"),
    ('[conv1]\npe = 1\nsimd = 4\n', "conv1.*'simd' \\(4\\) must divide C'"),
    ('[conv3]\npe = 1\nsimd = 3\n', "conv3.*'simd'"),
    ('[convX]\npe = 1\nsimd = 1\n', "unknown layer.*convX"),
    ('[conv1]\npe = 1\n', "conv1.*missing field 'simd'"),
    ('[conv1]\npe = "2"\nsimd = 1\n', "conv1.*'pe' must be a positive integer"),
    ('[conv1]\npe = 1\nsimd = 1\nfoo = 2\n', "unknown field.*foo"),
    ('[conv1\n', "not valid TOML"),
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
