"""Bar frequencies: one vocabulary and one parser, used by the job, serving, the CLI and the tests.

Canonical names (``FREQUENCIES``, the choices of every form): ``<n>min`` for any n that divides a day (1, 2,
3, 4, 5, 6, 10, 12, 15, 20, 30, 45, 90 min, ...), ``<n>h`` where that is whole hours (1, 2, 3, 4, 6, 8, 12 h),
``1d``, ``1w``, ``1mo``. Spellings accepted (case-insensitive): ``min/mins/minute/t``,
``h/hr/hour``, ``d/day``, ``w/wk/week``, ``mo/mon/month``; ``60min`` reads as ``1h``. A bare ``m`` is
refused: it means minutes to some tools and months to others.

Stamp conventions: intraday bars carry their close time; daily bars midnight of their session date;
weekly bars midnight of the Monday that starts the week; monthly bars midnight of the 1st of the month.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .issues import Issue, RuleError

__all__ = ["Frequency", "parse_frequency", "FREQUENCIES", "FREQUENCY_EXAMPLES"]

FREQUENCY_EXAMPLES = ("1min", "5min", "15min", "30min", "1h", "4h", "1d", "1w", "1mo")
_UNITS = {
    "min": "min",
    "mins": "min",
    "minute": "min",
    "minutes": "min",
    "t": "min",
    "h": "h",
    "hr": "h",
    "hrs": "h",
    "hour": "h",
    "hours": "h",
    "d": "d",
    "day": "d",
    "days": "d",
    "w": "w",
    "wk": "w",
    "week": "w",
    "weeks": "w",
    "mo": "mo",
    "mon": "mo",
    "month": "mo",
    "months": "mo",
}
_DAY_MIN = 24 * 60
_PATTERN = re.compile(r"^\s*([+-]?\d*)\s*([a-z]+)\s*$")


@dataclass(frozen=True)
class Frequency:
    """A bar frequency: ``n`` units of ``unit`` in ``min`` (intraday), ``d``, ``w`` or ``mo``."""

    n: int
    unit: str

    @property
    def name(self) -> str:
        if self.unit == "min" and self.n % 60 == 0:
            return f"{self.n // 60}h"
        return f"{self.n}{self.unit}"

    def __str__(self) -> str:
        return self.name

    @property
    def intraday(self) -> bool:
        return self.unit == "min"

    @property
    def minutes(self) -> int:
        """Bar length in minutes for intraday and daily bars (weeks and months have no fixed length here)."""
        if self.unit == "min":
            return self.n
        if self.unit == "d":
            return _DAY_MIN
        raise ValueError(f"frequency {self.name} has no fixed length in minutes")

    @property
    def step(self) -> np.timedelta64:
        """The fixed spacing of an intraday or daily grid."""
        return np.timedelta64(self.minutes, "m")

    @property
    def approx_days(self) -> float:
        """Rough calendar days per bar (for sizing look-back windows)."""
        return {"min": self.n / _DAY_MIN, "d": 1.0, "w": 7.0, "mo": 30.5}[self.unit]


# every canonical name parse_frequency returns, shortest bar first: intraday bars divide a day evenly
FREQUENCIES: tuple[str, ...] = tuple(
    Frequency(n, "min").name for n in range(1, _DAY_MIN) if _DAY_MIN % n == 0
) + ("1d", "1w", "1mo")


def _bad(text, why: str) -> RuleError:
    return RuleError(
        Issue(
            "bad_frequency",
            f"frequency {text!r}: {why}; use one of {', '.join(FREQUENCY_EXAMPLES)}",
            "frequency",
        )
    )


def parse_frequency(text: str | Frequency) -> Frequency:
    """A ``Frequency`` from its name; raises ``RuleError`` (a ValueError) naming the value and the fix."""
    if isinstance(text, Frequency):
        return text
    if not isinstance(text, str):
        raise _bad(text, f"expected a string such as '5min', got {type(text).__name__}")
    m = _PATTERN.match(text.lower())
    if not m:
        raise _bad(text, "not a count followed by a unit")
    count, unit = m.groups()
    if unit == "m":
        raise _bad(text, "'m' is ambiguous (minutes or months?); write 'min' for minutes or 'mo' for months")
    if unit in ("b", "bd"):
        raise _bad(text, "business days are frequency '1d' on calendar 'weekdays' (or an exchange)")
    if unit not in _UNITS:
        raise _bad(text, f"unknown unit {unit!r}")
    if count in ("", "+"):
        n = 1
    else:
        n = int(count)
        if n <= 0:
            raise _bad(text, "the count must be a whole number >= 1")
    unit = _UNITS[unit]
    if unit == "h":
        n, unit = n * 60, "min"
    if unit == "min":
        if n >= _DAY_MIN:
            raise _bad(text, f"intraday bars must be shorter than a day ({n} min); for daily bars use '1d'")
        if _DAY_MIN % n:
            raise _bad(
                text, f"{n} minutes does not divide a day evenly, so bars would not line up day to day"
            )
    elif n != 1:
        word = {"d": "day", "w": "week", "mo": "month"}[unit]
        raise _bad(text, f"only one-{word} bars are supported, not {n} {word}s")
    return Frequency(n, unit)
