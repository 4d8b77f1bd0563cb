"""Config validation (every error names file, layer and field), shipped configs, table numbers."""
import copy

import pytest

from dupnet.sw.config import (ConfigError, acc_bound, builtin_config_names, config_from_dict,
                              conv_geometries, load_config, network_geometry, parse_config,
                              signed_width, total_on_chip_bits)
from dupnet.sw.table import comparison_table, network_cost

BASE = {
    "name": "t", "weights": "binary",
    "input": {"height": 16, "width": 16, "channels": 3, "bits": 8},
    "head": {"classes": 1, "anchors": [[1.0, 1.0]]},
    "layers": [
        {"kind": "conv", "name": "c1", "k": 3, "out_channels": 8, "x_dup": 2, "act_bits": 2},
        {"kind": "maxpool", "name": "p1", "stride": 2},
        {"kind": "conv", "name": "c2", "k": 3, "out_channels": 16, "w_dup": 4, "act_bits": 2},
        {"kind": "maxpool", "name": "p2", "stride": 1},
        {"kind": "conv", "name": "c3", "k": 1, "out_channels": 6},
    ],
}


def _with(**edits):
    d = copy.deepcopy(BASE)
    for path, value in edits.items():
        node, keys = d, path.split("__")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        last = keys[-1]
        if isinstance(node, list):
            node[int(last)] = value
        elif value is _DEL:
            del node[last]
        else:
            node[last] = value
    return d


_DEL = object()


def _err(data, *fragments):
    with pytest.raises(ConfigError) as e:
        parse_config(data, source="net.toml")
    msg = str(e.value)
    assert msg.startswith("net.toml"), msg
    for f in fragments:
        assert f in msg, (f, msg)
    return msg


def test_base_is_valid():
    cfg = parse_config(copy.deepcopy(BASE), source="net.toml")
    assert [g.kind for g in network_geometry(cfg)] == ["conv", "maxpool", "conv", "maxpool",
                                                       "conv"]


def test_w_dup_not_dividing_names_layer_and_field():
    # c2 sees C' = 8 channels; w_dup 3 does not divide it
    _err(_with(layers__2__w_dup=3), "layer 2 (c2)", "'w_dup'", "C' = x_dup*C_in = 8")


def test_w_dup_with_x_dup_divisibility_uses_duplicated_channels():
    # C' = x_dup * C_in = 2*3 = 6 for c1 with x_dup=2: w_dup must divide that, but both > 1 is
    # rejected first
    _err(_with(layers__0__w_dup=2), "layer 0 (c1)", "'w_dup' (2) and 'x_dup' (2) are both > 1")


def test_unknown_keys_everywhere():
    _err(_with(colour="red"), "unknown field(s) 'colour'")
    _err(_with(input__depth=3), "[input]", "unknown field(s) 'depth'")
    _err(_with(head__grid=3), "[head]", "unknown field(s) 'grid'")
    _err(_with(layers__0__padding=1), "layer 0 (c1)", "unknown field(s) 'padding'")
    _err(_with(layers__1__k=2), "layer 1 (p1)", "unknown field(s) 'k'")


@pytest.mark.parametrize("bits,frag", [(0, "must be >= 1"), (9, "must be <= 8"),
                                       ("2", "must be an integer"), (True, "must be an integer")])
def test_bad_act_bits(bits, frag):
    _err(_with(layers__2__act_bits=bits), "layer 2 (c2)", "'act_bits'", frag)


def test_act_bits_presence_rules():
    _err(_with(layers__2__act_bits=_DEL), "layer 2 (c2)", "needs field 'act_bits'")
    _err(_with(layers__4__act_bits=2), "layer 4 (c3)", "remove field 'act_bits'")


def test_bad_input_bits_and_kernel_and_kind():
    _err(_with(input__bits=17), "[input]", "'bits'")
    _err(_with(layers__0__k=5), "layer 0 (c1)", "'k' must be one of [1, 3]")
    _err(_with(layers__1__kind="avgpool"), "layer 1", "'kind'")
    _err(_with(layers__1__stride=3), "layer 1 (p1)", "'stride'")
    _err(_with(weights="ternary"), "'weights'")


def test_pool_shrinking_below_one():
    d = _with(input__height=1)
    d["layers"][3]["stride"] = 2
    _err(d, "layer 1 (p1)", "below 1x1")


def test_odd_map_for_stride2():
    _err(_with(input__width=15), "layer 1 (p1)", "needs an even map, got 16x15")


def test_head_channel_mismatch():
    _err(_with(layers__4__out_channels=7), "layer 4 (c3)", "'out_channels'",
         "anchors*(5+classes) = 1*(5+1) = 6")
    _err(_with(head__classes=2), "layer 4 (c3)", "1*(5+2) = 7")


def test_structure_errors():
    _err(_with(layers=[{"kind": "maxpool"}]), "no conv layer")
    d = copy.deepcopy(BASE)
    d["layers"].append({"kind": "maxpool", "name": "p9"})
    _err(d, "layer 5 (p9)", "after the last conv")
    d = copy.deepcopy(BASE)
    d["layers"][1]["name"] = "c1"
    _err(d, "duplicate layer name 'c1'")
    _err(_with(head__anchors=[[1.0, -1.0]]), "anchors[0]")
    d = copy.deepcopy(BASE)
    del d["head"]
    _err(d, "missing required section 'head'")


def test_float_config_rejects_dups_and_act_bits():
    d = _with(weights="float")
    _err(d, "layer 0 (c1)", "need weights = \"binary\"")
    d = copy.deepcopy(BASE)
    d["weights"] = "float"
    for layer in d["layers"]:
        layer.pop("x_dup", None)
        layer.pop("w_dup", None)
    _err(d, "layer 0 (c1)", "float activations")


def test_unknown_config_name():
    with pytest.raises(ConfigError, match="unknown config 'no-such-net'.*dupnet-demo"):
        load_config("no-such-net")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("missing/net.toml")


def test_bad_toml_names_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("name = [\n")
    with pytest.raises(ConfigError, match=f"{p}: not valid TOML"):
        load_config(p)


@pytest.mark.parametrize("name", builtin_config_names())
def test_shipped_configs_load_and_round_trip(name):
    cfg = load_config(name)
    assert cfg.name == name
    again = config_from_dict(cfg.to_dict())
    assert again.to_dict() == cfg.to_dict()
    for g in conv_geometries(cfg):
        if cfg.is_binary:
            assert g.c_dup % g.w_dup == 0
            assert g.acc_max == g.k * g.k * g.c_dup * ((1 << g.in_bits) - 1)
            assert -(1 << (g.acc_bits - 1)) <= -g.acc_max
            assert g.acc_max <= (1 << (g.acc_bits - 1)) - 1
            assert g.acc_max > (1 << (g.acc_bits - 2)) - 1          # the width is tight


def test_builtin_names():
    assert {"dupnet-demo", "dupnet-tinier-yolo", "ifq-tinier-yolo", "tiny-yolo"} <= set(
        builtin_config_names())


def test_widths():
    assert acc_bound(3, 6, 8) == 9 * 6 * 255
    assert signed_width(-128, 127) == 8 and signed_width(-128, 128) == 9
    assert signed_width(-129, 0) == 9 and signed_width(0, 0) == 1


def test_table_numbers_reach_paper_claims():
    dup, ifq, tiny = (load_config(n) for n in ("dupnet-tinier-yolo", "ifq-tinier-yolo",
                                               "tiny-yolo"))
    cd, ci = network_cost(dup), network_cost(ifq)
    assert cd.size_bytes == total_on_chip_bits(dup) / 8
    assert cd.size_bytes / 1024 <= 36.9                     # paper: 36.9 KB
    assert ci.size_bytes / cd.size_bytes >= 6.5              # paper: 6.5x smaller than IFQ
    assert 1 - cd.compute / ci.compute >= 0.42               # paper: 42% less compute
    table = comparison_table([tiny, ifq, dup])
    assert "dupnet-tinier-yolo" in table and "36.9" in table
