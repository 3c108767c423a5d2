"""The probabilistic baseline the scorecard holds Kronos to: a random walk with bootstrapped past returns.

As R's ``forecast::naive(y, bootstrap = TRUE)`` on log prices: each future step adds a log return drawn
with replacement from the series' own past log returns (the last ``lookback`` closes, the window the model
saw), so a path is ``last_close * exp(r_1 + ... + r_k)``. It has the data's volatility and fat tails and
no skill at direction: the honest bar for a probabilistic forecast of prices (pure numpy, no I/O).

Randomness: one generator per series, seeded from ``blake2b(seed, symbol)`` as Kronos derives its path
keys, so a series' baseline paths depend on its seed and symbol only, never on which other assets are
scored with it. The scorecard draws as many paths as Kronos did (the table's ``sample_count``) and takes
the same quantile levels with the same estimator (``numpy.quantile``, linear), so both are scored by one
CRPS, coverage and pinball computation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

__all__ = ["BOOTSTRAP", "bootstrap_paths", "path_quantiles", "series_rng"]

BOOTSTRAP = "bootstrap_rw"


def series_rng(seed: int, symbol: str) -> np.random.Generator:
    """The baseline's generator for one series: a function of (seed, symbol) only."""
    digest = hashlib.blake2b(f"{int(seed)}\x1f{symbol}\x1f{BOOTSTRAP}".encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def bootstrap_paths(
    closes: Sequence[float] | np.ndarray,
    pred_len: int,
    sample_count: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """(sample_count, pred_len) close paths from the last close of ``closes`` (oldest first).

    Non-finite or non-positive closes are dropped before the returns are taken; with fewer than two usable
    closes every path stays at the last one (no returns to draw from)."""
    if pred_len < 1 or sample_count < 1:
        raise ValueError(f"pred_len and sample_count must be >= 1, got {pred_len} and {sample_count}")
    c = np.asarray(closes, dtype=np.float64).ravel()
    c = c[np.isfinite(c) & (c > 0)]
    if c.size == 0:
        raise ValueError("bootstrap_paths needs at least one finite, positive close")
    last = c[-1]
    if c.size < 2:
        return np.full((sample_count, pred_len), last)
    returns = np.diff(np.log(c))
    draws = returns[rng.integers(0, returns.size, size=(sample_count, pred_len))]
    return last * np.exp(np.cumsum(draws, axis=1))


def path_quantiles(paths: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """(pred_len, Q) quantiles over the paths' axis 0, the estimator Kronos's summaries use."""
    if not len(levels):
        return np.zeros((paths.shape[1], 0))
    return np.quantile(paths, list(levels), axis=0).T
