"""A stand-in for ``pipeline.run_job`` for flow-logic tests: same inputs, same kind of outputs, no Ray.

It reads the bars up to ``as_of`` and writes a forecast partition (long rows, close quantiles, ``p_up``,
``last_close``), a rejected table and a manifest, laid out like the real job. Forecasts are a damped drift:
deterministic, cheap, and good enough for the scoring to have something to measure.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from flows.store import read_bars
from kronos_core import quantile_column
from pipeline.calendars import future_timestamps
from pipeline.commit import partition_path
from pipeline.config import JobConfig, RunSummary


def fake_run_job(config: JobConfig) -> RunSummary:
    as_of = config.as_of
    start = (as_of - pd.Timedelta(days=int(config.lookback * 1.6) + 10)).date()
    bars = read_bars(config.input.url, config.input.layout, start, as_of.date(),
                     config.universe.symbols, config.storage)
    bars = bars.groupby("symbol").tail(config.lookback)
    rows, rejected = [], []
    for sym, g in bars.groupby("symbol"):
        close = g["close"].to_numpy()
        if len(g) < config.validation.min_history or not np.isfinite(close).all():
            rejected.append({"symbol": sym, "reject_reason": "too_short" if len(g) < config.validation.min_history
                             else "non_finite", "n_bars": len(g)})
            continue
        last = close[-1]
        drift = (close[-1] - close[0]) / max(len(close) - 1, 1) * 0.5
        sd = np.std(np.diff(close)) + 1e-9
        fts = future_timestamps(None, config.calendar.model_copy(update={"exchange": None}),
                                g["timestamp"].iloc[-1].to_datetime64(), config.pred_len)
        for k in range(1, config.pred_len + 1):
            r = {"symbol": sym, "as_of": as_of, "timestamp": fts[k - 1], "step": k, "close": last + drift * k,
                 "p_up": float(drift > 0), "last_close": last, "model": config.model.model}
            for q in config.output.quantiles:
                from statistics import NormalDist

                r[quantile_column(q)] = last + drift * k + NormalDist().inv_cdf(q) * sd * np.sqrt(k)
            rows.append(r)
    out = config.output.url.rstrip("/")
    part, rej = (partition_path(out, t, as_of, config.model.model) for t in ("forecasts", "rejected"))
    frames = (pd.DataFrame(rows), pd.DataFrame(rejected, columns=["symbol", "reject_reason", "n_bars"]))
    for d, df in zip((part, rej), frames, strict=True):
        os.makedirs(d, exist_ok=True)
        df.to_parquet(f"{d}/part-fake.parquet", index=False)
        with open(f"{d}/_manifest.json", "w") as f:
            json.dump({"files": [{"name": "part-fake.parquet"}], "rows": len(df)}, f)
    manifest = f"{part}/_manifest.json"
    n = bars["symbol"].nunique()
    return RunSummary(run_id="fake", as_of=str(as_of), assets_read=n, assets_forecast=n - len(rejected),
                      assets_rejected=len(rejected), rows_written=len(rows), output_url=part, manifest_url=manifest,
                      rejected_url=rej, model=config.model.model)
