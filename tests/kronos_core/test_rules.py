"""The shared market rules (kronos_core.rules): timestamps, candles, frequencies, calendars, quantiles."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from kronos_core import KronosPredictor, SamplingParams, Series
from kronos_core.rules import (
    MarketCalendar,
    RuleError,
    as_stamps,
    candle_issues,
    check_quantile_levels,
    fill_values,
    order_issues,
    parse_frequency,
    quantile_column,
    quantile_level_of,
)
from kronos_core.testing import synthetic_ohlcv, synthetic_series


def stamps(*xs):
    return np.array([np.datetime64(pd.Timestamp(x), "ns") for x in xs])


# ---------------------------------------------------------------- timestamps
@pytest.mark.parametrize("unit", ["D", "s", "ms", "us"])
@pytest.mark.parametrize("year", ["3000", "1600"])
def test_out_of_range_timestamps_raise_instead_of_wrapping(unit, year):
    """Regression: a cast to datetime64[ns] wrapped year 3000 to 1830 and 1600 to 2184."""
    values = np.array(["2024-01-02", f"{year}-01-03"], dtype=f"datetime64[{unit}]")
    with pytest.raises(
        RuleError, match=rf"timestamps\[1\] = {year}-01-03 is outside the supported range"
    ) as e:
        as_stamps(values)
    assert e.value.issue.code == "timestamp_out_of_range" and e.value.issue.row == 1


def test_python_datetimes_and_pandas_units_are_checked_too():
    with pytest.raises(RuleError, match="outside the supported range"):
        as_stamps(np.array([dt.datetime(3000, 1, 1)], dtype=object))
    idx = pd.DatetimeIndex(["2024-01-02", "2262-04-12"])  # pandas 3: microseconds, no overflow yet
    with pytest.raises(RuleError, match="2262-04-12 is outside"):
        as_stamps(idx.to_numpy())
    ok = as_stamps(np.array(["2262-04-10"], dtype="datetime64[D]"))
    assert ok.dtype == np.dtype("datetime64[ns]")


def test_series_rejects_year_3000_before_the_model_sees_it():
    s = synthetic_series("X", 20, 3, freq="1d")
    far = np.array([np.datetime64(f"30{d:02d}-01-01", "D") for d in range(20)], dtype="datetime64[D]")
    with pytest.raises(ValueError, match=r"series 'X': timestamps\[0\] = 3000-01-01 is outside"):
        Series("X", far, s.values, s.future_timestamps)
    with pytest.raises(ValueError, match=r"future_timestamps\[2\] = 2300-01-01 is outside"):
        Series(
            "X",
            s.timestamps,
            s.values,
            np.array(["2024-03-01", "2024-03-02", "2300-01-01"], dtype="datetime64[D]"),
        )


def test_order_issues_name_the_index():
    ts = stamps("2024-01-01", "2024-01-03", "2024-01-02", "2024-01-02")
    codes = [(i.code, i.row) for i in order_issues(ts)]
    assert codes == [("duplicate_timestamps", 3), ("unsorted_timestamps", 2)]


# ---------------------------------------------------------------- candles
def good_values(n=30):
    return synthetic_ohlcv(n, seed=2)[["open", "high", "low", "close", "volume", "amount"]].to_numpy().copy()


@pytest.mark.parametrize(
    "row,col,value,code",
    [
        (4, 3, np.nan, "non_finite"),
        (4, 0, 2e15, "value_too_large"),
        (4, 2, 0.0, "non_positive_price"),
        (4, 0, -1.0, "non_positive_price"),
        (4, 4, -5.0, "negative_volume"),
        (4, 5, -5.0, "negative_volume"),
    ],
)
def test_each_candle_rule(row, col, value, code):
    v = good_values()
    v[row, col] = value
    issues = candle_issues(v)
    assert code in [i.code for i in issues]
    first = next(i for i in issues if i.code == code)
    assert first.row == row and first.message


def test_high_low_consistency_and_float_noise():
    v = good_values()
    top = max(v[5, 0], v[5, 3])
    v[5, 1] = top * (1 - 1e-12)  # representation noise: fine
    assert candle_issues(v) == []
    v[5, 1] = top * 0.99
    assert [i.code for i in candle_issues(v)] == ["high_below_open_close"]
    v = good_values()
    v[6, 2] = min(v[6, 0], v[6, 3]) * 1.01
    assert [i.code for i in candle_issues(v)] == ["low_above_open_close"]


def test_price_jump_only_when_asked():
    v = good_values(60)
    v[40, :4] *= 1e6  # one fat-finger bar, as the issue's 1e6x close
    assert candle_issues(v) == []  # hard rules hold
    issues = candle_issues(v, max_price_ratio=10)
    assert [i.code for i in issues] == ["price_jump"] and issues[0].row == 40
    assert "e+05x the previous close" in issues[0].message and "(limit 10x)" in issues[0].message
    v = good_values(60)
    v[10, 1] = v[10, 2] * 50  # high 50x the low
    assert [i.code for i in candle_issues(v, max_price_ratio=10)] == ["price_jump"]


def test_fill_rule_amount_without_volume_is_an_issue():
    prices = good_values()[:, :4]
    values, issues = fill_values(prices, None, np.ones(len(prices)))
    assert [i.code for i in issues] == ["amount_without_volume"] and (values[:, 4:] == 0).all()
    values, issues = fill_values(prices, np.full(len(prices), 2.0), None)
    assert issues == [] and np.allclose(values[:, 5], 2 * prices.mean(axis=1))
    df = synthetic_ohlcv(30, seed=1).drop(columns=["volume"])
    fut = pd.date_range(df["timestamps"].iloc[-1] + pd.Timedelta("5min"), periods=2, freq="5min")
    with pytest.raises(ValueError, match="amount given without volume"):
        Series.from_frame("X", df, future_timestamps=fut)


def test_series_refuses_bars_the_batch_job_rejects():
    """Regression: the core and the endpoint accepted bars the job quarantined."""
    s = synthetic_series("X", 30, 3)
    for col, value, match in (
        (2, 0.0, "low = 0 at row 7: prices must be > 0"),
        (4, -1.0, "volume = -1 at row 7: volume and amount must be >= 0"),
        (1, 0.5, "high 0.5 < max"),
    ):
        v = s.values.copy()
        v[7, col] = value
        with pytest.raises(ValueError, match=match):
            Series("X", s.timestamps, v, s.future_timestamps)


# ---------------------------------------------------------------- frequency
@pytest.mark.parametrize(
    "text,name",
    [
        ("5min", "5min"),
        ("60min", "1h"),
        ("1H", "1h"),
        ("4h", "4h"),
        ("D", "1d"),
        ("1d", "1d"),
        ("1W", "1w"),
        ("week", "1w"),
        ("1mo", "1mo"),
        ("Month", "1mo"),
        ("15T", "15min"),
    ],
)
def test_frequency_spellings(text, name):
    assert parse_frequency(text).name == name


@pytest.mark.parametrize(
    "text,match",
    [
        ("0min", "the count must be a whole number >= 1"),
        ("-5min", "the count must be a whole number >= 1"),
        ("1000000D", "only one-day bars are supported"),
        ("1m", "ambiguous"),
        ("7min", "does not divide a day"),
        ("B", "calendar 'weekdays'"),
        ("24h", "shorter than a day"),
        ("fortnight", "unknown unit"),
    ],
)
def test_frequency_errors_name_the_value_and_the_fix(text, match):
    with pytest.raises(RuleError, match=match) as e:
        parse_frequency(text)
    assert f"frequency {text!r}" in str(e.value) and "use one of 1min" in str(e.value)
    assert e.value.issue.field == "frequency"


# ---------------------------------------------------------------- calendars
def test_exchange_calendar_daily_intraday_and_lunch():
    assert list(MarketCalendar("XNYS", "1d").next_bars("2024-07-02", 3)) == list(
        stamps("2024-07-03", "2024-07-05", "2024-07-08")
    )  # July 4th
    hk = MarketCalendar("XHKG", "30min").next_bars("2024-03-01 11:30", 3)
    assert list(hk) == list(stamps("2024-03-01 12:00", "2024-03-01 13:30", "2024-03-01 14:00"))
    assert len(MarketCalendar("XNYS", "5min").bars("2024-06-28", "2024-06-28 23:59")) == 78


def test_fx_calendar_has_no_weekend_bars():
    """Regression: hourly EURUSD on a fixed grid forecast twelve stamps inside the weekend closure."""
    fx = MarketCalendar("FX", "1h")  # stamps in UTC; New York summer time (EDT) in June
    nxt = fx.next_bars("2024-06-28 19:00", 4)
    assert list(nxt) == list(
        stamps("2024-06-28 20:00", "2024-06-28 21:00", "2024-06-30 22:00", "2024-06-30 23:00")
    )
    winter = MarketCalendar("FX", "1h").next_bars("2024-01-05 21:00", 2)  # EST: closes 22:00 UTC, opens 23:00
    assert list(winter) == list(stamps("2024-01-05 22:00", "2024-01-07 23:00"))
    week = fx.bars("2024-06-24", "2024-07-01")
    assert not any(pd.Timestamp(t).day_of_week == 5 for t in week)  # no Saturday bar
    assert (
        fx.count("2024-06-24 00:00", "2024-06-30 23:59") == 4 * 24 + 22 + 2
    )  # Mon 00:00 .. Fri 21:00, Sun 22-23
    ny = MarketCalendar("FX", "1h", timezone="America/New_York").next_bars("2024-06-28 16:00", 2)
    assert list(ny) == list(stamps("2024-06-28 17:00", "2024-06-30 18:00"))
    assert MarketCalendar("FX", "1d").next_bars("2024-06-28", 1)[0] == np.datetime64("2024-07-01", "ns")


def test_hourly_eurusd_fits_the_fx_calendar_not_a_24_7_grid():
    fx = MarketCalendar("FX", "1h")
    bars = fx.bars("2024-05-01", "2024-06-28 21:00")
    assert fx.fit_issues(bars) == []
    assert [i.code for i in MarketCalendar("24/7", "1h").fit_issues(bars)] == ["gaps"]


def test_crypto_weekdays_weekly_monthly():
    assert list(MarketCalendar("24/7", "1d").next_bars("2024-06-28", 2)) == list(
        stamps("2024-06-29", "2024-06-30")
    )
    assert list(MarketCalendar("weekdays", "1d").next_bars("2024-06-28", 1)) == list(stamps("2024-07-01"))
    monthly = MarketCalendar("24/7", "1mo").next_bars("2024-11-01", 3)  # monthly BTC bars
    assert list(monthly) == list(stamps("2024-12-01", "2025-01-01", "2025-02-01"))
    weekly = MarketCalendar("XNYS", "1w").next_bars("2024-06-24", 2)  # stamped on the week's Monday
    assert list(weekly) == list(stamps("2024-07-01", "2024-07-08"))


def test_fit_issues_off_calendar_and_gaps():
    cal = MarketCalendar("XNYS", "1d")
    days = cal.bars("2024-05-01", "2024-06-28")
    assert cal.fit_issues(days) == []
    saturday = np.sort(np.append(days, np.datetime64("2024-06-01", "ns")))
    (issue,) = cal.fit_issues(saturday)
    assert issue.code == "off_calendar" and "first: 2024-06-01" in issue.message
    assert [i.code for i in cal.fit_issues(days[::2])] == ["gaps"]
    at_four = days + np.timedelta64(16, "h")  # daily bars stamped at the close
    assert [i.code for i in cal.fit_issues(at_four)][0] == "off_calendar"


def test_calendar_errors():
    with pytest.raises(RuleError, match="unknown calendar 'NOPE'"):
        MarketCalendar("NOPE")
    with pytest.raises(RuleError, match="timezone is only used by the FX calendar"):
        MarketCalendar("XNYS", timezone="UTC")
    with pytest.raises(RuleError, match="frequency '0min'"):
        MarketCalendar("24/7", "0min")
    assert MarketCalendar("xnys").name == "XNYS" and MarketCalendar("fx", "60min").freq == "1h"


def test_old_history_and_last_completed_session():
    assert MarketCalendar("XNYS").count("1999-01-04", "1999-01-08") == 5  # before exchange_calendars' default
    utc = pd.Timestamp
    assert MarketCalendar("XNYS").last_completed_session(utc("2024-07-01 21:00", tz="UTC")) == dt.date(
        2024, 7, 1
    )
    assert MarketCalendar("XNYS").last_completed_session(utc("2024-07-01 19:00", tz="UTC")) == dt.date(
        2024, 6, 28
    )
    assert MarketCalendar("FX").last_completed_session(utc("2024-06-30 12:00", tz="UTC")) == dt.date(
        2024, 6, 28
    )
    assert MarketCalendar("24/7").last_completed_session(utc("2024-06-30 12:00", tz="UTC")) == dt.date(
        2024, 6, 29
    )


# ---------------------------------------------------------------- quantiles and forecast summaries
def test_quantile_levels_and_columns():
    assert check_quantile_levels([0.9, 0.1]) == (0.1, 0.9)
    for bad, match in (([0.5, 1.5], r"quantiles\[1\] = 1.5"), ([0.5, 0.5], "appears twice"), ("0.5", "list")):
        with pytest.raises(RuleError, match=match):
            check_quantile_levels(bad)
    for level, col in ((0.1, "close_q10"), (0.05, "close_q05"), (0.975, "close_q97.5")):
        assert quantile_column(level) == col and quantile_level_of(col) == level
    assert quantile_level_of("close_qx") is None and quantile_level_of("open_q10") is None


@pytest.fixture(scope="module")
def predictor():
    return KronosPredictor.from_pretrained("random:test", "random:test")


def test_constant_series_is_flat_not_up():
    """Regression: OHLC 10.0 for 200 bars got p_up = 1.0 from a 3e-6 rounding error (with random:mini
    every path ends 3e-5 above 10.0)."""
    mini = KronosPredictor.from_pretrained("random:mini", "random:mini")
    ts = MarketCalendar("XNYS", "1d").next_bars("2023-01-01", 205)
    values = np.tile([10.0, 10.0, 10.0, 10.0, 1000.0, 10000.0], (200, 1))
    res = mini.forecast(
        [Series("FLAT", ts[:200], values, ts[200:])], sampling=SamplingParams(sample_count=16, seed=1)
    )
    move = res.paths[0, :, -1, 3] - 10.0
    assert (move > 0).all() and move.max() < 1e-4  # every path "up", by rounding only
    assert res.p_up[0] == 0.0 and res.p_flat[0] == 1.0


def test_non_positive_forecasts_are_flagged(predictor):
    s = synthetic_series("X", 40, 4, seed=3)
    res = predictor.forecast([s], sampling=SamplingParams(sample_count=4))
    assert res.flags == [[]]
    from kronos_core.result import series_flags

    mean = res.mean.copy()
    mean[0, 2, 3] = -1.0
    assert series_flags(mean, res.quantiles) == [["non_positive_price"]]
