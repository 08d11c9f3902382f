"""Target regions of inverse design: one ``low < property < high`` range per property.

A target is written ``NAME=LOW:HIGH`` (the CLI's ``--target-range``). Either end may
be left out for an open range: ``E=0:200``, ``HOMO-LUMO gap=:3`` (below 3),
``x=1.5:`` (above 1.5). The name is everything before the *last* ``=``, so it
may hold spaces, dashes and other punctuation; surrounding blanks are
stripped. Bounds are floats (``1e-3``, ``-2.5``, ``inf`` as an explicit open
end).

Examples
--------
>>> from xenonscale.design.targets import parse_target
>>> parse_target("HOMO-LUMO gap=:3")
Target(name='HOMO-LUMO gap', low=-inf, high=3.0)
>>> parse_target("E=0:200").contains([150.0, 250.0]).tolist()
[True, False]
>>> str(parse_target("x=1.5:"))
'x=1.5:'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from xenonscale.errors import ConfigError

__all__ = ["Target", "parse_target", "parse_targets"]

_FORMAT = "write NAME=LOW:HIGH with either end optional, e.g. 'E=0:200' or 'HOMO-LUMO gap=:3'"


@dataclass(frozen=True)
class Target:
    """The open interval ``low < value < high`` of one property (``±inf`` for an open end).

    Examples
    --------
    >>> Target("E", 0.0, 200.0).contains([0.0, 1.0]).tolist()
    [False, True]
    """

    name: str
    low: float = -math.inf
    high: float = math.inf

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"target name {self.name!r}: give the property's column name")
        low, high = float(self.low), float(self.high)
        if math.isnan(low) or math.isnan(high) or not low < high:
            raise ConfigError(
                f"target {self.name!r} range ({self.low!r}, {self.high!r}): the low bound must "
                "be below the high bound; " + _FORMAT
            )
        if math.isinf(low) and math.isinf(high):
            raise ConfigError(
                f"target {self.name!r} has no bound: give at least one end; " + _FORMAT
            )
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def contains(self, values: Sequence[float] | np.ndarray) -> np.ndarray:
        """``bool[n]``: which ``values`` lie strictly inside the range (NaN: False)."""
        values = np.asarray(values, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            return (values > self.low) & (values < self.high)

    def __str__(self) -> str:
        low = "" if math.isinf(self.low) else f"{self.low:g}"
        high = "" if math.isinf(self.high) else f"{self.high:g}"
        return f"{self.name}={low}:{high}"


def parse_target(text: str) -> Target:
    """Parse ``NAME=LOW:HIGH`` (see the module docstring) into a :class:`Target`.

    Raises
    ------
    ConfigError
        Text without ``=`` or ``:``, an empty name, bounds that are not
        numbers, ``low >= high`` or no bound at all; the message quotes the text.

    Examples
    --------
    >>> parse_target("E=0:200")
    Target(name='E', low=0.0, high=200.0)
    """
    if not isinstance(text, str):
        raise ConfigError(f"target {text!r} is not text; " + _FORMAT)
    name, equals, region = text.rpartition("=")
    low_text, colon, high_text = region.partition(":")
    if not equals or not colon or not name.strip():
        raise ConfigError(f"target {text!r}: " + _FORMAT)
    bounds = []
    for bound, default in ((low_text, -math.inf), (high_text, math.inf)):
        bound = bound.strip()
        try:
            bounds.append(float(bound) if bound else default)
        except ValueError:
            raise ConfigError(
                f"target {text!r}: bound {bound!r} is not a number; " + _FORMAT
            ) from None
    try:
        return Target(name.strip(), bounds[0], bounds[1])
    except ConfigError as exc:
        raise ConfigError(f"target {text!r}: {exc}") from None


def parse_targets(items: Iterable[str | Target]) -> list[Target]:
    """Targets from texts (or :class:`Target` objects); one per property, at least one.

    Examples
    --------
    >>> [t.name for t in parse_targets(["E=0:200", "HOMO-LUMO gap=:3"])]
    ['E', 'HOMO-LUMO gap']
    """
    if isinstance(items, str | Target):
        items = [items]
    targets = [item if isinstance(item, Target) else parse_target(item) for item in items]
    if not targets:
        raise ConfigError(
            "no target given: pass at least one, e.g. 'E=0:200' (--target-range on the CLI)"
        )
    names = [t.name for t in targets]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"targets {repeated} are given more than once: one range per property")
    return targets
