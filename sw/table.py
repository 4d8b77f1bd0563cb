"""The paper's comparison table (size, compute, ratios) computed from configs.

Counting rules (all from :mod:`dupnet.sw.config` geometry, nothing re-derived):

* **size** of a binary network = on-chip bits = unique weight bits + threshold bits
  (``C_out * (2^b - 1) * threshold_bits`` per hidden conv), in bytes; of a float network
  = 32-bit weights (``k*k*C_in*C_out`` per conv, BN folded) in bytes.
* **binary ops** = integer add/sub per frame as the accelerator executes them, inputs sharing
  a weight pre-added first (:attr:`ConvGeometry.binary_ops`).
* **float ops** = 2 per multiply-accumulate of a float conv; for a binary network the
  host-side affine decode of the last layer (``2 * H * W * C_out``).
* **compute** = binary ops + float ops (one op each).

Every layer with parameters (``has_params``) counts, through its geometry's ``params``,
``on_chip_bits``, ``binary_ops``, ``macs`` and ``weight_bits_without_dup``; layers without
parameters (max-pool) cost nothing here.
"""
from __future__ import annotations

from dataclasses import dataclass

from .config import NetworkConfig, conv_geometries, network_geometry, param_geometries

__all__ = ["NetworkCost", "network_cost", "comparison_table", "PAPER"]

# Gao et al. 2019: the figures the table is compared with
PAPER = {
    "dupnet_kb": 36.9, "ifq_kb": 240.9, "size_vs_tiny_yolo": 1694.2,
    "compute_vs_tiny_yolo": 389.9, "size_vs_ifq": 6.5, "compute_saving_vs_ifq": 0.420,
}


@dataclass(frozen=True)
class NetworkCost:
    name: str
    weights: str
    params: int
    size_bytes: float
    binary_ops: int
    float_ops: int

    @property
    def compute(self) -> int:
        return self.binary_ops + self.float_ops


def network_cost(cfg: NetworkConfig) -> NetworkCost:
    gs = param_geometries(cfg)
    params = sum(g.params if cfg.is_binary else g.weight_bits_without_dup for g in gs)
    if cfg.is_binary:
        size = sum(g.on_chip_bits for g in gs) / 8
        bops = sum(g.binary_ops for g in gs)
        last = next(g for g in network_geometry(cfg) if g.is_last)
        fops = 2 * last.out_height * last.out_width * last.out_channels
    else:
        size = 4.0 * params
        bops = 0
        fops = sum(2 * g.macs for g in gs)
    return NetworkCost(cfg.name, cfg.weights, params, size, bops, fops)


def _fmt_bytes(b: float) -> str:
    return f"{b / 1024:,.1f} KiB" if b < 1024 ** 2 else f"{b / 1024 ** 2:,.1f} MiB"


def comparison_table(configs: list[NetworkConfig]) -> str:
    """A Markdown table of the configs with ratios against the float and the IFQ-style config
    among them (the first float one and the first binary one without duplication)."""
    costs = [network_cost(c) for c in configs]
    ref_float = next((c for c in costs if c.weights == "float"), None)
    ref_ifq = next((k for c, k in zip(configs, costs) if c.is_binary and
                    all(g.w_dup == 1 and g.x_dup == 1 for g in conv_geometries(c))), None)
    head = ["network", "weights", "params", "on-chip size", "binary ops/frame",
            "float ops/frame"]
    if ref_float:
        head += [f"size vs {ref_float.name}", f"compute vs {ref_float.name}"]
    if ref_ifq:
        head += [f"size vs {ref_ifq.name}", f"compute vs {ref_ifq.name}"]
    rows = []
    for c in costs:
        row = [c.name, c.weights, f"{c.params:,}", _fmt_bytes(c.size_bytes),
               f"{c.binary_ops / 1e6:,.1f} M", f"{c.float_ops / 1e6:,.1f} M"]
        if ref_float:
            row += [f"{ref_float.size_bytes / c.size_bytes:,.1f}x",
                    f"{ref_float.compute / c.compute:,.1f}x"]
        if ref_ifq:
            row += [f"{ref_ifq.size_bytes / c.size_bytes:,.2f}x",
                    f"{100 * (1 - c.compute / ref_ifq.compute):+.1f}% less"]
        rows.append(row)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    p = PAPER
    lines += ["", "Paper (Gao et al. 2019): DupNet-Tinier-YOLO "
              f"{p['dupnet_kb']} KB, IFQ-Tinier-YOLO {p['ifq_kb']} KB; DupNet vs Tiny-YOLO "
              f"{p['size_vs_tiny_yolo']:,}x smaller, {p['compute_vs_tiny_yolo']}x less compute; "
              f"vs IFQ {p['size_vs_ifq']}x smaller, {100 * p['compute_saving_vs_ifq']:.1f}% "
              "less compute. The paper's layer widths are not public: these configs are our "
              "reconstruction, and the paper's compute unit is not stated (ours: one op per "
              "integer add/sub or float op, see docs/configs.md)."]
    return "\n".join(lines)
