"""The artifact file: round trip, integrity checks and validation messages."""
import hashlib
import json
import struct

import numpy as np
import pytest

from dupnet.sw.artifact import FORMAT_VERSION, MAGIC, Artifact, ArtifactError, ConvParams
from dupnet.sw.config import conv_geometries, load_config, parse_config
from dupnet.sw.golden import GoldenModel
from dupnet.sw.random_artifact import random_artifact


@pytest.fixture(scope="module")
def demo():
    return random_artifact(load_config("dupnet-demo"), seed=5)


def _same(a, b):
    assert a.config.to_dict() == b.config.to_dict()
    assert a.meta == b.meta
    assert a.layers.keys() == b.layers.keys()
    for i in a.layers:
        pa, pb = a.layers[i], b.layers[i]
        assert np.array_equal(pa.weights, pb.weights)
        for f in ("thresholds", "scale", "bias"):
            va, vb = getattr(pa, f), getattr(pb, f)
            assert (va is None) == (vb is None)
            if va is not None:
                assert np.array_equal(va, vb) and va.dtype == vb.dtype


def test_round_trip_bytes_and_file(demo, tmp_path):
    data = demo.to_bytes()
    _same(demo, Artifact.from_bytes(data))
    path = demo.save(tmp_path / "sub" / "demo.dupnet")
    assert path.read_bytes() == data
    again = Artifact.load(path)
    _same(demo, again)
    assert again.to_bytes() == data                          # deterministic
    assert not list(path.parent.glob(".*.tmp"))              # atomic write left no temp file
    img = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 1), dtype=np.uint8)
    for a, b in zip(GoldenModel(demo).forward(img), GoldenModel(again).forward(img)):
        assert np.array_equal(a, b)


def test_layout_prefix_and_checksum(demo):
    data = demo.to_bytes()
    magic, version, hlen = struct.unpack_from("<8sHI", data)
    assert magic == MAGIC and version == FORMAT_VERSION
    header = json.loads(data[14:14 + hlen])
    assert header["format"] == "dupnet-artifact" and header["version"] == FORMAT_VERSION
    assert data[-32:] == hashlib.sha256(data[:-32]).digest()
    g = conv_geometries(demo.config)[1]
    entry = header["arrays"][f"L{g.index}.weights"]
    payload = data[14 + hlen:-32]
    raw = np.frombuffer(payload[entry["offset"]:entry["offset"] + entry["nbytes"]], np.uint8)
    bits = np.unpackbits(raw, count=g.unique_weight_bits, bitorder="little")
    assert np.array_equal(bits.astype(np.int8) * 2 - 1, demo.layers[g.index].weights.ravel())


@pytest.mark.parametrize("where", [20, -40, -1])
def test_corrupted_byte_is_a_checksum_error(demo, where):
    data = bytearray(demo.to_bytes())
    data[where] ^= 0x01
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        Artifact.from_bytes(bytes(data), where="x.dupnet")


def test_truncated(demo, tmp_path):
    data = demo.to_bytes()
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        Artifact.from_bytes(data[:-100])
    with pytest.raises(ArtifactError, match="bad magic"):
        Artifact.from_bytes(data[:20])
    with pytest.raises(ArtifactError, match="bad magic"):
        Artifact.from_bytes(b"")


def test_foreign_file_bad_magic(tmp_path):
    p = tmp_path / "photo.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(ArtifactError, match=f"{p}: not a DupNet artifact"):
        Artifact.load(p)
    with pytest.raises(ArtifactError, match="artifact file not found"):
        Artifact.load(tmp_path / "nope.dupnet")


def _reseal(body: bytes) -> bytes:
    return body + hashlib.sha256(body).digest()


def test_wrong_version(demo):
    body = bytearray(demo.to_bytes()[:-32])
    struct.pack_into("<H", body, 8, FORMAT_VERSION + 1)
    with pytest.raises(ArtifactError, match=f"format version {FORMAT_VERSION + 1}"):
        Artifact.from_bytes(_reseal(bytes(body)))


def _rewrite_header(demo, edit):
    data = demo.to_bytes()[:-32]
    _, version, hlen = struct.unpack_from("<8sHI", data)
    header = json.loads(data[14:14 + hlen])
    edit(header)
    h = json.dumps(header, sort_keys=True).encode()
    return _reseal(struct.pack("<8sHI", MAGIC, version, len(h)) + h + data[14 + hlen:])


def test_header_errors(demo):
    def drop(h):
        del h["arrays"]["L2.thresholds"]
    with pytest.raises(ArtifactError, match=r"layer 2 \(conv2\): missing array 'thresholds'"):
        Artifact.from_bytes(_rewrite_header(demo, drop))

    def past(h):
        h["arrays"]["L8.bias"]["offset"] += 10 ** 6
    with pytest.raises(ArtifactError, match="runs past the payload"):
        Artifact.from_bytes(_rewrite_header(demo, past))

    def badcfg(h):
        h["config"]["layers"][2]["w_dup"] = 3
    with pytest.raises(ArtifactError, match=r"layer 2 \(conv2\).*'w_dup'"):
        Artifact.from_bytes(_rewrite_header(demo, badcfg))

    def nocfg(h):
        del h["config"]
    with pytest.raises(ArtifactError, match="malformed header"):
        Artifact.from_bytes(_rewrite_header(demo, nocfg))


def _layers(art):
    return {i: ConvParams(p.weights.copy(),
                          None if p.thresholds is None else p.thresholds.copy(),
                          None if p.scale is None else p.scale.copy(),
                          None if p.bias is None else p.bias.copy())
            for i, p in art.layers.items()}


def test_validation_messages(demo):
    cfg = demo.config
    L = _layers(demo)
    L[2].weights = L[2].weights[:, :, :, :-1]
    with pytest.raises(ArtifactError, match=r"layer 2 \(conv2\): field 'weights' has shape"):
        Artifact(cfg, L)
    L = _layers(demo)
    L[2].weights[0, 0, 0, 0] = 0
    with pytest.raises(ArtifactError, match="only -1 and \\+1"):
        Artifact(cfg, L)
    L = _layers(demo)
    L[4].thresholds[3] = np.arange(L[4].thresholds.shape[1])[::-1]
    with pytest.raises(ArtifactError, match=r"layer 4 \(conv3\).*channel 3 is not ascending"):
        Artifact(cfg, L)
    L = _layers(demo)
    g = conv_geometries(cfg)[0]
    L[0].thresholds[0, -1] = g.threshold_max + 1
    with pytest.raises(ArtifactError, match=rf"outside \[{g.threshold_min}, {g.threshold_max}\]"):
        Artifact(cfg, L)
    L = _layers(demo)
    L[6].thresholds = L[6].thresholds[:, :2]
    with pytest.raises(ArtifactError, match="field 'thresholds' must have shape"):
        Artifact(cfg, L)
    L = _layers(demo)
    L[8].thresholds = np.zeros((12, 3), np.int64)
    with pytest.raises(ArtifactError, match="last layer has no thresholds"):
        Artifact(cfg, L)
    L = _layers(demo)
    L[8].scale = np.full(12, np.nan, np.float32)
    with pytest.raises(ArtifactError, match="'scale' has non-finite"):
        Artifact(cfg, L)
    L = _layers(demo)
    L[8].bias = L[8].bias[:5]
    with pytest.raises(ArtifactError, match="'bias' must be a float vector of length 12"):
        Artifact(cfg, L)
    L = _layers(demo)
    del L[6]
    with pytest.raises(ArtifactError, match="the config has convs at"):
        Artifact(cfg, L)


def test_float_config_has_no_artifact():
    cfg = parse_config({"name": "f", "weights": "float",
                        "input": {"height": 8, "width": 8, "channels": 1},
                        "head": {"anchors": [[1, 1]]},
                        "layers": [{"kind": "conv", "k": 1, "out_channels": 6}]})
    with pytest.raises(ArtifactError, match="float weights"):
        Artifact(cfg, {})
