"""Layer kinds: the software-side extension point, and their registry.

A *layer kind* is what a ``[[layers]]`` table's ``kind`` field names (``"conv"``,
``"maxpool"``).  Everything the software side knows about one kind lives in one
:class:`LayerKind` object: which config fields it takes and how they are validated, its
geometry record, its golden op (readable and fast), its QAT module and how the QAT network
steps it, and, if it has parameters, how they are exported, drawn at random, validated and
stored in the artifact.  The generic code (:mod:`~dupnet.sw.config`,
:mod:`~dupnet.sw.golden`, :mod:`~dupnet.sw.qat`, :mod:`~dupnet.sw.export`,
:mod:`~dupnet.sw.random_artifact`, :mod:`~dupnet.sw.artifact`,
:mod:`~dupnet.sw.equivalence`) looks the kind up with :func:`get_kind` and never branches on
the kind itself.

The built-in kinds live in ``sw/kinds/<kind>.py`` (each module defines ``KIND``) and are
registered the first time the registry is used (:data:`BUILTIN_KIND_MODULES`); a kind
defined elsewhere (a plugin, a test) is added with :func:`register_kind` and removed with
:func:`unregister_kind`.  An unregistered kind is always an error, never a default.

This module imports nothing from the rest of the package: the config parser sits on top of
it, and the kinds sit on top of everything else.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import DupnetError

__all__ = ["LayerKind", "LayerContext", "LayerKindError", "BUILTIN_KIND_MODULES",
           "register_kind", "unregister_kind", "get_kind", "find_kind", "kind_names",
           "one_of"]

#: Modules (under ``dupnet.sw``) defining the built-in kinds, each as ``KIND``; in this order.
BUILTIN_KIND_MODULES = (".kinds.conv", ".kinds.maxpool")


class LayerKindError(DupnetError):
    """A layer kind is not registered, or registered twice."""


@dataclass(frozen=True)
class LayerContext:
    """Where a ``[[layers]]`` table sits, handed to :meth:`LayerKind.parse`.

    Attributes
    ----------
    where : str
        ``"<file> layer <index> (<name>)"``: the prefix of every :class:`ConfigError` message.
    index : int
        Position in the layer list.
    name : str
        The layer's (validated, unique) name.
    weights : str
        The network's ``weights``: ``"binary"`` or ``"float"``.
    last_head : int
        Index of the network's last head-capable layer (the last conv): the network output.
    height, width, channels, bits : int
        The layer's input: spatial size, channels and code width (walked from the image
        through the geometry of the layers before it).
    """
    where: str
    index: int
    name: str
    weights: str
    last_head: int
    height: int
    width: int
    channels: int
    bits: int

    @property
    def is_first(self) -> bool:
        """The layer reads the image."""
        return self.index == 0

    @property
    def is_last(self) -> bool:
        """The layer is the network output (the last head-capable layer)."""
        return self.index == self.last_head

    @property
    def after_last(self) -> bool:
        """The layer comes after the network output (its input would be accumulators)."""
        return self.index > self.last_head


class LayerKind:
    """What a layer kind provides to the software side. Subclass it, then :func:`register_kind`.

    Attributes
    ----------
    name : str
        The config ``kind`` string (``"conv"``). Unique in the registry.
    fields : frozenset of str
        Every field a ``[[layers]]`` table of this kind may have, ``"kind"`` and ``"name"``
        included. Any other field is refused (by the config parser, before :meth:`parse`).
    default_name : str
        A layer without ``name`` is called ``f"{default_name}{index}"``.
    head_capable : bool
        A layer of this kind can be the network output. The last head-capable layer of a
        network gets ``is_last=True`` and emits signed accumulators to the YOLO head; a
        network needs at least one, and every layer after it is refused.
    has_params : bool
        Layers of this kind have parameters (weights, thresholds, decode constants) in the
        artifact: ``Artifact.layers[index]`` exists exactly for them, and the artifact
        methods below must be implemented.

    Notes
    -----
    **Records.** The *spec* (what :meth:`parse` returns) is a frozen dataclass with at least
    ``name`` and ``kind`` fields; it is stored in :attr:`NetworkConfig.layers` and written back
    by :meth:`to_dict`. The *geometry* (what :meth:`geometry` returns) is a frozen record with
    ``kind`` (this kind's name), ``index``, ``name``, ``is_last``, ``has_params`` and the
    output ``out_height``, ``out_width``, ``out_channels``, ``out_bits``, ``out_shape``; a kind
    with parameters also provides the cost properties ``params``, ``unique_weight_bits``,
    ``weight_bits_without_dup``, ``on_chip_bits``, ``macs`` and ``binary_ops`` used by the
    comparison table and the export summary.

    **Arrays.** The golden ops take and return integer codes. The readable
    :meth:`reference` works on NHWC int64 arrays; the fast :meth:`prepare`/:meth:`forward`
    pair on ``[C, N, H, W]`` arrays (uint8 or int64), and must be bit-identical to it.

    **Scales.** In a binary QAT network every activation is ``code * scale``; ``scale`` (a
    0-dim float32 tensor, or a float in export) is the step of the codes entering the layer
    and is ``None`` in a float network.
    """

    name: str = ""
    fields: frozenset[str] = frozenset({"kind", "name"})
    default_name: str = "layer"
    head_capable: bool = False
    has_params: bool = False

    # -- config ----------------------------------------------------------------------------
    def parse(self, raw: dict[str, Any], ctx: LayerContext) -> Any:
        """Validate one ``[[layers]]`` table into this kind's spec.

        Parameters
        ----------
        raw : dict
            The table as parsed from TOML; its fields are already checked against
            :attr:`fields`, its ``name`` is ``ctx.name``.
        ctx : LayerContext
            Position, network weights and input shape.

        Returns
        -------
        spec
            A frozen dataclass with ``name = ctx.name`` and ``kind = self.name``.

        Raises
        ------
        ConfigError
            ``f"{ctx.where}: field '<field>' ..."``: every message starts with ``ctx.where``
            and names the offending field. Use :func:`dupnet.sw.config.int_field` for integer
            fields.
        """
        raise NotImplementedError

    def geometry(self, spec: Any, index: int, height: int, width: int, channels: int,
                 bits: int, is_last: bool) -> Any:
        """The geometry record of the layer ``spec`` at ``index``.

        ``height``, ``width``, ``channels`` and ``bits`` describe its input (the previous
        layer's ``out_*``, or the image); ``is_last`` is True for the network output.
        """
        raise NotImplementedError

    def check(self, g: Any, where: str) -> None:
        """Checks that need the walked geometry (run after every layer parsed); raise
        :class:`ConfigError` starting with ``where``. Default: none."""

    def to_dict(self, spec: Any) -> dict[str, Any]:
        """The spec as plain data, the inverse of :meth:`parse` (stored in artifacts and
        checkpoints). Default: every dataclass field."""
        return dataclasses.asdict(spec)

    # -- golden model ----------------------------------------------------------------------
    def reference(self, g: Any, params: Any, x: Any) -> Any:
        """The readable integer op: NHWC int64 codes ``x`` -> NHWC int64 output.

        ``params`` is ``Artifact.layers[g.index]`` (``None`` for a kind without parameters).
        This is the specification the fast path, the QAT model and the hardware are tested
        against.
        """
        raise NotImplementedError

    def prepare(self, g: Any, params: Any) -> Any:
        """Precompute what :meth:`forward` needs (e.g. GEMM weights); once per model.
        Default: ``params`` as they are."""
        return params

    def forward(self, g: Any, prepared: Any, x: Any) -> Any:
        """The fast op: ``[C, N, H, W]`` codes -> ``[C_out, N, H', W']``, bit-identical to
        :meth:`reference`. Default: :meth:`reference` on the transposed array (int64)."""
        import numpy as np
        y = self.reference(g, prepared, np.asarray(x).transpose(1, 2, 3, 0).astype(np.int64))
        return np.ascontiguousarray(y.transpose(3, 0, 1, 2))

    # -- QAT model -------------------------------------------------------------------------
    def qat_module(self, g: Any, cfg: Any) -> Any:
        """The ``torch.nn.Module`` of the layer in :class:`~dupnet.sw.qat.DupNet`, for a binary
        (``cfg.is_binary``) or a float network. Raise :class:`ConfigError` if the QAT model
        cannot reproduce the layer's integer semantics."""
        raise NotImplementedError

    def qat_forward(self, g: Any, module: Any, x: Any, scale: Any, record: bool
                    ) -> tuple[Any, Any]:
        """One step of ``DupNet``: returns ``(output, recorded)``.

        ``recorded`` (only when ``record``, else ``None``) is what ``forward_layers`` reports:
        integer codes (float tensor, NCHW) for a hidden layer of a binary network, the real
        output otherwise. Default, for an op on codes: ``module(x)``, recorded as
        ``round(output / scale)``.
        """
        import torch
        y = module(x)
        if not record:
            return y, None
        return y, (torch.round(y / scale) if scale is not None else y)

    def qat_out_scale(self, g: Any, module: Any, scale: Any) -> Any:
        """The step of the layer's output codes given the input step ``scale`` (binary
        networks). Default: unchanged."""
        return scale

    def qat_acc_probe(self, g: Any, module: Any) -> Any:
        """Head-capable kinds: the submodule whose output is the last layer's integer
        accumulators in eval mode (the equivalence check hooks it)."""
        raise LayerKindError(f"layer kind {self.name!r} cannot be the network output")

    def qat_ties(self, g: Any, module: Any, params: Any, x: Any, scale: float) -> Any:
        """Where the eval-mode model's pre-activation lies exactly on a code boundary (float
        rounding may then pick either code): a boolean NHWC mask of the layer output, for
        input codes ``x`` (NHWC int64). Default: ``None`` (no rounding boundary)."""
        return None

    # -- artifact --------------------------------------------------------------------------
    def export_params(self, g: Any, module: Any, scale: float) -> Any:
        """The integer parameters of a trained eval-mode ``module`` whose input codes have
        step ``scale``; ``None`` for a kind without parameters. Raise
        :class:`~dupnet.sw.export.ExportError` naming the layer if they cannot be folded."""
        return None

    def random_params(self, g: Any, x: Any, rng: Any, saturate_fraction: float
                      ) -> tuple[Any, Any]:
        """Random but meaningful parameters for bring-up: ``(params, output)`` for NHWC int64
        calibration codes ``x`` (``rng``: a numpy Generator). Default: ``(None,
        reference(g, None, x))``."""
        return None, self.reference(g, None, x)

    def validate_params(self, g: Any, p: Any, where: str) -> None:
        """Check (and normalise in place, e.g. dtypes) the parameters of one layer; raise
        :class:`~dupnet.sw.artifact.ArtifactError` starting with ``where`` and naming the
        field."""
        raise NotImplementedError

    def params_to_arrays(self, g: Any, p: Any) -> dict[str, Any]:
        """The arrays stored in the artifact file, by field name (stored as ``L{i}.<field>``,
        in this order)."""
        raise NotImplementedError

    def params_from_arrays(self, g: Any, get: Callable[..., Any], where: str) -> Any:
        """Inverse of :meth:`params_to_arrays`. ``get(field, required=True)`` returns the stored
        array (raising :class:`ArtifactError` if a required one is missing, else ``None``)."""
        raise NotImplementedError

    def describe_params(self, g: Any, p: Any) -> str:
        """One summary line of the layer and its parameters (``dupnet export``)."""
        return f"L{g.index:<2} {g.name:<8} {self.name}"

    def __repr__(self) -> str:
        return f"<layer kind {self.name!r}>"


# ----------------------------------------------------------------------------------------------
# The registry

_REGISTRY: dict[str, LayerKind] = {}
_builtins_loaded = False


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    try:
        for mod in BUILTIN_KIND_MODULES:
            kind = importlib.import_module(mod, __package__).KIND
            _REGISTRY.setdefault(kind.name, kind)
    except BaseException:
        _builtins_loaded = False
        raise


def register_kind(kind: LayerKind) -> LayerKind:
    """Add ``kind`` to the registry (configs may then use ``kind = "<kind.name>"``).

    Raises
    ------
    LayerKindError
        If a kind of that name is already registered.
    """
    _load_builtins()
    if not isinstance(kind, LayerKind) or not kind.name or not isinstance(kind.name, str):
        raise LayerKindError(f"a layer kind is a LayerKind with a non-empty name, got {kind!r}")
    if kind.name in _REGISTRY:
        raise LayerKindError(f"layer kind {kind.name!r} is already registered")
    _REGISTRY[kind.name] = kind
    return kind


def unregister_kind(name: str) -> LayerKind:
    """Remove the kind called ``name`` from the registry and return it."""
    kind = get_kind(name)
    del _REGISTRY[name]
    return kind


def find_kind(name: Any) -> LayerKind | None:
    """The kind called ``name``, or ``None`` (also for a non-string ``name``)."""
    _load_builtins()
    return _REGISTRY.get(name) if isinstance(name, str) else None


def get_kind(name: Any) -> LayerKind:
    """The kind called ``name``.

    Raises
    ------
    LayerKindError
        If no such kind is registered; the message lists the known kinds.
    """
    kind = find_kind(name)
    if kind is None:
        raise LayerKindError(f"unknown layer kind {name!r}; known kinds: "
                             f"{', '.join(kind_names())} (add one with "
                             f"dupnet.sw.layers.register_kind)")
    return kind


def kind_names() -> tuple[str, ...]:
    """The registered kinds, built-ins first, then in registration order."""
    _load_builtins()
    return tuple(_REGISTRY)


def one_of(names: tuple[str, ...] | list[str]) -> str:
    """``'a'``, ``'a' or 'b'``, ``'a', 'b' or 'c'``."""
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
