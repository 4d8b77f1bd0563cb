"""The layer-kind extension point (dupnet.sw.layers): a new kind defined and registered here,
in the test file only, runs through config, geometry, both golden models, the artifact, the
QAT model, export and the equivalence check; unknown kinds are refused."""
import copy
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dupnet.sw.artifact import Artifact
from dupnet.sw.config import (ConfigError, config_from_dict, int_field, network_geometry,
                              parse_config)
from dupnet.sw.equivalence import compare_with_golden
from dupnet.sw.export import export_model
from dupnet.sw.golden import GoldenModel, ReferenceGoldenModel
from dupnet.sw.layers import (LayerContext, LayerKind, LayerKindError, find_kind, get_kind,
                              kind_names, register_kind, unregister_kind)
from dupnet.sw.qat import build_model
from dupnet.sw.random_artifact import random_artifact


# ---------------------------------------------------------------------------------------------
# The toy kind: 2x2 stride-2 sum of codes, shifted right: q = (a + b + c + d) >> shift.
# Its codes have step s * 2^(shift - 2) (s: the input step), so the real value is the 2x2
# average whatever the shift, and the output is (bits + 2 - shift) bits wide.

@dataclass(frozen=True)
class SumPoolSpec:
    name: str
    shift: int = 2
    kind: str = "sumpool"


@dataclass(frozen=True)
class SumPoolGeometry:
    index: int
    name: str
    shift: int
    height: int
    width: int
    channels: int
    bits: int

    kind = "sumpool"
    has_params = False
    is_last = False

    @property
    def out_height(self):
        return self.height // 2

    @property
    def out_width(self):
        return self.width // 2

    @property
    def out_channels(self):
        return self.channels

    @property
    def out_bits(self):
        return self.bits + 2 - self.shift

    @property
    def out_shape(self):
        return (self.out_height, self.out_width, self.out_channels)


class SumPool(nn.Module):
    """QAT module: the exact code op in the forward pass, the 2x2 average's gradient."""

    def __init__(self, shift: int):
        super().__init__()
        self.shift = shift

    def forward(self, x, scale=None):
        avg = F.avg_pool2d(x, 2)
        if scale is None:                          # float network: the average
            return avg, None
        codes = torch.floor(F.avg_pool2d(torch.round(x / scale), 2) * (4 / 2 ** self.shift))
        return avg + (codes * (scale * 2.0 ** (self.shift - 2)) - avg).detach(), codes


class SumPoolKind(LayerKind):
    name = "sumpool"
    fields = frozenset({"kind", "name", "shift"})
    default_name = "sum"

    def parse(self, raw, ctx: LayerContext):
        shift = int_field(ctx.where, "shift", raw.get("shift", 2), lo=0, hi=2)
        if ctx.is_first:
            raise ConfigError(f"{ctx.where}: a sum-pool needs codes; a conv must precede it")
        if ctx.height % 2 or ctx.width % 2:
            raise ConfigError(f"{ctx.where}: needs an even map, got {ctx.height}x{ctx.width}")
        return SumPoolSpec(name=ctx.name, shift=shift)

    def geometry(self, spec, index, height, width, channels, bits, is_last):
        return SumPoolGeometry(index, spec.name, spec.shift, height, width, channels, bits)

    def reference(self, g, params, x):                      # NHWC int64
        n, h, w, c = x.shape
        return x.reshape(n, h // 2, 2, w // 2, 2, c).sum(axis=(2, 4)) >> g.shift

    def forward(self, g, prepared, x):                      # [C, N, H, W], uint8 or int64
        x = x.astype(np.int64)
        return (x[:, :, 0::2, 0::2] + x[:, :, 1::2, 0::2] + x[:, :, 0::2, 1::2]
                + x[:, :, 1::2, 1::2]) >> g.shift

    def qat_module(self, g, cfg):
        return SumPool(g.shift)

    def qat_forward(self, g, module, x, scale, record):
        y, codes = module(x, scale)
        return y, ((y if codes is None else codes) if record else None)

    def qat_out_scale(self, g, module, scale):
        return scale * 2.0 ** (g.shift - 2)


@pytest.fixture
def sumpool():
    kind = register_kind(SumPoolKind())
    try:
        yield kind
    finally:
        unregister_kind(kind.name)
    assert find_kind("sumpool") is None


TOY = {
    "name": "toy", "weights": "binary",
    "input": {"height": 8, "width": 8, "channels": 1, "bits": 8},
    "head": {"classes": 1, "anchors": [[1.0, 1.0]]},
    "layers": [
        {"kind": "conv", "name": "c1", "k": 3, "out_channels": 4, "act_bits": 2},
        {"kind": "sumpool", "name": "s1", "shift": 1},
        {"kind": "conv", "name": "c2", "k": 3, "out_channels": 8, "w_dup": 2, "act_bits": 3},
        {"kind": "maxpool", "name": "p1", "stride": 1},
        {"kind": "sumpool"},
        {"kind": "conv", "name": "c3", "k": 1, "out_channels": 6},
    ],
}


def _toy(**layer_edits):
    d = copy.deepcopy(TOY)
    for i, edits in layer_edits.items():
        d["layers"][int(i[1:])].update(edits)
    return d


def _err(data, *fragments):
    with pytest.raises(ConfigError) as e:
        parse_config(data, source="toy.toml")
    for f in fragments:
        assert f in str(e.value), (f, str(e.value))
    return str(e.value)


def _images(n=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 8, 8, 1)).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# config and geometry

def test_new_kind_parses_and_walks(sumpool):
    cfg = parse_config(copy.deepcopy(TOY), source="toy.toml")
    assert [layer.kind for layer in cfg.layers] == ["conv", "sumpool", "conv", "maxpool",
                                                    "sumpool", "conv"]
    assert cfg.layers[4].name == "sum4" and cfg.layers[4].shift == 2
    assert config_from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()
    geoms = network_geometry(cfg)
    assert [g.kind for g in geoms] == [layer.kind for layer in cfg.layers]
    assert [g.out_shape for g in geoms] == [(8, 8, 4), (4, 4, 4), (4, 4, 8), (4, 4, 8),
                                            (2, 2, 8), (2, 2, 6)]
    assert geoms[1].out_bits == 3 and geoms[2].in_bits == 3     # 2-bit codes, sum >> 1
    assert geoms[4].out_bits == 3 and geoms[5].in_bits == 3
    assert [g.is_last for g in geoms] == [False] * 5 + [True]
    assert [g.has_params for g in geoms] == [True, False, True, False, False, True]


def test_new_kind_bad_fields_name_layer_and_field(sumpool):
    _err(_toy(L1={"shift": 5}), "toy.toml layer 1 (s1)", "field 'shift' must be <= 2")
    _err(_toy(L1={"shift": "1"}), "layer 1 (s1)", "field 'shift' must be an integer")
    _err(_toy(L1={"stride": 2}), "layer 1 (s1)", "unknown field(s) 'stride'",
         "allowed: kind, name, shift")
    d = copy.deepcopy(TOY)
    d["input"]["width"] = 6                   # 6 -> (sumpool) 3: the second one gets 3 wide
    _err(d, "layer 4 (sum4)", "needs an even map, got 4x3")


def test_new_kind_after_the_last_conv_is_refused(sumpool):
    d = copy.deepcopy(TOY)
    d["layers"].append({"kind": "sumpool", "name": "s9"})
    _err(d, "layer 6 (s9)", "after the last conv", "must end with a conv")


def test_unknown_kind_names_layer_and_lists_known_kinds(sumpool):
    msg = _err(_toy(L1={"kind": "avgpool"}), "toy.toml layer 1 (s1)", "field 'kind'",
               "'avgpool'")
    assert "'conv', 'maxpool' or 'sumpool'" in msg


def test_unknown_kind_without_the_toy():
    assert find_kind("sumpool") is None
    _err(copy.deepcopy(TOY), "layer 1 (s1)", "field 'kind' must be 'conv' or 'maxpool', "
                                             "got 'sumpool'")
    d = copy.deepcopy(TOY)
    del d["layers"][1]["name"]
    _err(d, "layer 1 (layer1)", "got 'sumpool'")             # never named (or run) as a pool
    _err(_toy(L1={"kind": ["maxpool"]}), "layer 1 (s1)", "got ['maxpool']")


def test_registry_errors(sumpool):
    with pytest.raises(LayerKindError, match=r"unknown layer kind 'avgpool'; known kinds: "
                                             r"conv, maxpool, sumpool"):
        get_kind("avgpool")
    with pytest.raises(LayerKindError, match="'sumpool' is already registered"):
        register_kind(SumPoolKind())
    with pytest.raises(LayerKindError, match="'conv' is already registered"):
        register_kind(type("Conv2", (SumPoolKind,), {"name": "conv"})())
    with pytest.raises(LayerKindError, match="non-empty name"):
        register_kind(LayerKind())
    with pytest.raises(LayerKindError, match="unknown layer kind 'nope'"):
        unregister_kind("nope")
    assert kind_names()[:2] == ("conv", "maxpool") and "sumpool" in kind_names()
    assert get_kind("sumpool") is sumpool


def test_code_asking_for_an_unregistered_kind(sumpool):
    cfg = parse_config(copy.deepcopy(TOY), source="toy.toml")
    unregister_kind("sumpool")
    try:
        with pytest.raises(LayerKindError, match="unknown layer kind 'sumpool'; known kinds: "
                                                 "conv, maxpool"):
            network_geometry(cfg)
    finally:
        register_kind(sumpool)


# ---------------------------------------------------------------------------------------------
# golden models and the artifact

def test_golden_models_run_the_new_kind_and_agree(sumpool):
    cfg = parse_config(copy.deepcopy(TOY), source="toy.toml")
    art = Artifact.from_bytes(random_artifact(cfg, seed=3).to_bytes())
    assert sorted(art.layers) == [0, 2, 5]                  # no params for the pools
    images = _images()
    ref, fast = ReferenceGoldenModel(art).forward(images), GoldenModel(art).forward(images)
    assert len(ref) == len(fast) == 6
    for a, b in zip(ref, fast):
        assert a.dtype == b.dtype == np.int64 and np.array_equal(a, b)
    c1 = ref[0]                                             # the toy op, by hand
    want = (c1[:, 0::2, 0::2] + c1[:, 1::2, 0::2] + c1[:, 0::2, 1::2] + c1[:, 1::2, 1::2]) >> 1
    assert np.array_equal(ref[1], want) and ref[1].max() <= 7
    assert np.array_equal(GoldenModel(art)(images), ref[-1])
    # the base class's default fast path (reference on the transposed array) agrees too
    g = network_geometry(cfg)[1]
    planes = np.ascontiguousarray(c1.transpose(3, 0, 1, 2)).astype(np.uint8)
    assert np.array_equal(LayerKind.forward(sumpool, g, None, planes),
                          sumpool.forward(g, None, planes))


# ---------------------------------------------------------------------------------------------
# QAT model, export, equivalence

def _calibrate(model, x):
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    model.train()
    with torch.no_grad():
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        model(x)
    model.eval()


def test_qat_model_runs_and_exports_the_new_kind(sumpool):
    cfg = parse_config(copy.deepcopy(TOY), source="toy.toml")
    torch.manual_seed(0)
    model = build_model(cfg)
    assert isinstance(model.layers[1], SumPool) and isinstance(model.layers[4], SumPool)
    images = _images(4, seed=1)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    model.train()
    out = model(x)
    assert out.shape == (4, 6, 2, 2)
    out.pow(2).mean().backward()                            # gradients flow through the toy
    assert model.layers[0].conv.quant.weight.grad.abs().sum() > 0
    _calibrate(model, x)
    with torch.no_grad():
        codes = model.forward_layers(x)
    c1, s1 = codes[0].numpy().astype(np.int64), codes[1].numpy().astype(np.int64)
    assert np.array_equal(s1, (c1[:, :, 0::2, 0::2] + c1[:, :, 1::2, 0::2]
                               + c1[:, :, 0::2, 1::2] + c1[:, :, 1::2, 1::2]) >> 1)
    art = export_model(model, cfg)
    assert sorted(art.layers) == [0, 2, 5]
    rep = compare_with_golden(model, Artifact.from_bytes(art.to_bytes()), images)
    assert rep["mismatches"] == rep["mismatches_at_ties"] == 0, rep["per_layer"]
    assert rep["acc_equal"] and rep["head_forward_err"] == 0
    assert [name for name, _, _ in rep["per_layer"]] == ["c1", "s1", "c2", "p1", "sum4"]


def test_float_network_with_the_new_kind(sumpool):
    d = copy.deepcopy(TOY)
    d["weights"] = "float"
    for layer in d["layers"]:
        for key in ("act_bits", "w_dup"):
            layer.pop(key, None)
    cfg = parse_config(d, source="toy.toml")
    model = build_model(cfg)
    x = torch.from_numpy(_images(2)).permute(0, 3, 1, 2).float()
    outs = model.forward_layers(x)
    assert model(x).shape == (2, 6, 2, 2)
    assert torch.allclose(outs[1], F.avg_pool2d(outs[0], 2))
