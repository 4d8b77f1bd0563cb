"""Recipe options of training: starting from another run's weights (``init_from``, the float
twin binarized) and distillation from a teacher run (``distill_from``); their resume, their
errors, and that the export of such a run stays bit-exact with PyTorch."""
import shutil

import numpy as np
import pytest
import torch

from dupnet.cli import main
from dupnet.sw.checkpoint import CHECKPOINT, RunError, load_checkpoint, load_run
from dupnet.sw.config import load_config
from dupnet.sw.equivalence import compare_with_golden, equivalence_ok
from dupnet.sw.export import export_checkpoint
from dupnet.sw.qat import (DupConv2d, binary_latent_from, build_model, effective_weight,
                           init_from_model)
from dupnet.sw.train import TrainOptions, distill_loss, resume_mismatches, train

from ..tiny_configs import tiny_config_toml

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def opts(**kw):
    base = dict(epochs=2, batch_size=8, n_train=24, n_test=8, evaluate=False)
    base.update(kw)
    return TrainOptions(**base)


def quiet(cfg, run, o=None, **kw):
    return train(cfg, run, o, progress=False, log=lambda s: None, threads=1, **kw)


@pytest.fixture(scope="module")
def cfgs(tmp_path_factory):
    d = tmp_path_factory.mktemp("cfg")
    out = {}
    for name, kw in {"bin": {}, "float": {"weights": "float"},
                     "wide": {"widths": (8, 8)},
                     "small": {"weights": "float", "size": 16}}.items():
        p = d / f"{name}.toml"
        p.write_text(tiny_config_toml(f"tiny-recipe-{name}", **kw))
        out[name] = load_config(p)
    return out


@pytest.fixture(scope="module")
def twin(cfgs, tmp_path_factory):
    """A float twin trained for two epochs."""
    run = tmp_path_factory.mktemp("twin")
    quiet(cfgs["float"], run, opts())
    return run


# ---------------------------------------------------------------------------------------------
# init_from


@pytest.mark.parametrize("x_dup, w_dup", [(1, 1), (2, 1), (1, 2), (2, 2), (3, 1)])
def test_binary_latent_approximates_the_real_weight(x_dup, w_dup):
    torch.manual_seed(x_dup * 10 + w_dup)
    conv = DupConv2d(8, 6, 3, x_dup=x_dup, w_dup=w_dup)
    wf = torch.randn(6, 8, 3, 3) * 0.1
    lat = binary_latent_from(wf, conv)
    assert lat.shape == conv.quant.weight.shape and lat.abs().max() <= 1
    conv.quant.weight.data.copy_(lat)
    eff = effective_weight(conv)
    assert eff.shape == wf.shape
    # the least-squares scale: the residual is orthogonal to the binary approximation
    assert torch.allclose((eff * (wf - eff)).sum(dim=(1, 2, 3)), torch.zeros(6), atol=1e-5)
    corr = float((eff * wf).sum() / (eff.norm() * wf.norm()))
    assert corr > (0.5 if w_dup > 1 else 0.75)     # w_dup: two random weights share a sign
    if w_dup == 1:              # every sign agrees with the weight's where it is clear
        big = wf.abs() > wf.abs().mean(dim=(1, 2, 3), keepdim=True)
        assert torch.equal(torch.sign(eff[big]), torch.sign(wf[big]))
    if x_dup == 2 and w_dup == 1:   # ternary: small weights give 0
        small = wf.abs() < 0.5 * wf.abs().mean(dim=(1, 2, 3), keepdim=True)
        assert bool((eff[small] == 0).all())


def test_init_from_float_twin(cfgs, twin, tmp_path):
    run = tmp_path / "init"
    quiet(cfgs["bin"], run, opts(epochs=1, init_from=str(twin)))
    ck = load_checkpoint(run)
    assert ck["options"]["init_from"] == str(twin)
    assert ck["init"]["config"] == "tiny-recipe-float" and "binarized" in ck["init"]["what"]
    # before any step the binarized model follows the twin's weights
    _, fmodel = load_run(twin)
    model = build_model(cfgs["bin"])
    init_from_model(model, fmodel)
    for mb, mf in zip(model.layers, fmodel.layers):
        if hasattr(mb, "conv"):
            e, w = effective_weight(mb.conv), effective_weight(mf.conv)
            assert float((e * w).sum() / (e.norm() * w.norm())) > 0.5
    assert torch.equal(model.layers[4].conv.bias, fmodel.layers[4].conv.bias)
    assert torch.equal(model.layers[0].bn.weight, fmodel.layers[0].bn.weight)
    # the same config is copied exactly; another width is refused, naming the layer
    other = build_model(cfgs["bin"])
    assert "same config" in init_from_model(other, model)
    assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(),
                                                 model.state_dict().values()))
    with pytest.raises(RunError, match="conv"):
        quiet(cfgs["wide"], tmp_path / "wide", opts(epochs=1, init_from=str(twin)))


# ---------------------------------------------------------------------------------------------
# distillation


def test_distill_loss_is_zero_at_the_teacher_and_has_gradients(cfgs):
    cfg = cfgs["bin"]
    torch.manual_seed(0)
    t = torch.randn(4, 12, 4, 4) * 3
    loss, parts = distill_loss(t.clone(), t, cfg)
    assert abs(float(loss)) < 1e-5 and set(parts) == {"kd", "kd_obj", "kd_box"}
    s = (t + torch.randn_like(t)).requires_grad_(True)
    loss, parts = distill_loss(s, t, cfg)
    assert float(loss.detach()) > 0 and parts["kd"] == pytest.approx(parts["kd_obj"] + parts["kd_box"])
    loss.backward()
    assert s.grad.abs().sum() > 0


def test_distilled_run_resumes_exactly_without_the_teacher_run(cfgs, twin, tmp_path):
    teacher = tmp_path / "teacher"
    shutil.copytree(twin, teacher)
    o = opts(epochs=3, distill_from=str(teacher), distill_weight=0.5)
    straight = tmp_path / "straight"
    r = quiet(cfgs["bin"], straight, o)
    assert all("kd" in h for h in r.history)
    assert load_checkpoint(straight)["teacher"]["source"] == str(teacher)

    def stop(epoch, step):
        if epoch == 1 and step == 1:
            raise KeyboardInterrupt

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        quiet(cfgs["bin"], run, o, on_step=stop)
    shutil.rmtree(teacher)                 # the teacher's weights travel in the checkpoint
    quiet(cfgs["bin"], run, None, resume=True)
    a, b = load_checkpoint(straight), load_checkpoint(run)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    # a teacher that sees other images is refused
    quiet(cfgs["small"], tmp_path / "small", opts(epochs=1, n_train=8))
    with pytest.raises(RunError, match="teacher"):
        quiet(cfgs["bin"], tmp_path / "x", opts(distill_from=str(tmp_path / "small")))


def test_export_of_recipe_runs_is_bit_exact(cfgs, twin, tmp_path):
    run = tmp_path / "both"
    quiet(cfgs["bin"], run, opts(init_from=str(twin), distill_from=str(twin)))
    _, model = load_run(run)
    art = export_checkpoint(run)
    from dupnet.sw.data import load_split
    ds = load_split(cfgs["bin"], "builtin", "test", n=8)
    images = np.stack([ds[i].image for i in range(len(ds))]).astype(np.uint8)
    rep = compare_with_golden(model, art, images)
    assert equivalence_ok(rep), rep


# ---------------------------------------------------------------------------------------------
# options, resume and the CLI


def test_resume_mismatches_names_the_options():
    saved = opts(distill_from="runs/a").to_dict()
    assert resume_mismatches(saved, opts(distill_from="runs/a", epochs=9)) == []
    bad = resume_mismatches(saved, opts(distill_from="runs/b", seed=2))
    assert bad == ["seed: 0 -> 2", "distill_from: 'runs/a' -> 'runs/b'"]
    old = {k: v for k, v in saved.items() if k not in ("init_from", "distill_from",
                                                       "distill_weight")}
    assert resume_mismatches(old, opts()) == []          # checkpoints from before the options
    with pytest.raises(Exception, match="distill_weight"):
        opts(distill_weight=-1).validate()


@pytest.mark.parametrize("extra, message", [
    (["--resume", "--distill", "{twin}"], "keeps the options stored"),
    (["--resume", "--init-from", "{twin}"], "keeps the options stored"),
    (["--distill-weight", "2"], "needs --distill"),
    (["--init-from", "{tmp}/missing"], "no such run directory"),
])
def test_cli_recipe_errors(extra, message, cfgs, twin, tmp_path, capsys):
    argv = ["train", cfgs["bin"].source, "--out", str(tmp_path / "r"), "--epochs", "1",
            "--n-train", "8", "--batch-size", "8", "--threads", "1", "--quiet"]
    argv += [a.format(twin=twin, tmp=tmp_path) for a in extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "r" / CHECKPOINT).exists()
