"""The one verdict convention of the benchmarks in ``scripts/`` (``make bench``).

Every benchmark judges each target it states with :func:`verdict` (a measured figure against
its target, printed beside the baseline measured in the same run, with the ratio) and each
correctness check inside it (bit-exact outputs, lint, model agreement) with :func:`check`.
Both return a :class:`Verdict`, a pure ``(ok, line)`` pair; ``line`` starts with
``VERDICT PASS`` or ``VERDICT FAIL``. A bench prints its verdicts as they come
(:class:`Verdicts`) and exits with :meth:`Verdicts.exit_code`: 1 when any verdict failed or
when none was reached (a run that judged nothing has not passed). ``scripts/bench.py``
collects the ``VERDICT`` lines of every bench into its final table.

A line reads, e.g.::

    VERDICT PASS golden dupnet-demo frames/s: 1,520 vs torch float 630.1 = 2.41x; target ratio >= 1x
    VERDICT FAIL hw W1A3 LUT6 per lane-bit: 2.31 vs FINN model 5.05 = 0.46x; target <= 2
    VERDICT FAIL sim small C++ driver bit-exact: 3 of 4,608 values differ

The scripts are not a package: a bench imports this module by its folder
(``sys.path.insert(0, <scripts>)``), as does ``tests/test_bench_verdicts.py``.
"""
from __future__ import annotations

import math
import operator
from typing import Callable, Iterable, NamedTuple

__all__ = ["PREFIX", "Verdict", "Verdicts", "verdict", "check", "exit_code", "verdict_lines",
           "fmt"]

PREFIX = "VERDICT"

_CMP: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq}


class Verdict(NamedTuple):
    """One judged target or check: ``ok`` and the line to print (starts with ``VERDICT``)."""
    ok: bool
    line: str


def fmt(v: float | int | None) -> str:
    """A figure for a verdict line: thousands separated, 4 significant digits below 1000."""
    if v is None:
        return "n/a"
    v = float(v)
    if math.isnan(v) or math.isinf(v):
        return str(v)
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.4g}"


def _head(ok: bool, name: str) -> str:
    return f"{PREFIX} {'PASS' if ok else 'FAIL'} {name}: "


def verdict(name: str, measured: float, baseline: float | None, target: float, *,
            cmp: str = "<=", judge: str = "figure", unit: str = "",
            baseline_name: str = "baseline") -> Verdict:
    """Judge one figure against its stated target.

    Parameters
    ----------
    name : str
        What is judged (bench, design, figure), e.g. ``"golden dupnet-demo frames/s"``.
    measured : float
        The figure measured in this run.
    baseline : float or None
        The baseline measured in the same run (printed beside the figure, with the ratio
        ``measured / baseline``); None where the target is an absolute bound with no baseline.
    target : float
        The stated target.
    cmp : {"<", "<=", ">", ">=", "=="}
        How the judged value must compare with ``target``.
    judge : {"figure", "ratio"}
        ``"figure"``: ``measured cmp target``; ``"ratio"``: ``measured / baseline cmp target``.
    unit, baseline_name : str
        Printed after the figures / before the baseline.

    Returns
    -------
    Verdict
        ``ok`` is False when the target is missed or the value is not a number (NaN never
        passes).
    """
    if cmp not in _CMP:
        raise ValueError(f"cmp must be one of {', '.join(_CMP)}, got {cmp!r}")
    if judge not in ("figure", "ratio"):
        raise ValueError(f"judge must be 'figure' or 'ratio', got {judge!r}")
    if judge == "ratio" and baseline is None:
        raise ValueError(f"{name}: a ratio target needs a baseline")
    u = f" {unit}" if unit else ""
    ratio = None
    if baseline is not None:
        m, b = float(measured), float(baseline)
        ratio = m / b if b else (math.nan if m == 0 or math.isnan(m) else math.copysign(
            math.inf, m))
    value = float(measured) if judge == "figure" else ratio
    ok = bool(_CMP[cmp](value, float(target))) and not math.isnan(value)
    text = f"{fmt(measured)}{u}"
    if baseline is not None:
        r = f"{ratio:.2f}x" if math.isfinite(ratio) else ("n/a" if math.isnan(ratio) else
                                                           f"{ratio}x")
        text += f" vs {baseline_name} {fmt(baseline)}{u} = {r}"
    tgt = f"ratio {cmp} {fmt(target)}x" if judge == "ratio" else f"{cmp} {fmt(target)}{u}"
    text += f"; target {tgt}"
    return Verdict(ok, _head(ok, name) + text)


def check(name: str, ok: bool, detail: str) -> Verdict:
    """A correctness check inside a bench (bit-exact, lint, agreement): ``detail`` says what
    was compared and what was found."""
    ok = bool(ok)
    return Verdict(ok, _head(ok, name) + detail)


def exit_code(verdicts: Iterable[Verdict]) -> int:
    """0 when at least one verdict was reached and all passed, else 1."""
    vs = list(verdicts)
    return 0 if vs and all(v.ok for v in vs) else 1


def verdict_lines(text: str | Iterable[str]) -> list[str]:
    """The ``VERDICT`` lines of a bench's output (what scripts/bench.py tabulates)."""
    lines = text.splitlines() if isinstance(text, str) else list(text)
    return [l.strip() for l in lines if l.strip().startswith(PREFIX + " ")]


class Verdicts:
    """The verdicts of one bench run, printed as they come; :meth:`exit_code` at the end."""

    def __init__(self, echo: Callable[[str], None] | None = None):
        self.items: list[Verdict] = []
        self._echo = echo if echo is not None else (lambda s: print(s, flush=True))

    def add(self, *vs: Verdict) -> bool:
        """Record and print verdicts; True when all of them passed."""
        for v in vs:
            self.items.append(v)
            self._echo(v.line)
        return all(v.ok for v in vs)

    def extend(self, vs: Iterable[Verdict]) -> bool:
        return self.add(*vs)

    @property
    def failed(self) -> list[Verdict]:
        return [v for v in self.items if not v.ok]

    def exit_code(self) -> int:
        """Print the tally and return the exit status (:func:`exit_code`)."""
        n, bad = len(self.items), self.failed
        if not n:
            self._echo("verdicts: none reached (nothing was judged) -> exit 1")
        elif bad:
            self._echo(f"verdicts: {n - len(bad)} of {n} met, {len(bad)} missed -> exit 1")
        else:
            self._echo(f"verdicts: all {n} met -> exit 0")
        return exit_code(self.items)
