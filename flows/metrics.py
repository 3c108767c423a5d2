"""Forecast-quality metrics: pure numpy functions, no Prefect, no I/O.

Conventions: ``actual`` and point forecasts are arrays of the same shape; NaNs are dropped pairwise.
Cross-sectional metrics (IC, RankIC) take one value per asset for one cutoff.

CRPS. With sample paths, ``crps_samples`` is the exact empirical CRPS,
``E|X - y| - 0.5 E|X - X'|``. The pipeline's forecast table stores close quantiles, not paths, so the
scorecard uses ``crps_quantiles``: the quantile-score approximation
``CRPS ~= (2 / Q) * sum_q pinball_q(y, x_q)`` (Gneiting & Raftery 2007, eq. 19 discretised over the
stored levels). It is exact for a point mass whenever the levels are symmetric about 0.5 (it then equals
the absolute error) and converges to the CRPS as the level grid gets dense; with the five default levels
(0.1 ... 0.9) it ignores the tails beyond q10/q90, so it reads somewhat lower than the sample CRPS.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

__all__ = [
    "mae",
    "mape",
    "direction_accuracy",
    "information_coefficient",
    "rank_ic",
    "interval_coverage",
    "quantile_hit_rates",
    "pinball_loss",
    "crps_samples",
    "crps_quantiles",
]


def _pair(pred, actual) -> tuple[np.ndarray, np.ndarray]:
    p, a = np.asarray(pred, dtype=np.float64).ravel(), np.asarray(actual, dtype=np.float64).ravel()
    if p.shape != a.shape:
        raise ValueError(f"pred and actual must have the same number of values, got {p.size} and {a.size}")
    keep = np.isfinite(p) & np.isfinite(a)
    return p[keep], a[keep]


def mae(pred, actual) -> float:
    """Mean absolute error; NaN when there is nothing to compare."""
    p, a = _pair(pred, actual)
    return float(np.mean(np.abs(p - a))) if p.size else float("nan")


def mape(pred, actual) -> float:
    """Mean absolute percentage error, in percent; rows with ``actual == 0`` are skipped."""
    p, a = _pair(pred, actual)
    keep = a != 0
    return float(np.mean(np.abs((p[keep] - a[keep]) / a[keep])) * 100) if keep.any() else float("nan")


def direction_accuracy(pred_return, actual_return) -> float:
    """Share of rows where the predicted and realised returns have the same sign.

    Rows whose realised return is exactly 0 are skipped (no direction to hit); a predicted 0 counts as a miss,
    so the last-value baseline scores 0 rather than an artificial 50 %.
    """
    p, a = _pair(pred_return, actual_return)
    keep = a != 0
    return float(np.mean(np.sign(p[keep]) == np.sign(a[keep]))) if keep.any() else float("nan")


def information_coefficient(pred, actual) -> float:
    """Pearson correlation across assets; NaN with fewer than 3 assets or a constant side."""
    p, a = _pair(pred, actual)
    if p.size < 3:
        return float("nan")
    if np.all(p == p[0]) or np.all(a == a[0]):
        return float("nan")
    return float(stats.pearsonr(p, a).statistic)


def rank_ic(pred, actual) -> float:
    """Spearman rank correlation across assets (scipy; ties get average ranks); NaN with fewer than 3."""
    p, a = _pair(pred, actual)
    if p.size < 3:
        return float("nan")
    if np.all(p == p[0]) or np.all(a == a[0]):
        return float("nan")  # a constant side has no ranking
    return float(stats.spearmanr(p, a).statistic)


def interval_coverage(lower, upper, actual) -> float:
    """Share of realised values inside ``[lower, upper]`` (rows where all three are finite)."""
    lo, hi, a = (np.asarray(v, dtype=np.float64).ravel() for v in (lower, upper, actual))
    if not lo.shape == hi.shape == a.shape:
        raise ValueError(f"lower, upper, actual must have one size, got {lo.size}, {hi.size}, {a.size}")
    keep = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(a)
    lo, hi, a = lo[keep], hi[keep], a[keep]
    return float(np.mean((a >= lo) & (a <= hi))) if a.size else float("nan")


def quantile_hit_rates(quantiles: np.ndarray, levels: Sequence[float], actual) -> dict[float, float]:
    """For each level q, the share of rows with ``actual <= forecast_q`` (calibrated: equals q).

    quantiles: (R, Q) forecast quantiles; actual: (R,).
    """
    qs = np.asarray(quantiles, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64).ravel()
    if qs.ndim != 2 or qs.shape != (a.size, len(levels)):
        raise ValueError(f"quantiles must have shape (R, Q) = ({a.size}, {len(levels)}), got {qs.shape}")
    out = {}
    for j, level in enumerate(levels):
        keep = np.isfinite(qs[:, j]) & np.isfinite(a)
        out[float(level)] = float(np.mean(a[keep] <= qs[keep, j])) if keep.any() else float("nan")
    return out


def pinball_loss(quantile_pred, actual, level: float) -> np.ndarray:
    """Elementwise quantile (pinball) loss at ``level``."""
    diff = np.asarray(actual, dtype=np.float64) - np.asarray(quantile_pred, dtype=np.float64)
    return np.maximum(level * diff, (level - 1.0) * diff)


def crps_samples(samples, actual) -> float:
    """Mean empirical CRPS of sample forecasts.

    samples: (R, S) draws per row; actual: (R,). Uses the sorted-sample identity
    ``E|X - X'| = 2 / S^2 * sum_i (2i - S - 1) x_(i)``, O(R S log S).
    """
    x = np.asarray(samples, dtype=np.float64)
    y = np.asarray(actual, dtype=np.float64).ravel()
    if x.ndim != 2 or x.shape[0] != y.size:
        raise ValueError(f"samples must have shape (R, S) with R = {y.size}, got {x.shape}")
    keep = np.isfinite(y) & np.isfinite(x).all(axis=1)
    x, y = np.sort(x[keep], axis=1), y[keep]
    if y.size == 0:
        return float("nan")
    s = x.shape[1]
    term1 = np.mean(np.abs(x - y[:, None]), axis=1)
    weights = 2 * np.arange(1, s + 1) - s - 1
    spread = 2.0 / (s * s) * (x * weights).sum(axis=1)
    return float(np.mean(term1 - 0.5 * spread))


def crps_quantiles(quantiles, levels: Sequence[float], actual) -> float:
    """Mean CRPS approximated from forecast quantiles: ``(2 / Q) * sum_q pinball_q``.

    quantiles: (R, Q) forecast quantiles at ``levels``; actual: (R,).
    """
    qs = np.asarray(quantiles, dtype=np.float64)
    y = np.asarray(actual, dtype=np.float64).ravel()
    if qs.ndim != 2 or qs.shape != (y.size, len(levels)):
        raise ValueError(f"quantiles must have shape (R, Q) = ({y.size}, {len(levels)}), got {qs.shape}")
    if not len(levels):
        return float("nan")
    keep = np.isfinite(y) & np.isfinite(qs).all(axis=1)
    if not keep.any():
        return float("nan")
    losses = np.stack([pinball_loss(qs[keep, j], y[keep], lv) for j, lv in enumerate(levels)], axis=1)
    return float(np.mean(2.0 * losses.mean(axis=1)))
