"""Trading-session arithmetic: which session is the last *completed* one at a given moment.

Uses ``exchange_calendars`` (holidays, early closes) when the calendar name is known to it, else a plain
weekday calendar with a fixed close time in the given timezone.
"""

from __future__ import annotations

import datetime as dt
import logging

import pandas as pd

__all__ = ["last_completed_session", "previous_sessions"]

log = logging.getLogger(__name__)


def _xcal(name: str):
    try:
        import exchange_calendars as xc
    except ImportError:  # optional: the weekday fallback below is good enough for synthetic markets
        return None
    try:
        return xc.get_calendar(name)
    except Exception:  # unknown name: fall back, the caller gets the weekday calendar
        log.warning("calendar %r unknown to exchange_calendars; using a weekday calendar", name)
        return None


def last_completed_session(now: dt.datetime | pd.Timestamp | None = None, calendar: str = "XNYS",
                           tz: str = "America/New_York", close: str = "16:00") -> dt.date:
    """The latest session whose close is at or before ``now`` (default: the current time).

    ``tz``/``close`` are used only by the weekday fallback (when ``calendar`` is not an exchange_calendars name).
    """
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    if now.tzinfo is None:
        now = now.tz_localize("UTC")
    cal = _xcal(calendar)
    if cal is not None and cal.first_session <= now.tz_convert(None).normalize() <= cal.last_session:
        session = cal.date_to_session(now.tz_convert(cal.tz).tz_localize(None).normalize(), direction="previous")
        if cal.session_close(session) > now:
            session = cal.previous_session(session)
        return session.date()
    local = now.tz_convert(tz)
    hh, mm = (int(x) for x in close.split(":"))
    day = local.normalize().tz_localize(None)
    if local.weekday() >= 5 or (local.hour, local.minute) < (hh, mm):
        day -= pd.Timedelta(days=1)
    while day.weekday() >= 5:
        day -= pd.Timedelta(days=1)
    return day.date()


def previous_sessions(end: dt.date, count: int, calendar: str = "XNYS") -> list[dt.date]:
    """``count`` consecutive sessions ending at ``end`` (inclusive), oldest first."""
    cal = _xcal(calendar)
    end_ts = pd.Timestamp(end)
    if cal is not None and cal.first_session <= end_ts <= cal.last_session:
        end_ts = cal.date_to_session(end_ts, direction="previous")
        return [s.date() for s in cal.sessions_window(end_ts, -count)]
    return [d.date() for d in pd.bdate_range(end=end_ts, periods=count)]
