"""Network configurations and the layer geometry: the one place both sides derive shapes from.

A configuration is a TOML file (see ``configs/*.toml`` and ``docs/configs.md``)::

    name = "dupnet-demo"
    weights = "binary"            # or "float" (full-precision reference; not exportable)

    [input]
    height = 64
    width = 64
    channels = 1
    bits = 8                      # the image is uint8

    [head]
    classes = 1
    anchors = [[1.0, 1.0], [2.0, 2.0]]   # (w, h) in output-grid cells

    [[layers]]
    kind = "conv"                 # conv | maxpool
    k = 3                         # 1 or 3, stride 1, zero "same" padding
    out_channels = 16
    x_dup = 2                     # input feature-map duplication (default 1)
    w_dup = 1                     # weight-channel duplication (default 1)
    act_bits = 2                  # output code width of a hidden conv; absent on the last conv

    [[layers]]
    kind = "maxpool"
    stride = 2                    # 2x2 window; stride 1 replicates the bottom/right edge

:func:`load_config` validates everything and raises :class:`ConfigError` naming the file,
the layer and the field.  :func:`network_geometry` turns a config into per-layer
:class:`ConvGeometry` / :class:`PoolGeometry` records with every derived quantity
(accumulator width, unique weight bits, threshold bits, operation counts).
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Union

from ..errors import DupnetError

__all__ = [
    "ConfigError", "ConvSpec", "PoolSpec", "NetworkConfig", "ConvGeometry", "PoolGeometry",
    "load_config", "parse_config", "network_geometry", "builtin_config_names",
    "resolve_config_path", "acc_bound", "signed_width", "conv_geometries", "config_from_dict",
    "total_on_chip_bits", "ceil_div", "Geometry", "LayerSpec",
]


class ConfigError(DupnetError):
    """A configuration is inconsistent. The message names the file, layer and field."""


@dataclass(frozen=True)
class ConvSpec:
    """A k x k convolution, stride 1, zero "same" padding."""
    name: str
    k: int
    out_channels: int
    w_dup: int = 1
    x_dup: int = 1
    act_bits: int | None = None   # None: last layer (emits accumulators)
    kind: str = "conv"


@dataclass(frozen=True)
class PoolSpec:
    """2x2 max-pool on activation codes; stride 2, or stride 1 with bottom/right edge replicate."""
    name: str
    stride: int = 2
    kind: str = "maxpool"


LayerSpec = Union[ConvSpec, PoolSpec]


@dataclass(frozen=True)
class NetworkConfig:
    name: str
    input_height: int
    input_width: int
    input_channels: int
    layers: tuple[LayerSpec, ...]
    anchors: tuple[tuple[float, float], ...]
    classes: int = 1
    input_bits: int = 8
    weights: str = "binary"
    description: str = ""
    source: str = "<memory>"

    @property
    def convs(self) -> list[ConvSpec]:
        return [layer for layer in self.layers if isinstance(layer, ConvSpec)]

    @property
    def is_binary(self) -> bool:
        return self.weights == "binary"

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data (the form stored in artifacts and checkpoints)."""
        layers = []
        for layer in self.layers:
            d = dataclasses.asdict(layer)
            if isinstance(layer, ConvSpec) and layer.act_bits is None:
                del d["act_bits"]
            layers.append(d)
        return {
            "name": self.name, "description": self.description, "weights": self.weights,
            "input": {"height": self.input_height, "width": self.input_width,
                      "channels": self.input_channels, "bits": self.input_bits},
            "head": {"classes": self.classes, "anchors": [list(a) for a in self.anchors]},
            "layers": layers,
        }


# ----------------------------------------------------------------------------------------------
# Integer widths (the worst case, never guessed)

def acc_bound(k: int, c_dup: int, in_bits: int) -> int:
    """Largest |acc| of one output: ``k*k*C'*(2^b_in - 1)`` (every weight is +-1)."""
    return k * k * c_dup * ((1 << in_bits) - 1)


def signed_width(lo: int, hi: int) -> int:
    """Bits of a two's-complement integer holding every value in ``[lo, hi]``."""
    width = 1
    while not (-(1 << (width - 1)) <= lo and hi <= (1 << (width - 1)) - 1):
        width += 1
    return width


@dataclass(frozen=True)
class ConvGeometry:
    """Every derived quantity of one conv layer. NHWC, channel-minor."""
    index: int            # position in the layer list
    name: str
    k: int
    height: int           # input = output spatial size (stride 1, same padding)
    width: int
    in_channels: int      # C_in
    out_channels: int     # C_out
    w_dup: int
    x_dup: int
    in_bits: int          # b_in: code width of the input (8 for the image)
    act_bits: int | None  # b_out, None for the last layer
    is_last: bool

    kind = "conv"

    @property
    def out_height(self) -> int:
        return self.height

    @property
    def out_width(self) -> int:
        return self.width

    @property
    def c_dup(self) -> int:
        """C' = x_dup * C_in: the channel count the weights see."""
        return self.x_dup * self.in_channels

    @property
    def c_unique(self) -> int:
        """Stored weight channels per output: C' / w_dup."""
        return self.c_dup // self.w_dup

    @property
    def acc_max(self) -> int:
        return acc_bound(self.k, self.c_dup, self.in_bits)

    @property
    def acc_bits(self) -> int:
        return signed_width(-self.acc_max, self.acc_max)

    @property
    def n_thresholds(self) -> int:
        return 0 if self.act_bits is None else (1 << self.act_bits) - 1

    @property
    def threshold_min(self) -> int:
        """A threshold of this value is always met ("saturated low")."""
        return -self.acc_max

    @property
    def threshold_max(self) -> int:
        """A threshold of this value is never met ("saturated high")."""
        return self.acc_max + 1

    @property
    def threshold_bits(self) -> int:
        return signed_width(self.threshold_min, self.threshold_max)

    @property
    def window(self) -> int:
        """k*k*C': inputs per output in the duplicated window."""
        return self.k * self.k * self.c_dup

    @property
    def unique_weight_bits(self) -> int:
        return self.out_channels * self.k * self.k * self.c_unique

    @property
    def weight_bits_without_dup(self) -> int:
        """Bits the same layer needs when every weight channel is stored (IFQ-style)."""
        return self.out_channels * self.window

    @property
    def threshold_storage_bits(self) -> int:
        return self.out_channels * self.n_thresholds * self.threshold_bits

    @property
    def on_chip_bits(self) -> int:
        return self.unique_weight_bits + self.threshold_storage_bits

    @property
    def params(self) -> int:
        """Trainable weights as stored (unique channels), no BN."""
        return self.unique_weight_bits

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the equivalent dense convolution over C'."""
        return self.height * self.width * self.out_channels * self.window

    @property
    def binary_ops(self) -> int:
        """Integer add/sub per frame as the accelerator executes them with pre-add.

        Counting rule: the inputs that share a stored weight bit are summed first, once per
        pixel (``k*k*C'/w_dup * (w_dup-1)`` pre-adds, shared by all outputs), then each stored
        bit costs one add/sub per output (``C_out*k*k*C'/w_dup``).  Input duplication is
        counted as executed: the window is replayed ``x_dup`` times.
        """
        hw = self.height * self.width
        pre = self.k * self.k * self.c_unique * (self.w_dup - 1)
        return hw * (pre + self.out_channels * self.k * self.k * self.c_unique)

    @property
    def out_bits(self) -> int:
        return self.acc_bits if self.act_bits is None else self.act_bits

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.out_channels)


@dataclass(frozen=True)
class PoolGeometry:
    index: int
    name: str
    stride: int
    height: int
    width: int
    channels: int
    bits: int

    kind = "maxpool"

    @property
    def out_height(self) -> int:
        return self.height // 2 if self.stride == 2 else self.height

    @property
    def out_width(self) -> int:
        return self.width // 2 if self.stride == 2 else self.width

    @property
    def out_channels(self) -> int:
        return self.channels

    @property
    def out_bits(self) -> int:
        return self.bits

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return (self.out_height, self.out_width, self.channels)


Geometry = Union[ConvGeometry, PoolGeometry]


def network_geometry(cfg: NetworkConfig) -> list[Geometry]:
    """Per-layer geometry, walking the layer list from the image. Validated by load_config."""
    h, w, c, bits = cfg.input_height, cfg.input_width, cfg.input_channels, cfg.input_bits
    out: list[Geometry] = []
    last_conv = max(i for i, layer in enumerate(cfg.layers) if isinstance(layer, ConvSpec))
    for i, layer in enumerate(cfg.layers):
        if isinstance(layer, ConvSpec):
            g: Geometry = ConvGeometry(
                index=i, name=layer.name, k=layer.k, height=h, width=w, in_channels=c,
                out_channels=layer.out_channels, w_dup=layer.w_dup, x_dup=layer.x_dup,
                in_bits=bits, act_bits=layer.act_bits, is_last=(i == last_conv))
        else:
            g = PoolGeometry(index=i, name=layer.name, stride=layer.stride, height=h, width=w,
                             channels=c, bits=bits)
        out.append(g)
        h, w, c, bits = g.out_height, g.out_width, g.out_channels, g.out_bits
    return out


# ----------------------------------------------------------------------------------------------
# Loading and validation

_TOP_KEYS = {"name", "description", "weights", "input", "head", "layers"}
_INPUT_KEYS = {"height", "width", "channels", "bits"}
_HEAD_KEYS = {"classes", "anchors"}
_CONV_KEYS = {"kind", "name", "k", "out_channels", "w_dup", "x_dup", "act_bits"}
_POOL_KEYS = {"kind", "name", "stride"}
MAX_ACT_BITS = 8


def _configs_dir() -> Path:
    return Path(str(importlib.resources.files("dupnet.configs")))


def builtin_config_names() -> list[str]:
    return sorted(p.stem for p in _configs_dir().glob("*.toml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A path to a TOML file, or the name of a built-in config (``dupnet-demo``)."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.exists():
            raise ConfigError(f"{p}: config file not found")
        return p
    builtin = _configs_dir() / f"{name_or_path}.toml"
    if builtin.exists():
        return builtin
    raise ConfigError(f"unknown config {str(name_or_path)!r}: not a file, and not one of the "
                      f"built-in configs {', '.join(builtin_config_names())}")


def load_config(name_or_path: str | Path) -> NetworkConfig:
    path = resolve_config_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return parse_config(data, source=str(path))


def _int(where: str, field: str, value: Any, lo: int | None = None, hi: int | None = None,
         choices: Iterable[int] | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: field '{field}' must be an integer, got {value!r}")
    if choices is not None and value not in set(choices):
        raise ConfigError(f"{where}: field '{field}' must be one of "
                          f"{sorted(set(choices))}, got {value}")
    if lo is not None and value < lo:
        raise ConfigError(f"{where}: field '{field}' must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise ConfigError(f"{where}: field '{field}' must be <= {hi}, got {value}")
    return value


def _unknown(where: str, got: Iterable[str], allowed: set[str]) -> None:
    extra = sorted(set(got) - allowed)
    if extra:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(map(repr, extra))}; "
                          f"allowed: {', '.join(sorted(allowed))}")


def parse_config(data: dict[str, Any], source: str = "<memory>") -> NetworkConfig:
    """Validate plain data (a parsed TOML file) into a :class:`NetworkConfig`."""
    src = source
    if not isinstance(data, dict):
        raise ConfigError(f"{src}: a config is a table of fields")
    _unknown(src, data.keys(), _TOP_KEYS)
    for key in ("input", "head", "layers"):
        if key not in data:
            raise ConfigError(f"{src}: missing required section '{key}'")
    name = data.get("name", Path(src).stem)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{src}: field 'name' must be a non-empty string")
    weights = data.get("weights", "binary")
    if weights not in ("binary", "float"):
        raise ConfigError(f"{src}: field 'weights' must be 'binary' or 'float', got {weights!r}")

    inp = data["input"]
    if not isinstance(inp, dict):
        raise ConfigError(f"{src}: [input] must be a table")
    _unknown(f"{src} [input]", inp.keys(), _INPUT_KEYS)
    for key in ("height", "width", "channels"):
        if key not in inp:
            raise ConfigError(f"{src} [input]: missing field '{key}'")
    height = _int(f"{src} [input]", "height", inp["height"], lo=1)
    width = _int(f"{src} [input]", "width", inp["width"], lo=1)
    channels = _int(f"{src} [input]", "channels", inp["channels"], lo=1)
    in_bits = _int(f"{src} [input]", "bits", inp.get("bits", 8), lo=1, hi=16)

    head = data["head"]
    if not isinstance(head, dict):
        raise ConfigError(f"{src}: [head] must be a table")
    _unknown(f"{src} [head]", head.keys(), _HEAD_KEYS)
    classes = _int(f"{src} [head]", "classes", head.get("classes", 1), lo=1)
    anchors_raw = head.get("anchors")
    if not isinstance(anchors_raw, list) or not anchors_raw:
        raise ConfigError(f"{src} [head]: field 'anchors' must be a non-empty list of [w, h]")
    anchors = []
    for j, a in enumerate(anchors_raw):
        if (not isinstance(a, list) or len(a) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                           for v in a)):
            raise ConfigError(f"{src} [head]: anchors[{j}] must be [w, h] with w, h > 0, "
                              f"got {a!r}")
        anchors.append((float(a[0]), float(a[1])))

    layers_raw = data["layers"]
    if not isinstance(layers_raw, list) or not layers_raw:
        raise ConfigError(f"{src}: 'layers' must be a non-empty array of tables [[layers]]")
    layers: list[LayerSpec] = []
    h, w = height, width
    names: set[str] = set()
    conv_idx = [i for i, l in enumerate(layers_raw) if isinstance(l, dict) and l.get("kind") == "conv"]
    if not conv_idx:
        raise ConfigError(f"{src}: the network has no conv layer")
    last_conv = conv_idx[-1]
    for i, raw in enumerate(layers_raw):
        where = f"{src} layer {i}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: must be a table")
        kind = raw.get("kind")
        lname = raw.get("name", f"{'conv' if kind == 'conv' else 'pool'}{i}")
        if not isinstance(lname, str) or not lname.isidentifier():
            raise ConfigError(f"{where}: field 'name' must be an identifier, got {lname!r}")
        where = f"{src} layer {i} ({lname})"
        if lname in names:
            raise ConfigError(f"{where}: duplicate layer name {lname!r}")
        names.add(lname)
        if kind == "conv":
            _unknown(where, raw.keys(), _CONV_KEYS)
            if "k" not in raw or "out_channels" not in raw:
                raise ConfigError(f"{where}: a conv needs fields 'k' and 'out_channels'")
            k = _int(where, "k", raw["k"], choices=(1, 3))
            c_out = _int(where, "out_channels", raw["out_channels"], lo=1)
            w_dup = _int(where, "w_dup", raw.get("w_dup", 1), lo=1)
            x_dup = _int(where, "x_dup", raw.get("x_dup", 1), lo=1)
            if w_dup > 1 and x_dup > 1:
                raise ConfigError(f"{where}: 'w_dup' ({w_dup}) and 'x_dup' ({x_dup}) are both "
                                  f"> 1; a layer may duplicate weights or inputs, not both")
            if weights == "float" and (w_dup > 1 or x_dup > 1):
                raise ConfigError(f"{where}: 'w_dup'/'x_dup' need weights = \"binary\"")
            if i == last_conv:
                if "act_bits" in raw:
                    raise ConfigError(f"{where}: the last conv emits accumulators; remove "
                                      f"field 'act_bits'")
                act_bits = None
            elif weights == "float":
                if "act_bits" in raw:
                    raise ConfigError(f"{where}: a float network has float activations; remove "
                                      f"field 'act_bits'")
                act_bits = None
            else:
                if "act_bits" not in raw:
                    raise ConfigError(f"{where}: a hidden conv needs field 'act_bits' "
                                      f"(1..{MAX_ACT_BITS})")
                act_bits = _int(where, "act_bits", raw["act_bits"], lo=1, hi=MAX_ACT_BITS)
            layers.append(ConvSpec(name=lname, k=k, out_channels=c_out, w_dup=w_dup,
                                   x_dup=x_dup, act_bits=act_bits))
        elif kind == "maxpool":
            _unknown(where, raw.keys(), _POOL_KEYS)
            stride = _int(where, "stride", raw.get("stride", 2), choices=(1, 2))
            if i > last_conv:
                raise ConfigError(f"{where}: a max-pool after the last conv would pool "
                                  f"accumulators; the network must end with a conv")
            if i == 0:
                raise ConfigError(f"{where}: a max-pool cannot come first; it pools activation "
                                  f"codes, so a conv must precede it")
            if stride == 2:
                if h < 2 or w < 2:
                    raise ConfigError(f"{where}: stride-2 pool shrinks the {h}x{w} map below "
                                      f"1x1")
                if h % 2 or w % 2:
                    raise ConfigError(f"{where}: stride-2 pool needs an even map, got {h}x{w} "
                                      f"(the odd row/column would be dropped)")
                h, w = h // 2, w // 2
            layers.append(PoolSpec(name=lname, stride=stride))
        else:
            raise ConfigError(f"{where}: field 'kind' must be 'conv' or 'maxpool', got {kind!r}")

    cfg = NetworkConfig(name=name, description=str(data.get("description", "")),
                        input_height=height, input_width=width, input_channels=channels,
                        input_bits=in_bits, layers=tuple(layers), anchors=tuple(anchors),
                        classes=classes, weights=weights, source=src)
    # divisibility of duplicated channels, needs the walked channel counts
    for g in network_geometry(cfg):
        if isinstance(g, ConvGeometry) and g.c_dup % g.w_dup:
            raise ConfigError(f"{src} layer {g.index} ({g.name}): field 'w_dup' ({g.w_dup}) "
                              f"must divide the layer's input channels C' = x_dup*C_in = "
                              f"{g.c_dup}")
    last = network_geometry(cfg)[last_conv]
    expected = len(anchors) * (5 + classes)
    if last.out_channels != expected:
        raise ConfigError(f"{src} layer {last_conv} ({last.name}): field 'out_channels' is "
                          f"{last.out_channels}, but the YOLO head needs anchors*(5+classes) = "
                          f"{len(anchors)}*(5+{classes}) = {expected}")
    return cfg


def config_from_dict(data: dict[str, Any], source: str = "<artifact>") -> NetworkConfig:
    """Inverse of :meth:`NetworkConfig.to_dict`."""
    d = dict(data)
    d.pop("source", None)
    return parse_config(d, source=source)


def conv_geometries(cfg: NetworkConfig) -> list[ConvGeometry]:
    return [g for g in network_geometry(cfg) if isinstance(g, ConvGeometry)]


def total_on_chip_bits(cfg: NetworkConfig) -> int:
    return sum(g.on_chip_bits for g in conv_geometries(cfg))


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)

