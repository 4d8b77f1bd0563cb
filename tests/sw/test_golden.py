"""The golden integer model against naive loop references (the integer semantics, literally)."""
import numpy as np
import pytest

from dupnet.sw.config import ConvGeometry, conv_geometries, load_config
from dupnet.sw.golden import (GoldenModel, check_image, conv_acc, duplicate_inputs, maxpool,
                              preadd, threshold)
from dupnet.sw.random_artifact import random_artifact


def geom(k, c_in, c_out, w_dup=1, x_dup=1, in_bits=2, h=5, w=4, act_bits=2, last=False):
    return ConvGeometry(index=0, name="c", k=k, height=h, width=w, in_channels=c_in,
                        out_channels=c_out, w_dup=w_dup, x_dup=x_dup, in_bits=in_bits,
                        act_bits=None if last else act_bits, is_last=last)


def naive_conv(x, v, g):
    """acc[n,y,x,o] = sum_{ky,kx,c'} W[o,ky,kx,c'] * X'[n, y+ky-p, x+kx-p, c'] with zero padding,
    X' = concat([X]*x_dup), W[o,..,c'] = V[o,..,c'//w_dup]; plain Python integer loops."""
    n, h, w, c = x.shape
    xd = [[[[int(x[b, yy, xx, cc % c]) for cc in range(c * g.x_dup)] for xx in range(w)]
           for yy in range(h)] for b in range(n)]
    p = g.k // 2
    out = np.zeros((n, h, w, g.out_channels), dtype=np.int64)
    for b in range(n):
        for yy in range(h):
            for xx in range(w):
                for o in range(g.out_channels):
                    s = 0
                    for ky in range(g.k):
                        for kx in range(g.k):
                            iy, ix = yy + ky - p, xx + kx - p
                            if not (0 <= iy < h and 0 <= ix < w):
                                continue
                            for cc in range(g.c_dup):
                                s += int(v[o, ky, kx, cc // g.w_dup]) * xd[b][iy][ix][cc]
                    out[b, yy, xx, o] = s
    return out


@pytest.mark.parametrize("k,c_in,c_out,w_dup,x_dup", [
    (3, 2, 3, 1, 1), (1, 3, 4, 1, 1), (3, 2, 3, 1, 3), (1, 2, 2, 1, 2), (3, 4, 3, 2, 1),
    (3, 8, 2, 4, 1), (1, 6, 3, 3, 1)])
def test_conv_acc_vs_naive_loops(k, c_in, c_out, w_dup, x_dup):
    rng = np.random.default_rng(k * 100 + c_in * 10 + w_dup + x_dup)
    g = geom(k, c_in, c_out, w_dup, x_dup, in_bits=3)
    x = rng.integers(0, 8, (2, g.height, g.width, c_in))
    v = rng.choice(np.array([-1, 1], np.int8), (c_out, k, k, g.c_unique))
    got = conv_acc(x, v, g)
    assert got.dtype == np.int64
    assert np.array_equal(got, naive_conv(x, v, g))


def test_duplicate_and_preadd_orders():
    g = geom(1, 3, 1, x_dup=2)
    x = np.arange(3).reshape(1, 1, 1, 3)
    assert duplicate_inputs(x, g).ravel().tolist() == [0, 1, 2, 0, 1, 2]  # all C_in, again
    g = geom(1, 4, 1, w_dup=2)
    x = np.array([1, 10, 100, 1000]).reshape(1, 1, 1, 4)
    assert preadd(x, g).ravel().tolist() == [11, 1100]                   # adjacent channels


@pytest.mark.parametrize("k", [1, 3])
def test_padding_is_zero(k):
    g = geom(k, 1, 1, in_bits=8, h=3, w=3)
    x = np.full((1, 3, 3, 1), 255)
    acc = conv_acc(x, np.ones((1, k, k, 1), np.int8), g)[0, :, :, 0]
    if k == 3:
        assert acc.tolist() == [[4 * 255, 6 * 255, 4 * 255], [6 * 255, 9 * 255, 6 * 255],
                                [4 * 255, 6 * 255, 4 * 255]]
        assert acc[1, 1] == g.acc_max
    else:
        assert np.all(acc == 255)


def test_threshold_counts_met_thresholds():
    t = np.array([[-2, 0, 3], [5, 5, 5], [-10, -10, 10]])
    acc = np.array([[-3, 4, -10], [-2, 5, 9], [0, 6, 10], [3, -100, 11]]).reshape(4, 1, 1, 3)
    ref = [[sum(int(a >= tt) for tt in t[o]) for o, a in enumerate(row)]
           for row in acc.reshape(4, 3)]
    assert threshold(acc, t).reshape(4, 3).tolist() == ref
    assert ref == [[0, 0, 2], [1, 3, 2], [2, 3, 3], [3, 0, 3]]


def test_maxpool_both_modes_vs_loops():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, (2, 6, 8, 3))
    y2 = maxpool(x, 2)
    assert y2.shape == (2, 3, 4, 3)
    y1 = maxpool(x, 1)
    assert y1.shape == x.shape
    for b in range(2):
        for c in range(3):
            for i in range(6):
                for j in range(8):
                    win = [x[b, min(i + di, 5), min(j + dj, 7), c] for di in (0, 1)
                           for dj in (0, 1)]
                    assert y1[b, i, j, c] == max(win)          # edge replicate
                    if i < 3 and j < 4:
                        assert y2[b, i, j, c] == x[b, 2 * i:2 * i + 2, 2 * j:2 * j + 2, c].max()


@pytest.mark.parametrize("c_dup,in_bits,path", [(28, 16, "float32"), (29, 16, "float64"),
                                                 (7000, 8, "float32")])
def test_float_exactness_at_the_bound(c_dup, in_bits, path):
    """acc_max just below 2^24 rides float32, just above switches to float64: both exact."""
    g = geom(3, c_dup, 2, in_bits=in_bits, h=3, w=3)
    assert (g.acc_max < (1 << 24)) == (path == "float32")
    top = (1 << in_bits) - 1
    x = np.full((1, 3, 3, c_dup), top, dtype=np.int64)
    x[0, 0, 0, 0] = top - 1                           # an odd value so rounding would show
    v = np.ones((2, 3, 3, c_dup), np.int8)
    v[1] = -1
    acc = conv_acc(x, v, g)
    assert acc[0, 1, 1, 0] == g.acc_max - 1 and acc[0, 1, 1, 1] == -(g.acc_max - 1)
    x[0, 0, 0, 0] = top
    acc = conv_acc(x, v, g)
    assert acc[0, 1, 1, 0] == g.acc_max and acc[0, 1, 1, 1] == -g.acc_max
    rng = np.random.default_rng(c_dup)
    xr = rng.integers(top - 3, top + 1, (1, 3, 3, c_dup))
    vr = rng.choice(np.array([-1, 1], np.int8), (2, 3, 3, c_dup))
    # exact int64 reference for the centre pixel (full 3x3 window)
    centre = (xr[0][None] * vr).reshape(2, -1).sum(axis=1)
    assert np.array_equal(conv_acc(xr, vr, g)[0, 1, 1], centre)


def test_golden_model_layers_and_check_image():
    cfg = load_config("dupnet-demo")
    art = random_artifact(cfg, seed=1)
    gm = GoldenModel(art)
    img = np.random.default_rng(2).integers(0, 256, (2, 64, 64, 1)).astype(np.uint8)
    outs = gm.forward(img)
    assert [o.shape[1:] for o in outs] == [g.out_shape for g in gm.geometry]
    # recompute layer by layer from the definitions
    x = img.astype(np.int64)
    for g, o in zip(gm.geometry, outs):
        if g.kind == "conv":
            p = art.layers[g.index]
            acc = conv_acc(x, p.weights, g)
            x = acc if g.is_last else threshold(acc, p.thresholds)
        else:
            x = maxpool(x, g.stride)
        assert np.array_equal(o, x)
    assert np.array_equal(gm(img), outs[-1])
    head = gm.decode_inputs(outs[-1])
    last = art.layers[8]
    assert head.dtype == np.float32
    assert np.allclose(head, outs[-1] * last.scale.astype(np.float64) + last.bias, rtol=1e-6,
                       atol=1e-6)
    with pytest.raises(ValueError, match="takes"):
        check_image(np.zeros((1, 32, 32, 1), np.uint8), cfg)
    with pytest.raises(ValueError, match="outside"):
        check_image(np.full((64, 64, 1), 256), cfg)
    with pytest.raises(ValueError, match="dtype"):
        check_image(np.zeros((64, 64, 1), np.float32), cfg)


def _net(h, w, c, layers, in_bits=8, anchors=((1.0, 1.0),)):
    from dupnet.sw.config import parse_config
    return parse_config({"name": "g", "input": {"height": h, "width": w, "channels": c,
                                                "bits": in_bits},
                         "head": {"anchors": [list(a) for a in anchors]}, "layers": layers})


FAST_CASES = {
    "demo": lambda: load_config("dupnet-demo"),
    "mixed": lambda: _net(12, 10, 3, [
        {"kind": "conv", "k": 3, "out_channels": 8, "x_dup": 3, "act_bits": 1},
        {"kind": "maxpool", "stride": 1},
        {"kind": "conv", "k": 1, "out_channels": 16, "w_dup": 4, "act_bits": 3},
        {"kind": "maxpool", "stride": 2},
        {"kind": "conv", "k": 3, "out_channels": 6, "w_dup": 2, "act_bits": 8},
        {"kind": "maxpool", "stride": 1},
        {"kind": "conv", "k": 3, "out_channels": 12, "w_dup": 3}],
        anchors=((1, 1), (2, 2))),
    # 16-bit input: acc_max = 9*32*65535 > 2^24 -> float64 path (a single conv, so its
    # accumulators are the output)
    "wide": lambda: _net(7, 9, 32, [
        {"kind": "conv", "k": 3, "out_channels": 6, "w_dup": 2}], in_bits=16),
}


@pytest.mark.parametrize("case", list(FAST_CASES))
def test_golden_model_equals_reference(case):
    from dupnet.sw.golden import ReferenceGoldenModel
    cfg = FAST_CASES[case]()
    art = random_artifact(cfg, seed=3)
    rng = np.random.default_rng(4)
    top = (1 << cfg.input_bits) - 1
    img = rng.integers(0, top + 1, (3, cfg.input_height, cfg.input_width, cfg.input_channels))
    img[0] = top                                      # worst case: the accumulator bound
    if case == "wide":
        g0 = conv_geometries(cfg)[0]
        assert g0.acc_max > (1 << 24)
        w = art.layers[0].weights
        w[:2] = 1                                     # +-(acc_max - 1): odd, above 2^24
        w[2:] = -1
        img[0, 3, 4, 5] = top - 1
    ref, fast = ReferenceGoldenModel(art), GoldenModel(art)
    a, b = ref.forward(img), fast.forward(img)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x, y)
    assert np.array_equal(fast(img), a[-1])
    assert np.array_equal(fast.decode_inputs(a[-1]), ref.decode_inputs(a[-1]))
