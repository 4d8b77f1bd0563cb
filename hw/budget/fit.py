"""Fit arithmetic: resources used vs a device's capacity, headroom, the binding resource, and
frames per second at a clock."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .devices import RESOURCES

__all__ = ["ResourceUse", "FitSummary", "fit_summary", "frames_per_second", "pct_error"]


@dataclass(frozen=True)
class ResourceUse:
    resource: str
    used: float
    capacity: float

    @property
    def utilisation(self) -> float:
        """used / capacity; ``inf`` when the device has none and the design needs some."""
        if self.capacity > 0:
            return self.used / self.capacity
        return math.inf if self.used > 0 else 0.0

    @property
    def fits(self) -> bool:
        return self.used <= self.capacity

    @property
    def headroom_pct(self) -> float | None:
        """Capacity left in percent of capacity (negative: over by that much); None when the
        device has none of this resource."""
        if self.capacity <= 0:
            return None if self.used <= 0 else -math.inf
        return 100.0 * (self.capacity - self.used) / self.capacity

    def to_json(self) -> dict[str, Any]:
        u = self.utilisation
        h = self.headroom_pct
        return {"used": self.used, "capacity": self.capacity,
                "utilisation_pct": None if math.isinf(u) else round(100 * u, 2),
                "headroom_pct": None if h is None or math.isinf(h) else round(h, 2),
                "fits": self.fits}


@dataclass(frozen=True)
class FitSummary:
    uses: tuple[ResourceUse, ...]

    @property
    def fits(self) -> bool:
        return all(u.fits for u in self.uses)

    @property
    def binding(self) -> str:
        """The resource that runs out first (highest utilisation)."""
        return max(self.uses, key=lambda u: u.utilisation).resource

    @property
    def headroom_pct(self) -> float:
        """Headroom of the binding resource (negative: the design does not fit)."""
        u = self.use(self.binding)
        h = u.headroom_pct
        return -math.inf if h is None and u.used > 0 else (h if h is not None else 100.0)

    @property
    def over(self) -> list[str]:
        return [u.resource for u in self.uses if not u.fits]

    def use(self, resource: str) -> ResourceUse:
        for u in self.uses:
            if u.resource == resource:
                return u
        raise KeyError(resource)

    def to_json(self) -> dict[str, Any]:
        h = self.headroom_pct
        return {"fits": self.fits, "binding": self.binding,
                "headroom_pct": None if math.isinf(h) else round(h, 2), "over": self.over,
                "resources": {u.resource: u.to_json() for u in self.uses}}


def fit_summary(used: dict[str, float], capacity: dict[str, float],
                resources: tuple[str, ...] = RESOURCES) -> FitSummary:
    """Compare ``used`` with ``capacity`` for each resource (missing counts as 0)."""
    return FitSummary(tuple(ResourceUse(r, float(used.get(r, 0.0)), float(capacity.get(r, 0.0)))
                            for r in resources))


def frames_per_second(fmax_mhz: float | None, cycles_per_frame: int) -> float | None:
    if not fmax_mhz or cycles_per_frame <= 0:
        return None
    return fmax_mhz * 1e6 / cycles_per_frame


def pct_error(estimate: float, measured: float) -> float | None:
    """Signed error of an estimate against the measured value, in percent of the measured."""
    if measured == 0:
        return 0.0 if estimate == 0 else None
    return 100.0 * (estimate - measured) / measured
