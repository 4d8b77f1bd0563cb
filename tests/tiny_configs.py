"""The small network configs the software, YOLO and flow tests train or run (one place)."""
from __future__ import annotations


def tiny_config_toml(name: str, size: int = 32, widths: tuple[int, int] = (4, 8),
                     weights: str = "binary", second_pool_stride: int = 2) -> str:
    """conv3x3 -> maxpool -> conv3x3 -> maxpool -> conv1x1 head (12 = 2 anchors x 6), 1 class,
    one input channel of ``size`` x ``size``. With binary weights: x_dup 2 on the first and
    last conv, w_dup 2 on the second, 2-bit activations."""
    binary = weights == "binary"
    dup_x = "x_dup = 2\n" if binary else ""
    dup_w = "w_dup = 2\n" if binary else ""
    act = "act_bits = 2\n" if binary else ""
    a = size / 16
    return (f'name = "{name}"\nweights = "{weights}"\n'
            f"[input]\nheight = {size}\nwidth = {size}\nchannels = 1\n"
            f"[head]\nclasses = 1\nanchors = [[{a}, {a}], [{2 * a}, {2 * a}]]\n"
            f'[[layers]]\nkind = "conv"\nk = 3\nout_channels = {widths[0]}\n{dup_x}{act}'
            f'[[layers]]\nkind = "maxpool"\nstride = 2\n'
            f'[[layers]]\nkind = "conv"\nk = 3\nout_channels = {widths[1]}\n{dup_w}{act}'
            f'[[layers]]\nkind = "maxpool"\nstride = {second_pool_stride}\n'
            f'[[layers]]\nkind = "conv"\nk = 1\nout_channels = 12\n{dup_x}')
