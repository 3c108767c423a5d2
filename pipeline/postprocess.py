"""Stage 5, postprocess: per-asset forecasts -> long rows, one per (symbol, step), with lineage columns;
rejected assets -> rows of the rejected table.

``step`` k is the k-th calendar bar after as_of for every asset; ``lag_bars`` says how many bars before
as_of an asset's last bar was (its forecast starts there); ``flags`` holds forecast warnings
(``non_positive_price``); ``p_up``/``p_flat`` are shares of sample paths ending above / within rounding of
the last close."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from kronos_core import FIELDS, quantile_column

__all__ = ["forecast_rows", "forecast_schema", "rejected_rows", "lineage", "LINEAGE_TYPES"]


# the lineage columns' types, fixed so that a null (top_k unset) never changes a column's type between runs
LINEAGE_TYPES = {
    "run_id": pa.string(),
    "temperature": pa.float64(),
    "top_k": pa.int64(),
    "top_p": pa.float64(),
    "sample_count": pa.int64(),
    "seed": pa.int64(),
    "lookback": pa.int64(),
    "pred_len": pa.int64(),
    "code_version": pa.string(),
    "created_at": pa.string(),
}


def lineage(run_id: str, cfg, created_at: str, code_version: str) -> dict:
    """Run-level lineage values (model identity comes per row from the actor that ran it)."""
    s = cfg.sampling
    return {
        "run_id": run_id,
        "temperature": s.temperature,
        "top_k": s.top_k,
        "top_p": s.top_p,
        "sample_count": s.sample_count,
        "seed": s.seed,
        "lookback": cfg.lookback,
        "pred_len": cfg.pred_len,
        "code_version": code_version,
        "created_at": created_at,
    }


def forecast_rows(batch: pa.Table, as_of, quantiles: list[float], run: dict) -> pa.Table:
    """Asset forecasts (``forecast.FORECAST_SCHEMA``, no errors) -> one row per (symbol, step)."""
    n = batch.num_rows
    fut = np.asarray(batch["future_timestamps"].to_pylist(), dtype=np.int64).reshape(n, -1)
    p = fut.shape[1]
    mean = np.asarray(batch["mean"].to_pylist(), dtype=np.float32).reshape(n, p, 6)
    q = np.asarray(batch["close_q"].to_pylist(), dtype=np.float32).reshape(n, len(quantiles), p)
    sym = np.repeat(np.asarray(batch["symbol"].to_pylist(), dtype=object), p)
    infos = [json.loads(s) for s in batch["model_info"].to_pylist()]
    cols = {
        "symbol": pa.array(sym, pa.string()),
        "as_of": pa.array(np.full(n * p, np.datetime64(as_of, "ns")), pa.timestamp("ns")),
        "timestamp": pa.array(fut.reshape(-1).astype("datetime64[ns]"), pa.timestamp("ns")),
        "step": pa.array(np.tile(np.arange(1, p + 1, dtype=np.int32), n)),
    }
    for j, f in enumerate(FIELDS):
        cols[f] = pa.array(mean[:, :, j].reshape(-1))
    for k, level in enumerate(quantiles):
        cols[quantile_column(level)] = pa.array(q[:, k, :].reshape(-1))
    cols["p_up"] = pa.array(np.repeat(np.asarray(batch["p_up"].to_pylist(), np.float64), p))
    cols["p_flat"] = pa.array(np.repeat(np.asarray(batch["p_flat"].to_pylist(), np.float64), p))
    cols["flags"] = pa.array(np.repeat(np.asarray(batch["flags"].to_pylist(), dtype=object), p), pa.string())
    cols["lag_bars"] = pa.array(np.repeat(np.asarray(batch["lag_bars"].to_pylist(), np.int64), p))
    cols["last_close"] = pa.array(np.repeat(np.asarray(batch["last_close"].to_pylist(), np.float64), p))
    cols["n_bars"] = pa.array(np.repeat(np.asarray(batch["n_bars"].to_pylist(), np.int64), p))
    for key in (
        "model",
        "model_revision",
        "model_sha256",
        "base_model",
        "training_run",
        "tokenizer",
        "tokenizer_revision",
        "device",
        "dtype",
    ):
        cols[key] = pa.array(np.repeat(np.asarray([i.get(key) for i in infos], dtype=object), p), pa.string())
    cols["random_weights"] = pa.array(np.repeat([bool(i.get("random_weights")) for i in infos], p))
    for key, value in run.items():
        cols[key] = pa.array([value] * (n * p), LINEAGE_TYPES.get(key))
    return pa.table(cols)


def forecast_schema(quantiles: list[float], run: dict, pred_len: int = 1) -> pa.Schema:
    """The schema ``forecast_rows`` gives for these quantile levels and lineage, without forecasting (the
    output table is prepared before the first row exists)."""
    from .forecast import FORECAST_SCHEMA

    one = {
        "is_valid": [True],
        "symbol": ["X"],
        "n_bars": [1],
        "last_close": [1.0],
        "future_timestamps": [[0] * pred_len],
        "mean": [[0.0] * (pred_len * len(FIELDS))],
        "close_q": [[0.0] * (pred_len * len(quantiles))],
        "p_up": [0.0],
        "p_flat": [0.0],
        "lag_bars": [0],
        "model_info": ["{}"],
    }
    cols = {f.name: one.get(f.name, [None]) for f in FORECAST_SCHEMA}
    return forecast_rows(pa.table(cols, schema=FORECAST_SCHEMA), 0, quantiles, run).schema


def rejected_rows(
    batch: pa.Table, as_of, run: dict, model: str, reason_col: str = "reject_reason"
) -> pa.Table:
    """Rejected assets -> ``symbol, as_of, model, reject_reason, n_bars, last_timestamp, run_id,
    created_at``."""
    n = batch.num_rows
    last = (
        batch["last_timestamp"] if "last_timestamp" in batch.column_names else pa.nulls(n, pa.timestamp("ns"))
    )
    return pa.table(
        {
            "symbol": batch["symbol"],
            "as_of": pa.array(np.full(n, np.datetime64(as_of, "ns")), pa.timestamp("ns")),
            "model": pa.array([model] * n, pa.string()),
            "reject_reason": batch[reason_col].cast(pa.string()),
            "n_bars": batch["n_bars"],
            "last_timestamp": last.cast(pa.timestamp("ns")),
            "run_id": pa.array([run["run_id"]] * n, pa.string()),
            "created_at": pa.array([run["created_at"]] * n, pa.string()),
        }
    )
