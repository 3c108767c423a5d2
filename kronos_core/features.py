"""Input features exactly as upstream computes them: per-series normalisation and time features."""

from __future__ import annotations

import numpy as np

__all__ = ["time_features", "normalize", "denormalize", "NORM_EPS"]

NORM_EPS = 1e-5


def time_features(ts: np.ndarray) -> np.ndarray:
    """(T,) datetime64 -> (T, 5) int64 columns minute, hour, weekday (Mon=0), day, month."""
    ts = np.asarray(ts, dtype="datetime64[ns]")
    minutes = ts.astype("datetime64[m]").astype(np.int64)
    days = ts.astype("datetime64[D]")
    months = ts.astype("datetime64[M]")
    out = np.empty((ts.shape[0], 5), dtype=np.int64)
    out[:, 0] = minutes % 60
    out[:, 1] = (minutes // 60) % 24
    out[:, 2] = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    out[:, 3] = (days - months.astype("datetime64[D]")).astype(np.int64) + 1
    out[:, 4] = months.astype(np.int64) % 12 + 1
    return out


def normalize(values: np.ndarray, clip: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upstream's float32 normalisation over the series' own lookback: (x - mean) / (std + 1e-5), clipped.

    Returns (normalised (L, 6) float32, mean (6,), std (6,)) with population std, in float32 numpy.
    """
    x = np.asarray(values).astype(np.float32)
    mean, std = np.mean(x, axis=0), np.std(x, axis=0)
    xn = (x - mean) / (std + NORM_EPS)
    return np.clip(xn, -clip, clip), mean, std


def denormalize(z: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return z * (std + NORM_EPS) + mean
