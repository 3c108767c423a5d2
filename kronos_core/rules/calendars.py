"""Market calendars: which bar timestamps a market has, before and after a point in time.

One implementation for the batch job (validation, future timestamps), serving (generated future
timestamps), the ``kronos-forecast`` CLI, the flows (last completed session) and the synthetic data.

Calendars (``name``):
- an ``exchange_calendars`` code (``XNYS``, ``XLON``, ``XHKG``, ``XSHG``, ...): sessions, holidays, early
  closes and lunch breaks; stamps in the exchange's local wall clock;
- ``weekdays``: Monday to Friday, around the clock, no holidays;
- ``24/7``: every bar of every day (crypto);
- ``FX``: the FX week, Sunday 17:00 to Friday 17:00 New York time; stamps in ``timezone`` (default UTC),
  daily bars Monday to Friday (the day that ends at 17:00 New York).
Stamps follow ``frequency``'s convention: intraday bars at their close, daily bars at midnight of the
session date, weekly bars at midnight of the week's Monday, monthly bars at midnight of the 1st.
Intraday grids are anchored at midnight (a 4h grid is 00:00, 04:00, ...).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import defaults
from .frequency import FREQUENCIES, Frequency, parse_frequency
from .issues import Issue, RuleError
from .timestamps import fmt_stamp

__all__ = [
    "MarketCalendar",
    "SPECIAL_CALENDARS",
    "DEFAULT_CALENDAR",
    "DEFAULT_MAX_GAP_FRACTION",
    "calendar_names",
]

log = logging.getLogger(__name__)

DEFAULT_CALENDAR = defaults.CALENDAR
# share of a calendar's bars that may be missing in a window before a series counts as gappy
DEFAULT_MAX_GAP_FRACTION = defaults.MAX_GAP_FRACTION
SPECIAL_CALENDARS = {
    "weekdays": "Monday to Friday around the clock, no holidays",
    "24/7": "every day around the clock (crypto)",
    "FX": "Sunday 17:00 to Friday 17:00 New York time (spot FX)",
}
_FX_TZ = "America/New_York"
_FX_OPEN_WM, _FX_CLOSE_WM = 17 * 60, 5 * 1440 + 17 * 60  # minutes after Sunday 00:00 New York
_EARLIEST_DEFAULT = pd.Timestamp("1990-01-01")


@functools.lru_cache(maxsize=1)
def calendar_names() -> frozenset[str]:
    """Every accepted calendar name: exchange_calendars codes and aliases, plus the special calendars."""
    import exchange_calendars as xcals

    return frozenset(xcals.get_calendar_names(include_aliases=True)) | frozenset(SPECIAL_CALENDARS)


def _canonical_name(name) -> str:
    if not isinstance(name, str) or not name.strip():
        raise RuleError(
            Issue("bad_calendar", f"calendar must be a name such as 'XNYS', got {name!r}", "calendar")
        )
    text = name.strip()
    for special in SPECIAL_CALENDARS:
        if text.lower() == special.lower():
            return special
    names = calendar_names()
    for candidate in (text, text.upper()):
        if candidate in names:
            return candidate
    raise RuleError(
        Issue(
            "bad_calendar",
            f"unknown calendar {name!r}: use an exchange_calendars code such as "
            "'XNYS', 'XLON', 'XHKG', 'XSHG', or one of "
            + ", ".join(f"'{k}' ({v})" for k, v in SPECIAL_CALENDARS.items()),
            "calendar",
        )
    )


_LOADED: dict[str, object] = {}
_OLDEST = pd.Timestamp("1900-01-01")


def _exchange(name: str, earliest: pd.Timestamp):
    """The exchange_calendars calendar covering ``earliest`` (reloaded further back when a run needs it;
    exchange_calendars' own default starts only 20 years ago)."""
    import exchange_calendars as xcals

    cal = _LOADED.get(name)
    if cal is not None:
        bound = type(cal).bound_min()
        floor = max(_OLDEST, bound) if bound is not None else _OLDEST
        if cal.first_session <= max(earliest, floor + pd.Timedelta(days=7)):
            return cal
    bound = type(cal if cal is not None else xcals.get_calendar(name)).bound_min()
    start = max(min(earliest - pd.Timedelta(days=366), _EARLIEST_DEFAULT), _OLDEST)
    if bound is not None:
        start = max(start, bound)
    cal = xcals.get_calendar(name, start=start.normalize())
    _LOADED[name] = cal
    return cal


def _naive(ts) -> pd.Timestamp:
    t = pd.Timestamp(ts)
    if t is pd.NaT:
        raise ValueError("timestamp is NaT")
    return t.tz_localize(None) if t.tz is not None else t


@dataclass(frozen=True)
class MarketCalendar:
    """Bars of one market at one frequency (see the module docstring for the calendars and stamp rules)."""

    name: str = field(
        default=DEFAULT_CALENDAR,
        metadata={
            "description": "exchange_calendars code (XNYS, XLON, XHKG, ...) or 'weekdays', '24/7', 'FX'"
        },
    )
    freq: str = field(
        default="1d",
        metadata={
            "description": "bar frequency: 1min ... 30min, 1h ... 12h, 1d, 1w, 1mo",
            # the forms offer the canonical names; Python callers and job files may also use an alias
            # ('5 mins', '60min', 'D'), which __post_init__ turns into its canonical name
            "json_schema_extra": {"enum": list(FREQUENCIES)},
        },
    )
    timezone: str | None = field(
        default=None, metadata={"description": "FX only: the wall clock of the stamps (default UTC)"}
    )

    __pydantic_config__ = {"extra": "forbid"}  # read by pydantic where configs embed this (no import here)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", _canonical_name(self.name))
        object.__setattr__(self, "freq", parse_frequency(self.freq).name)
        if self.timezone is not None:
            if self.name != "FX":
                raise RuleError(
                    Issue(
                        "bad_calendar",
                        f"timezone is only used by the FX calendar, not {self.name!r}; "
                        "drop it (stamps are local wall-clock times)",
                        "timezone",
                    )
                )
            try:
                import zoneinfo

                zoneinfo.ZoneInfo(self.timezone)
            except Exception:  # noqa: BLE001 - any failure means an unknown zone
                raise RuleError(
                    Issue(
                        "bad_calendar",
                        f"unknown timezone {self.timezone!r}; use an IANA name such as "
                        "'UTC' or 'Europe/London'",
                        "timezone",
                    )
                ) from None

    # ------------------------------------------------------------------ basics
    @property
    def frequency(self) -> Frequency:
        return parse_frequency(self.freq)

    @property
    def exchange(self) -> bool:
        return self.name not in SPECIAL_CALENDARS

    @property
    def label(self) -> str:
        return f"{self.name} {self.freq}" + (f" ({self.timezone})" if self.timezone else "")

    # ------------------------------------------------------------------ grids
    def bars(self, start, end) -> np.ndarray:
        """Every bar stamp in [start, end] (inclusive), sorted ``datetime64[ns]``."""
        start, end = _naive(start), _naive(end)
        if end < start:
            return np.empty(0, dtype="datetime64[ns]")
        f = self.frequency
        if self.exchange:
            idx = self._exchange_bars(start, end, f)
        elif f.unit == "min":
            idx = pd.date_range(start.ceil(f"{f.n}min"), end, freq=f"{f.n}min")
            if self.name == "weekdays":
                idx = idx[(idx - pd.Timedelta(minutes=f.n)).day_of_week < 5]
            elif self.name == "FX":
                idx = idx[self._fx_open(idx, f.n)]
        elif f.unit == "d":
            idx = pd.date_range(start.ceil("D"), end, freq="D")
            if self.name in ("weekdays", "FX"):
                idx = idx[idx.day_of_week < 5]
        else:
            idx = pd.date_range(start.ceil("D"), end, freq="W-MON" if f.unit == "w" else "MS")
        out = pd.DatetimeIndex(idx).to_numpy(dtype="datetime64[ns]")
        return out[(out >= np.datetime64(start, "ns")) & (out <= np.datetime64(end, "ns"))]

    def _exchange_bars(self, start: pd.Timestamp, end: pd.Timestamp, f: Frequency) -> pd.DatetimeIndex:
        x = _exchange(self.name, start)
        lo, hi = max(start.normalize(), x.first_session), min(end.normalize(), x.last_session)
        if hi < lo:
            raise RuleError(
                Issue(
                    "outside_calendar",
                    f"calendar {self.name} covers {x.first_session.date()} to "
                    f"{x.last_session.date()}; {start.date()}..{end.date()} is outside it",
                    "calendar",
                )
            )
        if f.unit == "min":
            idx = x.trading_index(lo, hi, period=f"{f.n}min", intervals=False, closed="right", force=True)
            return idx.tz_convert(x.tz).tz_localize(None)
        sessions = pd.DatetimeIndex(x.sessions_in_range(lo, hi))
        sessions = sessions.tz_localize(None) if sessions.tz is not None else sessions
        if f.unit == "d":
            return sessions
        starts = sessions.to_period("W-SUN" if f.unit == "w" else "M").start_time
        return pd.DatetimeIndex(starts.unique()).normalize()

    def _fx_open(self, close: pd.DatetimeIndex, minutes: int) -> np.ndarray:
        """Bars (close - step, close] that overlap the FX week (Sunday 17:00 to Friday 17:00 New York)."""
        tz = self.timezone or "UTC"

        def week_minute(ts: pd.DatetimeIndex) -> np.ndarray:
            ny = ts.tz_localize(tz, nonexistent="shift_forward", ambiguous=False).tz_convert(_FX_TZ)
            day = (ny.day_of_week.to_numpy() + 1) % 7  # Sunday = 0
            return day * 1440 + ny.hour.to_numpy() * 60 + ny.minute.to_numpy()

        o, c = week_minute(close - pd.Timedelta(minutes=minutes)), week_minute(close)
        open_closed = (o >= _FX_CLOSE_WM) | (o < _FX_OPEN_WM)
        close_closed = (c > _FX_CLOSE_WM) | (c <= _FX_OPEN_WM)
        return ~(open_closed & close_closed)

    def around(self, at, back: int, ahead: int) -> np.ndarray:
        """A grid holding at least ``back`` bars at or before ``at`` and ``ahead`` bars after it."""
        at = _naive(at)
        f = self.frequency
        per_day = (
            (1440 / f.n * (6.5 / 24 if self.exchange else 1.0)) if f.unit == "min" else 1 / f.approx_days
        )
        days_back = int(np.ceil(max(back, 1) / per_day * 7 / 5 * 1.3)) + 10
        days_ahead = int(np.ceil(max(ahead, 1) / per_day * 7 / 5 * 1.3)) + 10
        for _ in range(12):
            grid = self.bars(at - pd.Timedelta(days=days_back), at + pd.Timedelta(days=days_ahead))
            i = int(np.searchsorted(grid, np.datetime64(at, "ns"), side="right"))
            short_back, short_ahead = i < back, len(grid) - i < ahead
            if not short_back and not short_ahead:
                return grid
            days_back *= 2 if short_back else 1
            days_ahead *= 2 if short_ahead else 1
            if self.exchange:
                x = _exchange(self.name, at - pd.Timedelta(days=days_back))
                if short_ahead and at + pd.Timedelta(days=days_ahead // 2) > x.last_session:
                    raise RuleError(
                        Issue(
                            "outside_calendar",
                            f"calendar {self.name} ends {x.last_session.date()}: "
                            f"it has only {len(grid) - i} of {ahead} bars after {at}",
                            "calendar",
                        )
                    )
                if short_back and at - pd.Timedelta(days=days_back // 2) < x.first_session:
                    raise RuleError(
                        Issue(
                            "outside_calendar",
                            f"calendar {self.name} starts "
                            f"{x.first_session.date()}: it has only {i} of {back} bars up to {at}",
                            "calendar",
                        )
                    )
        raise RuleError(
            Issue(
                "outside_calendar",
                f"calendar {self.label}: could not find {back} bars up to and {ahead} bars after {at}",
                "calendar",
            )
        )

    def next_bars(self, last, n: int, grid: np.ndarray | None = None) -> np.ndarray:
        """The ``n`` bar stamps strictly after ``last`` (from ``grid`` when it covers them)."""
        last64 = np.datetime64(_naive(last), "ns")
        if grid is not None:
            i = int(np.searchsorted(grid, last64, side="right"))
            if len(grid) - i >= n and (i > 0 or len(grid) == 0 or grid[0] > last64):
                return grid[i : i + n]
        g = self.around(last, 0, n)
        i = int(np.searchsorted(g, last64, side="right"))
        return g[i : i + n]

    def count(self, first, last, grid: np.ndarray | None = None) -> int:
        """How many bars fall in [first, last]."""
        g = grid if grid is not None else self.bars(first, last)
        f64, l64 = np.datetime64(_naive(first), "ns"), np.datetime64(_naive(last), "ns")
        return int(np.searchsorted(g, l64, side="right") - np.searchsorted(g, f64, side="left"))

    def fit_issues(
        self,
        stamps: np.ndarray,
        grid: np.ndarray | None = None,
        max_gap_fraction: float = DEFAULT_MAX_GAP_FRACTION,
    ) -> list[Issue]:
        """Do bars fit this calendar? ``off_calendar``: a bar that is not a calendar bar (a Saturday on XNYS,
        a
        daily bar stamped 16:00); ``gaps``: more than ``max_gap_fraction`` of the calendar's bars between the
        first and the last bar missing (4-hour A-share days read as XNYS 6.5-hour days). Stamps sorted."""
        s = np.asarray(stamps, dtype="datetime64[ns]")
        if s.size == 0:
            return []
        g = grid if grid is not None else self.bars(s.min(), s.max())
        issues = []
        off = ~np.isin(s, g)
        if off.any():
            r = int(np.flatnonzero(off)[0])
            issues.append(
                Issue(
                    "off_calendar",
                    f"{int(off.sum())} of {s.size} bars are not {self.label} bars "
                    f"(first: {fmt_stamp(s[r])}); name the market's calendar (24/7, FX, weekdays, XLON, ...) "
                    "and "
                    "frequency, or fix the stamps (daily bars are stamped at midnight)",
                    "timestamps",
                    r,
                )
            )
        expected = self.count(s.min(), s.max(), g)
        present = int(np.unique(s[~off]).size)
        if expected and (expected - present) / expected > max_gap_fraction:
            issues.append(
                Issue(
                    "gaps",
                    f"{expected - present} of the {expected} {self.label} bars between "
                    f"{fmt_stamp(s.min())} and {fmt_stamp(s.max())} are missing "
                    f"({(expected - present) / expected:.0%}, at most "
                    f"{max_gap_fraction:.0%} allowed); is {self.name} the right calendar?",
                    "timestamps",
                )
            )
        return issues

    # ------------------------------------------------------------------ sessions
    def session_end(self, day: dt.date) -> pd.Timestamp | None:
        """When the session of ``day`` is complete, as a UTC timestamp (None: ``day`` has no session)."""
        d = pd.Timestamp(day).normalize()
        if self.exchange:
            x = _exchange(self.name, d)
            if not x.is_session(d):
                return None
            return x.session_close(d).tz_convert("UTC")
        if self.name in ("weekdays", "FX") and d.day_of_week >= 5:
            return None
        if self.name == "FX":
            return (d + pd.Timedelta(hours=17)).tz_localize(_FX_TZ).tz_convert("UTC")
        return (d + pd.Timedelta(days=1)).tz_localize(self.timezone or "UTC").tz_convert("UTC")

    def last_completed_session(self, now=None) -> dt.date:
        """The latest session date whose session is complete at ``now`` (default: the current time)."""
        now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
        now = now.tz_localize("UTC") if now.tz is None else now.tz_convert("UTC")
        day = now.tz_localize(None).normalize() + pd.Timedelta(days=1)
        for _ in range(40):
            end = self.session_end(day.date())
            if end is not None and end <= now:
                return day.date()
            day -= pd.Timedelta(days=1)
        raise RuleError(
            Issue(
                "outside_calendar",
                f"calendar {self.name}: no completed session in the 40 days before {now}",
                "calendar",
            )
        )

    def sessions(self, end: dt.date, count: int) -> list[dt.date]:
        """``count`` consecutive session dates ending at ``end`` (inclusive), oldest first."""
        days = MarketCalendar(self.name, "1d", self.timezone).around(pd.Timestamp(end), count, 0)
        days = days[days <= np.datetime64(pd.Timestamp(end), "ns")]
        return [pd.Timestamp(d).date() for d in days[-count:]]
