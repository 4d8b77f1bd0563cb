"""`dupnet export-onnx`: qonnx's own executor reproduces EVERY activation code, every last-layer
accumulator and every decoded value of the golden model (exact equality), for the shipped and
test configs, random artifacts, and every export form; planted faults are caught."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from dupnet.cli import main
from dupnet.sw.config import load_config
from dupnet.sw.golden import conv_acc
from dupnet.sw.onnx_common import ACC_NAME, META_CONFIG
from dupnet.sw.onnx_export import compare_with_golden, describe_checks, export_onnx
from dupnet.sw.random_artifact import random_artifact

from .cases import PAPER_CONFIGS, SMALL_CONFIGS, images

FORMS = {"expanded": {}, "shared": {"shared_weights": True}, "offset": {"offset_form": True}}


def _assert_exact(art, model, imgs):
    checks = compare_with_golden(art, model, imgs)
    assert len(checks) == len(art.config.layers) + 1
    assert all(c.ok for c in checks), describe_checks(checks)
    for c, g in zip(checks, art.config.layers):      # every element of every layer compared
        assert c.compared == len(imgs) * np.prod(_shape(art, g.name))


def _shape(art, name):
    from dupnet.sw.config import network_geometry
    return next(g.out_shape for g in network_geometry(art.config) if g.name == name)


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("name", sorted(SMALL_CONFIGS))
def test_qonnx_reproduces_every_code(name, form):
    cfg = SMALL_CONFIGS[name]()
    for seed in (1, 2):
        art = random_artifact(cfg, seed=seed, saturate_fraction=0.2)
        _assert_exact(art, export_onnx(art, **FORMS[form]), images(cfg, 3, seed))


def test_batched_graph():
    cfg = SMALL_CONFIGS["sim-dup"]()
    art = random_artifact(cfg, seed=4)
    model = export_onnx(art, batch=2)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2
    _assert_exact(art, model, images(cfg, 4, 4))


@pytest.mark.slow
@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_qonnx_reproduces_every_code_paper_size(name):
    cfg = load_config(name)
    art = random_artifact(cfg, seed=1, calibration_images=1)
    for form in ("expanded", "offset"):
        _assert_exact(art, export_onnx(art, **FORMS[form]), images(cfg, 1, 1))


def _initializer(model, name):
    from onnx import numpy_helper
    t = next(t for t in model.graph.initializer if t.name == name)
    return t, numpy_helper.to_array(t).copy()


def _set(model, name, value):
    from onnx import numpy_helper
    t, _ = _initializer(model, name)
    t.CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))


def _met_threshold(art, imgs):
    """(o, t) of a first-layer threshold that some accumulator of ``imgs`` meets exactly: one
    more and that code drops, one less changes nothing there."""
    g = art.geometries[0]
    acc = conv_acc(imgs.astype(np.int64), art.layers[g.index].weights, g)
    t = art.layers[g.index].thresholds
    for o in range(g.out_channels):
        for j in range(t.shape[1]):
            if np.any(acc[..., o] == t[o, j]):
                return g, o, j
    raise AssertionError("no threshold is met exactly on these images")


@pytest.mark.parametrize("form", ["expanded", "offset"])
def test_planted_threshold_off_by_one_is_caught(form):
    cfg = SMALL_CONFIGS["dupnet-demo"]()
    art = random_artifact(cfg, seed=3)
    imgs = images(cfg, 2, 3)
    g, o, j = _met_threshold(art, imgs)
    model = export_onnx(art, **FORMS[form])
    _assert_exact(art, model, imgs)
    name = f"{g.name}.thresholds"
    _, t = _initializer(model, name)
    t[o, j] += 1
    _set(model, name, t)
    checks = compare_with_golden(art, model, imgs)
    assert not checks[0].ok and checks[0].mismatches >= 1, describe_checks(checks)
    assert f"channel {o}" in checks[0].first


def test_planted_weight_and_decode_faults_are_caught():
    cfg = SMALL_CONFIGS["sim-dup"]()
    art = random_artifact(cfg, seed=5)
    imgs = images(cfg, 2, 5)
    model = export_onnx(art)
    last = art.geometries[-1].name
    _, w = _initializer(model, f"{last}.weight")
    w[0, 0, 0, 0] *= -1
    _set(model, f"{last}.weight", w)
    checks = compare_with_golden(art, model, imgs)
    assert [c.ok for c in checks[:-2]] == [True] * (len(checks) - 2)
    assert not checks[-2].ok and checks[-2].tensor == ACC_NAME
    model = export_onnx(art)
    _, b = _initializer(model, f"{last}.bias")
    b[0, 3] = np.nextafter(b[0, 3], np.float32(1))
    _set(model, f"{last}.bias", b)
    checks = compare_with_golden(art, model, imgs)
    assert [c.ok for c in checks] == [True] * (len(checks) - 1) + [False]


def test_graph_is_recognisable_qonnx():
    """Node types, the QONNX datatype annotations and the onnx checker."""
    import onnx
    from qonnx.core.modelwrapper import ModelWrapper
    art = random_artifact(load_config("dupnet-demo"), seed=1)
    model = export_onnx(art, shared_weights=True)
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    for op in ("Concat", "BipolarQuant", "Conv", "MultiThreshold", "MaxPool", "Pad", "Expand",
               "Mul", "Add"):
        assert op in ops, op
    assert [o.name for o in model.graph.output] == ["accumulators", "decoded"]
    mw = ModelWrapper(model)
    assert mw.get_tensor_datatype("image").name == "UINT8"
    assert mw.get_tensor_datatype("conv1.codes").name == "UINT3"
    assert mw.get_tensor_datatype("conv2.weight_dup").name == "BIPOLAR"
    assert any(p.key == META_CONFIG for p in model.metadata_props)
    # the unique bits are stored once: conv2's weight tensor is C'/w_dup wide
    assert tuple(next(t.dims for t in model.graph.initializer if t.name == "conv2.weight")) \
        == (32, 8, 3, 3)


def test_cli_export_checks_with_qonnx(tmp_path, capsys):
    art = random_artifact(SMALL_CONFIGS["sim-odd"](), seed=2)
    art.save(tmp_path / "a.dupnet")
    out = tmp_path / "a.onnx"
    assert main(["export-onnx", str(tmp_path / "a.dupnet"), "-o", str(out), "--check", "2",
                 "--offset-form", "--batch", "2"]) == 0
    text = capsys.readouterr().out
    assert out.is_file() and "PASS:" in text and "MISMATCH" not in text
    assert main(["export-onnx", str(tmp_path / "missing.dupnet"), "-o", str(out)]) == 2
    assert "artifact file not found" in capsys.readouterr().err
    assert main(["export-onnx", str(tmp_path / "a.dupnet"), "-o", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_interop_packages_are_imported_lazily():
    code = ("import sys, dupnet.sw, dupnet.sw.onnx_export, dupnet.sw.onnx_import, dupnet.cli; "
            "dupnet.cli.build_parser(); "
            "bad = [m for m in ('onnx', 'qonnx', 'onnxruntime', 'brevitas') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
