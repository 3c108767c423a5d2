"""Reconcile forecasts with realised bars and score them against naive baselines (pure pandas).

A forecast made at cutoff ``as_of`` for asset A has ``pred_len`` rows, ``step = 1..pred_len``. Step k is
matched to the k-th realised bar of A *after* the cutoff (by position, not by timestamp, so a holiday the
forecast calendar did not know about does not break the match). A forecast is *matured* once all its steps
are realised; only matured (asset, as_of) forecasts are scored, so a score never changes afterwards.

Methods scored on the same rows:

- ``kronos``: the model's mean close path and its close quantiles.
- ``naive_last``: every step equals the last observed close (random-walk forecast).
- ``naive_drift``: the last close plus the average per-bar change over the lookback window.

Metrics per (as_of, method): MAE and MAPE of close over all steps; direction accuracy, IC and RankIC of the
horizon return (last step's close vs the last observed close, across assets); for ``kronos`` the coverage of
the outermost quantile interval and CRPS (quantile approximation; a point forecast's CRPS is its MAE).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from kronos_core import MarketCalendar
from kronos_core.rules import quantile_column, quantile_level_of

from . import metrics as M

__all__ = [
    "METHODS",
    "SCORECARD_COLUMNS",
    "quantile_levels_in",
    "realised_paths",
    "matured_cutoffs",
    "score_cutoff",
    "summarize_scorecard",
]

METHODS = ("kronos", "naive_last", "naive_drift")
SCORECARD_COLUMNS = [
    "as_of",
    "model",
    "method",
    "n_assets",
    "n_points",
    "mae",
    "mape",
    "direction_acc",
    "ic",
    "rank_ic",
    "coverage",
    "coverage_nominal",
    "crps",
    "scored_at",
]


def _cutoff_end(as_of) -> pd.Timestamp:
    """Bars stamped before the end of the ``as_of`` day are history (daily bars are stamped 00:00)."""
    return pd.Timestamp(as_of).normalize() + pd.Timedelta(days=1)


def realised_paths(bars: pd.DataFrame, as_of, pred_len: int, lookback: int) -> pd.DataFrame:
    """Per asset: the last observed close, the drift baseline slope and the realised close of each step.

    bars: ``symbol, timestamp, close`` (any extra columns are ignored), any order.
    Returns one row per (symbol, step) with ``last_close, drift, actual`` (``actual`` NaN if not yet
    realised).
    """
    if pred_len < 1:
        raise ValueError(f"pred_len must be >= 1, got {pred_len}")
    cut = _cutoff_end(as_of)
    b = bars[["symbol", "timestamp", "close"]].sort_values(["symbol", "timestamp"])
    hist = b[b["timestamp"] < cut]
    fut = b[b["timestamp"] >= cut]
    tail = hist.groupby("symbol", sort=False).tail(max(lookback, 2))
    g = tail.groupby("symbol", sort=True)["close"]
    last, first, n = g.last(), g.first(), g.size()
    drift = ((last - first) / (n - 1).where(n > 1)).fillna(0.0)
    fut = fut.assign(step=fut.groupby("symbol").cumcount() + 1)
    fut = fut[fut["step"] <= pred_len]
    grid = pd.MultiIndex.from_product([last.index, np.arange(1, pred_len + 1)], names=["symbol", "step"])
    out = pd.DataFrame(index=grid).reset_index()
    out = out.merge(
        pd.DataFrame({"symbol": last.index, "last_close": last.to_numpy(), "drift": drift.to_numpy()}),
        on="symbol",
        how="left",
    )
    out = out.merge(
        fut[["symbol", "step", "close"]].rename(columns={"close": "actual"}),
        on=["symbol", "step"],
        how="left",
    )
    return out


def matured_cutoffs(
    forecast_as_ofs: Sequence, scored_as_ofs: Sequence, last_bar_date, pred_len: int, calendar: MarketCalendar
) -> list:
    """Cutoffs whose forecasts can be scored now and have not been scored yet.

    A cutoff is a candidate once at least ``pred_len`` sessions of ``calendar`` lie after it up to the last
    realised bar's date; ``score_cutoff`` still checks bar by bar, so this is only the cheap pre-filter.
    """
    done = {pd.Timestamp(x).date() for x in scored_as_ofs}
    last = pd.Timestamp(last_bar_date).normalize()
    daily = MarketCalendar(calendar.name, "1d", calendar.timezone)
    out = []
    for a in sorted({pd.Timestamp(x).date() for x in forecast_as_ofs}):
        if a in done:
            continue
        if daily.count(pd.Timestamp(a) + pd.Timedelta(days=1), last) >= pred_len:
            out.append(a)
    return out


def quantile_levels_in(forecasts: pd.DataFrame, field: str = "close") -> list[float]:
    """The quantile levels a forecast table carries (``close_q10`` -> 0.1), sorted."""
    levels = (quantile_level_of(str(c), field) for c in forecasts.columns)
    return sorted(q for q in levels if q is not None)


def _horizon_returns(df: pd.DataFrame, pred_col: str) -> pd.DataFrame:
    last_step = df.loc[df.groupby("symbol")["step"].idxmax()]
    return pd.DataFrame(
        {
            "pred": last_step[pred_col].to_numpy() / last_step["last_close"].to_numpy() - 1.0,
            "real": last_step["actual"].to_numpy() / last_step["last_close"].to_numpy() - 1.0,
        }
    )


def score_cutoff(
    forecasts: pd.DataFrame,
    bars: pd.DataFrame,
    as_of,
    quantile_levels: Sequence[float],
    lookback: int = 64,
    model: str | None = None,
) -> pd.DataFrame:
    """Score one cutoff's forecasts (all methods); empty frame if nothing has matured.

    forecasts: the pipeline's long table for this cutoff (``symbol, step, close`` and the close quantile
    columns).
    bars: realised bars ``symbol, timestamp, close`` covering the lookback and the forecast horizon.
    """
    if forecasts.empty:
        return pd.DataFrame(columns=SCORECARD_COLUMNS)
    pred_len = int(forecasts["step"].max())
    real = realised_paths(bars, as_of, pred_len, lookback)
    qcols = [quantile_column(q) for q in quantile_levels if quantile_column(q) in forecasts.columns]
    levels = [q for q in quantile_levels if quantile_column(q) in forecasts.columns]
    df = forecasts[["symbol", "step", "close", *qcols]].merge(real, on=["symbol", "step"], how="inner")
    complete = df.groupby("symbol")["actual"].transform(lambda s: s.notna().all() and len(s) == pred_len)
    df = df[complete.astype(bool)].sort_values(["symbol", "step"]).reset_index(drop=True)
    if df.empty:
        return pd.DataFrame(columns=SCORECARD_COLUMNS)
    df["naive_last"] = df["last_close"]
    df["naive_drift"] = df["last_close"] + df["drift"] * df["step"]
    model = model or (str(forecasts["model"].iloc[0]) if "model" in forecasts.columns else "kronos")
    rows = []
    for method, col in (("kronos", "close"), ("naive_last", "naive_last"), ("naive_drift", "naive_drift")):
        hr = _horizon_returns(df, col)
        row = {
            "as_of": pd.Timestamp(as_of).date(),
            "model": model,
            "method": method,
            "n_assets": int(df["symbol"].nunique()),
            "n_points": len(df),
            "mae": M.mae(df[col], df["actual"]),
            "mape": M.mape(df[col], df["actual"]),
            "direction_acc": M.direction_accuracy(hr["pred"], hr["real"]),
            "ic": M.information_coefficient(hr["pred"], hr["real"]),
            "rank_ic": M.rank_ic(hr["pred"], hr["real"]),
            "coverage": float("nan"),
            "coverage_nominal": float("nan"),
            "crps": M.mae(df[col], df["actual"]),  # point forecast: CRPS of a point mass = absolute error
        }
        if method == "kronos" and len(levels) >= 2:
            lo, hi = min(levels), max(levels)
            row["coverage"] = M.interval_coverage(
                df[quantile_column(lo)], df[quantile_column(hi)], df["actual"]
            )
            row["coverage_nominal"] = hi - lo
            row["crps"] = M.crps_quantiles(df[qcols].to_numpy(), levels, df["actual"])
        rows.append(row)
    out = pd.DataFrame(rows)
    out["scored_at"] = pd.Timestamp.now(tz="UTC").floor("s")
    return out[SCORECARD_COLUMNS]


def summarize_scorecard(scorecard: pd.DataFrame) -> pd.DataFrame:
    """Quality over time: per (model, method), the mean of each metric over cutoffs, and the IC's t-ratio."""
    if scorecard.empty:
        return pd.DataFrame(
            columns=[
                "model",
                "method",
                "cutoffs",
                "mae",
                "mape",
                "direction_acc",
                "ic",
                "ic_ir",
                "rank_ic",
                "coverage",
                "crps",
            ]
        )
    g = scorecard.groupby(["model", "method"], sort=True)
    out = g.agg(
        cutoffs=("as_of", "nunique"),
        mae=("mae", "mean"),
        mape=("mape", "mean"),
        direction_acc=("direction_acc", "mean"),
        ic=("ic", "mean"),
        rank_ic=("rank_ic", "mean"),
        coverage=("coverage", "mean"),
        crps=("crps", "mean"),
    )
    ic_std = g["ic"].std()
    out["ic_ir"] = out["ic"] / ic_std.where(ic_std > 0)
    return out.reset_index()[
        [
            "model",
            "method",
            "cutoffs",
            "mae",
            "mape",
            "direction_acc",
            "ic",
            "ic_ir",
            "rank_ic",
            "coverage",
            "crps",
        ]
    ]
