"""Validate and future stamps (plain functions, no Ray): each failure kind gets its reason; nothing raises;
step k is the k-th calendar bar after as_of for every asset."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from kronos_core import MarketCalendar
from kronos_core.testing import synthetic_ohlcv
from pipeline.config import ValidationConfig
from pipeline.future import future_batch
from pipeline.read import window_group
from pipeline.validate import REASONS, check_asset, validate_batch

CAL = MarketCalendar("XNYS", "1d")
AS_OF = np.datetime64("2024-06-28", "ns")
GRID = CAL.bars("2024-01-01", "2024-07-31")
CFG = ValidationConfig(min_history=20, max_stale_bars=1, max_gap_fraction=0.1)


def good(n=40):
    g = GRID[GRID <= AS_OF][-n:]
    v = synthetic_ohlcv(n, seed=1)[["open", "high", "low", "close", "volume", "amount"]].to_numpy().copy()
    return g.copy(), v


def check(t, v, symbol="X", read_issues=(), cfg=CFG):
    return check_asset(symbol, t, v, list(read_issues), AS_OF, GRID, CAL, cfg)


def test_good_series_is_valid():
    assert check(*good()) == []


def _breaks():
    def nan(t, v):
        v[5, 3] = np.nan

    def inf(t, v):
        v[5, 0] = np.inf

    def zero(t, v):
        v[5, 2] = 0

    def neg(t, v):
        v[5, 0] = -1

    def high(t, v):
        v[5, 1] = min(v[5, 0], v[5, 3]) * 0.99

    def low(t, v):
        v[5, 2] = max(v[5, 0], v[5, 3]) * 1.01

    def vol(t, v):
        v[5, 4] = -1

    def big(t, v):
        v[5, 5] = 1e16

    def jump(t, v):
        v[20, :4] *= 1e6  # the issue's case: one bar a million times the price

    def dup(t, v):
        t[6] = t[5]

    def unsorted(t, v):
        t[5], t[6] = t[6].copy(), t[5].copy()

    def saturday(t, v):
        t[10] = np.datetime64("2024-06-01", "ns")

    return {
        "non_finite": nan,
        "non_finite ": inf,
        "non_positive_price": zero,
        "non_positive_price ": neg,
        "high_below_open_close": high,
        "low_above_open_close": low,
        "negative_volume": vol,
        "value_too_large": big,
        "price_jump": jump,
        "duplicate_timestamps": dup,
        "unsorted_timestamps": unsorted,
        "off_calendar": saturday,
    }


@pytest.mark.parametrize("reason", list(_breaks()))
def test_each_break_has_its_reason(reason):
    t, v = good()
    _breaks()[reason](t, v)
    assert reason.strip() in check(t, v)


def test_price_jump_check_can_be_turned_off():
    t, v = good()
    v[20, :4] *= 1e6
    assert check(t, v, cfg=CFG.model_copy(update={"max_price_ratio": None})) == []


def test_short_stale_gaps_symbol_and_read_issues():
    t, v = good(10)
    assert check(t, v) == ["too_short"]
    t, v = good(40)
    assert check(t[:-3], v[:-3]) == ["stale"]
    assert check(t[:-1], v[:-1]) == []  # one bar behind is allowed
    keep = np.r_[0:10, 20:40]
    assert check(t[keep], v[keep]) == ["gaps"]
    assert check(t, v, symbol="") == ["empty_symbol"]
    assert check(t, v, read_issues=["timestamp_out_of_range"]) == ["timestamp_out_of_range"]
    assert set(REASONS) >= {"empty_symbol", "timestamp_out_of_range", "amount_without_volume", "price_jump"}


def _asset_rows(t, v, symbol="X", volume=True, amount=True):
    cols = {c: v[:, i] for i, c in enumerate(["open", "high", "low", "close"])}
    n = len(t)
    return window_group(
        pa.table(
            {
                "symbol": [symbol] * n,
                "timestamp": pa.array(t, pa.timestamp("ns")),
                **cols,
                "volume": v[:, 4] if volume else pa.nulls(n, pa.float64()),
                "amount": v[:, 5] if amount else pa.nulls(n, pa.float64()),
                "_ord": np.arange(n, dtype=np.int64),
                "_issue": pa.array([""] * n, pa.string()),
            }
        ),
        64,
    )


def test_several_reasons_joined_and_batch_never_raises():
    t, v = good()
    v[3, 3] = np.nan
    v[4, 4] = -5
    rows = [_asset_rows(t, v)]
    empty = rows[0].slice(0, 0)
    out = validate_batch(pa.concat_tables([*rows, empty]), pd.Timestamp("2024-06-28"), GRID, CAL, CFG)
    assert out["is_valid"].to_pylist() == [False]
    assert out["reject_reason"].to_pylist() == ["non_finite;negative_volume"]


def test_amount_without_volume_is_quarantined_like_the_core_raises():
    """Regression: "amount without volume" was a 422 in serving, silently zeroed in the core and the job."""
    t, v = good()
    row = _asset_rows(t, v, volume=False, amount=True)
    assert row["read_issues"].to_pylist() == ["amount_without_volume"]
    out = validate_batch(row, pd.Timestamp("2024-06-28"), GRID, CAL, CFG)
    assert out["reject_reason"].to_pylist() == ["amount_without_volume"]


def test_window_group_keeps_delivery_order_and_fills_missing_volume():
    t, v = good(30)
    tbl = pa.table(
        {
            "symbol": ["X"] * 30,
            "timestamp": pa.array(t, pa.timestamp("ns")),
            **{c: v[:, i] for i, c in enumerate(["open", "high", "low", "close"])},
            "volume": pa.nulls(30, pa.float64()),
            "amount": pa.nulls(30, pa.float64()),
            "_ord": np.arange(30, dtype=np.int64)[::-1].copy(),
            "_issue": pa.array([""] * 30),
        }
    )
    row = window_group(tbl, 10).to_pylist()[0]
    assert row["n_bars"] == 10 and not row["has_volume"] and row["read_issues"] is None
    got = np.array(row["timestamps"]).astype("datetime64[ns]")
    assert (got == t[:10][::-1]).all()  # delivery order (reversed here), not re-sorted
    assert np.array(row["values"]).reshape(-1, 6)[:, 4:].sum() == 0


def test_lagged_asset_steps_still_count_bars_after_as_of():
    """Regression: an asset one session late got its step-1 row stamped on as_of itself."""
    t, v = good()
    rows = pa.concat_tables([_asset_rows(t, v, "ON_TIME"), _asset_rows(t[:-1], v[:-1], "LATE")])
    out = validate_batch(rows, pd.Timestamp("2024-06-28"), GRID, CAL, CFG)
    fut = future_batch(out, GRID, CAL, 3, pd.Timestamp("2024-06-28")).to_pylist()
    on_time, late = fut
    assert on_time["lag_bars"] == 0 and late["lag_bars"] == 1
    stamp = lambda r: [str(np.datetime64(x, "ns"))[:10] for x in r["future_timestamps"]]  # noqa: E731
    assert stamp(on_time) == ["2024-07-01", "2024-07-02", "2024-07-03"]
    assert stamp(late) == ["2024-06-28", "2024-07-01", "2024-07-02", "2024-07-03"]  # first dropped in stage 4
