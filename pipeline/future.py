"""Stage 3, future timestamps: the calendar bars each valid asset is forecast for.

Step k of every asset is the k-th calendar bar after as_of (``kronos_core.rules.MarketCalendar``). An asset
whose last bar is ``lag`` bars before as_of (allowed up to ``validation.max_stale_bars``) is forecast
``lag + pred_len`` bars from its last bar and the first ``lag`` steps are dropped (stage 4), so one
table never mixes "step 1 = the as_of session" with "step 1 = the session after it"; ``lag_bars`` records
the lag.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from kronos_core import MarketCalendar

__all__ = ["future_batch", "window_start", "run_grid"]


def run_grid(cal: MarketCalendar, as_of, lookback: int, pred_len: int) -> np.ndarray:
    """The calendar bars a run needs: ``lookback`` up to as_of and ``pred_len`` after it (plus a margin)."""
    return cal.around(as_of, lookback + 1, pred_len + 1)


def window_start(grid: np.ndarray, as_of, lookback: int) -> np.datetime64:
    """Stamp of the oldest bar in a full ``lookback`` window ending at ``as_of``."""
    i = int(np.searchsorted(grid, np.datetime64(as_of, "ns"), side="right"))  # bars <= as_of
    if i < lookback:
        raise ValueError(
            f"the calendar holds only {i} bars up to as_of={as_of}; lookback={lookback} is too long"
        )
    return grid[i - lookback]


def future_batch(batch: pa.Table, grid: np.ndarray, cal: MarketCalendar, pred_len: int, as_of) -> pa.Table:
    """Add ``future_timestamps`` (int64 ns, ``lag_bars + pred_len`` of them) and ``lag_bars`` to each valid
    asset; an asset whose future cannot be laid out is rejected (``no_future_calendar``), never raised."""
    as_of = np.datetime64(as_of, "ns")
    fut, lags = [], []
    valid, why = batch["is_valid"].to_pylist(), batch["reject_reason"].to_pylist()
    for i, last in enumerate(batch["last_timestamp"].to_pylist()):
        if not valid[i]:
            fut.append([])
            lags.append(0)
            continue
        last = np.datetime64(last, "ns")
        lag = max(cal.count(last, as_of, grid) - 1, 0)
        try:
            stamps = cal.next_bars(last, lag + pred_len, grid)
            if len(stamps) < lag + pred_len:
                raise ValueError(f"only {len(stamps)} of {lag + pred_len} calendar bars after {last}")
        except ValueError as e:
            valid[i], why[i] = False, f"no_future_calendar: {e}"
            fut.append([])
            lags.append(0)
            continue
        fut.append(stamps.astype(np.int64).tolist())
        lags.append(lag)
    out = batch.set_column(batch.schema.get_field_index("is_valid"), "is_valid", pa.array(valid, pa.bool_()))
    out = out.set_column(
        out.schema.get_field_index("reject_reason"), "reject_reason", pa.array(why, pa.string())
    )
    return out.append_column("future_timestamps", pa.array(fut, pa.list_(pa.int64()))).append_column(
        "lag_bars", pa.array(lags, pa.int64())
    )
