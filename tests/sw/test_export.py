"""Export and the core promise: PyTorch eval of the QAT model == golden model of the export,
on every activation code of every layer (ties at a threshold are the only admissible
exception; these tests count mismatches, classify each, and assert there are none)."""
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skimage_data

from dupnet.errors import DupnetError
from dupnet.sw.artifact import Artifact
from dupnet.sw.checkpoint import CHECKPOINT_FORMAT
from dupnet.sw.config import ConvGeometry, load_config, parse_config
from dupnet.sw.datasets import builtin_dataset
from dupnet.sw.export import ExportError, export_checkpoint, export_model, fold_thresholds
from dupnet.sw.equivalence import compare_with_golden as compare
from dupnet.sw.golden import GoldenModel, threshold
from dupnet.sw.qat import INPUT_SCALE, QuantConvBlock, build_model


def _cfg(name, h, w, c, layers, anchors=((1.0, 1.0),), classes=1):
    return parse_config({"name": name, "input": {"height": h, "width": w, "channels": c},
                         "head": {"classes": classes, "anchors": [list(a) for a in anchors]},
                         "layers": layers})


# Configs beside the shipped demo: w_dup and x_dup on k=1 and k=3, stride-1 and stride-2
# pools, 1..4-bit activations, a 3-channel input, a non-square map.
MIXED = _cfg("mixed", 24, 24, 3, [
    {"kind": "conv", "k": 3, "out_channels": 8, "x_dup": 3, "act_bits": 1},
    {"kind": "maxpool", "stride": 2},
    {"kind": "conv", "k": 1, "out_channels": 16, "w_dup": 4, "act_bits": 3},
    {"kind": "maxpool", "stride": 1},
    {"kind": "conv", "k": 3, "out_channels": 16, "w_dup": 2, "act_bits": 4},
    {"kind": "maxpool", "stride": 2},
    {"kind": "conv", "k": 3, "out_channels": 12, "w_dup": 4}], anchors=((1, 1), (2, 2)))
K1_FIRST = _cfg("k1-first", 16, 20, 1, [
    {"kind": "conv", "k": 1, "out_channels": 6, "x_dup": 4, "act_bits": 4},
    {"kind": "conv", "k": 3, "out_channels": 12, "x_dup": 2, "act_bits": 2},
    {"kind": "maxpool", "stride": 1},
    {"kind": "conv", "k": 3, "out_channels": 8, "w_dup": 3, "act_bits": 3},
    {"kind": "conv", "k": 1, "out_channels": 7, "x_dup": 2}], classes=2)
CONFIGS = {"dupnet-demo": lambda: load_config("dupnet-demo"), "mixed": lambda: MIXED,
           "k1-first": lambda: K1_FIRST}


def real_images(cfg, n, seed=0):
    """uint8 NHWC images of the config's size: the built-in test split plus a natural photo."""
    size = (cfg.input_height, cfg.input_width)
    ds = builtin_dataset("test", n=n - 1, size=size, channels=cfg.input_channels, seed=seed)
    imgs = [ds[i].image for i in range(len(ds))]
    assert len(imgs) == n - 1
    photo = Image.fromarray(skimage_data.coffee()).resize((size[1], size[0]), Image.BILINEAR)
    photo = np.asarray(photo.convert("L" if cfg.input_channels == 1 else "RGB"))
    imgs.append(photo.reshape(size + (cfg.input_channels,)))
    return np.stack(imgs).astype(np.uint8)


def to_torch(images):
    return torch.from_numpy(images).permute(0, 3, 1, 2).float()


def train_ish(model, images, steps=4, seed=0):
    """A few real optimizer steps, random clips, BN statistics calibrated on the images, then
    BN parameters perturbed: negative gammas, one zero-gamma (constant) channel per layer."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x = to_torch(images)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    target = torch.randn(model(x[:1]).shape[1:], generator=g)
    for _ in range(steps):
        loss = (model(x) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.clip_latent_()
    blocks = [m for m in model.layers if isinstance(m, QuantConvBlock)]
    with torch.no_grad():
        for b in blocks:
            b.act.clip.fill_(float(torch.empty(1).uniform_(1.0, 4.0, generator=g)))
            b.bn.reset_running_stats()
            b.bn.momentum = None                      # cumulative average over the pass
        model(x)
        for b in blocks:
            b.bn.momentum = 0.1
            c = b.bn.weight.numel()
            sign = torch.where(torch.rand(c, generator=g) < 0.35, -1.0, 1.0)
            b.bn.weight.copy_(sign * torch.empty(c).uniform_(0.5, 2.0, generator=g))
            b.bn.weight[int(torch.randint(c, (1,), generator=g))] = 0.0
            b.bn.bias.copy_(torch.empty(c).uniform_(-0.5, 1.0, generator=g)
                            * float(b.act.clip_value()))
    model.eval()
    return model


def _check(rep):
    assert rep["mismatches"] == 0, (
        f"{rep['mismatches']} of {rep['codes']} codes differ ({rep['mismatches_at_ties']} at "
        f"a tie): {rep['per_layer']}")
    assert rep["ties"] == 0, f"{rep['ties']} pre-activations lie on a threshold (a tie)"
    assert rep["acc_equal"], "last-layer integer accumulators differ"
    assert rep["head_err"] <= 1e-5 * max(1.0, rep["head_scale"])
    assert rep["head_forward_err"] == 0


@pytest.mark.parametrize("name", list(CONFIGS))
def test_golden_equals_torch_eval_on_real_images(name):
    cfg = CONFIGS[name]()
    images = real_images(cfg, 6 if name == "dupnet-demo" else 8, seed=1)
    model = train_ish(build_model(cfg), images, seed=len(name))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    art = export_model(model, cfg)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), \
        "export modified the model"
    art = Artifact.from_bytes(art.to_bytes())        # what the hardware gets
    rep = compare(model, art, images)
    print(f"{name}: {rep['codes']} codes + {rep['acc_compared']} accs compared, "
          f"{rep['mismatches']} mismatches, {rep['ties']} ties; levels {rep['levels']}")
    _check(rep)
    # the data is not vacuous: every hidden conv uses several levels, some layer uses all 4+
    assert min(rep["levels"]) >= 2 and max(rep["levels"]) >= 4
    # the normalisations are exercised: negated channels and a saturated constant channel
    negs, consts = 0, 0
    for g, m in zip(model.geometry, model.layers):
        if isinstance(m, QuantConvBlock):
            v = m.conv.quant.signs().detach().permute(0, 2, 3, 1).numpy()
            w = art.layers[g.index].weights
            neg = (m.bn.weight < 0).numpy()
            assert np.array_equal(w[neg], -v[neg]) and np.array_equal(w[~neg], v[~neg])
            negs += int(neg.sum())
            t = art.layers[g.index].thresholds
            zero = (m.bn.weight == 0).numpy()
            assert np.all((t[zero] == g.threshold_min) | (t[zero] == g.threshold_max))
            consts += int(zero.sum())
    assert negs > 0 and consts > 0


@pytest.mark.parametrize("name", ["mixed", "k1-first", "dupnet-demo"])
@pytest.mark.parametrize("sign", [1, -1])
def test_worst_case_inputs_reach_acc_bounds(name, sign):
    """All-255 image, all-(+1) or all-(-1) weights, BN set so that the top code needs
    acc == +-acc_max: every layer's accumulator reaches its bound, hidden codes reach the
    maximum, and golden and torch agree on every code."""
    cfg = CONFIGS[name]()
    model = build_model(cfg).eval()
    s_in = float(np.float32(INPUT_SCALE))
    with torch.no_grad():
        for g, m in zip(model.geometry, model.layers):
            if not isinstance(g, ConvGeometry):
                continue
            m.conv.quant.weight.fill_(0.5 * sign)
            if g.is_last:
                m.conv.bias.uniform_(-1, 1)
                continue
            bn, n = m.bn, (1 << g.act_bits) - 1
            m.act.clip.fill_(2.0)
            s = float(m.act.scale())
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
            alpha = 0.5
            # |a| = s / 4: the top code needs acc*sign == acc_max, lower codes a few steps down
            gabs = (s / 4) / (alpha * s_in)
            bn.weight.fill_(gabs * sign)
            aabs = gabs * alpha * s_in
            # y(acc_max) = (n - 1/2) s + |a|/2: half a step of acc above the top threshold
            bn.bias.fill_((n - 0.5) * s + aabs / 2 - aabs * g.acc_max)
            bn.weight[0] = 0.0                     # a constant channel at the top code
            bn.bias[0] = n * s
            s_in = s
    art = export_model(model, cfg)
    images = np.full((2, cfg.input_height, cfg.input_width, cfg.input_channels), 255, np.uint8)
    images[1, ::3] = 0                             # a second image with some structure
    rep = compare(model, art, images)
    _check(rep)
    gouts = GoldenModel(art).forward(images)
    for g, o in zip(model.geometry, gouts):
        if isinstance(g, ConvGeometry):
            if g.is_last:
                assert int((o * sign).max()) == g.acc_max, g.name
            else:
                assert o.max() == (1 << g.act_bits) - 1
                t = art.layers[g.index].thresholds
                # the top threshold of the non-constant channels sits exactly at acc_max
                assert np.all(t[1:, -1] == g.acc_max), (g.name, t[1:, -1])
                assert np.all(t[0] == g.threshold_min)


def _bruteforce_codes(a, c, s, bits, g):
    acc = np.arange(-g.acc_max, g.acc_max + 1, dtype=np.float64)
    y = a[:, None] * acc[None, :] + c[:, None]
    return np.clip(np.floor(y / s + 0.5), 0, (1 << bits) - 1).astype(np.int64)


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_fold_thresholds_bruteforce_every_accumulator(bits):
    g = ConvGeometry(index=0, name="c", k=3, height=4, width=4, in_channels=5, out_channels=9,
                     w_dup=1, x_dup=1, in_bits=3, act_bits=bits, is_last=False)
    rng = np.random.default_rng(bits)
    s = 0.7
    a = np.array([0.013, -0.021, 0.0, 0.0, 1e-12, -1e-12, 40.0, 0.003, -0.5])
    c = np.array([0.3, 1.1, 0.2, 0.9 * (1 << bits) * s, 5.0, -3.0, -2.0, -1e6, 1e6])
    c[[0, 1, 7]] += rng.normal(0, 0.3, 3)
    t, neg = fold_thresholds(a, c, s, bits, g)
    assert t.shape == (9, (1 << bits) - 1) and np.all(np.diff(t, axis=1) >= 0)
    assert t.min() >= g.threshold_min and t.max() <= g.threshold_max
    assert neg.tolist() == [bool(v < 0) for v in a]
    ref = _bruteforce_codes(a, c, s, bits, g)                  # [C_out, accs]
    acc = np.arange(-g.acc_max, g.acc_max + 1)
    acc_hw = np.where(neg[:, None], -acc[None, :], acc[None, :])   # negated weights
    got = threshold(acc_hw.T, t).T                              # acc as [N=accs, C_out]
    assert np.array_equal(got, ref)


def test_export_rejects_float_config():
    cfg = parse_config({"name": "f", "weights": "float",
                        "input": {"height": 16, "width": 16, "channels": 1},
                        "head": {"anchors": [[1, 1]]},
                        "layers": [{"kind": "conv", "k": 1, "out_channels": 6}]})
    with pytest.raises(ExportError, match="float weights"):
        export_model(build_model(cfg), cfg)


def _save_run(tmp_path, cfg, model, **extra):
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"format": CHECKPOINT_FORMAT, "config": cfg.to_dict(),
                "model": model.state_dict(), "epoch": 3, **extra}, run / "checkpoint.pt")
    return run


def test_export_checkpoint_run_dir_and_pt_path(tmp_path):
    cfg = K1_FIRST
    model = build_model(cfg).eval()
    run = _save_run(tmp_path, cfg, model)
    art = export_checkpoint(run)
    assert art.meta["epoch"] == 3 and art.meta["run"] == str(run)
    ref = export_model(model, cfg)
    assert art.to_bytes() != b"" and all(
        np.array_equal(art.layers[i].weights, ref.layers[i].weights) for i in ref.layers)
    art2 = export_checkpoint(run / "checkpoint.pt")
    assert art2.layers.keys() == art.layers.keys()


def test_export_checkpoint_errors(tmp_path):
    with pytest.raises(DupnetError, match="no such run directory or checkpoint"):
        export_checkpoint(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DupnetError, match="no checkpoint.pt"):
        export_checkpoint(tmp_path / "empty")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(DupnetError, match="not a readable checkpoint"):
        export_checkpoint(junk)
    from dupnet.sw.random_artifact import random_artifact
    random_artifact(K1_FIRST).save(tmp_path / "art.pt")
    with pytest.raises(DupnetError, match="integer artifact, not a training checkpoint"):
        export_checkpoint(tmp_path / "art.pt")
    torch.save({"model": {}}, tmp_path / "foreign.pt")
    with pytest.raises(DupnetError, match="not a dupnet checkpoint"):
        export_checkpoint(tmp_path / "foreign.pt")
    torch.save({"format": CHECKPOINT_FORMAT, "model": {}}, tmp_path / "nocfg.pt")
    with pytest.raises(DupnetError, match="lacks field 'config'"):
        export_checkpoint(tmp_path / "nocfg.pt")
    other = build_model(MIXED)
    torch.save({"format": CHECKPOINT_FORMAT, "config": K1_FIRST.to_dict(),
                "model": other.state_dict(), "epoch": 1}, tmp_path / "mismatch.pt")
    with pytest.raises(DupnetError, match="weights do not fit the embedded config"):
        export_checkpoint(tmp_path / "mismatch.pt")
    fcfg = parse_config({"name": "f", "weights": "float",
                         "input": {"height": 16, "width": 16, "channels": 1},
                         "head": {"anchors": [[1, 1]]},
                         "layers": [{"kind": "conv", "k": 1, "out_channels": 6}]})
    torch.save({"format": CHECKPOINT_FORMAT, "config": fcfg.to_dict(),
                "model": build_model(fcfg).state_dict(), "epoch": 0}, tmp_path / "float.pt")
    with pytest.raises(ExportError, match="float weights"):
        export_checkpoint(tmp_path / "float.pt")
