"""Stage 4, forecast: a callable class that loads the predictor once per actor and forecasts batches of
ragged series through ``kronos_core``'s forecast API.

Seeds are per asset: ``kronos_core`` derives every sample path from (seed, symbol, path index), so an
asset's forecast does not depend on which batch or actor it lands in, or on a retry after a crash.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pyarrow as pa

from .config import ChaosConfig, ModelConfig, SamplingConfig

__all__ = ["Forecaster", "FORECAST_SCHEMA", "load_predictor"]

log = logging.getLogger(__name__)

# one row per asset; ``mean`` is (P, 6) and ``close_q`` is (Q, P), flattened row-major
FORECAST_SCHEMA = pa.schema([
    ("symbol", pa.string()), ("n_bars", pa.int64()), ("last_close", pa.float64()),
    ("future_timestamps", pa.list_(pa.int64())), ("mean", pa.list_(pa.float32())),
    ("close_q", pa.list_(pa.float32())), ("p_up", pa.float64()), ("error", pa.string()),
    ("model_info", pa.string()),
])


def load_predictor(cfg: ModelConfig):
    from kronos_core import KronosPredictor

    kwargs = {"cache": cfg.cache}
    return KronosPredictor.from_pretrained(cfg.model, cfg.tokenizer, device=cfg.device, dtype=cfg.dtype,
                                           model_revision=cfg.model_revision,
                                           tokenizer_revision=cfg.tokenizer_revision,
                                           max_context=cfg.max_context, **kwargs)


class Forecaster:
    """Ray Data callable class: ``__init__`` runs once per actor (loads weights), ``__call__`` per batch."""

    def __init__(self, model: ModelConfig, sampling: SamplingConfig, pred_len: int, quantiles: list[float],
                 num_threads: int | None = None, chaos: ChaosConfig | None = None, predictor=None):
        import torch

        from kronos_core import SamplingParams

        if num_threads:
            torch.set_num_threads(max(1, int(num_threads)))
        self.predictor = predictor if predictor is not None else load_predictor(model)
        self.sampling = SamplingParams(**sampling.model_dump())
        self.pred_len = pred_len
        self.quantiles = tuple(quantiles)
        self.info = json.dumps(self.predictor.describe(), sort_keys=True)
        self.chaos = chaos or ChaosConfig()
        self.batches = 0
        log.info("forecast actor ready (pid %d): %s", os.getpid(), self.info)

    def _maybe_die(self) -> None:
        marker = self.chaos.kill_actor_once_marker
        if marker and self.batches == 2:
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            log.error("chaos: killing forecast actor pid %d mid-job", os.getpid())
            os._exit(1)

    def __call__(self, batch: pa.Table) -> pa.Table:
        from kronos_core import Series

        self.batches += 1
        self._maybe_die()
        if "is_valid" in batch.column_names:
            batch = batch.filter(batch["is_valid"])
        symbols = batch["symbol"].to_pylist()
        series, errors = [], {}
        for sym, ts, flat, fut in zip(symbols, batch["timestamps"].to_pylist(), batch["values"].to_pylist(),
                                      batch["future_timestamps"].to_pylist(), strict=True):
            try:
                series.append(Series(key=sym, timestamps=np.asarray(ts, np.int64).astype("datetime64[ns]"),
                                     values=np.asarray(flat, np.float64).reshape(-1, 6),
                                     future_timestamps=np.asarray(fut, np.int64).astype("datetime64[ns]")))
            except (ValueError, TypeError) as e:  # validate should have caught it; quarantine, never crash
                errors[sym] = f"forecast_input: {e}"
        res = None
        if series:
            res = self.predictor.forecast(series, pred_len=self.pred_len, sampling=self.sampling,
                                          quantiles=self.quantiles)
        ci = 3  # FIELDS.index("close")
        rows = {k: [] for k in FORECAST_SCHEMA.names}
        pos = {k: i for i, k in enumerate(res.keys)} if res is not None else {}
        for sym, n, fut in zip(symbols, batch["n_bars"].to_pylist(), batch["future_timestamps"].to_pylist(),
                               strict=True):
            rows["symbol"].append(sym)
            rows["n_bars"].append(n)
            rows["future_timestamps"].append(fut)
            rows["model_info"].append(self.info)
            if sym in errors:
                rows["last_close"].append(None)
                rows["mean"].append([])
                rows["close_q"].append([])
                rows["p_up"].append(None)
                rows["error"].append(errors[sym])
                continue
            i = pos[sym]
            rows["last_close"].append(float(res.last_close[i]))
            rows["mean"].append(res.mean[i].reshape(-1).tolist())
            rows["close_q"].append(res.quantiles[i, :, :, ci].reshape(-1).tolist())
            rows["p_up"].append(float(res.p_up[i]))
            rows["error"].append(None)
        return pa.table(rows, schema=FORECAST_SCHEMA)
