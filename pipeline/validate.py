"""Stage 2, validate: every asset gets ``is_valid`` and ``reject_reason``; nothing here raises.

The rules are ``kronos_core.rules`` (the ones the core raises and serving answers 422 with); this stage
only applies them to the window the model would see and joins the codes with ';' in the order of
``REASONS``. Stale and too-short are the job's own: they depend on as_of and the configured window.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from kronos_core import MarketCalendar
from kronos_core.rules import CANDLE_CODES, candle_issues, order_issues

from .config import ValidationConfig

__all__ = ["check_asset", "validate_batch", "REASONS"]

# every reject reason the job writes, in the order they are joined
REASONS: dict[str, str] = {
    "empty_symbol": "rows without a symbol (they belong to no asset)",
    "too_short": "fewer than validation.min_history bars in the window",
    "missing_timestamp": "a row of the asset has no timestamp",
    "timestamp_out_of_range": "a row's timestamp is outside 1677-09-22 .. 2262-04-10",
    **CANDLE_CODES,
    "duplicate_timestamps": "two bars with the same timestamp",
    "unsorted_timestamps": "bars delivered out of time order",
    "off_calendar": "a bar that is not a bar of the calendar (wrong calendar, frequency or stamp convention)",
    "stale": "more than validation.max_stale_bars calendar bars between the last bar and as_of",
    "gaps": "more than validation.max_gap_fraction of the calendar's bars missing in the window",
    "no_future_calendar": "the calendar has no pred_len bars after the asset's last bar",
    "forecast_input": "the model refused the input (should not happen after validation)",
    "no_data": "named in the universe but absent from the data",
}


def check_asset(
    symbol: str,
    ts: np.ndarray,
    values: np.ndarray,
    read_issues: list[str],
    as_of: np.datetime64,
    grid: np.ndarray,
    cal: MarketCalendar,
    cfg: ValidationConfig,
) -> list[str]:
    """Reject reasons for one asset (empty = valid), in ``REASONS`` order.

    Args:
        ts: (L,) datetime64[ns] in delivery order.
        values: (L, 6) open, high, low, close, volume, amount.
        read_issues: codes the read stage found (out-of-range timestamps, amount without volume).
        as_of: the run's point in time.
        grid: the calendar's bar stamps around the window (``MarketCalendar.around``).
    """
    found = set(read_issues)
    if symbol == "":
        found.add("empty_symbol")
    if len(ts) < cfg.min_history:
        found.add("too_short")
    if len(ts):
        found.update(i.code for i in candle_issues(values, cfg.max_price_ratio))
        found.update(i.code for i in order_issues(ts))
        found.update(i.code for i in cal.fit_issues(np.unique(ts), grid, cfg.max_gap_fraction))
        last = ts.max()
        if last < as_of and cal.count(last, as_of, grid) - 1 > cfg.max_stale_bars:
            found.add("stale")
    return [code for code in REASONS if code in found] + sorted(found - set(REASONS))


def validate_batch(
    batch: pa.Table, as_of, grid: np.ndarray, cal: MarketCalendar, cfg: ValidationConfig
) -> pa.Table:
    """Asset rows (``read.ASSET_SCHEMA``) -> the same rows plus ``is_valid``, ``reject_reason``,
    ``last_timestamp``."""
    as_of = np.datetime64(as_of, "ns")
    valid, why, last = [], [], []
    cols = zip(
        batch["symbol"].to_pylist(),
        batch["timestamps"].to_pylist(),
        batch["values"].to_pylist(),
        batch["read_issues"].to_pylist(),
        strict=True,
    )
    for symbol, ts_list, flat, read_issues in cols:
        ts = np.asarray(ts_list, dtype=np.int64).astype("datetime64[ns]")
        vals = np.asarray(flat, dtype=np.float64).reshape(-1, 6)
        try:
            reasons = check_asset(
                symbol, ts, vals, (read_issues or "").split(";") if read_issues else [], as_of, grid, cal, cfg
            )
        except Exception as e:  # noqa: BLE001 - a bad asset never fails the job
            reasons = [f"validate_error: {type(e).__name__}: {e}"]
        valid.append(not reasons)
        why.append(";".join(reasons) if reasons else None)
        last.append(ts.max() if len(ts) else None)
    return (
        batch.append_column("is_valid", pa.array(valid, pa.bool_()))
        .append_column("reject_reason", pa.array(why, pa.string()))
        .append_column("last_timestamp", pa.array(last, pa.timestamp("ns")))
    )
