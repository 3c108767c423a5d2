"""The one home of every market rule used by the core, the batch job and serving.

| rule | module | core | job | serving |
|---|---|---|---|---|
| timestamp range and strict order | ``timestamps`` | raises | quarantines | 422 |
| candle checks, volume/amount fill | ``candles`` | raises | quarantines | 422 |
| bar frequency vocabulary | ``frequency`` | raises | config error | 422 |
| market calendars, future timestamps | ``calendars`` | (CLI) | stage 3 | generated stamps |
| quantile levels and column names | ``quantiles`` | raises | config error | 422 |

Each rule returns or raises an ``Issue`` (a stable ``code``, a message naming the value and the fix, the
field and row): the core raises it (``RuleError``, a ``ValueError``), the job writes the code to the
rejected table, serving answers 422 with the message at the field's location.

``calendars`` needs pandas (and exchange_calendars for exchange codes); it is imported on first use, so
``import kronos_core`` stays torch + numpy only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .candles import (
    CANDLE_CODES,
    DEFAULT_MAX_PRICE_RATIO,
    FIELDS,
    MAX_ABS_VALUE,
    PRICE_FIELDS,
    candle_issues,
    fill_values,
    forecast_flags,
)
from .frequency import FREQUENCIES, FREQUENCY_EXAMPLES, Frequency, parse_frequency
from .issues import Issue, RuleError, raise_first
from .quantiles import (
    DEFAULT_QUANTILES,
    MAX_QUANTILE_LEVELS,
    check_quantile_levels,
    quantile_column,
    quantile_level_of,
    quantile_levels_schema,
)
from .timestamps import TIMESTAMP_MAX, TIMESTAMP_MIN, as_stamps, in_range_mask, order_issues, range_issue

_LAZY = {
    "MarketCalendar": "calendars",
    "SPECIAL_CALENDARS": "calendars",
    "DEFAULT_CALENDAR": "calendars",
    "DEFAULT_MAX_GAP_FRACTION": "calendars",
    "calendar_names": "calendars",
}

__all__ = [
    "CANDLE_CODES",
    "DEFAULT_CALENDAR",
    "DEFAULT_MAX_GAP_FRACTION",
    "DEFAULT_MAX_PRICE_RATIO",
    "DEFAULT_QUANTILES",
    "FIELDS",
    "FREQUENCIES",
    "FREQUENCY_EXAMPLES",
    "Frequency",
    "Issue",
    "MAX_ABS_VALUE",
    "MAX_QUANTILE_LEVELS",
    "MarketCalendar",
    "PRICE_FIELDS",
    "RuleError",
    "SPECIAL_CALENDARS",
    "TIMESTAMP_MAX",
    "TIMESTAMP_MIN",
    "as_stamps",
    "calendar_names",
    "candle_issues",
    "check_quantile_levels",
    "fill_values",
    "forecast_flags",
    "in_range_mask",
    "order_issues",
    "parse_frequency",
    "quantile_column",
    "quantile_level_of",
    "quantile_levels_schema",
    "raise_first",
    "range_issue",
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kronos_core.rules' has no attribute {name!r}")


if TYPE_CHECKING:
    from .calendars import (
        DEFAULT_CALENDAR,
        DEFAULT_MAX_GAP_FRACTION,
        SPECIAL_CALENDARS,
        MarketCalendar,
        calendar_names,
    )
