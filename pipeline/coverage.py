"""The run's coverage rule: a run that forecasts less than ``validation.min_forecast_share`` of its universe
fails before its commit (``run_job``'s stage 6b), so a bad input never replaces a good partition with an empty
or thin one and never reports success.

The universe is the listed one when the config names one (``universe.symbols`` / ``universe.file``: a listed
symbol absent from the input counts as not forecast, ``no_data``), else every symbol read. The share is
``assets_forecast / universe``; a run below the setting raises ``CoverageError``, whose message gives the
share, the setting to change and the reject reasons with example symbols. With the default 0.5 a run that
forecasts nothing always fails; 0 turns the rule off (whatever was forecast is published, even nothing).

A failed run publishes **nothing**, the ``rejected`` table included: the two tables' (as_of, model)
partitions are one run's pair (the flows read them together), and a failed run's rejects beside an earlier
good run's forecasts would describe two different runs. The evidence stays with the error: its message, its
``summary`` (the run's counts and reject reasons, no snapshot ids) and its ``rejected`` rows (the Arrow rows
the run would have committed). The forecast data files it had written are orphans that the maintenance flow
removes, as for a run killed before its commit.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa

__all__ = ["CoverageError", "coverage_problem"]

SHOWN_REASONS = 5  # reasons in the message, most frequent first
SHOWN_SYMBOLS = 3  # example symbols per reason


class CoverageError(RuntimeError):
    """The run forecast less than ``validation.min_forecast_share`` of its universe and published nothing.

    ``summary``: the run's ``RunSummary`` (counts, reject reasons; no snapshot ids); ``rejected``: the rows it
    would have committed to the rejected table (``symbol, reject_reason, n_bars, ...``)."""

    def __init__(self, message: str, summary=None, rejected: pa.Table | None = None):
        super().__init__(message)
        self.summary = summary
        self.rejected = rejected


def coverage_problem(
    n_forecast: int, universe_size: int, rejected: pa.Table, min_share: float, listed: bool
) -> str | None:
    """None if ``n_forecast`` of ``universe_size`` assets meets ``min_share``; else why not, what was rejected
    and what to change. ``rejected``: rows with ``symbol`` and ``reject_reason`` (reasons joined with ``;``,
    an asset counted under each of its reasons); ``listed``: the universe is a listed one (else the symbols
    read)."""
    share = n_forecast / universe_size if universe_size else 0.0
    if min_share <= 0 or share >= min_share:
        return None
    counts: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    for symbol, reasons in zip(
        rejected["symbol"].to_pylist(), rejected["reject_reason"].to_pylist(), strict=True
    ):
        for reason in str(reasons).split(";"):
            counts[reason] += 1
            shown = examples.setdefault(reason, [])
            if len(shown) < SHOWN_SYMBOLS:
                shown.append(symbol if symbol else '""')
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    why = "; ".join(
        f"{reason} {n} ({', '.join(examples[reason])}{', ...' if n > SHOWN_SYMBOLS else ''})"
        for reason, n in top[:SHOWN_REASONS]
    )
    if len(top) > SHOWN_REASONS:
        why += f"; {len(top) - SHOWN_REASONS} more reasons"
    what = "the listed universe" if listed else "the symbols read"
    return (
        f"forecast {n_forecast} of {universe_size} assets ({share:.1%} of {what}), below "
        f"validation.min_forecast_share={min_share:g}: nothing was published (the forecasts and rejected "
        f"tables are unchanged). Reject reasons: {why or 'none (no asset was read)'}. Fix the input, the "
        f"universe or as_of (too_short everywhere: as_of is too early for the histories; no_data: listed "
        f"symbols absent from the input), or lower validation.min_forecast_share (0 publishes whatever was "
        f"forecast)."
    )
