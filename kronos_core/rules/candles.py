"""Candles: the six fields, how missing volume/amount are filled, and what makes a bar invalid.

Hard rules (every caller enforces them; the core raises): finite values, ``|value| <= MAX_ABS_VALUE``,
prices > 0, ``high >= max(open, close)``, ``low <= min(open, close)``, volume and amount >= 0, no amount
without volume. Plausibility rule (the job and serving apply it with a configurable ratio; the core only
when asked): ``price_jump``, a bar whose close moves by more than ``max_price_ratio`` times from the
previous close, or whose high is more than that many times its low; a 1e6x fat-finger bar otherwise
becomes a forecast centred on -1e7.
"""

from __future__ import annotations

import numpy as np

from .issues import Issue

__all__ = [
    "FIELDS",
    "PRICE_FIELDS",
    "MAX_ABS_VALUE",
    "DEFAULT_MAX_PRICE_RATIO",
    "CANDLE_CODES",
    "fill_values",
    "candle_issues",
    "forecast_flags",
]

FIELDS: tuple[str, ...] = ("open", "high", "low", "close", "volume", "amount")
PRICE_FIELDS: tuple[str, ...] = FIELDS[:4]
# beyond this the float32 normalisation (variance of the lookback) overflows
MAX_ABS_VALUE = 1e15
# a bar may move its close by at most this factor (up or down) from the previous close
DEFAULT_MAX_PRICE_RATIO = 10.0
# high/low consistency tolerates representation noise of this relative size (vendors' float rounding)
_OHLC_RTOL = 1e-9

CANDLE_CODES = {
    "amount_without_volume": "an amount column without a volume column (give volume too, or drop amount)",
    "non_finite": "a NaN or infinite value",
    "value_too_large": f"a value beyond +-{MAX_ABS_VALUE:g} (float32 normalisation would overflow)",
    "non_positive_price": "an open, high, low or close <= 0",
    "high_below_open_close": "high below open or close",
    "low_above_open_close": "low above open or close",
    "negative_volume": "a negative volume or amount",
    "price_jump": "a close more than max_price_ratio times (or less than 1/ratio of) the previous close, "
    "or a high more than max_price_ratio times the low",
}


def fill_values(
    prices: np.ndarray, volume: np.ndarray | None = None, amount: np.ndarray | None = None
) -> tuple[np.ndarray, list[Issue]]:
    """(L, 6) float64 values from (L, 4) prices and optional volume/amount, filled as upstream does.

    No volume -> volume = amount = 0; no amount -> amount = volume x mean(open, high, low, close).
    An amount without a volume is an issue (``amount_without_volume``): upstream silently zeroes the amount
    you gave; here it is refused, so no data is dropped without a word. The values returned then hold
    volume = amount = 0.
    """
    prices = np.asarray(prices, dtype=np.float64)
    n = prices.shape[0]
    issues = []
    if volume is None:
        if amount is not None:
            issues.append(
                Issue(
                    "amount_without_volume",
                    "amount given without volume; give volume too, "
                    "or drop amount (upstream would silently zero it)",
                    "amount",
                )
            )
        vol, amt = np.zeros(n), np.zeros(n)
    else:
        vol = np.asarray(volume, dtype=np.float64)
        amt = np.asarray(amount, dtype=np.float64) if amount is not None else vol * prices.mean(axis=1)
    return np.column_stack([prices, vol, amt]), issues


def _first(mask: np.ndarray) -> tuple[int, int]:
    row, col = np.argwhere(mask)[0]
    return int(row), int(col)


def candle_issues(values: np.ndarray, max_price_ratio: float | None = None) -> list[Issue]:
    """Every rule (L, 6) ``values`` break, one ``Issue`` per rule (first offending row), in a fixed order:
    non_finite, value_too_large, non_positive_price, high_below_open_close, low_above_open_close,
    negative_volume, then price_jump when ``max_price_ratio`` is given."""
    v = np.asarray(values, dtype=np.float64)
    issues: list[Issue] = []
    if v.size == 0:
        return issues
    finite = np.isfinite(v)
    if not finite.all():
        r, c = _first(~finite)
        issues.append(
            Issue(
                "non_finite",
                f"{int((~finite).sum())} NaN/inf values (first: {FIELDS[c]} at row {r}); "
                "drop or fill those bars",
                FIELDS[c],
                r,
            )
        )
    x = np.where(finite, v, 0.0)
    big = np.abs(x) > MAX_ABS_VALUE
    if big.any():
        r, c = _first(big)
        issues.append(
            Issue(
                "value_too_large",
                f"{FIELDS[c]} = {x[r, c]:g} at row {r} is beyond "
                f"+-{MAX_ABS_VALUE:g}; rescale the series (e.g. prices in thousands)",
                FIELDS[c],
                r,
            )
        )
    o, h, lo, c_ = x[:, 0], x[:, 1], x[:, 2], x[:, 3]
    ok = finite[:, :4].all(axis=1)
    nonpos = (x[:, :4] <= 0) & finite[:, :4]
    if nonpos.any():
        r, c = _first(nonpos)
        issues.append(
            Issue(
                "non_positive_price",
                f"{FIELDS[c]} = {x[r, c]:g} at row {r}: prices must be > 0",
                FIELDS[c],
                r,
            )
        )
    top, bottom = np.maximum(o, c_), np.minimum(o, c_)
    high_bad = ok & (h < top - _OHLC_RTOL * np.abs(top))
    if high_bad.any():
        r = int(np.flatnonzero(high_bad)[0])
        issues.append(
            Issue(
                "high_below_open_close",
                f"high {h[r]:g} < max(open, close) {top[r]:g} at row {r}; "
                "high must be the bar's highest price",
                "high",
                r,
            )
        )
    low_bad = ok & (lo > bottom + _OHLC_RTOL * np.abs(bottom))
    if low_bad.any():
        r = int(np.flatnonzero(low_bad)[0])
        issues.append(
            Issue(
                "low_above_open_close",
                f"low {lo[r]:g} > min(open, close) {bottom[r]:g} at row {r}; "
                "low must be the bar's lowest price",
                "low",
                r,
            )
        )
    neg = (x[:, 4:] < 0) & finite[:, 4:]
    if neg.any():
        r, c = _first(neg)
        issues.append(
            Issue(
                "negative_volume",
                f"{FIELDS[4 + c]} = {x[r, 4 + c]:g} at row {r}: volume and amount must be >= 0",
                FIELDS[4 + c],
                r,
            )
        )
    if max_price_ratio is not None:
        jump = _price_jump(x, ok & ~nonpos.any(axis=1), float(max_price_ratio))
        if jump is not None:
            issues.append(jump)
    return issues


def _price_jump(x: np.ndarray, usable: np.ndarray, ratio: float) -> Issue | None:
    if not ratio > 1:
        raise ValueError(f"max_price_ratio must be > 1, got {ratio}")
    lim = np.log(ratio)
    idx = np.flatnonzero(usable)
    close = x[idx, 3]
    if idx.size >= 2:
        step = np.abs(np.diff(np.log(close)))
        bad = np.flatnonzero(step > lim)
        if bad.size:
            r = int(idx[bad[0] + 1])
            prev = float(close[bad[0]])
            return Issue(
                "price_jump",
                f"close {x[r, 3]:g} at row {r} is {max(x[r, 3] / prev, prev / x[r, 3]):.3g}x "
                f"the previous close {prev:g} (limit {ratio:g}x); fix or drop the bar, or raise "
                "max_price_ratio if the move is real",
                "close",
                r,
            )
    spread = np.log(x[idx, 1]) - np.log(x[idx, 2])
    bad = np.flatnonzero(spread > lim)
    if bad.size:
        r = int(idx[bad[0]])
        return Issue(
            "price_jump",
            f"high {x[r, 1]:g} is {x[r, 1] / x[r, 2]:.3g}x the low {x[r, 2]:g} at row {r} "
            f"(limit {ratio:g}x); fix or drop the bar, or raise max_price_ratio",
            "high",
            r,
        )
    return None


def forecast_flags(mean: np.ndarray, close_quantiles: np.ndarray | None = None) -> list[str]:
    """Flags for one published forecast: ``non_positive_price`` when a mean open/high/low/close or a close
    quantile is <= 0 (no real price is; the model extrapolated below zero).
    mean (P, 6), close_quantiles (Q, P)."""
    flags = []
    low = bool((np.asarray(mean)[:, :4] <= 0).any())
    if close_quantiles is not None and np.asarray(close_quantiles).size:
        low = low or bool((np.asarray(close_quantiles) <= 0).any())
    if low:
        flags.append("non_positive_price")
    return flags
