"""The forecast result: every sample path plus the summaries pipelines want."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .features import NORM_EPS
from .rules import FIELDS, forecast_flags, quantile_column

__all__ = ["ForecastResult", "summarize_paths", "flat_tolerance", "FLAT_RTOL"]

_CLOSE = FIELDS.index("close")
# float32 rounding of a normalise -> model -> de-normalise round trip, relative to the price
FLAT_RTOL = 1e-6


def flat_tolerance(last_close: np.ndarray, clip: float) -> np.ndarray:
    """Moves this small count as flat: float32 rounding (``FLAT_RTOL`` x price) plus the de-normalisation's
    resolution (``clip`` x 1e-5 in price units: the epsilon upstream adds to the std). Without it a constant
    series got ``p_up = 1.0`` from a 3e-6 rounding error."""
    return FLAT_RTOL * np.abs(last_close) + clip * NORM_EPS


def summarize_paths(paths: np.ndarray, last_close: np.ndarray, levels: tuple[float, ...], clip: float = 5.0):
    """mean (N, P, 6), quantiles (N, Q, P, 6), p_up (N,) and p_flat (N,) from paths (N, S, P, 6)."""
    mean = paths.mean(axis=1)
    if levels:
        quantiles = np.moveaxis(np.quantile(paths, levels, axis=1), 0, 1).astype(np.float32)
    else:
        quantiles = np.zeros((paths.shape[0], 0, *paths.shape[2:]), dtype=np.float32)
    move = paths[:, :, -1, _CLOSE].astype(np.float64) - last_close[:, None]
    tol = flat_tolerance(last_close, clip)[:, None]
    p_up = (move > tol).mean(axis=1)
    p_flat = (np.abs(move) <= tol).mean(axis=1)
    return mean.astype(np.float32), quantiles, p_up.astype(np.float64), p_flat.astype(np.float64)


@dataclass(frozen=True)
class ForecastResult:
    """Forecasts for N series, S sample paths each, P steps, 6 fields (``FIELDS``).

    Attributes:
        symbols: series symbols, in input order.
        future_timestamps: (N, P) datetime64[ns].
        paths: (N, S, P, 6) float32, de-normalised sample paths.
        mean: (N, P, 6) float32, mean over paths (what upstream's predictor returns).
        quantile_levels: sorted levels in (0, 1).
        quantiles: (N, Q, P, 6) float32, per-level quantiles over paths.
        p_up: (N,) share of paths whose last close is above the last observed close by more than
            ``flat_tolerance``; ``p_flat`` the share within it (``p_down = 1 - p_up - p_flat``).
        last_close: (N,) last observed close.
        tokens: (N, S, P, 2) int64 generated (s1, s2) tokens, for parity checks and debugging.
        flags: per series, warnings about the forecast (``non_positive_price``: a mean price or close quantile
            <= 0, which no real price is).
    """

    symbols: list[str]
    future_timestamps: np.ndarray
    paths: np.ndarray
    mean: np.ndarray
    quantile_levels: tuple[float, ...]
    quantiles: np.ndarray
    p_up: np.ndarray
    p_flat: np.ndarray
    last_close: np.ndarray
    tokens: np.ndarray
    flags: list[list[str]]

    def __len__(self) -> int:
        return len(self.symbols)

    def index(self, symbol: str) -> int:
        try:
            return self.symbols.index(symbol)
        except ValueError:
            raise KeyError(f"no series {symbol!r} in this result") from None

    def to_frame(self, quantile_fields: tuple[str, ...] = ("close",)):
        """Long table, one row per (symbol, step): ``symbol, step, timestamp``, the mean of each field,
        one column per (field, quantile level) e.g. ``close_q10``, ``p_up``, ``p_flat`` and ``flags``."""
        import pandas as pd

        n, p = self.future_timestamps.shape
        cols: dict[str, np.ndarray] = {
            "symbol": np.repeat(np.asarray(self.symbols, dtype=object), p),
            "step": np.tile(np.arange(1, p + 1, dtype=np.int32), n),
            "timestamp": self.future_timestamps.reshape(-1),
        }
        for j, field in enumerate(FIELDS):
            cols[field] = self.mean[:, :, j].reshape(-1)
        for field in quantile_fields:
            j = FIELDS.index(field)
            for qi, level in enumerate(self.quantile_levels):
                cols[quantile_column(level, field)] = self.quantiles[:, qi, :, j].reshape(-1)
        cols["p_up"] = np.repeat(self.p_up, p)
        cols["p_flat"] = np.repeat(self.p_flat, p)
        cols["flags"] = np.repeat(np.asarray([";".join(f) for f in self.flags], dtype=object), p)
        return pd.DataFrame(cols)


def series_flags(mean: np.ndarray, quantiles: np.ndarray) -> list[list[str]]:
    """``rules.forecast_flags`` per series: mean (N, P, 6), quantiles (N, Q, P, 6)."""
    return [forecast_flags(mean[i], quantiles[i, :, :, _CLOSE]) for i in range(mean.shape[0])]
