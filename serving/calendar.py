"""Future bar timestamps for requests that give a frequency and/or an exchange calendar instead of
explicit ``future_timestamps``.

- frequency only: a fixed grid (``pandas.date_range``), e.g. '5min', '1h', '1D', 'B' (business days).
- calendar (exchange_calendars name, e.g. 'XNYS'), daily or no frequency: the next sessions, stamped at
  midnight (as vendors stamp daily bars).
- calendar + intraday frequency: the next bar-close times inside trading sessions, in the exchange's
  local wall-clock time (the convention ``kronos_core`` uses for timestamps).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

__all__ = ["future_timestamps"]


@functools.lru_cache(maxsize=16)
def _calendar(name: str):
    import exchange_calendars as xcals  # heavy import (~1 s); only when a request names a calendar

    try:
        return xcals.get_calendar(name)
    except Exception as e:  # InvalidCalendarName and friends
        raise ValueError(
            f"unknown exchange calendar {name!r} (exchange_calendars names such as 'XNYS', "
            f"'XLON', 'XSHG'): {e}"
        ) from None


def _offset(frequency: str) -> pd.DateOffset:
    try:
        return pd.tseries.frequencies.to_offset(frequency)
    except (ValueError, TypeError):
        raise ValueError(
            f"unknown frequency {frequency!r}; use a pandas alias such as '1min', '5min', '1h', '1D' or 'B'"
        ) from None


def _is_daily(offset: pd.DateOffset) -> bool:
    try:
        return pd.Timedelta(offset) >= pd.Timedelta(days=1)
    except ValueError:  # non-fixed offsets (B, W, M, ...) are daily or coarser
        return True


def future_timestamps(
    last: np.datetime64, n: int, frequency: str | None = None, calendar: str | None = None
) -> np.ndarray:
    """(n,) datetime64[ns] bar timestamps strictly after ``last``; raises ValueError with the fix."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    last = pd.Timestamp(last)
    if calendar is None:
        if frequency is None:
            raise ValueError("give frequency or calendar")
        out = pd.date_range(start=last, periods=n + 1, freq=_offset(frequency))
        out = out[out > last][:n]
        return out.to_numpy(dtype="datetime64[ns]")
    cal = _calendar(calendar)
    offset = _offset(frequency) if frequency is not None else None
    horizon = pd.Timedelta(days=max(10, 2 * n + 10))
    if offset is None or _is_daily(offset):
        start = (last.normalize() + pd.Timedelta(days=1)).tz_localize(None)
        end = min(start + horizon, cal.last_session)
        if start > cal.last_session or start < cal.first_session:
            raise ValueError(
                f"{start.date()} is outside calendar {calendar!r} "
                f"({cal.first_session.date()} to {cal.last_session.date()})"
            )
        sessions = cal.sessions_in_range(start, end)[:n]
        if len(sessions) < n:
            raise ValueError(
                f"calendar {calendar!r} has only {len(sessions)} sessions after {last.date()} "
                f"(it ends {cal.last_session.date()}); lower pred_len"
            )
        return sessions.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    start = last.normalize()
    if start < cal.first_session or start > cal.last_session:
        raise ValueError(
            f"{start.date()} is outside calendar {calendar!r} "
            f"({cal.first_session.date()} to {cal.last_session.date()})"
        )
    days = max(3, int(np.ceil(n * pd.Timedelta(offset) / pd.Timedelta(hours=6))) + 5)
    end = min(start + pd.Timedelta(days=days), cal.last_session)
    try:
        idx = cal.trading_index(start, end, period=offset, intervals=False, closed="right", force=True)
    except Exception as e:
        raise ValueError(f"cannot build {frequency} bars on calendar {calendar!r}: {e}") from None
    local = idx.tz_convert(cal.tz).tz_localize(None)
    local = local[local > last][:n]
    if len(local) < n:
        raise ValueError(
            f"calendar {calendar!r} has only {len(local)} {frequency} bars after {last} "
            f"(it ends {cal.last_session.date()}); lower pred_len"
        )
    return local.to_numpy(dtype="datetime64[ns]")
