"""Quantile levels: which levels are valid, the default set, and the column name of each level."""

from __future__ import annotations

from collections.abc import Iterable

from .issues import Issue, RuleError

__all__ = [
    "DEFAULT_QUANTILES",
    "MAX_QUANTILE_LEVELS",
    "check_quantile_levels",
    "quantile_levels_schema",
    "quantile_column",
    "quantile_level_of",
]

# five levels: the scorecard's CRPS approximation needs more than the three of a q10/q50/q90 band
DEFAULT_QUANTILES: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)
MAX_QUANTILE_LEVELS = 99
_LO, _HI = 0.0, 1.0  # levels lie strictly between


def quantile_levels_schema(min_levels: int = 0) -> dict:
    """The JSON schema of a list of levels that ``check_quantile_levels`` accepts (for the forms: pydantic's
    ``json_schema_extra``), so a form or an API refuses what the check would refuse, from the same numbers."""
    return {
        "items": {"type": "number", "exclusiveMinimum": _LO, "exclusiveMaximum": _HI},
        "minItems": min_levels,
        "maxItems": MAX_QUANTILE_LEVELS,
        "uniqueItems": True,
    }


def check_quantile_levels(
    levels: Iterable[float], field: str = "quantiles", min_levels: int = 0
) -> tuple[float, ...]:
    """Sorted, unique levels in (0, 1), at least ``min_levels`` and at most ``MAX_QUANTILE_LEVELS`` of
    them; raises ``RuleError`` (a ValueError) naming the bad level."""
    if isinstance(levels, (str, bytes)):
        raise RuleError(
            Issue("bad_quantiles", f"{field} must be a list of levels in (0, 1), got {levels!r}", field)
        )
    out = []
    for i, q in enumerate(levels):
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not _LO < float(q) < _HI:
            raise RuleError(
                Issue(
                    "bad_quantiles",
                    f"{field}[{i}] = {q!r}: quantile levels must be numbers in (0, 1)",
                    field,
                    i,
                )
            )
        out.append(float(q))
    if len(set(out)) != len(out):
        dup = next(q for q in out if out.count(q) > 1)
        raise RuleError(
            Issue("bad_quantiles", f"{field}: level {dup} appears twice; levels must be unique", field)
        )
    if len(out) > MAX_QUANTILE_LEVELS:
        raise RuleError(
            Issue("bad_quantiles", f"{field}: {len(out)} levels; at most {MAX_QUANTILE_LEVELS}", field)
        )
    if len(out) < min_levels:
        raise RuleError(
            Issue("bad_quantiles", f"{field}: {len(out)} levels; give at least {min_levels}", field)
        )
    return tuple(sorted(out))


def quantile_column(level: float, field: str = "close") -> str:
    """Column name for a level: 0.1 -> ``close_q10``, 0.05 -> ``close_q05``, 0.975 -> ``close_q97.5``."""
    text = f"{level * 100:.6g}"
    if "." not in text and len(text) < 2:
        text = text.zfill(2)
    return f"{field}_q{text}"


def quantile_level_of(column: str, field: str = "close") -> float | None:
    """The level a column holds (``close_q10`` -> 0.1), or None if it is no quantile column of ``field``."""
    prefix = f"{field}_q"
    if not column.startswith(prefix):
        return None
    try:
        level = float(column[len(prefix) :]) / 100
    except ValueError:
        return None
    return level if 0 < level < 1 and quantile_column(level, field) == column else None
