"""Bad input gets a ValueError/TypeError naming the series and the fix, never a torch traceback."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kronos_core import KronosPredictor, SamplingParams, Series
from kronos_core.features import time_features
from kronos_core.testing import synthetic_ohlcv, synthetic_series


@pytest.fixture(scope="module")
def predictor():
    return KronosPredictor.from_pretrained("random:test", "random:test")


def _series(**overrides):
    s = synthetic_series("AAA", 20, 4, seed=0)
    kw = dict(
        symbol=s.symbol, timestamps=s.timestamps, values=s.values, future_timestamps=s.future_timestamps
    )
    kw.update(overrides)
    return Series(**kw)


def test_time_features_match_pandas():
    ts = pd.Series(pd.date_range("1999-12-30 22:55", periods=500, freq="37min"))
    expected = np.column_stack([ts.dt.minute, ts.dt.hour, ts.dt.day_of_week, ts.dt.day, ts.dt.month])
    np.testing.assert_array_equal(time_features(ts.to_numpy()), expected)


@pytest.mark.parametrize(
    "mutate,match",
    [
        (
            lambda v: v.__setitem__((3, 3), np.nan),
            r"series 'AAA': 1 NaN/inf values \(first: close at row 3\)",
        ),
        (lambda v: v.__setitem__((0, 4), np.inf), r"NaN/inf values \(first: volume at row 0\)"),
    ],
)
def test_nan_and_inf(mutate, match):
    values = _series().values.copy()
    mutate(values)
    with pytest.raises(ValueError, match=match):
        _series(values=values)


def test_timestamp_problems():
    s = _series()
    dup = s.timestamps.copy()
    dup[5] = dup[4]
    with pytest.raises(ValueError, match="strictly increasing; duplicate at index 5"):
        _series(timestamps=dup)
    with pytest.raises(ValueError, match="decreasing at index"):
        _series(timestamps=s.timestamps[::-1])
    with pytest.raises(ValueError, match="19 timestamps for 20 rows"):
        _series(timestamps=s.timestamps[:-1])
    with pytest.raises(ValueError, match="is not after the last observed"):
        _series(future_timestamps=s.timestamps[-2:])
    with pytest.raises(TypeError, match="timestamps must be datetime64"):
        _series(timestamps=np.arange(20))


def test_shapes_dtypes_and_empty():
    s = _series()
    with pytest.raises(ValueError, match=r"shape \(L, 6\)"):
        _series(values=s.values[:, :4])
    with pytest.raises(TypeError, match="values must be numeric"):
        _series(values=s.values.astype(str))
    with pytest.raises(ValueError, match="empty series"):
        _series(values=s.values[:0], timestamps=s.timestamps[:0])
    with pytest.raises(TypeError, match="symbol must be a non-empty str"):
        _series(symbol="")


def test_from_frame_errors_and_fills():
    df = synthetic_ohlcv(30, seed=1)
    ts = df["timestamps"]
    fut = pd.date_range(ts.iloc[-1] + pd.Timedelta("5min"), periods=3, freq="5min")
    with pytest.raises(ValueError, match=r"missing price columns \['high'\]"):
        Series.from_frame("X", df.drop(columns=["high"]), future_timestamps=fut)
    bad = df.assign(close=df["close"].astype(str))
    with pytest.raises(TypeError, match="column 'close' must be numeric"):
        Series.from_frame("X", bad, future_timestamps=fut)
    no_vol = Series.from_frame("X", df.drop(columns=["volume", "amount"]), future_timestamps=fut)
    assert (no_vol.values[:, 4:] == 0).all()
    no_amt = Series.from_frame("X", df.drop(columns=["amount"]), future_timestamps=fut)
    np.testing.assert_allclose(
        no_amt.values[:, 5], df["volume"] * df[["open", "high", "low", "close"]].mean(axis=1)
    )
    aware = Series.from_frame(
        "X",
        df,
        timestamps=ts.dt.tz_localize("Asia/Shanghai"),
        future_timestamps=fut.tz_localize("Asia/Shanghai"),
    )
    np.testing.assert_array_equal(aware.timestamps, ts.to_numpy())  # local wall-clock time is kept


def test_batch_level_errors(predictor):
    s = _series()
    with pytest.raises(ValueError, match="pred_len must be >= 1"):
        predictor.forecast([s], pred_len=0)
    with pytest.raises(ValueError, match="4 future timestamps but pred_len=3"):
        predictor.forecast([s], pred_len=3)
    with pytest.raises(ValueError, match="duplicate symbol 'AAA'"):
        predictor.forecast([s, s])
    with pytest.raises(ValueError, match="no series given"):
        predictor.forecast([], pred_len=3)
    with pytest.raises(TypeError, match=r"series\[0\] must be a kronos_core.Series"):
        predictor.forecast([{"symbol": "x"}], pred_len=3)
    with pytest.raises(
        ValueError, match=r"quantiles\[1\] = 1.5: quantile levels must be numbers in \(0, 1\)"
    ):
        predictor.forecast([s], quantiles=(0.5, 1.5))
    with pytest.raises(ValueError, match="cache must be one of"):
        predictor.forecast([s], cache="fast")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(temperature=0), "temperature must be"),
        (dict(top_k=-1), "top_k must be"),
        (dict(top_p=0.0), "top_p must be"),
        (dict(sample_count=0), "sample_count must be"),
        (dict(seed=-3), "seed must be"),
    ],
)
def test_sampling_params(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SamplingParams(**kwargs)


def test_dropin_errors(predictor):
    df = synthetic_ohlcv(30, seed=1)
    ts = df["timestamps"]
    fut = pd.Series(pd.date_range(ts.iloc[-1] + pd.Timedelta("5min"), periods=3, freq="5min"))
    with pytest.raises(ValueError, match="y_timestamp at index 0 has 3 timestamps; it must equal pred_len=4"):
        predictor.predict(df, ts, fut, pred_len=4)
    with pytest.raises(ValueError, match="not a pandas DataFrame"):
        predictor.predict_batch([df.to_numpy()], [ts], [fut], pred_len=3)
    nan = df.copy()
    nan.loc[3, "open"] = np.nan
    with pytest.raises(ValueError, match="NaN/inf"):
        predictor.predict(nan.drop(columns=["timestamps"]), ts, fut, pred_len=3)
    out = predictor.predict(df.drop(columns=["timestamps"]), ts, fut, pred_len=3)
    assert (
        list(out.columns) == ["open", "high", "low", "close", "volume", "amount"] and (out.index == fut).all()
    )
