"""Calendars: exchange sessions (holidays, lunch breaks) and the fixed-frequency fallback."""

import numpy as np
import pandas as pd

from pipeline.calendars import bar_grid, expected_between, future_timestamps
from pipeline.config import CalendarConfig


def ts(*xs):
    return np.array([np.datetime64(pd.Timestamp(x), "ns") for x in xs])


def test_daily_xnys_skips_weekend_and_holiday():
    cal = CalendarConfig(freq="1d", exchange="XNYS")
    grid = bar_grid(cal, "2024-06-25", "2024-07-20")
    fut = future_timestamps(grid, cal, np.datetime64("2024-07-02", "ns"), 3)
    assert list(fut) == list(ts("2024-07-03", "2024-07-05", "2024-07-08"))  # July 4th closed


def test_intraday_hkex_lunch_break():
    cal = CalendarConfig(freq="30min", exchange="XHKG")
    grid = bar_grid(cal, "2024-03-01", "2024-03-05")
    day = [pd.Timestamp(t) for t in grid if pd.Timestamp(t).date() == pd.Timestamp("2024-03-01").date()]
    assert day[0] == pd.Timestamp("2024-03-01 10:00") and day[-1] == pd.Timestamp("2024-03-01 16:00")
    assert pd.Timestamp("2024-03-01 12:30") not in day and pd.Timestamp("2024-03-01 13:30") in day
    fut = future_timestamps(grid, cal, np.datetime64("2024-03-01T15:30", "ns"), 3)
    assert list(fut) == list(ts("2024-03-01 16:00", "2024-03-04 10:00", "2024-03-04 10:30"))


def test_intraday_xnys_5min_bar_close_stamps():
    cal = CalendarConfig(freq="5min", exchange="XNYS")
    grid = bar_grid(cal, "2024-06-28", "2024-06-29")
    assert pd.Timestamp(grid[0]) == pd.Timestamp("2024-06-28 09:35") and len(grid) == 78


def test_fixed_frequency_fallback():
    cal = CalendarConfig(freq="1h", exchange=None)
    fut = future_timestamps(None, cal, np.datetime64("2024-06-29T23:00", "ns"), 2)  # a Saturday: 24/7
    assert list(fut) == list(ts("2024-06-30 00:00", "2024-06-30 01:00"))
    assert expected_between(None, cal, *ts("2024-06-29 00:00", "2024-06-29 05:00")) == 6
    assert len(bar_grid(cal, "2024-06-29 00:30", "2024-06-29 03:00")) == 3
