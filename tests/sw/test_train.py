"""Training: determinism, exact resume, atomic checkpoints, interruption, DDP (gloo), CLI."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dupnet.cli import main
from dupnet.errors import DupnetError
from dupnet.sw.config import load_config
from dupnet.sw.checkpoint import (CHECKPOINT, RunError, load_checkpoint, load_run,
                                  save_checkpoint)
from dupnet.sw.data import augment as _augment
from dupnet.sw.export import export_checkpoint
from dupnet.sw.train import TrainOptions, train

from ..tiny_configs import tiny_config_toml

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[2]


def _write_cfg(path: Path, weights: str = "binary") -> Path:
    path.write_text(tiny_config_toml("tiny-train-test", weights=weights))
    return path


@pytest.fixture(scope="module")
def cfg_path(tmp_path_factory):
    return _write_cfg(tmp_path_factory.mktemp("cfg") / "tiny.toml")


@pytest.fixture(scope="module")
def cfg(cfg_path):
    return load_config(cfg_path)


def opts(**kw):
    base = dict(epochs=3, batch_size=8, n_train=24, n_test=8, evaluate=False)
    base.update(kw)
    return TrainOptions(**base)


def weights(run):
    return load_checkpoint(run)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def straight(cfg, tmp_path_factory):
    """Three uninterrupted epochs, seed 0."""
    run = tmp_path_factory.mktemp("straight")
    train(cfg, run, opts(), progress=False, log=lambda s: None, threads=1)
    return run


# ---------------------------------------------------------------------------------------------
# determinism and resume


def test_same_seed_gives_identical_weights_other_seed_does_not(cfg, straight, tmp_path):
    train(cfg, tmp_path / "again", opts(), progress=False, log=lambda s: None, threads=1)
    assert_same_weights(weights(straight), weights(tmp_path / "again"))
    train(cfg, tmp_path / "seed1", opts(seed=1, epochs=1), progress=False, log=lambda s: None, threads=1)
    w0, w1 = weights(straight), weights(tmp_path / "seed1")
    assert any(not torch.equal(w0[k], w1[k]) for k in w0)


def test_interrupted_then_resumed_run_matches_straight_run(cfg, straight, tmp_path):
    run = tmp_path / "run"

    def stop(epoch, step):
        if epoch == 1 and step == 2:          # mid-epoch 2
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, run, opts(), progress=False, log=lambda s: None, threads=1, on_step=stop)
    ck = load_checkpoint(run)
    assert ck["epoch"] == 1 and len(ck["history"]) == 1
    result = train(cfg, run, None, resume=True, progress=False, log=lambda s: None, threads=1)
    assert result.epochs == 3 and load_checkpoint(run)["epoch"] == 3
    assert_same_weights(weights(straight), weights(run))
    a, b = load_checkpoint(straight), load_checkpoint(run)
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]


def test_resume_can_extend_the_run(cfg, straight, tmp_path):
    run = tmp_path / "longer"
    shutil.copytree(straight, run)
    r = train(cfg, run, opts(epochs=4), resume=True, progress=False, log=lambda s: None, threads=1)
    assert r.epochs == 4 and load_checkpoint(run)["epoch"] == 4
    with pytest.raises(RunError, match="more than"):
        train(cfg, run, opts(epochs=2), resume=True, progress=False, log=lambda s: None, threads=1)


def test_checkpoint_write_interrupted_keeps_the_previous_one(cfg, straight, tmp_path,
                                                             monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    before = (run / CHECKPOINT).read_bytes()

    def boom(fd):       # the temporary file is half written when the "power" goes
        raise KeyboardInterrupt

    monkeypatch.setattr("dupnet.sw.artifact.os.fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, run, opts(epochs=4), resume=True, progress=False, log=lambda s: None, threads=1)
    monkeypatch.undo()
    assert (run / CHECKPOINT).read_bytes() == before
    assert sorted(p.name for p in run.iterdir()) == [CHECKPOINT]       # no temp file left
    assert load_checkpoint(run)["epoch"] == 3


def test_sigterm_mid_training_keeps_last_checkpoint(cfg_path, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "dupnet.cli", "train", str(cfg_path), "--out", str(run),
           "--epochs", "500", "--n-train", "16", "--batch-size", "8", "--no-eval",
           "--threads", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 90
        while not (run / CHECKPOINT).exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint within 90 s"
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "--resume" in err
    ck = load_checkpoint(run)
    assert 1 <= ck["epoch"] < 500
    assert not [p for p in run.iterdir() if p.name != CHECKPOINT]


# ---------------------------------------------------------------------------------------------
# DDP


def test_ddp_two_processes_gloo(cfg_path, tmp_path):
    run = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "dupnet.cli", "train", str(cfg_path), "--out", str(run), "--epochs", "2",
           "--n-train", "16", "--n-test", "8", "--batch-size", "8", "--device", "cpu",
           "--threads", "1", "--quiet"]
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=150)
    assert p.returncode == 0, p.stdout + p.stderr
    ck = load_checkpoint(run)
    assert ck["epoch"] == 2 and len(ck["history"]) == 2
    assert "metrics" in ck and 0.0 <= ck["metrics"]["ap"] <= 1.0
    assert p.stdout.count("trained tiny-train-test") == 1          # rank 0 only
    assert sorted(x.name for x in run.iterdir()) == [CHECKPOINT, "metrics.json"]
    # two steps per epoch: 16 images / global batch 8, each rank 4 images per step
    cfg2, model = load_run(run)
    assert cfg2.name == "tiny-train-test" and not model.training


# ---------------------------------------------------------------------------------------------
# CLI and errors


def test_cli_train_eval_export_roundtrip(cfg_path, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(cfg_path), "--out", str(run), "--epochs", "1", "--n-train",
                 "16", "--n-test", "8", "--batch-size", "8", "--quiet", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "trained tiny-train-test: 1 epochs" in out and "test AP@0.5" in out
    assert (run / "metrics.json").is_file()
    assert main(["eval", str(run), "--n", "8", "--json", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "tiny-train-test (run, PyTorch model, eval mode)" in out and "AP@0.5 =" in out
    m_run = json.loads((tmp_path / "m.json").read_text())
    assert m_run["images"] == 8 and m_run["fp"] == 3
    art = export_checkpoint(run)
    art.save(tmp_path / "a.dupnet")
    assert main(["eval", str(tmp_path / "a.dupnet"), "--n", "8", "--json",
                 str(tmp_path / "a.json")]) == 0
    assert "golden integer model" in capsys.readouterr().out
    m_art = json.loads((tmp_path / "a.json").read_text())
    # the golden model computes what the PyTorch model computes: same detections, same AP
    for k in ("ap", "detection_rate", "detections"):
        assert m_art[k] == pytest.approx(m_run[k], abs=1e-6), k


def test_float_network_trains(tmp_path):
    cfg = load_config(_write_cfg(tmp_path / "float.toml", weights="float"))
    r = train(cfg, tmp_path / "run", opts(epochs=1, evaluate=True), progress=False,
              log=lambda s: None, threads=1)
    assert r.metrics is not None and r.history[0]["loss"] > 0
    c, model = load_run(tmp_path / "run" / CHECKPOINT)
    assert c.weights == "float"


@pytest.mark.parametrize("argv, message", [
    (["eval", "{tmp}/nothing"], "no such run directory"),
    (["eval", "{tmp}"], "no checkpoint.pt in this directory"),
    (["train", "{cfg}", "--out", "{tmp}/r", "--resume"], "no checkpoint.pt to resume"),
    (["train", "{cfg}", "--out", "{tmp}/r", "--data", "nonsense"], "unknown dataset spec"),
    (["train", "{cfg}", "--out", "{tmp}/r", "--data", "wider:{tmp}/missing"],
     "not found"),
    (["train", "{cfg}", "--out", "{tmp}/r", "--data", "fddb:{tmp}"], "evaluation set"),
    (["train", "{cfg}", "--out", "{tmp}/r", "--epochs", "0"], "'epochs'"),
    (["train", "{cfg}", "--out", "{tmp}/r", "--resume", "--lr", "0.1"],
     "keeps the options stored"),
])
def test_cli_clear_errors(argv, message, cfg_path, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path, cfg=cfg_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_run_errors(cfg, straight, tmp_path):
    # an existing checkpoint is never overwritten by accident
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    with pytest.raises(RunError, match="--resume"):
        train(cfg, run, opts(), progress=False, log=lambda s: None, threads=1)
    # resume with another network
    other = load_config(_write_cfg(tmp_path / "f.toml", weights="float"))
    with pytest.raises(RunError, match="same config"):
        train(other, run, None, resume=True, progress=False, log=lambda s: None, threads=1)
    # an artifact is not a checkpoint
    from dupnet.sw.random_artifact import random_artifact
    art = random_artifact(cfg).save(tmp_path / "a.dupnet")
    with pytest.raises(RunError, match="artifact"):
        load_run(art)
    # a corrupt checkpoint
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(RunError, match="not a readable checkpoint"):
        load_run(bad)
    save_checkpoint(tmp_path / "dict.pt", {"hello": torch.zeros(1)})
    with pytest.raises(RunError, match="not a dupnet checkpoint"):
        load_run(tmp_path / "dict.pt")
    assert issubclass(RunError, DupnetError)


def test_load_run_restores_weights_in_eval_mode(cfg, straight):
    c, model = load_run(straight)
    assert c.to_dict() == cfg.to_dict() and not model.training
    sd = weights(straight)
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k])


def test_bn_statistics_recalibrated_at_the_end(cfg, straight, tmp_path):
    """The final checkpoint's BN running statistics are the exact averages over the training
    images at the final weights (not the lagging momentum averages)."""
    from dupnet.sw.qat import build_model
    from dupnet.sw.batchnorm import recalibrate_bn
    from dupnet.sw.data import BatchReader as _Data, load_split
    ck = load_checkpoint(straight)
    assert ck["bn_recalibrated"] is True
    final = ck["model"]
    o = opts()
    model = build_model(cfg)
    model.load_state_dict(final)
    lagging = {k: v.clone() for k, v in final.items()}
    data = _Data(load_split(cfg, "builtin", "train", n=o.n_train), cfg)
    for m in model.modules():            # spoil the statistics: recalibration must not care
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.fill_(3.0)
            m.running_var.fill_(7.0)
    recalibrate_bn(model, data, o.batch_size, torch.device("cpu"))
    stats = [k for k in final if k.endswith(("running_mean", "running_var"))]
    assert stats
    for k in stats:
        assert torch.equal(model.state_dict()[k], lagging[k]), k
    # recalibration = the exact mean of the first BN's input over the images
    x = data.images.float()
    with torch.no_grad():
        model.eval()
        pre = model.layers[0].conv(x * (1 / 255.0))
    np.testing.assert_allclose(model.layers[0].bn.running_mean.numpy(),
                               pre.mean(dim=(0, 2, 3)).numpy(), rtol=1e-4, atol=1e-5)
    # without recalibration the statistics are the momentum averages: different
    run = tmp_path / "norecal"
    train(cfg, run, opts(bn_recalibrate=False), progress=False, log=lambda s: None, threads=1)
    plain = load_checkpoint(run)
    assert "bn_recalibrated" not in plain
    assert all(torch.equal(plain["model"][k], final[k]) for k in final
               if k not in stats and not k.endswith("num_batches_tracked"))
    assert not any(torch.equal(plain["model"][k], final[k]) for k in stats)


# ---------------------------------------------------------------------------------------------
# augmentation


def test_augment_moves_boxes_with_pixels_and_is_deterministic():
    img = np.zeros((4, 1, 32, 32), np.uint8)
    boxes = []
    for i in range(4):
        x0, y0 = 4 + 3 * i, 6 + 2 * i
        img[i, 0, y0:y0 + 10, x0:x0 + 8] = 200
        boxes.append(np.array([[x0, y0, x0 + 8, y0 + 10]], np.float32))
    o = TrainOptions(max_shift=0.125)

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return _augment(torch.from_numpy(img), boxes, g, o)

    x, bx = run(3)
    x2, bx2 = run(3)
    assert torch.equal(x, x2) and all(np.array_equal(a, b) for a, b in zip(bx, bx2))
    assert x.dtype == torch.float32 and torch.equal(x, x.round()) and 0 <= x.min() <= x.max() <= 255
    for i in range(4):
        assert len(bx[i]) == 1
        x0, y0, x1, y1 = (int(v) for v in bx[i][0])
        inside = x[i, 0, y0:y1, x0:x1]
        # the bright patch is exactly where the box says (photometric jitter is per image)
        assert float(inside.std()) < 1e-3
        mask = torch.zeros(32, 32, dtype=torch.bool)
        mask[y0:y1, x0:x1] = True
        outside = x[i, 0][~mask]
        assert float(inside.mean()) > float(outside.max()) or float(outside.std()) < 1e-3
    x3, _ = run(4)
    assert not torch.equal(x, x3)
