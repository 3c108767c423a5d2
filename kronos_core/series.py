"""One input series for the forecast API, with the checks that keep bad input out of the model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["FIELDS", "PRICE_FIELDS", "Series", "validate_batch"]

FIELDS: tuple[str, ...] = ("open", "high", "low", "close", "volume", "amount")
PRICE_FIELDS: tuple[str, ...] = FIELDS[:4]


def _as_datetime64(values, what: str, key: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind == "M":
        return arr.astype("datetime64[ns]")
    if arr.dtype == object and arr.size:
        try:  # pandas Timestamps / datetime objects (tz-naive; see Series.from_frame for tz-aware input)
            return arr.astype("datetime64[ns]")
        except (TypeError, ValueError):
            pass
    raise TypeError(f"series {key!r}: {what} must be datetime64 values (numpy datetime64 or pandas timestamps), "
                    f"got dtype {arr.dtype}")


@dataclass(frozen=True)
class Series:
    """One K-line series to forecast.

    Attributes:
        key: identifier (e.g. the symbol); it also seeds this series' sample paths.
        timestamps: (L,) datetime64[ns], strictly increasing, local wall-clock time.
        values: (L, 6) float, columns ``open, high, low, close, volume, amount``.
        future_timestamps: (P,) datetime64[ns] of the bars to forecast, strictly increasing, after the last
            timestamp. Only the first P-1 are read by the model (the stamp of the bar being predicted is never
            used), but all P label the output.
    """

    key: str
    timestamps: np.ndarray
    values: np.ndarray
    future_timestamps: np.ndarray

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise TypeError(f"Series.key must be a non-empty str, got {self.key!r}")
        key = self.key
        ts = _as_datetime64(self.timestamps, "timestamps", key)
        fts = _as_datetime64(self.future_timestamps, "future_timestamps", key)
        vals = np.asarray(self.values)
        if vals.dtype.kind not in "fiu":
            raise TypeError(f"series {key!r}: values must be numeric (L, 6) with columns {FIELDS}, got dtype {vals.dtype}")
        vals = vals.astype(np.float64, copy=False)
        if vals.ndim != 2 or vals.shape[1] != 6:
            raise ValueError(f"series {key!r}: values must have shape (L, 6) with columns {FIELDS}, got {vals.shape}")
        if vals.shape[0] == 0:
            raise ValueError(f"series {key!r}: empty series (0 rows); drop it or give at least one bar")
        if ts.ndim != 1 or ts.shape[0] != vals.shape[0]:
            raise ValueError(f"series {key!r}: {ts.shape[0] if ts.ndim == 1 else ts.shape} timestamps for "
                             f"{vals.shape[0]} rows of values; give one timestamp per row")
        if fts.ndim != 1 or fts.shape[0] == 0:
            raise ValueError(f"series {key!r}: future_timestamps must be a non-empty 1-D array, got shape {fts.shape}")
        bad = ~np.isfinite(vals)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(f"series {key!r}: {int(bad.sum())} NaN/inf values (first at row {row}, column "
                             f"{FIELDS[col]!r}); drop or fill those bars before forecasting")
        if np.isnat(ts).any() or np.isnat(fts).any():
            raise ValueError(f"series {key!r}: timestamps contain NaT; drop those bars")
        _check_increasing(ts, key, "timestamps")
        _check_increasing(fts, key, "future_timestamps")
        if fts[0] <= ts[-1]:
            raise ValueError(f"series {key!r}: first future timestamp {fts[0]} is not after the last observed "
                             f"timestamp {ts[-1]}")
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
    def from_frame(cls, key: str, df, timestamps=None, future_timestamps=None) -> Series:
        """Build a series from a pandas DataFrame with ``open, high, low, close`` and optional
        ``volume``/``amount`` (filled as upstream: no volume → volume = amount = 0; no amount →
        amount = volume × mean(OHLC)). Timestamps come from ``timestamps`` or a ``timestamps``/
        ``timestamp`` column; tz-aware times are converted to their local wall-clock time."""
        import pandas as pd  # the one pandas use in kronos_core's series layer

        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"series {key!r}: expected a pandas DataFrame, got {type(df).__name__}")
        missing = [c for c in PRICE_FIELDS if c not in df.columns]
        if missing:
            raise ValueError(f"series {key!r}: missing price columns {missing}; the frame needs "
                             f"{list(PRICE_FIELDS)} (volume and amount are optional)")
        if timestamps is None:
            col = next((c for c in ("timestamps", "timestamp") if c in df.columns), None)
            if col is None:
                raise ValueError(f"series {key!r}: pass timestamps= or include a 'timestamps' column")
            timestamps = df[col]
        if future_timestamps is None:
            raise ValueError(f"series {key!r}: future_timestamps is required")
        return cls(key=key, timestamps=to_wall_clock(timestamps), values=frame_values(df, key),
                   future_timestamps=to_wall_clock(future_timestamps))


def frame_values(df, key: str = "<frame>") -> np.ndarray:
    """(L, 6) float64 values from a frame, filling volume/amount the way upstream does."""
    for col in (*PRICE_FIELDS, "volume", "amount"):
        if col in df.columns and df[col].dtype.kind not in "fiu":
            raise TypeError(f"series {key!r}: column {col!r} must be numeric, got dtype {df[col].dtype}")
    prices = df[list(PRICE_FIELDS)].to_numpy(dtype=np.float64)
    if "volume" not in df.columns:
        volume = np.zeros(len(df))
        amount = np.zeros(len(df))
    else:
        volume = df["volume"].to_numpy(dtype=np.float64)
        amount = (df["amount"].to_numpy(dtype=np.float64) if "amount" in df.columns
                  else volume * prices.mean(axis=1))
    return np.column_stack([prices, volume, amount])


def to_wall_clock(values) -> np.ndarray:
    """datetime64[ns] local wall-clock times from pandas/numpy input (tz-aware → local time, tz dropped)."""
    import pandas as pd

    idx = pd.DatetimeIndex(pd.to_datetime(values))
    if idx.tz is not None:
        idx = idx.tz_localize(None)
    return idx.to_numpy(dtype="datetime64[ns]")


def _check_increasing(ts: np.ndarray, key: str, what: str) -> None:
    if ts.shape[0] < 2:
        return
    diffs = np.diff(ts.astype(np.int64))
    bad = np.flatnonzero(diffs <= 0)
    if bad.size:
        i = int(bad[0])
        kind = "duplicate" if diffs[i] == 0 else "decreasing"
        raise ValueError(f"series {key!r}: {what} must be strictly increasing; {kind} at index {i + 1} "
                         f"({ts[i]} then {ts[i + 1]}); sort by time and drop duplicate bars")


def validate_batch(series: Sequence[Series], pred_len: int) -> None:
    """Checks across a batch: types, unique keys, every series' future length equal to ``pred_len``."""
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
            raise TypeError(f"series[{i}] must be a kronos_core.Series, got {type(s).__name__}; "
                            "build it with Series(...) or Series.from_frame(...)")
        if s.key in seen:
            raise ValueError(f"duplicate series key {s.key!r}: keys must be unique in one call (they seed the paths)")
        seen.add(s.key)
        if s.pred_len != pred_len:
            raise ValueError(f"series {s.key!r}: {s.pred_len} future timestamps but pred_len={pred_len}; "
                             "give exactly pred_len future timestamps")
