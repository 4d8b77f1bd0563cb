"""`dupnet detect` on big photos: automatic multi-scale tiling, --tile / --no-tile, --min-face
and the --json output (in-process, through dupnet.cli.main, a tiny random artifact)."""
import json
import tomllib

import numpy as np
import pytest
from PIL import Image

from dupnet.cli import main
from dupnet.sw.config import parse_config
from dupnet.sw.detect import detect_image, detect_tiled
from dupnet.sw.golden import GoldenModel
from dupnet.sw.random_artifact import random_artifact

from ..tiny_configs import tiny_config_toml


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    cfg = parse_config(tomllib.loads(tiny_config_toml("detect-tiles", size=32)))
    a = random_artifact(cfg, seed=3)
    last = max(a.layers)
    a.layers[last].bias[4] = 2.0          # anchor 0 objectness: confident boxes everywhere
    path = a.save(tmp_path_factory.mktemp("art") / "tiny.dupnet")
    return a, path


def _image(path, h, w, seed=0):
    img = np.random.default_rng(seed).integers(0, 256, (h, w)).astype(np.uint8)
    Image.fromarray(img).save(path)
    return img


def _printed_boxes(text):
    return [list(map(float, l.split()[:4])) for l in text.splitlines() if "score" in l]


def test_big_photo_is_tiled_and_json_is_in_photo_pixels(art, tmp_path, capsys):
    a, path = art
    img = _image(tmp_path / "group.png", 100, 150)
    js = tmp_path / "out" / "dets.json"
    assert main(["detect", str(path), str(tmp_path / "group.png"), "--conf", "0.6",
                 "--json", str(js), "-o", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "tiled:" in text and f"wrote {js}" in text
    assert (tmp_path / "out" / "group.det.png").is_file()
    data = json.loads(js.read_text())
    assert list(data) == ["images"] and len(data["images"]) == 1
    rec = data["images"][0]
    assert rec["image"] == str(tmp_path / "group.png") and rec["tiled"] is True
    assert len(rec["boxes"]) == len(rec["scores"]) > 0
    for (x0, y0, x1, y1), s in zip(rec["boxes"], rec["scores"]):
        assert 0 <= x0 <= x1 <= 150 and 0 <= y0 <= y1 <= 100 and 0.6 <= s <= 1
    boxes, scores, _ = detect_tiled(GoldenModel(a), img, 0.6, 0.45)
    assert np.allclose(rec["boxes"], boxes, atol=0.01)
    assert np.allclose(_printed_boxes(text), boxes, atol=0.06)
    assert not list((tmp_path / "out").glob(".*.tmp"))       # written atomically


def test_no_tile_keeps_the_letterboxed_frame(art, tmp_path, capsys):
    a, path = art
    img = _image(tmp_path / "group.png", 100, 150, seed=1)
    js = tmp_path / "d.json"
    assert main(["detect", str(path), str(tmp_path / "group.png"), "--no-tile", "--conf",
                 "0.6", "--json", str(js)]) == 0
    text = capsys.readouterr().out
    assert "(tiled:" not in text
    rec = json.loads(js.read_text())["images"][0]
    boxes, _ = detect_image(GoldenModel(a), img, 0.6, 0.45)
    assert rec["tiled"] is False and np.allclose(rec["boxes"], boxes, atol=0.01)


def test_small_image_untiled_unless_asked(art, tmp_path, capsys):
    _, path = art
    _image(tmp_path / "small.png", 60, 64)
    assert main(["detect", str(path), str(tmp_path / "small.png")]) == 0
    assert "(tiled:" not in capsys.readouterr().out
    assert main(["detect", str(path), str(tmp_path / "small.png"), "--tile",
                 "--min-face", "6"]) == 0
    assert "tiled: 3 scales" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--no-tile", "--min-face", "8"], "--min-face chooses the scales"),
    (["--min-face", "0"], "--min-face must be > 0"),
    (["--json", "{tmp}"], "--json"),
])
def test_detect_tile_errors(art, tmp_path, capsys, extra, message):
    _, path = art
    _image(tmp_path / "x.png", 80, 80)
    extra = [e.format(tmp=tmp_path) for e in extra]
    assert main(["detect", str(path), str(tmp_path / "x.png"), *extra]) == 2
    err = capsys.readouterr().err
    assert "dupnet detect: error:" in err and message in err and "Traceback" not in err


def test_tile_and_no_tile_exclude_each_other(art, tmp_path, capsys):
    _, path = art
    with pytest.raises(SystemExit):
        main(["detect", str(path), "x.png", "--tile", "--no-tile"])
    assert "not allowed with" in capsys.readouterr().err
