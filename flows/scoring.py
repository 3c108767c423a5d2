"""Reconcile forecasts with realised bars and score them against naive baselines (pure pandas).

A forecast made at cutoff ``as_of`` for asset A has ``pred_len`` rows, ``step = 1..pred_len``. Step k is
matched to the k-th realised bar of A *after* the cutoff (by position, not by timestamp, so a holiday the
forecast calendar did not know about does not break the match). A forecast is *matured* once all its steps
are realised; only matured (asset, as_of) forecasts are scored, so a score never changes afterwards.

Methods scored on the same rows:

- ``kronos``: the model's mean close path and its close quantiles.
- ``bootstrap_rw``: a random walk with bootstrapped past log returns (``flows.baselines``), as many paths as
  Kronos drew (the table's ``sample_count``), seeded per series from the table's ``seed``, summarised at
  the same quantile levels: the probabilistic baseline, scored exactly like ``kronos``.
- ``naive_last``: every step equals the last observed close (random-walk forecast).
- ``naive_drift``: the last close plus the average per-bar change over the lookback window.

Metrics per (as_of, method): MAE and MAPE of the point forecast (the mean path) over all steps; direction
accuracy, IC and RankIC of the horizon return (last step's close vs the last observed close, across assets);
for ``kronos`` and ``bootstrap_rw`` the coverage of the outermost quantile interval; CRPS (quantile
approximation, ``flows.metrics``; a point forecast's CRPS is its absolute error) overall and per step
(``crps_by_step``); the mean pinball loss over the levels (a point forecast stands for every quantile);
``crps_skill`` = 1 - CRPS / the bootstrap random walk's CRPS on the same rows (> 0: better than it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from kronos_core import MarketCalendar
from kronos_core.rules import quantile_column, quantile_level_of

from . import metrics as M
from .baselines import BOOTSTRAP, bootstrap_paths, path_quantiles, series_rng

__all__ = [
    "METHODS",
    "SCORECARD_COLUMNS",
    "quantile_levels_in",
    "realised_paths",
    "matured_cutoffs",
    "score_cutoff",
    "summarize_scorecard",
    "skill_by_horizon",
    "skill_table",
    "history_closes",
    "SUMMARY_COLUMNS",
]

METHODS = ("kronos", BOOTSTRAP, "naive_last", "naive_drift")
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
    "pinball",
    "crps_skill",
    "crps_by_step",
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


def _horizon_returns(df: pd.DataFrame, pred: np.ndarray) -> pd.DataFrame:
    last = (df["step"] == df.groupby("symbol")["step"].transform("max")).to_numpy()
    base = df["last_close"].to_numpy()[last]
    return pd.DataFrame({"pred": pred[last] / base - 1.0, "real": df["actual"].to_numpy()[last] / base - 1.0})


def history_closes(bars: pd.DataFrame, as_of, lookback: int) -> dict[str, np.ndarray]:
    """Per symbol, the last ``lookback`` closes up to the cutoff (oldest first): what the model saw."""
    cut = _cutoff_end(as_of)
    b = bars.loc[bars["timestamp"] < cut, ["symbol", "timestamp", "close"]]
    b = b.sort_values(["symbol", "timestamp"])
    tail = b.groupby("symbol", sort=False).tail(max(lookback, 2))
    return {str(k): g.to_numpy(dtype=np.float64) for k, g in tail.groupby("symbol", sort=False)["close"]}


def _per_symbol(forecasts: pd.DataFrame, column: str, override: int | None, default: int) -> dict[str, int]:
    """A per-series lineage value (``seed``, ``sample_count``) from the forecast table."""
    if override is not None:
        return dict.fromkeys(forecasts["symbol"].astype(str).unique(), int(override))
    if column not in forecasts.columns:
        return dict.fromkeys(forecasts["symbol"].astype(str).unique(), default)
    first = forecasts.groupby("symbol", sort=False)[column].first()
    return {str(k): int(v) if pd.notna(v) else default for k, v in first.items()}


def _bootstrap(
    df: pd.DataFrame, hist: dict[str, np.ndarray], levels: list[float], counts: dict, seeds: dict
) -> tuple[np.ndarray, np.ndarray]:
    """Mean path and quantiles of the bootstrap random walk, aligned with ``df``'s rows."""
    mean = np.full(len(df), np.nan)
    quant = np.full((len(df), len(levels)), np.nan)
    for sym, idx in df.groupby("symbol", sort=False).indices.items():
        closes = hist.get(str(sym))
        if closes is None or not np.isfinite(closes).any():
            continue
        rng = series_rng(seeds[str(sym)], str(sym))
        paths = bootstrap_paths(closes, len(idx), counts[str(sym)], rng)
        mean[idx] = paths.mean(axis=0)
        quant[idx] = path_quantiles(paths, levels)
    return mean, quant


def _row_losses(point: np.ndarray, quant: np.ndarray | None, levels: list[float], actual: np.ndarray):
    """Per row: CRPS (quantile approximation for a distribution, absolute error for a point) and the mean
    pinball loss over ``levels`` (a point forecast stands for every quantile)."""
    if levels:
        q = quant if quant is not None else np.repeat(point[:, None], len(levels), axis=1)
        pin = np.stack([M.pinball_loss(q[:, j], actual, lv) for j, lv in enumerate(levels)], axis=1)
        pinball = pin.mean(axis=1)
    else:
        pinball = np.full(len(point), np.nan)
    crps = 2.0 * pinball if quant is not None and levels else np.abs(point - actual)
    return crps, pinball


def score_cutoff(
    forecasts: pd.DataFrame,
    bars: pd.DataFrame,
    as_of,
    quantile_levels: Sequence[float],
    lookback: int = 64,
    model: str | None = None,
    sample_count: int | None = None,
    seed: int | None = None,
) -> pd.DataFrame:
    """Score one cutoff's forecasts (all methods); empty frame if nothing has matured.

    forecasts: the pipeline's long table for this cutoff (``symbol, step, close``, the close quantile
    columns and, for the bootstrap baseline, the lineage columns ``sample_count`` and ``seed``; the
    arguments of the same names override them, defaults 32 and 0).
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
    model = model or (str(forecasts["model"].iloc[0]) if "model" in forecasts.columns else "kronos")
    counts = _per_symbol(forecasts, "sample_count", sample_count, 32)
    seeds = _per_symbol(forecasts, "seed", seed, 0)
    boot_mean, boot_q = _bootstrap(df, history_closes(bars, as_of, lookback), levels, counts, seeds)
    last = df["last_close"].to_numpy(dtype=np.float64)
    methods = {
        "kronos": (df["close"].to_numpy(dtype=np.float64), df[qcols].to_numpy(dtype=np.float64)),
        BOOTSTRAP: (boot_mean, boot_q),
        "naive_last": (last, None),
        "naive_drift": (last + df["drift"].to_numpy() * df["step"].to_numpy(), None),
    }
    actual = df["actual"].to_numpy(dtype=np.float64)
    steps = df["step"].to_numpy()
    rows = []
    for method, (point, quant) in methods.items():
        crps, pinball = _row_losses(point, quant, levels, actual)
        hr = _horizon_returns(df, point)
        row = {
            "as_of": pd.Timestamp(as_of).date(),
            "model": model,
            "method": method,
            "n_assets": int(df["symbol"].nunique()),
            "n_points": len(df),
            "mae": M.mae(point, actual),
            "mape": M.mape(point, actual),
            "direction_acc": M.direction_accuracy(hr["pred"], hr["real"]),
            "ic": M.information_coefficient(hr["pred"], hr["real"]),
            "rank_ic": M.rank_ic(hr["pred"], hr["real"]),
            "coverage": float("nan"),
            "coverage_nominal": float("nan"),
            "crps": _nanmean(crps),
            "pinball": _nanmean(pinball),
            "crps_by_step": [_nanmean(crps[steps == k]) for k in range(1, pred_len + 1)],
        }
        if quant is not None and len(levels) >= 2:
            lo, hi = int(np.argmin(levels)), int(np.argmax(levels))
            row["coverage"] = M.interval_coverage(quant[:, lo], quant[:, hi], actual)
            row["coverage_nominal"] = levels[hi] - levels[lo]
        rows.append(row)
    out = pd.DataFrame(rows)
    base = float(out.loc[out["method"] == BOOTSTRAP, "crps"].iloc[0])
    out["crps_skill"] = 1.0 - out["crps"] / base if base > 0 else float("nan")
    out["scored_at"] = pd.Timestamp.now(tz="UTC").floor("s")
    return out[SCORECARD_COLUMNS]


def _nanmean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


SUMMARY_COLUMNS = [
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
    "pinball",
    "crps_skill",
]


def summarize_scorecard(scorecard: pd.DataFrame) -> pd.DataFrame:
    """Quality over time: per (model, method), the mean of each metric over cutoffs, the IC's t-ratio and
    the CRPS skill vs the bootstrap random walk (1 - mean CRPS / the baseline's mean CRPS, same cutoffs)."""
    if scorecard.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    card = scorecard.copy()
    for col in ("pinball", "crps_skill"):  # scorecards written before the bootstrap baseline lack them
        if col not in card.columns:
            card[col] = np.nan
    g = card.groupby(["model", "method"], sort=True)
    out = g.agg(
        cutoffs=("as_of", "nunique"),
        mae=("mae", "mean"),
        mape=("mape", "mean"),
        direction_acc=("direction_acc", "mean"),
        ic=("ic", "mean"),
        rank_ic=("rank_ic", "mean"),
        coverage=("coverage", "mean"),
        crps=("crps", "mean"),
        pinball=("pinball", "mean"),
    )
    ic_std = g["ic"].std()
    out["ic_ir"] = out["ic"] / ic_std.where(ic_std > 0)
    out = out.reset_index()
    base = out[out["method"] == BOOTSTRAP].set_index("model")["crps"]
    denom = out["model"].map(base)
    out["crps_skill"] = 1.0 - out["crps"] / denom.where(denom > 0)
    return out[SUMMARY_COLUMNS]


def skill_by_horizon(scorecard: pd.DataFrame) -> pd.DataFrame:
    """Per (model, method, step): the mean CRPS over cutoffs, the bootstrap random walk's on the same
    cutoffs, and the skill ``1 - crps / crps_baseline`` (> 0: better than the baseline)."""
    cols = ["model", "method", "step", "cutoffs", "crps", "crps_baseline", "skill"]
    if scorecard.empty or "crps_by_step" not in scorecard.columns:
        return pd.DataFrame(columns=cols)
    card = scorecard[scorecard["crps_by_step"].map(lambda v: v is not None and len(v) > 0)]
    if card.empty:
        return pd.DataFrame(columns=cols)
    long = card[["as_of", "model", "method", "crps_by_step"]].explode("crps_by_step")
    long["step"] = long.groupby(["as_of", "model", "method"]).cumcount() + 1
    long["crps"] = long["crps_by_step"].astype(float)
    base = long[long["method"] == BOOTSTRAP][["as_of", "model", "step", "crps"]]
    long = long.merge(base.rename(columns={"crps": "crps_baseline"}), on=["as_of", "model", "step"])
    out = (
        long.groupby(["model", "method", "step"], sort=True)
        .agg(cutoffs=("as_of", "nunique"), crps=("crps", "mean"), crps_baseline=("crps_baseline", "mean"))
        .reset_index()
    )
    out["skill"] = 1.0 - out["crps"] / out["crps_baseline"].where(out["crps_baseline"] > 0)
    return out[cols]


def skill_table(scorecard: pd.DataFrame) -> pd.DataFrame:
    """``skill_by_horizon`` as one row per (model, step) and one column per method (the baseline left out):
    the table the run summaries show."""
    sk = skill_by_horizon(scorecard)
    sk = sk[sk["method"] != BOOTSTRAP]
    if sk.empty:
        return pd.DataFrame(columns=["model", "step"])
    wide = sk.pivot_table(index=["model", "step"], columns="method", values="skill", aggfunc="first")
    wide.columns.name = None
    return wide.reset_index()
