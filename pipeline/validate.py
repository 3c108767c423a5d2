"""Stage 2, validate: every asset gets ``is_valid`` and ``reject_reason``; nothing here raises.

Checks run on the window the model would see. Several reasons are joined with ';' in a fixed order:
too_short, non_finite, non_positive_price, high_below_open_close, low_above_open_close, negative_volume,
duplicate_timestamps, unsorted_timestamps, stale, gaps.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .calendars import expected_between
from .config import CalendarConfig, ValidationConfig

__all__ = ["check_asset", "validate_batch", "REASONS"]

REASONS = ("too_short", "non_finite", "non_positive_price", "high_below_open_close", "low_above_open_close",
           "negative_volume", "duplicate_timestamps", "unsorted_timestamps", "stale", "gaps")


def check_asset(ts: np.ndarray, values: np.ndarray, as_of: np.datetime64, grid: np.ndarray | None,
                cal: CalendarConfig, cfg: ValidationConfig) -> list[str]:
    """Reject reasons for one asset (empty = valid).

    Args:
        ts: (L,) datetime64[ns] in delivery order.
        values: (L, 6) open, high, low, close, volume, amount.
        as_of: the run's point in time.
        grid: expected bar stamps around the window (None = fixed-frequency calendar).
    """
    reasons = []
    n = len(ts)
    if n < cfg.min_history:
        reasons.append("too_short")
    if n == 0:
        return reasons
    o, h, lo, c, v, a = (values[:, i] for i in range(6))
    finite = np.isfinite(values)
    if not finite.all():
        reasons.append("non_finite")
    with np.errstate(invalid="ignore"):
        if (values[:, :4][finite[:, :4]] <= 0).any():
            reasons.append("non_positive_price")
        if (h < np.maximum(o, c)).any():
            reasons.append("high_below_open_close")
        if (lo > np.minimum(o, c)).any():
            reasons.append("low_above_open_close")
        if (v < 0).any() or (a < 0).any():
            reasons.append("negative_volume")
    d = np.diff(ts.astype(np.int64))
    if len(np.unique(ts)) < n:
        reasons.append("duplicate_timestamps")
    if (d < 0).any():
        reasons.append("unsorted_timestamps")
    last, first = ts.max(), ts.min()
    if last < as_of:
        behind = expected_between(grid, cal, last, as_of) - 1  # bars after `last` up to as_of
        if behind > cfg.max_stale_bars:
            reasons.append("stale")
    expected = expected_between(grid, cal, first, last)
    present = len(np.unique(ts))
    if expected > 0 and (expected - present) / expected > cfg.max_gap_fraction:
        reasons.append("gaps")
    return reasons


def validate_batch(batch: pa.Table, as_of, grid: np.ndarray | None, cal: CalendarConfig,
                   cfg: ValidationConfig) -> pa.Table:
    """Asset rows (``read.ASSET_SCHEMA``) -> the same rows plus ``is_valid``, ``reject_reason``,
    ``last_timestamp``."""
    as_of = np.datetime64(as_of, "ns")
    valid, why, last = [], [], []
    ts_col, val_col = batch["timestamps"].to_pylist(), batch["values"].to_pylist()
    for ts_list, flat in zip(ts_col, val_col, strict=True):
        ts = np.asarray(ts_list, dtype=np.int64).astype("datetime64[ns]")
        vals = np.asarray(flat, dtype=np.float64).reshape(-1, 6)
        try:
            reasons = check_asset(ts, vals, as_of, grid, cal, cfg)
        except Exception as e:  # noqa: BLE001 - a bad asset never fails the job
            reasons = [f"validate_error: {type(e).__name__}: {e}"]
        valid.append(not reasons)
        why.append(";".join(reasons) if reasons else None)
        last.append(ts.max() if len(ts) else None)
    return (batch.append_column("is_valid", pa.array(valid, pa.bool_()))
            .append_column("reject_reason", pa.array(why, pa.string()))
            .append_column("last_timestamp", pa.array(last, pa.timestamp("ns"))))
