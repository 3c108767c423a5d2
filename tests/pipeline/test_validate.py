"""Validate (plain functions, no Ray): each failure kind gets its reason; nothing raises."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from kronos_core.testing import synthetic_ohlcv
from pipeline.calendars import bar_grid
from pipeline.config import CalendarConfig, ValidationConfig
from pipeline.read import window_group
from pipeline.validate import check_asset, validate_batch

CAL = CalendarConfig()
AS_OF = np.datetime64("2024-06-28", "ns")
GRID = bar_grid(CAL, "2024-01-01", "2024-07-31")
CFG = ValidationConfig(min_history=20, max_stale_bars=1, max_gap_fraction=0.1)


def good(n=40):
    g = GRID[GRID <= AS_OF][-n:]
    v = synthetic_ohlcv(n, seed=1)[["open", "high", "low", "close", "volume", "amount"]].to_numpy()
    return g.copy(), v.copy()


def test_good_series_is_valid():
    assert check_asset(*good(), AS_OF, GRID, CAL, CFG) == []


def _breaks():
    def nan(t, v): v[5, 3] = np.nan
    def inf(t, v): v[5, 0] = np.inf
    def zero(t, v): v[5, 2] = 0
    def neg(t, v): v[5, 0] = -1
    def high(t, v): v[5, 1] = min(v[5, 0], v[5, 3]) * 0.99
    def low(t, v): v[5, 2] = max(v[5, 0], v[5, 3]) * 1.01
    def vol(t, v): v[5, 4] = -1
    def dup(t, v): t[6] = t[5]
    def unsorted(t, v): t[5], t[6] = t[6].copy(), t[5].copy()
    return {"non_finite": nan, "non_finite ": inf, "non_positive_price": zero, "non_positive_price ": neg,
            "high_below_open_close": high, "low_above_open_close": low, "negative_volume": vol,
            "duplicate_timestamps": dup, "unsorted_timestamps": unsorted}


@pytest.mark.parametrize("reason", list(_breaks()))
def test_each_break_has_its_reason(reason):
    t, v = good()
    _breaks()[reason](t, v)
    assert reason.strip() in check_asset(t, v, AS_OF, GRID, CAL, CFG)


def test_short_stale_gaps():
    t, v = good(10)
    assert check_asset(t, v, AS_OF, GRID, CAL, CFG) == ["too_short"]
    t, v = good(40)
    assert check_asset(t[:-3], v[:-3], AS_OF, GRID, CAL, CFG) == ["stale"]
    assert check_asset(t[:-1], v[:-1], AS_OF, GRID, CAL, CFG) == []  # one bar behind is allowed
    keep = np.r_[0:10, 20:40]
    assert check_asset(t[keep], v[keep], AS_OF, GRID, CAL, CFG) == ["gaps"]


def test_several_reasons_joined_and_batch_never_raises():
    t, v = good()
    v[3, 3] = np.nan
    v[4, 4] = -5
    rows = [window_group(pa.table({
        "symbol": ["X"] * len(t), "timestamp": pa.array(t, pa.timestamp("ns")),
        **{c: v[:, i] for i, c in enumerate(["open", "high", "low", "close", "volume", "amount"])},
        "_ord": np.arange(len(t), dtype=np.int64)}), 64)]
    empty = rows[0].slice(0, 0)
    out = validate_batch(pa.concat_tables([*rows, empty]), pd.Timestamp("2024-06-28"), GRID, CAL, CFG)
    assert out["is_valid"].to_pylist() == [False]
    assert out["reject_reason"].to_pylist() == ["non_finite;negative_volume"]


def test_window_group_keeps_delivery_order_and_fills_missing_volume():
    t, v = good(30)
    tbl = pa.table({"symbol": ["X"] * 30, "timestamp": pa.array(t, pa.timestamp("ns")),
                    **{c: v[:, i] for i, c in enumerate(["open", "high", "low", "close"])},
                    "volume": pa.nulls(30, pa.float64()), "amount": pa.nulls(30, pa.float64()),
                    "_ord": np.arange(30, dtype=np.int64)[::-1].copy()})
    row = window_group(tbl, 10).to_pylist()[0]
    assert row["n_bars"] == 10 and not row["has_volume"]
    got = np.array(row["timestamps"]).astype("datetime64[ns]")
    assert (got == t[:10][::-1]).all()  # delivery order (reversed here), not re-sorted
    assert np.array(row["values"]).reshape(-1, 6)[:, 4:].sum() == 0
