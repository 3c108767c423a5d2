"""The forecast result: every sample path plus the summaries pipelines want."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .series import FIELDS

__all__ = ["ForecastResult", "summarize_paths", "quantile_column"]


def quantile_column(level: float, field: str = "close") -> str:
    """Column name for a quantile level: 0.1 → ``close_q10``, 0.05 → ``close_q05``, 0.975 → ``close_q97.5``."""
    pct = level * 100
    text = f"{pct:.6g}"
    if "." not in text and len(text) < 2:
        text = text.zfill(2)
    return f"{field}_q{text}"


def check_quantile_levels(levels) -> tuple[float, ...]:
    out = tuple(float(q) for q in levels)
    for q in out:
        if not 0.0 < q < 1.0:
            raise ValueError(f"quantile levels must be in (0, 1), got {q}")
    if len(set(out)) != len(out):
        raise ValueError(f"quantile levels must be unique, got {out}")
    return tuple(sorted(out))


def summarize_paths(paths: np.ndarray, last_close: np.ndarray, levels: tuple[float, ...]):
    """mean (N, P, 6), quantiles (N, Q, P, 6) and p_up (N,) from paths (N, S, P, 6)."""
    mean = paths.mean(axis=1)
    if levels:
        quantiles = np.moveaxis(np.quantile(paths, levels, axis=1), 0, 1).astype(np.float32)
    else:
        quantiles = np.zeros((paths.shape[0], 0, *paths.shape[2:]), dtype=np.float32)
    p_up = (paths[:, :, -1, FIELDS.index("close")] > last_close[:, None]).mean(axis=1)
    return mean.astype(np.float32), quantiles, p_up.astype(np.float64)


@dataclass(frozen=True)
class ForecastResult:
    """Forecasts for N series, S sample paths each, P steps, 6 fields (``FIELDS``).

    Attributes:
        keys: series keys, in input order.
        future_timestamps: (N, P) datetime64[ns].
        paths: (N, S, P, 6) float32, de-normalised sample paths.
        mean: (N, P, 6) float32, mean over paths (what upstream's predictor returns).
        quantile_levels: sorted levels in (0, 1).
        quantiles: (N, Q, P, 6) float32, per-level quantiles over paths.
        p_up: (N,) share of paths whose last close is above the last observed close.
        last_close: (N,) last observed close.
        tokens: (N, S, P, 2) int64 generated (s1, s2) tokens, for parity checks and debugging.
    """

    keys: list[str]
    future_timestamps: np.ndarray
    paths: np.ndarray
    mean: np.ndarray
    quantile_levels: tuple[float, ...]
    quantiles: np.ndarray
    p_up: np.ndarray
    last_close: np.ndarray
    tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)

    def index(self, key: str) -> int:
        try:
            return self.keys.index(key)
        except ValueError:
            raise KeyError(f"no series {key!r} in this result") from None

    def to_frame(self, quantile_fields: tuple[str, ...] = ("close",)):
        """Long table, one row per (key, step): ``key, step, timestamp``, the mean of each field,
        one column per (field, quantile level) e.g. ``close_q10``, and ``p_up``."""
        import pandas as pd

        n, p = self.future_timestamps.shape
        cols: dict[str, np.ndarray] = {
            "key": np.repeat(np.asarray(self.keys, dtype=object), p),
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
        return pd.DataFrame(cols)
