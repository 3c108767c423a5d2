"""Timestamps: one representable range and strict order, checked *before* any cast.

Every timestamp is held as tz-naive ``datetime64[ns]`` (local wall-clock time of the market). That unit
covers 1677-09-21 to 2262-04-11; a cast from a coarser unit (pandas 3 and parquet often use microseconds)
silently wraps around outside it: year 3000 became 1830, and year 1600 became 2184, with wrapped
differences that even passed an order check. So the range is checked in the input's own unit first.
"""

from __future__ import annotations

import numpy as np

from .issues import Issue, RuleError

__all__ = [
    "TIMESTAMP_MIN",
    "TIMESTAMP_MAX",
    "as_stamps",
    "range_issue",
    "order_issues",
    "in_range_mask",
    "fmt_stamp",
]

# whole days inside the datetime64[ns] range: MIN <= t < MAX
TIMESTAMP_MIN = np.datetime64("1677-09-22", "ns")
TIMESTAMP_MAX = np.datetime64("2262-04-11", "ns")
_RANGE_TEXT = "from 1677-09-22 up to (not including) 2262-04-11"


def fmt_stamp(t) -> str:
    """A timestamp for messages: ``2024-06-28`` at midnight, else ``2024-06-28 09:35`` (seconds if any)."""
    t = np.datetime64(t)
    if np.isnat(t):
        return "NaT"
    text = np.datetime_as_string(t.astype("datetime64[s]"), unit="s").replace("T", " ")
    if text.endswith(" 00:00:00"):
        return text[:-9]
    return text[:-3] if text.endswith(":00") else text


def in_range_mask(values: np.ndarray) -> np.ndarray:
    """Boolean mask of datetime64 values (any unit; NaT -> False) inside the representable range."""
    unit = np.datetime_data(values.dtype)[0]
    if unit in ("ps", "fs", "as"):  # finer than ns: every value lies within hours of 1970
        return ~np.isnat(values)
    if unit not in ("us", "ns"):  # Y ... ms: compare in ms (covers +-290 million years, no wrap-around)
        values = values.astype("datetime64[ms]")
        unit = "ms"
    lo, hi = TIMESTAMP_MIN.astype(f"datetime64[{unit}]"), TIMESTAMP_MAX.astype(f"datetime64[{unit}]")
    return ~np.isnat(values) & (values >= lo) & (values < hi)


def range_issue(values: np.ndarray, field: str = "timestamps") -> Issue | None:
    """The first out-of-range (or NaT) value of a datetime64 array as an ``Issue``, else None."""
    ok = in_range_mask(values)
    if ok.all():
        return None
    row = int(np.flatnonzero(~ok)[0])
    if np.isnat(values[row]):
        return Issue(
            "missing_timestamp", f"{field} has a missing value (NaT) at row {row}; drop that bar", field, row
        )
    return Issue(
        "timestamp_out_of_range",
        f"{field}[{row}] = {fmt_stamp(values[row])} is outside the supported range {_RANGE_TEXT}; "
        f"fix the timestamp (a wrong unit or a typo in the year?)",
        field,
        row,
    )


def as_stamps(values, field: str = "timestamps") -> np.ndarray:
    """Timestamps as ``datetime64[ns]`` after checking their range in their own unit.

    Accepts numpy ``datetime64`` of any unit and arrays of ``datetime``/``pandas.Timestamp`` objects
    (tz-naive). Raises ``TypeError`` for other types and ``RuleError`` (a ``ValueError``) for missing or
    out-of-range values.
    """
    arr = np.asarray(values)
    if arr.dtype.kind != "M":
        if arr.dtype != object or arr.size == 0:
            if arr.size == 0 and arr.dtype.kind in "fiuOU":
                return np.empty(0, dtype="datetime64[ns]")
            raise TypeError(
                f"{field} must be datetime64 values (numpy datetime64 or pandas timestamps), "
                f"got dtype {arr.dtype}"
            )
        try:  # datetime / Timestamp objects: microseconds cover years 1..9999, so nothing wraps here
            arr = arr.astype("datetime64[us]")
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{field} must be datetime64 values (numpy datetime64 or pandas timestamps), "
                f"got objects that are not tz-naive datetimes ({exc})"
            ) from None
    issue = range_issue(arr.reshape(-1), field)
    if issue is not None:
        raise RuleError(issue)
    return arr.astype("datetime64[ns]")


def order_issues(ts: np.ndarray, field: str = "timestamps") -> list[Issue]:
    """Strict increase: ``duplicate_timestamps`` and ``unsorted_timestamps`` (first occurrence of each)."""
    if ts.shape[0] < 2:
        return []
    d = np.diff(ts.astype("datetime64[ns]").astype(np.int64))
    out = []
    dup = np.flatnonzero(d == 0)
    if dup.size:
        i = int(dup[0]) + 1
        out.append(
            Issue(
                "duplicate_timestamps",
                f"{field} must be strictly increasing; duplicate at index {i} "
                f"({fmt_stamp(ts[i - 1])} twice); drop duplicate bars",
                field,
                i,
            )
        )
    dec = np.flatnonzero(d < 0)
    if dec.size:
        i = int(dec[0]) + 1
        out.append(
            Issue(
                "unsorted_timestamps",
                f"{field} must be strictly increasing; decreasing at index {i} "
                f"({fmt_stamp(ts[i - 1])} then {fmt_stamp(ts[i])}); sort by time",
                field,
                i,
            )
        )
    return out
