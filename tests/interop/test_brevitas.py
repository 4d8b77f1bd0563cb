"""The real client: a small binary network defined and trained a few steps in Brevitas,
exported by Brevitas' own QONNX exporter, imported with `dupnet import-onnx` (which
streamlines BatchNorm / scales / QuantReLU into integer thresholds and writes the threshold
graph with --streamlined-out), and run on Verilator: every output word of the RTL equals the
accumulator qonnx executes on the streamlined file; the streamlined file's codes equal those
of the Brevitas file, executed by qonnx too."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dupnet.cli import main
from dupnet.sw.artifact import Artifact
from dupnet.sw.onnx_common import ACC_NAME, DECODED_NAME, codes_name, execute_qonnx, load_model
from dupnet.sw.onnx_common import qonnx_codes
from dupnet.sw.onnx_export import compare_with_golden, describe_checks

from .cases import brevitas_network, export_brevitas


@pytest.fixture(scope="module")
def brevitas_import(tmp_path_factory):
    """(Brevitas QONNX file, artifact, streamlined file) of the trained network."""
    d = tmp_path_factory.mktemp("brevitas")
    export_brevitas(brevitas_network(), d / "brevitas.onnx")
    rc = main(["import-onnx", str(d / "brevitas.onnx"), "-o", str(d / "net.dupnet"),
               "--config-out", str(d / "net.toml"), "--streamlined-out",
               str(d / "streamlined.onnx")])
    assert rc == 0
    return d / "brevitas.onnx", Artifact.load(d / "net.dupnet"), d / "streamlined.onnx"


def _images(cfg, n=3, seed=0):
    from dupnet.sim.images import random_images
    return random_images(cfg, n, seed)


def test_brevitas_network_imports_as_expected(brevitas_import):
    _, art, _ = brevitas_import
    cfg = art.config
    convs = [s for s in cfg.layers if s.kind == "conv"]
    assert [(s.k, s.x_dup, s.act_bits) for s in convs] == [(3, 2, 2), (3, 1, 3), (1, 1, None)]
    assert [s.stride for s in cfg.layers if s.kind == "maxpool"] == [2, 1]
    assert (cfg.input_height, cfg.input_width, cfg.input_channels) == (8, 8, 2)


def test_streamlined_codes_equal_the_brevitas_graph(brevitas_import):
    """qonnx on Brevitas' own file: the codes of every QuantReLU (output / scale) equal the
    streamlined file's MultiThreshold codes, and its float output is the decode's."""
    raw_path, art, thr_path = brevitas_import
    imgs = _images(art.config, 4, 1)
    raw_model = load_model(raw_path)
    raw = execute_qonnx(raw_model, imgs, where=str(raw_path))
    thr = execute_qonnx(load_model(thr_path), imgs, where=str(thr_path))
    quants = [n for n in raw_model.graph.node if n.op_type == "Quant"]
    hidden = [s.name for s in art.config.layers if s.kind == "conv" and s.act_bits]
    assert len(quants) == len(hidden) == 2
    for q, name in zip(quants, hidden):
        raw_codes = np.rint(raw[q.output[0]] / raw[q.input[1]]).astype(np.int64)
        assert np.array_equal(raw_codes.transpose(0, 2, 3, 1), qonnx_codes(thr, codes_name(name)))
    out = raw[raw_model.graph.output[0].name]
    np.testing.assert_allclose(thr[DECODED_NAME], out, rtol=1e-5, atol=1e-5)
    checks = compare_with_golden(art, load_model(thr_path), imgs)
    assert all(c.ok for c in checks), describe_checks(checks)


@pytest.mark.sim
def test_verilator_output_words_equal_qonnx(brevitas_import):
    """The accelerator `dupnet sim` would build (its default folding), one random frame
    (`--random 1`, seed 0), every output word compared with qonnx's accumulators of the
    streamlined file (not with our golden model)."""
    from dupnet.hw.autofold import choose_folding
    from dupnet.sim.design import generate_cached, network_streams
    from dupnet.sim.network import run_design
    _, art, thr_path = brevitas_import
    images = _images(art.config, 1, 0)
    want = qonnx_codes(execute_qonnx(load_model(thr_path), images), ACC_NAME)
    folding, _ = choose_folding(art.config)
    design = generate_cached(art, folding)
    out, _ = network_streams(art, folding, images)
    out = dataclasses.replace(out, expected=want)
    res = run_design(design.verilog, design.top_name, images, out, design_hash=design.design_hash)
    assert res.ok, res.message
    assert sum(sb["compared"] for sb in res.scoreboards) == want.size
    assert main(["sim", str(thr_path.parent / "net.dupnet"), "--random", "1", "--frames",
                 "1"]) == 0
