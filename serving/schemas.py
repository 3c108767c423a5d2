"""HTTP schemas (they are the OpenAPI docs at ``/docs``) and the conversions to and from ``kronos_core``.

Structural checks (types, missing fields, NaN/inf) are pydantic's; checks that depend on configurable
limits or on several fields (row counts, sorted timestamps, pred_len range) raise ``RequestError`` with
the location of the offending field, which the app turns into the same 422 shape FastAPI uses.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from kronos_core import FIELDS, SamplingParams, Series, quantile_column
from kronos_core.series import PRICE_FIELDS

from .calendar import future_timestamps
from .config import Limits

__all__ = ["ForecastRequest", "ForecastResponse", "HealthResponse", "ModelInfo", "ModelsResponse",
           "RequestError", "SamplingIn", "SeriesForecast", "SeriesIn", "request_to_series", "series_forecast"]

Finite = Annotated[float, Field(allow_inf_nan=False)]


class RequestError(ValueError):
    """A client error at ``loc`` (e.g. ``("body", "series", 2, "timestamps")``): becomes HTTP 422."""

    def __init__(self, loc: tuple, msg: str):
        super().__init__(f"{'.'.join(str(p) for p in loc)}: {msg}")
        self.loc, self.msg = loc, msg

    def detail(self) -> dict:
        return {"loc": list(self.loc), "msg": self.msg, "type": "value_error"}


class SeriesIn(BaseModel):
    """One series, column-wise: one entry per observed bar in every list."""

    model_config = ConfigDict(extra="forbid")

    symbol: str = Field(min_length=1, max_length=128, description="series id; with the seed it fixes the paths")
    timestamps: list[datetime] = Field(description="bar timestamps, strictly increasing (tz-aware → local time)")
    open: list[Finite]
    high: list[Finite]
    low: list[Finite]
    close: list[Finite]
    volume: list[Finite] | None = Field(default=None, description="optional; missing → 0 (as upstream)")
    amount: list[Finite] | None = Field(default=None, description="optional; missing → volume × mean(OHLC)")
    future_timestamps: list[datetime] | None = Field(
        default=None, description="pred_len timestamps to forecast; else generated from frequency/calendar")


class SamplingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    top_k: int = Field(default=0, ge=0, description="0 = off; wins over top_p; 1 = greedy")
    top_p: float = Field(default=0.9, gt=0, le=1)
    sample_count: int = Field(default=8, ge=1, description="paths per series (limit: max_sample_count)")


class ForecastRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    series: list[SeriesIn] = Field(min_length=1, description="one or many series (limit: max_series)")
    pred_len: int = Field(ge=1, description="steps to forecast (limits: min_pred_len..max_pred_len)")
    model: str | None = Field(default=None, description="model id (GET /v1/models); else the "
                              "serve_multiplexed_model_id header; else the default model")
    sampling: SamplingIn = Field(default_factory=SamplingIn)
    seed: int = Field(default=0, ge=0, lt=2**63)
    quantiles: list[float] = Field(default=[0.1, 0.5, 0.9], description="levels in (0, 1) for close")
    frequency: str | None = Field(default=None, description="bar frequency for generated future timestamps: "
                                  "pandas alias such as '1min', '5min', '1h', '1D', 'B'")
    calendar: str | None = Field(default=None, description="exchange calendar (exchange_calendars name, e.g. "
                                 "'XNYS') for generated future timestamps: sessions for daily bars, trading "
                                 "minutes for intraday bars")


class SeriesForecast(BaseModel):
    symbol: str
    timestamps: list[datetime] = Field(description="the pred_len forecast timestamps")
    mean: dict[str, list[float]] = Field(description=f"mean over paths of each field {list(FIELDS)}")
    quantiles: dict[str, list[float]] = Field(description="close quantiles, keyed like close_q10, close_q50")
    p_up: float = Field(description="share of paths whose last close is above the last observed close")
    last_close: float


class ModelInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    id: str
    model: str
    tokenizer: str
    description: str = ""
    identity: dict[str, Any] | None = Field(default=None, description="predictor.describe() once loaded")


class ForecastResponse(BaseModel):
    model: ModelInfo
    pred_len: int
    seed: int
    sampling: SamplingIn
    quantile_levels: list[float]
    forecasts: list[SeriesForecast]


class ModelsResponse(BaseModel):
    default: str
    models: list[ModelInfo]


class HealthResponse(BaseModel):
    status: str
    models: list[str]


def _stamps(values: list[datetime]) -> np.ndarray:
    # tz-aware → local wall-clock time, as kronos_core.Series.from_frame does
    return np.array([v.replace(tzinfo=None) for v in values], dtype="datetime64[ns]")


def check_request(req: ForecastRequest, limits: Limits) -> None:
    """Limit checks that pydantic cannot know (limits are configurable)."""
    if len(req.series) > limits.max_series:
        raise RequestError(("body", "series"), f"{len(req.series)} series; at most {limits.max_series} per request")
    if not limits.min_pred_len <= req.pred_len <= limits.max_pred_len:
        raise RequestError(("body", "pred_len"),
                           f"{req.pred_len} is out of range [{limits.min_pred_len}, {limits.max_pred_len}]")
    if req.sampling.sample_count > limits.max_sample_count:
        raise RequestError(("body", "sampling", "sample_count"),
                           f"{req.sampling.sample_count} > max_sample_count {limits.max_sample_count}")
    if len(req.quantiles) > limits.max_quantiles:
        raise RequestError(("body", "quantiles"), f"{len(req.quantiles)} levels; at most {limits.max_quantiles}")
    for i, q in enumerate(req.quantiles):
        if not 0.0 < q < 1.0:
            raise RequestError(("body", "quantiles", i), f"level {q} is not in (0, 1)")
    if len(set(req.quantiles)) != len(req.quantiles):
        raise RequestError(("body", "quantiles"), "levels must be unique")
    symbols = [s.symbol for s in req.series]
    if len(set(symbols)) != len(symbols):
        dup = next(s for s in symbols if symbols.count(s) > 1)
        raise RequestError(("body", "series"), f"duplicate symbol {dup!r}; symbols must be unique in one request")


def request_to_series(req: ForecastRequest, limits: Limits) -> list[Series]:
    """Validate a request against ``limits`` and build ``kronos_core.Series``; raises ``RequestError``."""
    check_request(req, limits)
    out = []
    for i, s in enumerate(req.series):
        loc = ("body", "series", i)
        n = len(s.timestamps)
        if n == 0:
            raise RequestError((*loc, "timestamps"), "empty series; give at least one bar")
        if n > limits.max_rows:
            raise RequestError((*loc, "timestamps"), f"{n} rows; at most {limits.max_rows} per series")
        for name in (*PRICE_FIELDS, "volume", "amount"):
            col = getattr(s, name)
            if col is not None and len(col) != n:
                raise RequestError((*loc, name), f"{len(col)} values for {n} timestamps; give one per timestamp")
        ts = _stamps(s.timestamps)
        diffs = np.diff(ts.astype(np.int64))
        if (diffs <= 0).any():
            j = int(np.flatnonzero(diffs <= 0)[0]) + 1
            raise RequestError((*loc, "timestamps"), f"not strictly increasing at index {j} ({ts[j - 1]} then "
                               f"{ts[j]}); sort by time and drop duplicate bars")
        prices = np.column_stack([getattr(s, f) for f in PRICE_FIELDS]).astype(np.float64)
        if s.volume is None:  # upstream's fill rules (kronos_core.series.frame_values)
            if s.amount is not None:
                raise RequestError((*loc, "amount"), "amount without volume; give volume too or drop amount")
            volume = amount = np.zeros(n)
        else:
            volume = np.asarray(s.volume, dtype=np.float64)
            amount = np.asarray(s.amount, dtype=np.float64) if s.amount is not None else volume * prices.mean(axis=1)
        for name, col in (*((f, prices[:, j]) for j, f in enumerate(PRICE_FIELDS)), ("volume", volume),
                          ("amount", amount)):
            big = np.flatnonzero(np.abs(col) > limits.max_abs_value)
            if big.size:
                raise RequestError((*loc, name), f"value {col[big[0]]:g} at row {int(big[0])} is beyond "
                                   f"±{limits.max_abs_value:g}; rescale the series")
        if s.future_timestamps is not None:
            if len(s.future_timestamps) != req.pred_len:
                raise RequestError((*loc, "future_timestamps"),
                                   f"{len(s.future_timestamps)} timestamps but pred_len={req.pred_len}")
            fts = _stamps(s.future_timestamps)
            if (np.diff(fts.astype(np.int64)) <= 0).any():
                raise RequestError((*loc, "future_timestamps"), "not strictly increasing; sort them")
            if fts[0] <= ts[-1]:
                raise RequestError((*loc, "future_timestamps"), f"first future timestamp {fts[0]} is not after "
                                   f"the last observed timestamp {ts[-1]}")
        elif req.frequency is None and req.calendar is None:
            raise RequestError((*loc, "future_timestamps"), "missing: give future_timestamps for each series, "
                               "or frequency and/or calendar at the request level to generate them")
        else:
            try:
                fts = future_timestamps(ts[-1], req.pred_len, frequency=req.frequency, calendar=req.calendar)
            except ValueError as e:
                raise RequestError(("body", "calendar" if req.calendar else "frequency"), str(e)) from None
        try:
            out.append(Series(key=s.symbol, timestamps=ts, values=np.column_stack([prices, volume, amount]),
                              future_timestamps=fts))
        except (TypeError, ValueError) as e:  # remaining Series checks (e.g. future before last bar)
            raise RequestError(loc, str(e)) from None
    return out


def sampling_params(req: ForecastRequest) -> SamplingParams:
    s = req.sampling
    return SamplingParams(temperature=float(s.temperature), top_k=s.top_k, top_p=float(s.top_p),
                          sample_count=s.sample_count, seed=req.seed)


def series_forecast(symbol: str, timestamps: np.ndarray, mean: np.ndarray, levels, close_q: np.ndarray,
                    p_up: float, last_close: float) -> dict:
    """One ``SeriesForecast`` as a plain dict. mean (P, 6), close_q (Q, P)."""
    return {
        "symbol": symbol,
        "timestamps": np.datetime_as_string(timestamps, unit="s").tolist(),
        "mean": {f: mean[:, j].tolist() for j, f in enumerate(FIELDS)},
        "quantiles": {quantile_column(q, "close"): close_q[k].tolist() for k, q in enumerate(levels)},
        "p_up": float(p_up),
        "last_close": float(last_close),
    }
