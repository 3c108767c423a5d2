"""Forecast fan charts (history, mean path, quantile bands) rendered to PNG with matplotlib's Agg backend."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd

from kronos_core import quantile_column

__all__ = ["pick_chart_symbols", "fan_chart_png", "scorecard_png"]


def pick_chart_symbols(forecasts: pd.DataFrame, n: int = 4) -> list[str]:
    """A stable, informative choice: the assets with the most bullish and bearish ``p_up``, then by name."""
    if forecasts.empty:
        return []
    per = forecasts.groupby("symbol")["p_up"].first().sort_index() if "p_up" in forecasts else None
    if per is None or per.isna().all():
        return sorted(forecasts["symbol"].unique())[:n]
    ranked = per.sort_values(kind="mergesort")
    picks: list[str] = []
    for a, b in zip(ranked.index[::-1], ranked.index, strict=True):  # alternate top and bottom
        for s in (a, b):
            if s not in picks:
                picks.append(s)
        if len(picks) >= n:
            break
    return picks[:n]


def fan_chart_png(
    history: pd.DataFrame,
    forecasts: pd.DataFrame,
    symbols: Sequence[str],
    quantile_levels: Sequence[float],
    title: str = "",
    history_bars: int = 60,
    dpi: int = 72,
) -> bytes:
    """PNG bytes: one panel per symbol with the last ``history_bars`` closes, the mean forecast and
    nested quantile bands (outermost pair lightest).

    history: ``symbol, timestamp, close``; forecasts: ``symbol, timestamp, step, close`` and close quantile
    columns.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    symbols = list(symbols)
    levels = sorted(q for q in quantile_levels if quantile_column(q) in forecasts.columns)
    pairs = [(lo, hi) for lo, hi in zip(levels, levels[::-1], strict=True) if lo < hi]
    ncols = 2 if len(symbols) > 1 else 1
    nrows = max(1, int(np.ceil(len(symbols) / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, 3.0 * nrows), squeeze=False)
    try:
        for ax in axes.ravel()[len(symbols) :]:
            ax.set_visible(False)
        for ax, sym in zip(axes.ravel(), symbols, strict=False):
            h = history[history["symbol"] == sym].sort_values("timestamp").tail(history_bars)
            f = forecasts[forecasts["symbol"] == sym].sort_values("step")
            ax.plot(h["timestamp"], h["close"], color="black", lw=1.0, label="history")
            if not f.empty:
                x = f["timestamp"]
                if not h.empty:  # join the mean path to the last observed bar
                    x0 = pd.concat([h["timestamp"].tail(1), x])
                    ax.plot(
                        x0,
                        np.r_[h["close"].iloc[-1], f["close"].to_numpy()],
                        color="tab:blue",
                        lw=1.4,
                        label="mean forecast",
                    )
                else:
                    ax.plot(x, f["close"], color="tab:blue", lw=1.4, label="mean forecast")
                for i, (lo, hi) in enumerate(pairs):
                    ax.fill_between(
                        x,
                        f[quantile_column(lo)],
                        f[quantile_column(hi)],
                        color="tab:blue",
                        alpha=0.15 + 0.15 * i,
                        lw=0,
                        label=f"q{lo * 100:g}–q{hi * 100:g}",
                    )
            ax.set_title(sym, fontsize=9)
            ax.tick_params(labelsize=7)
            ax.tick_params(axis="x", rotation=30)
        axes.ravel()[0].legend(fontsize=7, loc="upper left")
        if title:
            fig.suptitle(title, fontsize=10)
        return _png(fig, dpi)
    finally:
        plt.close(fig)


def _png(fig, dpi: int) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def scorecard_png(
    scorecard: pd.DataFrame,
    metrics: Sequence[str] = ("mae", "rank_ic", "direction_acc", "crps", "crps_skill"),
    dpi: int = 72,
) -> bytes:
    """PNG: each metric over cutoffs, one line per method (kronos vs the baselines); ``crps_skill`` is
    1 - CRPS / the bootstrap random walk's (above 0: better than the baseline)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    df = scorecard.assign(as_of=pd.to_datetime(scorecard["as_of"])).sort_values("as_of")
    metrics = [m for m in metrics if m in df.columns]  # scorecards from older versions lack crps_skill
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 2.8), squeeze=False)
    try:
        for ax, m in zip(axes.ravel(), metrics, strict=True):
            for method, g in df.groupby("method", sort=True):
                ax.plot(g["as_of"], g[m], marker="o", ms=3, lw=1.2, label=method)
            ax.set_title(m, fontsize=9)
            ax.tick_params(labelsize=7)
            ax.tick_params(axis="x", rotation=30)
        axes.ravel()[0].legend(fontsize=7)
        return _png(fig, dpi)
    finally:
        plt.close(fig)
