"""Bar calendars: the expected bar timestamps of a market (exchange sessions, lunch breaks) or a fixed grid.

Convention: a bar is stamped with its close time in the exchange's local wall clock, tz-naive (09:35 is the
first 5-minute NYSE bar; 10:30 the first 30-minute HKEX bar; 13:30 the first after the HKEX lunch break).
Daily bars are stamped at midnight of the session date. With ``exchange=None`` the grid is every ``freq``
step around the clock (crypto, FX), anchored at midnight.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import pandas as pd

from .config import CalendarConfig

__all__ = ["bar_grid", "future_timestamps", "expected_between", "job_grid", "future_batch"]

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=8)
def _exchange(name: str):
    import exchange_calendars as xcals

    return xcals.get_calendar(name)


def _period(freq: str) -> str:
    return "60min" if freq == "1h" else freq


def bar_grid(cal: CalendarConfig, start, end) -> np.ndarray:
    """Every expected bar stamp in [start, end] (inclusive), datetime64[ns], sorted. Sessions between the
    exchange calendar's bounds only (about 20 years back, one year ahead)."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    if end < start:
        return np.empty(0, dtype="datetime64[ns]")
    if cal.exchange is None:
        return pd.date_range(start.ceil(cal.step), end, freq=cal.step).to_numpy(dtype="datetime64[ns]")
    x = _exchange(cal.exchange)
    lo, hi = max(start.normalize(), x.first_session), min(end.normalize(), x.last_session)
    if hi < lo:
        raise ValueError(f"calendar {cal.exchange} covers {x.first_session.date()}..{x.last_session.date()}; "
                         f"the window {start.date()}..{end.date()} is outside it")
    if cal.freq == "1d":
        idx = x.sessions_in_range(lo, hi)
        out = pd.DatetimeIndex(idx).tz_localize(None) if getattr(idx, "tz", None) else pd.DatetimeIndex(idx)
    else:
        idx = x.trading_index(lo, hi, period=_period(cal.freq), intervals=False, closed="right", force=True)
        out = idx.tz_convert(x.tz).tz_localize(None)
    arr = out.to_numpy(dtype="datetime64[ns]")
    return arr[(arr >= np.datetime64(start, "ns")) & (arr <= np.datetime64(end, "ns"))]


def future_timestamps(grid: np.ndarray | None, cal: CalendarConfig, last: np.datetime64, n: int) -> np.ndarray:
    """The ``n`` expected bar stamps after ``last``, from a precomputed grid (or the fixed-step fallback)."""
    if grid is not None:
        i = int(np.searchsorted(grid, last, side="right"))
        out = grid[i : i + n]
        if len(out) == n:
            return out
        raise ValueError(f"calendar grid ends at {grid[-1]}; it has only {len(out)} of {n} bars after {last}")
    step = cal.step.to_timedelta64()
    return last + step * np.arange(1, n + 1)


def expected_between(grid: np.ndarray | None, cal: CalendarConfig, first: np.datetime64,
                     last: np.datetime64) -> int:
    """How many calendar bars fall in [first, last]."""
    if grid is not None:
        return int(np.searchsorted(grid, last, side="right") - np.searchsorted(grid, first, side="left"))
    return int((last - first) // cal.step.to_timedelta64()) + 1


def job_grid(cal: CalendarConfig, as_of: pd.Timestamp, lookback: int, pred_len: int) -> np.ndarray | None:
    """The grid a run needs: far enough back to cover ``lookback`` bars (x3 slack for halts and listing
    gaps), and ``pred_len`` bars (x2 + 10 days slack for holidays) past ``as_of``. None for fixed frequency."""
    if cal.exchange is None:
        return None
    per_day = 1 if cal.freq == "1d" else max(1, int(pd.Timedelta("6.5h") / cal.step))
    back_days = int(np.ceil(3 * lookback / per_day * 7 / 5)) + 10
    ahead_days = int(np.ceil(2 * pred_len / per_day * 7 / 5)) + 10
    return bar_grid(cal, as_of - pd.Timedelta(days=back_days), as_of + pd.Timedelta(days=ahead_days))


def future_batch(batch, grid: np.ndarray | None, cal: CalendarConfig, pred_len: int):
    """Stage 3 on a batch of validated asset rows: add ``future_timestamps`` (int64 ns) after each valid
    asset's last bar; an asset whose future cannot be laid out is rejected, never raised."""
    import pyarrow as pa

    fut, valid, why = [], batch["is_valid"].to_pylist(), batch["reject_reason"].to_pylist()
    for i, last in enumerate(batch["last_timestamp"].to_pylist()):
        if not valid[i]:
            fut.append([])
            continue
        try:
            fut.append(future_timestamps(grid, cal, np.datetime64(last, "ns"), pred_len).astype(np.int64).tolist())
        except ValueError as e:
            valid[i], why[i] = False, f"no_future_calendar: {e}"
            fut.append([])
    out = batch.set_column(batch.schema.get_field_index("is_valid"), "is_valid", pa.array(valid, pa.bool_()))
    out = out.set_column(out.schema.get_field_index("reject_reason"), "reject_reason", pa.array(why, pa.string()))
    return out.append_column("future_timestamps", pa.array(fut, pa.list_(pa.int64())))
