"""`dupnet export` and `dupnet detect` end to end (in-process, through dupnet.cli.main)."""
import numpy as np
import pytest
import torch
from PIL import Image

from dupnet.sw.checkpoint import CHECKPOINT_FORMAT
from dupnet.cli import main
from dupnet.sw.artifact import Artifact
from dupnet.sw.config import load_config, parse_config
from dupnet.sw.export import export_model
from dupnet.sw.golden import GoldenModel
from dupnet.sw.qat import build_model
from dupnet.sw.random_artifact import random_artifact


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    torch.manual_seed(0)
    cfg = load_config("dupnet-demo")
    model = build_model(cfg)
    model.train()
    with torch.no_grad():                       # BN running stats from one batch
        model(torch.randint(0, 256, (4, 1, 64, 64)).float())
    model.eval()
    run = tmp_path_factory.mktemp("runs") / "demo"
    run.mkdir()
    torch.save({"format": CHECKPOINT_FORMAT, "config": cfg.to_dict(),
                "model": model.state_dict(), "epoch": 7}, run / "checkpoint.pt")
    return run, model, cfg


def test_export_command(demo_run, tmp_path, capsys):
    run, model, cfg = demo_run
    out = tmp_path / "a" / "demo.dupnet"
    assert main(["export", str(run), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "(epoch 7)" in text
    assert "on chip:" in text and "unique bits" in text and "conv4" in text
    art = Artifact.load(out)
    assert art.meta["epoch"] == 7 and art.meta["source"] == "training"
    ref = export_model(model, cfg)
    img = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 1)).astype(np.uint8)
    assert np.array_equal(GoldenModel(art)(img), GoldenModel(ref)(img))
    # a direct .pt path works too
    assert main(["export", str(run / "checkpoint.pt"), "-o", str(tmp_path / "b.dupnet")]) == 0


def test_export_command_errors(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "-o", str(tmp_path / "x.dupnet")]) == 2
    err = capsys.readouterr().err
    assert "dupnet export: error:" in err and "no such run directory" in err
    assert "Traceback" not in err
    (tmp_path / "empty").mkdir()
    assert main(["export", str(tmp_path / "empty"), "-o", str(tmp_path / "x.dupnet")]) == 2
    assert "no checkpoint.pt" in capsys.readouterr().err
    fcfg = parse_config({"name": "f", "weights": "float",
                         "input": {"height": 16, "width": 16, "channels": 1},
                         "head": {"anchors": [[1, 1]]},
                         "layers": [{"kind": "conv", "k": 1, "out_channels": 6}]})
    torch.save({"format": CHECKPOINT_FORMAT, "config": fcfg.to_dict(),
                "model": build_model(fcfg).state_dict(), "epoch": 0}, tmp_path / "float.pt")
    assert main(["export", str(tmp_path / "float.pt"), "-o", str(tmp_path / "x.dupnet")]) == 2
    assert "float weights" in capsys.readouterr().err
    assert not (tmp_path / "x.dupnet").exists()


def _confident_artifact():
    """The demo with random weights and a head biased so that some boxes pass --conf."""
    art = random_artifact(load_config("dupnet-demo"), seed=2)
    last = art.layers[8]
    last.bias[4] = 3.0          # anchor 0 objectness logit: sigmoid ~ 0.95 everywhere
    return art


def test_detect_command(tmp_path, capsys):
    art_path = _confident_artifact().save(tmp_path / "demo.dupnet")
    rgb = np.random.default_rng(1).integers(0, 256, (90, 120, 3)).astype(np.uint8)
    gray = np.random.default_rng(2).integers(0, 256, (50, 40)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.jpg")
    Image.fromarray(gray).save(tmp_path / "b.png")
    assert main(["detect", str(art_path), str(tmp_path / "a.jpg"), str(tmp_path / "b.png"),
                 "--conf", "0.5"]) == 0
    text = capsys.readouterr().out
    for name, (h, w) in (("a", (90, 120)), ("b", (50, 40))):
        out = tmp_path / f"{name}.det.png"
        assert out.exists()
        im = Image.open(out)
        assert im.size == (w, h) and im.mode == "RGB"
        assert f"{name}.det.png" in text
    lines = [l.split() for l in text.splitlines() if "score" in l]
    assert lines, text
    for x0, y0, x1, y1, _, s in lines:
        assert 0 <= float(x0) <= float(x1) <= 120 and 0 <= float(y0) <= float(y1) <= 90
        assert 0.5 <= float(s) <= 1
    # -o directory
    outdir = tmp_path / "out"
    assert main(["detect", str(art_path), str(tmp_path / "b.png"), "-o", str(outdir)]) == 0
    assert (outdir / "b.det.png").exists()


def test_detect_matches_golden_on_a_network_sized_image(tmp_path, capsys):
    """An image already at the input size is not resampled: the printed boxes are the golden
    model's decode of that exact image."""
    from dupnet.sw.yolo import decode_predictions, nms
    art = _confident_artifact()
    art_path = art.save(tmp_path / "demo.dupnet")
    img = np.random.default_rng(3).integers(0, 256, (64, 64)).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "c.png")
    assert main(["detect", str(art_path), str(tmp_path / "c.png"), "--conf", "0.9"]) == 0
    text = capsys.readouterr().out
    gm = GoldenModel(art)
    head = gm.decode_inputs(gm(img[None, :, :, None]))[0]
    boxes, scores = decode_predictions(head, art.config.anchors, (64, 64), 0.9)
    keep = nms(boxes, scores, 0.45)
    printed = [tuple(map(float, l.split()[:4])) for l in text.splitlines() if "score" in l]
    assert len(printed) == len(keep) > 0
    assert np.allclose(printed, boxes[keep], atol=0.06)


def test_detect_errors(tmp_path, capsys):
    art_path = _confident_artifact().save(tmp_path / "demo.dupnet")
    assert main(["detect", str(art_path), str(tmp_path / "missing.png")]) == 2
    assert "image file not found" in capsys.readouterr().err
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert main(["detect", str(art_path), str(tmp_path / "bad.png")]) == 2
    assert "not a readable image" in capsys.readouterr().err
    assert main(["detect", str(tmp_path / "none.dupnet"), str(tmp_path / "bad.png")]) == 2
    assert "artifact file not found" in capsys.readouterr().err
    assert main(["detect", str(art_path), str(tmp_path / "bad.png"), "--conf", "2"]) == 2
    assert "--conf" in capsys.readouterr().err
