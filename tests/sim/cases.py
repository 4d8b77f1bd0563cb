"""The regression matrix of the whole-network benches: small configs and foldings that cover
w_dup > 1, x_dup > 1, k = 1 and k = 3, stride-1 and stride-2 pools, odd image sizes,
non-power-of-two channel counts, PE = SIMD = 1 and wide (fully parallel) foldings."""
from __future__ import annotations

from dupnet.sw.config import conv_geometries, parse_config


def _conv(name, k, c, act=2, w_dup=1, x_dup=1):
    d = {"kind": "conv", "name": name, "k": k, "out_channels": c, "w_dup": w_dup,
         "x_dup": x_dup}
    if act is not None:
        d["act_bits"] = act
    return d


def _pool(name, stride):
    return {"kind": "maxpool", "name": name, "stride": stride}


CONFIGS = {
    # x_dup on first and last, w_dup in the middle, both pool kinds, 6 channels (not 2^n)
    "dup": {"name": "sim-dup", "input": {"height": 6, "width": 6, "channels": 3},
            "head": {"classes": 1, "anchors": [[1.0, 1.0]]},
            "layers": [_conv("conv1", 3, 6, x_dup=2), _pool("pool1", 2),
                       _conv("conv2", 3, 8, w_dup=2), _pool("pool2", 1),
                       _conv("conv3", 1, 6, act=None, x_dup=2)]},
    # odd image (5x7), grayscale, 1-bit and 3-bit codes, k=1 hidden layer, w_dup = 3
    "odd": {"name": "sim-odd", "input": {"height": 5, "width": 7, "channels": 1},
            "head": {"classes": 1, "anchors": [[1.0, 1.0]]},
            "layers": [_conv("conv1", 3, 3, act=1), _pool("pool1", 1),
                       _conv("conv2", 1, 6, act=3, w_dup=3),
                       _conv("conv3", 3, 6, act=None)]},
}


def config(name):
    return parse_config(CONFIGS[name], source=f"tests/sim/cases.py:{name}")


def folding(cfg, kind):
    """``min``: PE = SIMD = 1; ``wide``: PE = C_out, SIMD = C'; ``mixed``: in between."""
    from dupnet.hw.folded import FoldedConv
    from dupnet.hw.folding import Folding
    layers = {}
    for g in conv_geometries(cfg):
        cands = FoldedConv.candidates(g)
        if kind == "min":
            layers[g.name] = (1, 1)
        elif kind == "wide":
            layers[g.name] = (g.out_channels, g.c_dup)
        else:
            # the middle candidate by lane count: some PE > 1 and SIMD > 1 where possible
            cands = sorted(cands, key=lambda ps: (ps[0] * ps[1], ps))
            mid = [c for c in cands if c[0] > 1 and c[1] > 1] or cands
            layers[g.name] = mid[len(mid) // 2]
    return Folding(layers)
