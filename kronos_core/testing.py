"""Tiny model configs and a synthetic OHLCV generator, for tests, demos and benchmarks.

The generator makes OHLC-consistent candles (low <= min(open, close) <= max(open, close) <= high,
volume >= 0, amount = volume x typical price) on a session calendar, with ragged lengths, several
bar frequencies, and the same output for the same seed.
"""

from __future__ import annotations

import functools

import numpy as np

from .config import SIZES, KronosConfig, TokenizerConfig
from .series import Series

__all__ = [
    "TINY_MODEL",
    "TINY_TOKENIZER",
    "bar_timestamps",
    "synthetic_ohlcv",
    "synthetic_series",
    "synthetic_universe",
]

TINY_MODEL: KronosConfig = SIZES["test"].model
TINY_TOKENIZER: TokenizerConfig = SIZES["test"].tokenizer


@functools.lru_cache(maxsize=64)
def _stamps(n: int, freq: str, start: str, calendar: str) -> np.ndarray:
    import pandas as pd

    from .rules import MarketCalendar

    out = MarketCalendar(calendar, freq).next_bars(pd.Timestamp(start) - pd.Timedelta(1, "ns"), n)
    out.setflags(write=False)
    return out


def bar_timestamps(
    n: int, freq: str = "5min", start: str = "2024-01-02", calendar: str = "XNYS"
) -> np.ndarray:
    """The first ``n`` bar stamps of ``calendar`` at ``freq`` from ``start`` on (``kronos_core.rules``
    calendars: XNYS 5-minute bars close at 09:35 ... 16:00; daily bars are stamped at midnight)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n == 0:
        return np.empty(0, dtype="datetime64[ns]")
    return _stamps(int(n), str(freq), str(start), str(calendar)).copy()


def synthetic_ohlcv(
    n: int,
    freq: str = "5min",
    seed: int = 0,
    start: str = "2024-01-02",
    price: float | None = None,
    volatility: float | None = None,
    calendar: str = "XNYS",
):
    """A DataFrame of ``n`` candles: ``timestamps, open, high, low, close, volume, amount``."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    price = float(price if price is not None else np.exp(rng.uniform(np.log(5), np.log(500))))
    vol = float(volatility if volatility is not None else rng.uniform(0.002, 0.02))
    drift = rng.normal(0, vol / 20)
    rets = drift + vol * rng.standard_t(df=5, size=n) / np.sqrt(5 / 3)
    close = price * np.exp(np.cumsum(rets))
    open_ = np.empty(n)
    open_[0] = price
    open_[1:] = close[:-1] * np.exp(rng.normal(0, vol / 4, size=n - 1)) if n > 1 else open_[1:]
    span = np.abs(rng.normal(0, vol, size=n)) * close
    high = np.maximum(open_, close) + span * rng.uniform(0.1, 1.0, size=n)
    low = np.minimum(open_, close) - span * rng.uniform(0.1, 1.0, size=n)
    low = np.maximum(low, 0.5 * np.minimum(open_, close))
    volume = np.round(rng.lognormal(mean=8, sigma=0.6, size=n) * (1 + 5 * np.abs(rets) / vol))
    amount = volume * (open_ + high + low + close) / 4
    return pd.DataFrame(
        {
            "timestamps": bar_timestamps(n, freq, start, calendar),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "amount": amount,
        }
    )


def synthetic_series(
    symbol: str,
    n: int,
    pred_len: int,
    freq: str = "5min",
    seed: int = 0,
    start: str = "2024-01-02",
    calendar: str = "XNYS",
) -> Series:
    """A ready ``Series`` of ``n`` observed bars and ``pred_len`` future timestamps on the same calendar."""
    df = synthetic_ohlcv(n + pred_len, freq=freq, seed=seed, start=start, calendar=calendar)
    ts = df["timestamps"].to_numpy(dtype="datetime64[ns]")
    return Series.from_frame(symbol, df.iloc[:n], timestamps=ts[:n], future_timestamps=ts[n:])


def synthetic_universe(
    n_series: int, min_len: int, max_len: int, pred_len: int, freq: str = "5min", seed: int = 0
) -> list[Series]:
    """``n_series`` ragged series (lengths uniform in [min_len, max_len]), symbols ``S0000, S0001, ...``."""
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_len, max_len + 1, size=n_series)
    return [
        synthetic_series(f"S{i:04d}", int(n), pred_len, freq=freq, seed=seed * 100_003 + i)
        for i, n in enumerate(lengths)
    ]
