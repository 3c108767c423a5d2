"""One input series for the forecast API, checked by the shared rules (``kronos_core.rules``) before it
reaches the model: the core raises what the batch job quarantines and serving answers with 422."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .rules import FIELDS, PRICE_FIELDS, as_stamps, candle_issues, fill_values, order_issues, raise_first
from .rules.issues import Issue, RuleError
from .rules.timestamps import fmt_stamp

__all__ = [
    "FIELDS",
    "PRICE_FIELDS",
    "Series",
    "validate_batch",
    "frame_columns",
    "frame_values",
    "to_wall_clock",
]

# accepted column spellings (case-insensitive) -> field; Yahoo/yfinance CSVs have Date, Open, ..., Volume
_COLUMN_ALIASES = {
    "timestamps": ("timestamps", "timestamp", "date", "datetime", "time"),
    "open": ("open",),
    "high": ("high",),
    "low": ("low",),
    "close": ("close",),
    "volume": ("volume", "vol"),
    "amount": ("amount", "turnover"),
}


@dataclass(frozen=True)
class Series:
    """One K-line series to forecast.

    Attributes:
        symbol: identifier (e.g. the ticker); with the seed it fixes this series' sample paths.
        timestamps: (L,) datetime64, strictly increasing, local wall-clock time, 1677-09-22 to 2262-04-10.
        values: (L, 6) float, columns ``open, high, low, close, volume, amount``: finite, prices > 0,
            high >= max(open, close), low <= min(open, close), volume and amount >= 0.
        future_timestamps: (P,) datetime64 of the bars to forecast, strictly increasing, after the last
            timestamp. Only the first P-1 are read by the model (the stamp of the bar being predicted is never
            used), but all P label the output.
    Invalid input raises ``TypeError``, or ``ValueError`` (``kronos_core.rules.RuleError``, with ``.issue``)
    naming the series, the field, the row and the fix.
    """

    symbol: str
    timestamps: np.ndarray
    values: np.ndarray
    future_timestamps: np.ndarray

    def __post_init__(self) -> None:
        if not isinstance(self.symbol, str) or not self.symbol:
            raise TypeError(f"Series.symbol must be a non-empty str, got {self.symbol!r}")
        who = f"series {self.symbol!r}"
        ts = _stamps(self.timestamps, "timestamps", who)
        fts = _stamps(self.future_timestamps, "future_timestamps", who)
        vals = np.asarray(self.values)
        if vals.dtype.kind not in "fiu":
            raise TypeError(
                f"{who}: values must be numeric (L, 6) with columns {FIELDS}, got dtype {vals.dtype}"
            )
        vals = vals.astype(np.float64, copy=False)
        if vals.ndim != 2 or vals.shape[1] != 6:
            raise ValueError(f"{who}: values must have shape (L, 6) with columns {FIELDS}, got {vals.shape}")
        if vals.shape[0] == 0:
            raise ValueError(f"{who}: empty series (0 rows); drop it or give at least one bar")
        if ts.ndim != 1 or ts.shape[0] != vals.shape[0]:
            raise ValueError(
                f"{who}: {ts.shape[0] if ts.ndim == 1 else ts.shape} timestamps for "
                f"{vals.shape[0]} rows of values; give one timestamp per row"
            )
        if fts.ndim != 1 or fts.shape[0] == 0:
            raise ValueError(f"{who}: future_timestamps must be a non-empty 1-D array, got shape {fts.shape}")
        raise_first(candle_issues(vals), who)
        raise_first(order_issues(ts, "timestamps") + order_issues(fts, "future_timestamps"), who)
        if fts[0] <= ts[-1]:
            raise RuleError(
                Issue(
                    "future_not_after_history",
                    f"first future timestamp {fmt_stamp(fts[0])} is not "
                    f"after the last observed timestamp {fmt_stamp(ts[-1])}",
                    "future_timestamps",
                    0,
                ),
                who,
            )
        object.__setattr__(self, "timestamps", ts)
        object.__setattr__(self, "future_timestamps", fts)
        object.__setattr__(self, "values", vals)

    @property
    def length(self) -> int:
        return int(self.values.shape[0])

    @property
    def pred_len(self) -> int:
        return int(self.future_timestamps.shape[0])

    @classmethod
    def from_frame(cls, symbol: str, df, timestamps=None, future_timestamps=None) -> Series:
        """Build a series from a pandas DataFrame with ``open, high, low, close`` and optional
        ``volume``/``amount`` (any case; see ``frame_columns`` for the accepted spellings), filled as
        upstream: no volume -> volume = amount = 0; no amount -> amount = volume x mean(OHLC). Timestamps come
        from ``timestamps``, a timestamp column (``timestamps``, ``timestamp``, ``Date``, ``Datetime``) or a
        DatetimeIndex; tz-aware times are converted to their local wall-clock time."""
        if future_timestamps is None:
            raise ValueError(f"series {symbol!r}: future_timestamps is required")
        if timestamps is None:
            timestamps = frame_timestamps(df, symbol)
        return cls(
            symbol=symbol,
            timestamps=to_wall_clock(timestamps),
            values=frame_values(df, symbol),
            future_timestamps=to_wall_clock(future_timestamps),
        )


def _stamps(values, field: str, who: str) -> np.ndarray:
    try:
        return as_stamps(values, field)
    except TypeError as e:
        raise TypeError(f"{who}: {e}") from None
    except RuleError as e:
        raise RuleError(e.issue, who) from None


def frame_columns(df) -> dict[str, str]:
    """Field -> the frame's column for it, matching the accepted spellings case-insensitively."""
    by_lower: dict[str, str] = {}
    for c in df.columns:
        by_lower.setdefault(str(c).strip().lower(), c)
    out = {}
    for fld, names in _COLUMN_ALIASES.items():
        col = next((by_lower[n] for n in names if n in by_lower), None)
        if col is not None:
            out[fld] = col
    return out


def frame_timestamps(df, symbol: str = "<frame>"):
    """The timestamps of a frame: its timestamp column, else its DatetimeIndex."""
    import pandas as pd

    col = frame_columns(df).get("timestamps")
    if col is not None:
        return df[col]
    if isinstance(df.index, pd.DatetimeIndex):
        return df.index
    raise ValueError(
        f"series {symbol!r}: no timestamp column (looked for "
        f"{', '.join(_COLUMN_ALIASES['timestamps'])}, any case) and no DatetimeIndex; "
        "pass timestamps= or name the column 'timestamps'"
    )


def frame_values(df, symbol: str = "<frame>") -> np.ndarray:
    """(L, 6) float64 values from a frame, filled by the shared rule (``rules.fill_values``)."""
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"series {symbol!r}: expected a pandas DataFrame, got {type(df).__name__}")
    cols = frame_columns(df)
    missing = [c for c in PRICE_FIELDS if c not in cols]
    if missing:
        raise ValueError(
            f"series {symbol!r}: missing price columns {missing}; the frame needs "
            f"{list(PRICE_FIELDS)} (any case; volume and amount are optional), has {list(df.columns)}"
        )
    for fld, col in cols.items():
        if fld != "timestamps" and df[col].dtype.kind not in "fiu":
            raise TypeError(f"series {symbol!r}: column {col!r} must be numeric, got dtype {df[col].dtype}")
    prices = np.column_stack([df[cols[f]].to_numpy(dtype=np.float64) for f in PRICE_FIELDS])
    volume = df[cols["volume"]].to_numpy(dtype=np.float64) if "volume" in cols else None
    amount = df[cols["amount"]].to_numpy(dtype=np.float64) if "amount" in cols else None
    values, issues = fill_values(prices, volume, amount)
    raise_first(issues, f"series {symbol!r}")
    return values


def to_wall_clock(values) -> np.ndarray:
    """datetime64 local wall-clock times from pandas/numpy input (tz-aware -> local time, tz dropped).

    The unit of the input is kept (no cast to ns here), so ``as_stamps`` can check the range first."""
    import pandas as pd

    if isinstance(values, np.ndarray) and values.dtype.kind == "M":
        return values
    try:
        idx = pd.DatetimeIndex(values)
    except (TypeError, ValueError, OverflowError, pd.errors.OutOfBoundsDatetime) as e:
        raise ValueError(f"timestamps could not be read as dates: {e}") from None
    if idx.tz is not None:
        idx = idx.tz_localize(None)
    return idx.to_numpy()


def validate_batch(series: Sequence[Series], pred_len: int) -> None:
    """Checks across a batch: types, unique symbols, every series' future length equal to ``pred_len``."""
    if isinstance(pred_len, bool) or not isinstance(pred_len, (int, np.integer)):
        raise TypeError(f"pred_len must be an int, got {type(pred_len).__name__}")
    if pred_len <= 0:
        raise ValueError(f"pred_len must be >= 1, got {pred_len}")
    if not isinstance(series, Sequence) or isinstance(series, (str, bytes)):
        raise TypeError(f"series must be a list of kronos_core.Series, got {type(series).__name__}")
    if len(series) == 0:
        raise ValueError("no series given: pass at least one kronos_core.Series")
    seen: set[str] = set()
    for i, s in enumerate(series):
        if not isinstance(s, Series):
            raise TypeError(
                f"series[{i}] must be a kronos_core.Series, got {type(s).__name__}; "
                "build it with Series(...) or Series.from_frame(...)"
            )
        if s.symbol in seen:
            raise ValueError(
                f"duplicate symbol {s.symbol!r}: symbols must be unique in one call (they seed the paths)"
            )
        seen.add(s.symbol)
        if s.pred_len != pred_len:
            raise ValueError(
                f"series {s.symbol!r}: {s.pred_len} future timestamps but pred_len={pred_len}; "
                "give exactly pred_len future timestamps"
            )
