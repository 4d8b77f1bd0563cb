"""Networks and graphs the interop tests share: the configs exported and the small Brevitas
network (defined, trained a few steps and exported by Brevitas' own QONNX exporter)."""
from __future__ import annotations

import tomllib

import numpy as np

from dupnet.sw.config import load_config, parse_config

from ..sim.cases import config as sim_config
from ..tiny_configs import tiny_config_toml

#: (id, how to build the config): the shipped demo configs, the tiny training configs (both
#: second-pool strides) and the RTL regression's odd/dup/feat networks (odd 5x7 map, k=1 hidden
#: layer with w_dup 3, 1-bit codes, 3-channel input with x_dup)
SMALL_CONFIGS = {
    "dupnet-demo": lambda: load_config("dupnet-demo"),
    "dupnet-demo-ifq": lambda: load_config("dupnet-demo-ifq"),
    "tiny": lambda: parse_config(tomllib.loads(tiny_config_toml("tiny", 16)), "tiny"),
    "tiny-s1": lambda: parse_config(tomllib.loads(tiny_config_toml(
        "tiny-s1", 16, widths=(6, 4), second_pool_stride=1)), "tiny-s1"),
    "sim-dup": lambda: sim_config("dup"),
    "sim-odd": lambda: sim_config("odd"),
    "sim-feat": lambda: sim_config("feat"),
}
PAPER_CONFIGS = ("dupnet-tinier-yolo", "ifq-tinier-yolo")


def images(cfg, n: int, seed: int = 0) -> np.ndarray:
    """Random uint8 images plus, first, an all-255 frame (every accumulator at its extreme)."""
    rng = np.random.default_rng(seed)
    shape = (n, cfg.input_height, cfg.input_width, cfg.input_channels)
    x = rng.integers(0, 1 << cfg.input_bits, size=shape)
    x[0] = (1 << cfg.input_bits) - 1
    return x


def brevitas_network(seed: int = 0, steps: int = 3):
    """A small binary network in Brevitas, trained ``steps`` SGD steps on random 8x8x2 images:
    input duplication (``torch.cat([x, x])``), 3x3 binary convs (``BipolarQuant`` weights,
    scale 0.1) with BatchNorm and 2-/3-bit ``QuantReLU``, a stride-2 pool, a stride-1 pool
    after a replication pad, and a 1x1 head conv with a bias (6 outputs: 1 anchor, 1 class).
    Returns the model in eval mode."""
    import brevitas.nn as qnn
    import torch
    from brevitas.quant import SignedBinaryWeightPerTensorConst as Binary

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = qnn.QuantConv2d(4, 4, 3, padding=1, bias=False, weight_quant=Binary)
            self.bn1 = torch.nn.BatchNorm2d(4)
            self.a1 = qnn.QuantReLU(bit_width=2)
            self.p1 = torch.nn.MaxPool2d(2)
            self.c2 = qnn.QuantConv2d(4, 8, 3, padding=1, bias=False, weight_quant=Binary)
            self.bn2 = torch.nn.BatchNorm2d(8)
            self.a2 = qnn.QuantReLU(bit_width=3)
            self.pad = torch.nn.ReplicationPad2d((0, 1, 0, 1))
            self.p2 = torch.nn.MaxPool2d(2, stride=1)
            self.c3 = qnn.QuantConv2d(8, 6, 1, bias=True, weight_quant=Binary)

        def forward(self, x):
            x = torch.cat([x, x], 1)
            x = self.p1(self.a1(self.bn1(self.c1(x))))
            x = self.p2(self.pad(self.a2(self.bn2(self.c2(x)))))
            return self.c3(x)

    torch.manual_seed(seed)
    net = Net()
    x = torch.randint(0, 256, (8, 2, 8, 8)).float()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    net.train()
    for _ in range(steps):
        loss = net(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def export_brevitas(net, path) -> None:
    """``net`` exported by Brevitas' QONNX exporter to ``path`` (input 1x2x8x8)."""
    import warnings

    import torch
    from brevitas.export import export_qonnx
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(net, torch.zeros(1, 2, 8, 8), export_path=str(path))
