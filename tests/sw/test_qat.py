"""Quantizers, STEs and the QAT model (dupnet.sw.qat)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dupnet.sw.config import conv_geometries, load_config, parse_config
from dupnet.sw.qat import (ActQuantizer, BinarySign, BinaryWeightQuantizer,
                           DupConv2d, HeadConv, MaxPool, QuantConvBlock, build_model)


def test_binary_sign_forward_and_clipped_ste():
    w = torch.tensor([-2.0, -1.0, -0.3, 0.0, 0.4, 1.0, 1.5], requires_grad=True)
    v = BinarySign.apply(w)
    assert v.tolist() == [-1, -1, -1, 1, 1, 1, 1]          # sign(0) = +1
    g = torch.arange(1.0, 8.0)
    v.backward(g)
    assert w.grad.tolist() == [0, 2, 3, 4, 5, 6, 0]         # grad * [|w| <= 1]


@pytest.mark.parametrize("w_dup", [1, 2, 4])
def test_weight_quantizer_duplication_and_scale(w_dup):
    torch.manual_seed(w_dup)
    q = BinaryWeightQuantizer(out_channels=5, c_dup=8, k=3, w_dup=w_dup)
    assert tuple(q.weight.shape) == (5, 8 // w_dup, 3, 3)
    assert sum(p.numel() for p in q.parameters()) == 5 * 3 * 3 * 8 // w_dup
    w, alpha = q()
    assert tuple(w.shape) == (5, 8, 3, 3)
    v = torch.where(q.weight >= 0, 1.0, -1.0)
    for c in range(8):
        assert torch.equal(w[:, c], v[:, c // w_dup])        # W[o, c'] = V[o, c' // w_dup]
    assert torch.allclose(alpha, q.weight.abs().mean(dim=(1, 2, 3)))
    # gradient reaches every unique latent weight (all |w| <= 1 at init)
    (w * torch.randn_like(w)).sum().backward()
    assert (q.weight.grad != 0).all()


def test_weight_quantizer_rejects_non_dividing_dup():
    with pytest.raises(ValueError, match="w_dup 3"):
        BinaryWeightQuantizer(4, 8, 3, w_dup=3)


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_act_quantizer_forward_matches_formula(bits):
    q = ActQuantizer(bits, clip=2.5)
    n = (1 << bits) - 1
    y = torch.linspace(-1, 4, 1001)
    out = q(y)
    s = 2.5 / n
    ref = np.clip(np.floor(y.numpy().astype(np.float64) / s + 0.5), 0, n) * s
    assert np.allclose(out.detach().numpy(), ref, atol=1e-6)
    codes = q.codes(y)
    assert torch.equal(codes, torch.round(out / q.scale()).detach())
    assert codes.min() == 0 and codes.max() == n
    assert float(q.scale().detach()) == pytest.approx(s)


def test_act_quantizer_gradients_ste_and_pact():
    q = ActQuantizer(2, clip=3.0)
    y = torch.tensor([-0.5, 0.2, 1.4, 2.9, 3.0, 3.5, 7.0], requires_grad=True)
    q(y).backward(torch.ones(7))
    assert y.grad.tolist() == [0, 1, 1, 1, 1, 0, 0]          # STE inside [0, clip]
    assert float(q.clip.grad) == 2.0                         # PACT: count of y > clip


def _conv_reference(x, latent, w_dup, x_dup, k):
    v = torch.where(latent >= 0, 1.0, -1.0)
    w = torch.cat([v[:, c // w_dup:c // w_dup + 1] for c in range(v.shape[1] * w_dup)], 1)
    alpha = latent.abs().mean(dim=(1, 2, 3))
    xd = torch.cat([x] * x_dup, 1)
    return F.conv2d(xd, w, padding=k // 2) * alpha.view(1, -1, 1, 1)


@pytest.mark.parametrize("c_in,k,x_dup,w_dup", [(3, 3, 1, 1), (3, 3, 2, 1), (3, 1, 3, 1),
                                                (4, 3, 1, 2), (6, 1, 1, 3), (2, 3, 1, 2)])
def test_dupconv_train_and_exact_eval_paths(c_in, k, x_dup, w_dup):
    torch.manual_seed(0)
    conv = DupConv2d(c_in, 4, k, x_dup=x_dup, w_dup=w_dup)
    s = 0.37
    codes = torch.randint(0, 8, (2, c_in, 6, 5)).float()
    x = codes * s
    ref = _conv_reference(x, conv.quant.weight.detach(), w_dup, x_dup, k)
    conv.train()
    assert torch.allclose(conv(x, s), ref, atol=1e-5)
    conv.eval()
    seen = []
    conv.acc_probe.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    out = conv(x, torch.tensor(s))
    assert torch.allclose(out, ref, atol=1e-5)
    acc = seen[0]
    assert torch.equal(acc, torch.round(acc))                # integer accumulators
    ref_acc = _conv_reference(codes, torch.where(conv.quant.weight >= 0, 1.0, -1.0).detach(),
                              w_dup, x_dup, k)
    assert torch.equal(acc, ref_acc)


def test_maxpool_stride1_replicates_edge():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    y = MaxPool(1)(x)
    assert y.shape == x.shape
    xp = np.pad(x[0, 0].numpy(), ((0, 1), (0, 1)), mode="edge")
    ref = np.maximum(np.maximum(xp[:-1, :-1], xp[1:, :-1]), np.maximum(xp[:-1, 1:], xp[1:, 1:]))
    assert np.array_equal(y[0, 0].numpy(), ref)
    assert MaxPool(2)(x[..., :2, :]).shape == (1, 1, 1, 2)


@pytest.mark.parametrize("name", ["dupnet-demo", "dupnet-tinier-yolo", "ifq-tinier-yolo"])
def test_parameters_are_unique_weight_bits(name):
    cfg = load_config(name)
    model = build_model(cfg)
    latent = sum(q.weight.numel() for q in model.weight_quantizers())
    assert latent == sum(g.unique_weight_bits for g in conv_geometries(cfg))
    for g, mod in zip(model.geometry, model.layers):
        if g.kind == "conv":
            assert isinstance(mod, HeadConv if g.is_last else QuantConvBlock)
            assert mod.conv.quant.weight.numel() == g.unique_weight_bits


def test_demo_forward_shapes_codes_and_training_step():
    torch.manual_seed(0)
    cfg = load_config("dupnet-demo")
    model = build_model(cfg)
    images = torch.randint(0, 256, (2, 1, 64, 64)).float()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    head = model(images)
    assert head.shape == (2, 12, 8, 8)
    head.pow(2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
    opt.step()
    model.clip_latent_()
    assert all(q.weight.abs().max() <= 1 for q in model.weight_quantizers())
    model.eval()
    with torch.no_grad():
        outs = model.forward_layers(images)
        head2 = model(images)
    assert len(outs) == len(cfg.layers)
    assert torch.allclose(outs[-1], head2)
    for g, o in zip(model.geometry[:-1], outs[:-1]):
        assert o.shape[1:] == (g.out_channels, g.out_height, g.out_width)
        assert torch.equal(o, torch.round(o)) and o.min() >= 0
        assert o.max() <= (1 << g.out_bits) - 1


def test_input_scale_first_layer_codes_are_the_image():
    cfg = load_config("dupnet-demo")
    model = build_model(cfg).eval()
    seen = []
    model.layers[0].conv.acc_probe.register_forward_hook(lambda m, i, o: seen.append(o))
    images = torch.randint(0, 256, (1, 1, 64, 64)).float()
    with torch.no_grad():
        model(images)
        v = model.layers[0].conv.quant.signs()
    # acc of layer 1 is the conv of the raw 0..255 codes, duplicated x_dup = 2 times
    ref = F.conv2d(torch.cat([images, images], 1), v, padding=1)
    assert torch.equal(seen[0], ref)
    assert float(seen[0].abs().max()) > 255


def test_float_config_builds_plain_network():
    cfg = parse_config({
        "name": "f", "weights": "float", "input": {"height": 16, "width": 16, "channels": 3},
        "head": {"classes": 1, "anchors": [[1, 1]]},
        "layers": [{"kind": "conv", "k": 3, "out_channels": 8},
                   {"kind": "maxpool", "stride": 2},
                   {"kind": "conv", "k": 1, "out_channels": 6}]})
    model = build_model(cfg)
    assert model.weight_quantizers() == []
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.bias is not None for c in convs] == [False, True]
    out = model(torch.randint(0, 256, (2, 3, 16, 16)).float())
    assert out.shape == (2, 6, 8, 8)


def test_model_refuses_accumulators_beyond_float32():
    from dupnet.sw.config import ConfigError
    cfg = parse_config({
        "name": "w", "input": {"height": 4, "width": 4, "channels": 32, "bits": 16},
        "head": {"anchors": [[1, 1]]},
        "layers": [{"kind": "conv", "k": 3, "out_channels": 6}]}, source="w.toml")
    with pytest.raises(ConfigError, match=r"w.toml layer 0 \(conv0\).*2\^24"):
        build_model(cfg)
