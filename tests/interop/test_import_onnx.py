"""`dupnet import-onnx`: our own graphs round-trip to the same network; weight duplication is
found in the weights; everything outside the hardware's kinds is refused by name."""
from __future__ import annotations

import numpy as np
import pytest

from dupnet.cli import main
from dupnet.sw.artifact import Artifact
from dupnet.sw.config import load_config
from dupnet.sw.golden import GoldenModel
from dupnet.sw.onnx_common import META_CONFIG, OnnxImportError
from dupnet.sw.onnx_export import compare_with_golden, describe_checks, export_onnx, save_onnx
from dupnet.sw.onnx_import import import_onnx, integer_thresholds
from dupnet.sw.random_artifact import random_artifact

from .cases import SMALL_CONFIGS, images


def _same_network(a, b, imgs):
    for x, y in zip(GoldenModel(a).forward(imgs), GoldenModel(b).forward(imgs)):
        assert np.array_equal(x, y)


@pytest.mark.parametrize("name", ["dupnet-demo", "tiny-s1", "sim-dup", "sim-odd"])
@pytest.mark.parametrize("shared", [False, True])
def test_round_trip_is_the_same_artifact(name, shared):
    art = random_artifact(SMALL_CONFIGS[name](), seed=7, saturate_fraction=0.2)
    res = import_onnx(export_onnx(art, shared_weights=shared))
    back = res.artifact
    assert back.config.to_dict() == art.config.to_dict()
    for i, p in art.layers.items():
        q = back.layers[i]
        assert np.array_equal(q.weights, p.weights)
        if p.thresholds is None:
            assert np.array_equal(q.scale, p.scale) and np.array_equal(q.bias, p.bias)
        else:
            assert np.array_equal(q.thresholds, p.thresholds)
    assert res.ties == 0


def test_offset_form_imports_to_the_same_network():
    cfg = SMALL_CONFIGS["dupnet-demo"]()
    art = random_artifact(cfg, seed=8, saturate_fraction=0.2)
    back = import_onnx(export_onnx(art, offset_form=True)).artifact
    assert back.config.to_dict() == art.config.to_dict()
    _same_network(art, back, images(cfg, 2, 8))


def _without_hints(model):
    keep = [p for p in model.metadata_props if p.key != META_CONFIG]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    return model


def test_weight_duplication_is_found_in_the_weights():
    """Without the exporter's config hint, w_dup comes from the weights alone (adjacent input
    channels sharing every bit); --no-w-dup keeps the weights expanded, the same network."""
    cfg = load_config("dupnet-demo")
    art = random_artifact(cfg, seed=9)
    model = _without_hints(export_onnx(art))
    found = import_onnx(model).artifact
    assert [getattr(s, "w_dup", None) for s in found.config.layers] == \
        [getattr(s, "w_dup", None) for s in cfg.layers]
    plain = import_onnx(model, detect_w_dup=False).artifact
    assert all(getattr(s, "w_dup", 1) == 1 for s in plain.config.layers)
    imgs = images(cfg, 2, 9)
    _same_network(art, found, imgs)
    _same_network(art, plain, imgs)
    assert found.config.classes == 1 and len(found.config.anchors) == 2


def test_integer_thresholds_brute_force():
    """Every accumulator of a small range, every channel kind (positive, negative, zero slope,
    strict and non-strict, thresholds beyond the range): the integer comparison equals the
    real one."""
    acc_max = 40
    a = np.array([0.3, -0.7, 0.0, 0.0, 2.0, -1e-9])
    c = np.array([1.1, -2.0, 0.5, -0.5, 0.0, 0.25])
    r = np.array([[-5.0, 0.0, 3.3], [-30.0, 1.0, 12.0], [0.5, 0.6, 1.0], [-1.0, 0.0, 9.0],
                  [-100.0, 4.0, 80.0], [0.0, 0.25, 1.0]])
    acc = np.arange(-acc_max, acc_max + 1)
    for strict in (False, True):
        t, negate, _ = integer_thresholds(a, c, r, np.full(r.shape, strict), acc_max)
        assert np.all(np.diff(t, axis=1) >= 0)
        for o in range(len(a)):
            y = a[o] * acc + c[o]
            real = (y[:, None] > r[o]) if strict else (y[:, None] >= r[o])
            acc_s = -acc if negate[o] else acc
            assert np.array_equal(acc_s[:, None] >= t[o], real), (o, strict)


# -- refusals: each names the file, the node and why ------------------------------------


def _demo_model():
    return export_onnx(random_artifact(SMALL_CONFIGS["sim-dup"](), seed=1))


def _node(model, name):
    return next(n for n in model.graph.node if n.name == name)


def _set_attr(node, name, value):
    import onnx
    keep = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(keep + [onnx.helper.make_attribute(name, value)])


def _weights(model, name, fn):
    from onnx import numpy_helper
    t = next(t for t in model.graph.initializer if t.name == name)
    t.CopyFrom(numpy_helper.from_array(fn(numpy_helper.to_array(t).copy()), name))


def _strided(m):
    _set_attr(_node(m, "conv2"), "strides", [2, 2])


def _grouped(m):
    _set_attr(_node(m, "conv2"), "group", 2)


def _pool3(m):
    _set_attr(_node(m, "pool1"), "kernel_shape", [3, 3])


def _ternary(m):
    def f(w):
        w[0, 0, 0, 0] = 0.0
        return w
    _weights(m, "conv2.weight", f)


def _signed_codes(m):
    _set_attr(_node(m, "conv1.threshold"), "out_bias", -1.0)


def _gemm(m):
    _node(m, "pool2").op_type = "GlobalAveragePool"


def _two_convs(m):
    # pool1 reads conv1's accumulators: no activation in between
    m.graph.node.remove(_node(m, "conv1.threshold"))
    _node(m, "pool1").input[0] = "conv1.acc"


REFUSALS = {
    "strided conv": (_strided, "node 'conv2' (Conv)", "strides [2, 2]"),
    "grouped conv": (_grouped, "node 'conv2' (Conv)", "group 2"),
    "3x3 pool": (_pool3, "node 'pool1' (MaxPool)", "kernel [3, 3]"),
    "non-binary weights": (_ternary, "node 'conv2.weight_quant' (BipolarQuant)", None),
    "signed codes": (_signed_codes, "node 'conv2' (Conv)", "offset"),
    "unsupported op": (_gemm, "node 'pool2' (GlobalAveragePool)", "no counterpart"),
    "no activation": (_two_convs, "node 'pool1' (MaxPool)", "max-pool must read codes"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refused_with_the_node_and_why(case):
    mutate, node, why = REFUSALS[case]
    m = _demo_model()
    mutate(m)
    if case == "non-binary weights":
        # BipolarQuant makes any latent weight binary: the refusal needs raw weights
        bq = _node(m, "conv2.weight_quant")
        _node(m, "conv2").input[1] = "conv2.weight"
        m.graph.node.remove(bq)
        node, why = "node 'conv2' (Conv)", "weights are not binary"
    with pytest.raises(OnnxImportError) as e:
        import_onnx(m, where="bad.onnx")
    msg = str(e.value)
    assert msg.startswith("bad.onnx: ") and node in msg and why in msg, msg


def test_network_must_end_with_a_conv():
    m = _demo_model()
    for n in [n for n in m.graph.node if n.name.startswith("conv3")]:
        m.graph.node.remove(n)
    del m.graph.output[:]
    import onnx
    m.graph.output.append(onnx.helper.make_tensor_value_info("pool2.codes",
                                                            onnx.TensorProto.FLOAT, None))
    with pytest.raises(OnnxImportError, match="must end with a conv"):
        import_onnx(m)


# -- the command -------------------------------------------------------------------------


def test_cli_import_writes_artifact_config_and_threshold_graph(tmp_path, capsys):
    from dupnet.sw.config import load_config as load
    cfg = SMALL_CONFIGS["sim-dup"]()
    art = random_artifact(cfg, seed=3)
    save_onnx(_without_hints(export_onnx(art)), tmp_path / "m.onnx")
    rc = main(["import-onnx", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.dupnet"),
               "--config-out", str(tmp_path / "m.toml"), "--streamlined-out",
               str(tmp_path / "s.onnx"), "--anchors", "1.5,2"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "conv1" in out and "<- node 'conv1' (Conv)" in out
    back = Artifact.load(tmp_path / "m.dupnet")
    assert load(tmp_path / "m.toml").to_dict() == back.config.to_dict()
    assert back.config.name == "m" and back.config.anchors == ((1.5, 2.0),)
    _same_network(art, back, images(cfg, 2, 3))
    from dupnet.sw.onnx_common import load_model
    checks = compare_with_golden(back, load_model(tmp_path / "s.onnx"), images(cfg, 2, 3))
    assert all(c.ok for c in checks), describe_checks(checks)


def test_cli_import_errors_are_messages(tmp_path, capsys):
    m = _demo_model()
    _strided(m)
    save_onnx(m, tmp_path / "bad.onnx")
    assert main(["import-onnx", str(tmp_path / "bad.onnx"), "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "dupnet import-onnx: error:" in err and "node 'conv2' (Conv)" in err
    assert "Traceback" not in err and not (tmp_path / "x").exists()
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    assert main(["import-onnx", str(tmp_path / "junk.onnx"), "-o", str(tmp_path / "x")]) == 2
    assert "not a readable ONNX model" in capsys.readouterr().err
    save_onnx(_demo_model(), tmp_path / "ok.onnx")
    for opt in (["--anchors", "1,x"], ["--classes", "0"], ["--classes", "4"]):
        assert main(["import-onnx", str(tmp_path / "ok.onnx"), "-o", str(tmp_path / "x")]
                    + opt) == 2
        err = capsys.readouterr().err
        assert "error:" in err and "Traceback" not in err, err


def test_rtl_runs_on_an_imported_artifact(tmp_path, capsys):
    save_onnx(_demo_model(), tmp_path / "m.onnx")
    assert main(["import-onnx", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.dupnet")]) == 0
    assert main(["rtl", str(tmp_path / "m.dupnet"), "-o", str(tmp_path / "rtl")]) == 0
    assert (tmp_path / "rtl" / "dupnet_top.v").is_file()


def _quant_instead_of_thresholds(model, layer, bits, mode, narrow, scale=4.0):
    """``model`` with layer ``layer``'s MultiThreshold replaced by an unsigned qonnx ``Quant``
    of its accumulators (scale 4: every rounding boundary, ties included, is an integer
    accumulator that float32 holds exactly)."""
    import onnx
    from onnx import numpy_helper
    i, mt = next((i, n) for i, n in enumerate(model.graph.node)
                 if n.name == f"{layer}.threshold")
    for name, v in (("q.scale", scale), ("q.zero", 0.0), ("q.bits", float(bits))):
        model.graph.initializer.append(numpy_helper.from_array(np.float32(v), name))
    q = onnx.helper.make_node("Quant", [mt.input[0], "q.scale", "q.zero", "q.bits"],
                              [mt.output[0]], name=f"{layer}.quant",
                              domain="qonnx.custom_op.general", signed=0,
                              narrow=int(narrow), rounding_mode=mode)
    model.graph.node.remove(mt)
    model.graph.node.insert(i, q)
    del model.graph.quantization_annotation[:]
    return model


@pytest.mark.parametrize("mode,narrow", [("ROUND", False), ("ROUND", True), ("HALF_UP", False),
                                         ("HALF_DOWN", False), ("FLOOR", False),
                                         ("CEIL", False)])
def test_quant_activations_import_exactly(mode, narrow):
    """An unsigned ``Quant`` activation (each rounding mode; narrow range) becomes integer
    thresholds that reproduce qonnx's execution of the graph on every code, ties included."""
    from dupnet.sw.onnx_common import execute_qonnx, qonnx_codes
    cfg = SMALL_CONFIGS["tiny"]()
    art = random_artifact(cfg, seed=11)
    first = art.geometries[0]
    model = _quant_instead_of_thresholds(export_onnx(art), first.name, first.act_bits, mode,
                                         narrow)
    res = import_onnx(model)
    imgs = images(cfg, 3, 11)
    golden = GoldenModel(res.artifact).forward(imgs)
    tensors = execute_qonnx(model, imgs)
    geoms = GoldenModel(res.artifact).geometry
    second = next(g.index for g in geoms[1:] if g.kind == "conv")
    for g, want in zip(geoms, golden):      # codes of scale 4 up to the second conv's input
        name = "accumulators" if g.is_last else f"{g.name}.codes"
        got = qonnx_codes({"t": tensors[name] / (4.0 if g.index < second else 1.0)}, "t")
        assert np.array_equal(got, want), g.name
    assert golden[0].max() == (1 << first.act_bits) - 1 - int(narrow)   # the top code is used
