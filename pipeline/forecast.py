"""Stage 4, forecast: a callable class that loads the predictor once per actor and forecasts batches of
ragged series through ``kronos_core``'s forecast API.

Seeds are per asset: ``kronos_core`` derives every sample path from (seed, symbol, path index), so an
asset's forecast does not depend on which batch or actor it lands in, or on a retry after a crash.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections import defaultdict

import numpy as np
import pyarrow as pa

from kronos_core import PredictorSpec, SamplingParams, Series
from kronos_core.rules import FIELDS, forecast_flags

__all__ = ["ForecastActor", "FORECAST_SCHEMA"]

log = logging.getLogger(__name__)
_CLOSE = FIELDS.index("close")

# one row per asset; ``mean`` is (P, 6) and ``close_q`` is (Q, P), flattened row-major, for the pred_len
# steps after as_of; ``future_timestamps`` are those steps' stamps. Assets that failed validation pass through
# (``is_valid`` false, their ``reject_reason``; no forecast), so one stream carries every asset to the end.
FORECAST_SCHEMA = pa.schema(
    [
        ("is_valid", pa.bool_()),
        ("reject_reason", pa.string()),
        ("last_timestamp", pa.timestamp("ns")),
        ("symbol", pa.string()),
        ("n_bars", pa.int64()),
        ("last_close", pa.float64()),
        ("future_timestamps", pa.list_(pa.int64())),
        ("mean", pa.list_(pa.float32())),
        ("close_q", pa.list_(pa.float32())),
        ("p_up", pa.float64()),
        ("p_flat", pa.float64()),
        ("flags", pa.string()),
        ("lag_bars", pa.int64()),
        ("error", pa.string()),
        ("model_info", pa.string()),
    ]
)


class ForecastActor:
    """Ray Data callable class: ``__init__`` runs once per actor (loads weights), ``__call__`` per batch."""

    def __init__(
        self,
        spec: PredictorSpec,
        sampling: SamplingParams,
        pred_len: int,
        quantiles: list[float],
        num_threads: int | None = None,
        predictor=None,
        storage=None,
    ):
        import torch  # here, not at import: the job's CPU-only tasks import this module without torch

        from kronos_core import KronosPredictor

        if num_threads:
            torch.set_num_threads(max(1, int(num_threads)))
        from .models import localize

        local = spec
        if predictor is None and (spec.model.startswith("s3") or spec.tokenizer.startswith("s3")):
            # checkpoints on S3 are loaded from a verified local copy; the lineage keeps their URLs
            local = dataclasses.replace(
                spec, model=localize(spec.model, storage), tokenizer=localize(spec.tokenizer, storage)
            )
        self.predictor = predictor if predictor is not None else KronosPredictor.from_spec(local)
        self.sampling = sampling
        self.pred_len = pred_len
        self.quantiles = tuple(quantiles)
        info = self.predictor.describe()
        info.update(
            model=spec.model if local is not spec else info["model"],
            tokenizer=spec.tokenizer if local is not spec else info["tokenizer"],
        )
        self.info = json.dumps(info, sort_keys=True)
        log.info("forecast actor ready (pid %d): %s", os.getpid(), self.info)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        errors: dict[str, str] = {}
        by_horizon: dict[int, list[Series]] = defaultdict(list)  # lagged assets forecast further ahead
        for r in rows:
            if not r.get("is_valid", True):
                continue
            try:
                s = Series(
                    symbol=r["symbol"],
                    timestamps=np.asarray(r["timestamps"], np.int64).astype("datetime64[ns]"),
                    values=np.asarray(r["values"], np.float64).reshape(-1, 6),
                    future_timestamps=np.asarray(r["future_timestamps"], np.int64).astype("datetime64[ns]"),
                )
                by_horizon[s.pred_len].append(s)
            except (ValueError, TypeError) as e:  # validate should have caught it; quarantine, never crash
                errors[r["symbol"]] = f"forecast_input: {e}"
        results = {}
        for horizon, series in by_horizon.items():
            res = self.predictor.forecast(
                series, pred_len=horizon, sampling=self.sampling, quantiles=self.quantiles
            )
            for i, sym in enumerate(res.symbols):
                results[sym] = (res, i)
        out = {k: [] for k in FORECAST_SCHEMA.names}
        for r in rows:
            sym = r["symbol"]
            for k in ("symbol", "n_bars", "lag_bars"):
                out[k].append(r[k])
            out["is_valid"].append(bool(r.get("is_valid", True)))
            out["reject_reason"].append(r.get("reject_reason"))
            out["last_timestamp"].append(r.get("last_timestamp"))
            out["model_info"].append(self.info)
            if not out["is_valid"][-1] or sym in errors:
                for k in ("last_close", "p_up", "p_flat", "flags"):
                    out[k].append(None)
                for k in ("future_timestamps", "mean", "close_q"):
                    out[k].append([])
                out["error"].append(errors.get(sym))
                continue
            res, i = results[sym]
            keep = slice(-self.pred_len, None)  # the steps after as_of (a lagged asset's first ones dropped)
            out["future_timestamps"].append(r["future_timestamps"][keep])
            out["last_close"].append(float(res.last_close[i]))
            out["mean"].append(res.mean[i, keep].reshape(-1).tolist())
            out["close_q"].append(res.quantiles[i, :, keep, _CLOSE].reshape(-1).tolist())
            out["p_up"].append(float(res.p_up[i]))
            out["p_flat"].append(float(res.p_flat[i]))
            out["flags"].append(
                ";".join(forecast_flags(res.mean[i, keep], res.quantiles[i, :, keep, _CLOSE])) or None
            )
            out["error"].append(None)
        return pa.table(out, schema=FORECAST_SCHEMA)
