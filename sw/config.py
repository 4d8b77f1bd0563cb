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

Layer tables are parsed, and geometries built, by their kind (:mod:`dupnet.sw.layers`): the
records of the two built-in kinds are defined here, their behaviour in ``sw/kinds/``.
"""
from __future__ import annotations

import importlib.resources
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Union

from ..errors import DupnetError
from .layers import LayerContext, LayerKind, find_kind, get_kind, kind_names, one_of

__all__ = [
    "ConfigError", "ConvSpec", "PoolSpec", "NetworkConfig", "ConvGeometry", "PoolGeometry",
    "load_config", "parse_config", "network_geometry", "builtin_config_names",
    "resolve_config_path", "acc_bound", "signed_width", "conv_geometries", "config_from_dict",
    "total_on_chip_bits", "ceil_div", "Geometry", "LayerSpec", "param_geometries",
    "int_field", "check_fields",
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
        layers = [get_kind(layer.kind).to_dict(layer) for layer in self.layers]
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
    has_params = True     # weights (and thresholds or decode constants) in the artifact

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
    has_params = False
    is_last = False       # a pool never is the network output

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


def _last_head(kinds: list[LayerKind | None]) -> int:
    """Index of the last head-capable layer (the network output), -1 if there is none."""
    return max((i for i, k in enumerate(kinds) if k is not None and k.head_capable), default=-1)


def network_geometry(cfg: NetworkConfig) -> list[Geometry]:
    """Per-layer geometry, walking the layer list from the image. Validated by load_config."""
    kinds = [get_kind(layer.kind) for layer in cfg.layers]
    last = _last_head(kinds)
    h, w, c, bits = cfg.input_height, cfg.input_width, cfg.input_channels, cfg.input_bits
    out: list[Geometry] = []
    for i, (kind, layer) in enumerate(zip(kinds, cfg.layers)):
        g = kind.geometry(layer, i, h, w, c, bits, i == last)
        out.append(g)
        h, w, c, bits = g.out_height, g.out_width, g.out_channels, g.out_bits
    return out


# ----------------------------------------------------------------------------------------------
# Loading and validation

_TOP_KEYS = {"name", "description", "weights", "input", "head", "layers"}
_INPUT_KEYS = {"height", "width", "channels", "bits"}
_HEAD_KEYS = {"classes", "anchors"}
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


def int_field(where: str, field: str, value: Any, lo: int | None = None, hi: int | None = None,
              choices: Iterable[int] | None = None) -> int:
    """``value`` as the integer field ``field``, or a :class:`ConfigError` starting with
    ``where`` and naming the field (not an integer, not one of ``choices``, out of range)."""
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


def check_fields(where: str, got: Iterable[str], allowed: Iterable[str]) -> None:
    """Refuse any field of ``got`` not in ``allowed`` (:class:`ConfigError` listing both)."""
    allowed = set(allowed)
    extra = sorted(set(got) - allowed)
    if extra:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(map(repr, extra))}; "
                          f"allowed: {', '.join(sorted(allowed))}")


def _table(src: str, data: dict[str, Any], key: str, allowed: set[str]) -> dict[str, Any]:
    section = data[key]
    if not isinstance(section, dict):
        raise ConfigError(f"{src}: [{key}] must be a table")
    check_fields(f"{src} [{key}]", section.keys(), allowed)
    return section


def _parse_input(src: str, data: dict[str, Any]) -> tuple[int, int, int, int]:
    """(height, width, channels, bits) of the [input] table."""
    inp, where = _table(src, data, "input", _INPUT_KEYS), f"{src} [input]"
    for key in ("height", "width", "channels"):
        if key not in inp:
            raise ConfigError(f"{where}: missing field '{key}'")
    return (int_field(where, "height", inp["height"], lo=1),
            int_field(where, "width", inp["width"], lo=1),
            int_field(where, "channels", inp["channels"], lo=1),
            int_field(where, "bits", inp.get("bits", 8), lo=1, hi=16))


def _parse_head(src: str, data: dict[str, Any]) -> tuple[int, list[tuple[float, float]]]:
    """(classes, anchors) of the [head] table."""
    head, where = _table(src, data, "head", _HEAD_KEYS), f"{src} [head]"
    classes = int_field(where, "classes", head.get("classes", 1), lo=1)
    anchors_raw = head.get("anchors")
    if not isinstance(anchors_raw, list) or not anchors_raw:
        raise ConfigError(f"{where}: field 'anchors' must be a non-empty list of [w, h]")
    anchors = []
    for j, a in enumerate(anchors_raw):
        if (not isinstance(a, list) or len(a) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                           for v in a)):
            raise ConfigError(f"{where}: anchors[{j}] must be [w, h] with w, h > 0, got {a!r}")
        anchors.append((float(a[0]), float(a[1])))
    return classes, anchors


def _layer_kind(src: str, i: int, raw: Any, names: set[str]) -> tuple[LayerKind, str, str]:
    """The kind, name and message prefix of the layer table ``raw`` at index ``i``."""
    where = f"{src} layer {i}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table")
    kind = find_kind(raw.get("kind"))
    lname = raw.get("name", f"{kind.default_name if kind else 'layer'}{i}")
    if not isinstance(lname, str) or not lname.isidentifier():
        raise ConfigError(f"{where}: field 'name' must be an identifier, got {lname!r}")
    where = f"{src} layer {i} ({lname})"
    if lname in names:
        raise ConfigError(f"{where}: duplicate layer name {lname!r}")
    names.add(lname)
    if kind is None:
        raise ConfigError(f"{where}: field 'kind' must be {one_of(kind_names())}, got "
                          f"{raw.get('kind')!r}")
    check_fields(where, raw.keys(), kind.fields)
    return kind, lname, where


def _parse_layers(src: str, layers_raw: Any, weights: str, image: tuple[int, int, int, int]
                  ) -> list[LayerSpec]:
    """The layer specs, each validated by its kind; ``image`` is (height, width, channels,
    bits) of the input, walked through each layer's geometry for the next one's context."""
    if not isinstance(layers_raw, list) or not layers_raw:
        raise ConfigError(f"{src}: 'layers' must be a non-empty array of tables [[layers]]")
    last = _last_head([find_kind(raw.get("kind")) if isinstance(raw, dict) else None
                       for raw in layers_raw])
    if last < 0:
        raise ConfigError(f"{src}: the network has no conv layer")
    layers: list[LayerSpec] = []
    names: set[str] = set()
    h, w, c, bits = image
    for i, raw in enumerate(layers_raw):
        kind, lname, where = _layer_kind(src, i, raw, names)
        spec = kind.parse(raw, LayerContext(where, i, lname, weights, last, h, w, c, bits))
        if i > last:
            raise ConfigError(f"{where}: a {kind.name!r} layer after the last conv would see "
                              f"accumulators; the network must end with a conv")
        g = kind.geometry(spec, i, h, w, c, bits, i == last)
        h, w, c, bits = g.out_height, g.out_width, g.out_channels, g.out_bits
        layers.append(spec)
    return layers


def parse_config(data: dict[str, Any], source: str = "<memory>") -> NetworkConfig:
    """Validate plain data (a parsed TOML file) into a :class:`NetworkConfig`."""
    src = source
    if not isinstance(data, dict):
        raise ConfigError(f"{src}: a config is a table of fields")
    check_fields(src, data.keys(), _TOP_KEYS)
    for key in ("input", "head", "layers"):
        if key not in data:
            raise ConfigError(f"{src}: missing required section '{key}'")
    name = data.get("name", Path(src).stem)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{src}: field 'name' must be a non-empty string")
    weights = data.get("weights", "binary")
    if weights not in ("binary", "float"):
        raise ConfigError(f"{src}: field 'weights' must be 'binary' or 'float', got {weights!r}")
    height, width, channels, in_bits = image = _parse_input(src, data)
    classes, anchors = _parse_head(src, data)
    layers = _parse_layers(src, data["layers"], weights, image)
    cfg = NetworkConfig(name=name, description=str(data.get("description", "")),
                        input_height=height, input_width=width, input_channels=channels,
                        input_bits=in_bits, layers=tuple(layers), anchors=tuple(anchors),
                        classes=classes, weights=weights, source=src)
    geoms = network_geometry(cfg)
    for g in geoms:           # checks that need the walked channel counts (e.g. w_dup | C')
        get_kind(g.kind).check(g, f"{src} layer {g.index} ({g.name})")
    last = next(g for g in geoms if g.is_last)
    expected = len(anchors) * (5 + classes)
    if last.out_channels != expected:
        raise ConfigError(f"{src} layer {last.index} ({last.name}): field 'out_channels' is "
                          f"{last.out_channels}, but the YOLO head needs anchors*(5+classes) = "
                          f"{len(anchors)}*(5+{classes}) = {expected}")
    return cfg


def config_from_dict(data: dict[str, Any], source: str = "<artifact>") -> NetworkConfig:
    """Inverse of :meth:`NetworkConfig.to_dict`."""
    d = dict(data)
    d.pop("source", None)
    return parse_config(d, source=source)


def conv_geometries(cfg: NetworkConfig) -> list[ConvGeometry]:
    """The geometries of the ``conv`` layers."""
    return [g for g in network_geometry(cfg) if isinstance(g, ConvGeometry)]


def param_geometries(cfg: NetworkConfig) -> list[Geometry]:
    """The geometries of the layers with parameters in the artifact (``has_params``)."""
    return [g for g in network_geometry(cfg) if g.has_params]


def total_on_chip_bits(cfg: NetworkConfig) -> int:
    return sum(g.on_chip_bits for g in param_geometries(cfg))


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)

