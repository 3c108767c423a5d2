"""HTTP schemas (they are the OpenAPI docs at ``/docs``) and the conversions to and from ``kronos_core``.

Structural checks (types, missing fields, NaN/inf) are pydantic's. Everything about the values is a
``kronos_core.rules`` rule (timestamp range and order, candle checks, the volume/amount fill, frequency,
calendar, quantile levels, sampling) raising an ``Issue``; ``request_to_series`` turns the first one into
``RequestError`` at the offending field, which the app answers as 422 in the one error shape (``ErrorBody``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from kronos_core import FIELDS, MarketCalendar, SamplingParams, Series, defaults, quantile_column
from kronos_core.rules import (
    PRICE_FIELDS,
    RuleError,
    as_stamps,
    candle_issues,
    check_quantile_levels,
    fill_values,
    order_issues,
)

from .config import Limits

__all__ = [
    "CsvRequest",
    "ErrorBody",
    "ErrorDetail",
    "ForecastRequest",
    "ForecastResponse",
    "HealthResponse",
    "ModelInfo",
    "ModelsResponse",
    "RequestError",
    "SeriesForecast",
    "SeriesIn",
    "request_to_series",
    "series_forecast",
]

Finite = Annotated[float, Field(allow_inf_nan=False)]


class ErrorDetail(BaseModel):
    loc: list[str | int] = Field(description="where: e.g. ['body', 'series', 0, 'close']")
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every error response (413, 415, 422, 404, 405, 500) has this shape."""

    message: str = Field(description="what is wrong and how to fix it")
    detail: list[ErrorDetail] = Field(default_factory=list, description="one entry per invalid field (422)")


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

    symbol: str = Field(
        min_length=1, max_length=128, description="series id; with the seed it fixes the paths"
    )
    timestamps: list[datetime] = Field(
        description="bar timestamps, strictly increasing (tz-aware -> local time)"
    )
    open: list[Finite]
    high: list[Finite]
    low: list[Finite]
    close: list[Finite]
    volume: list[Finite] | None = Field(default=None, description="optional; missing -> 0 (as upstream)")
    amount: list[Finite] | None = Field(
        default=None,
        description="optional; missing -> volume x mean(OHLC); an amount without a volume is refused",
    )
    future_timestamps: list[datetime] | None = Field(
        default=None, description="pred_len timestamps to forecast; else generated from freq and calendar"
    )


class ForecastRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    series: list[SeriesIn] = Field(min_length=1, description="one or many series (limit: max_series)")
    pred_len: int = Field(ge=1, description="steps to forecast (limits: min_pred_len..max_pred_len)")
    model: str | None = Field(
        default=None,
        description="model id (GET /v1/models); else the "
        "serve_multiplexed_model_id header; else the default model",
    )
    sampling: SamplingParams = Field(
        default_factory=SamplingParams,
        description="how sample paths are drawn "
        "(kronos_core.SamplingParams; seed with symbol fixes the paths)",
    )
    quantiles: list[float] = Field(default=list(defaults.QUANTILES), description="levels in (0, 1) for close")
    freq: str | None = Field(
        default=None,
        description="bar frequency for generated future timestamps: 1min .. 30min, 1h .. 12h, 1d, 1w, 1mo",
    )
    calendar: str = Field(
        default=defaults.CALENDAR,
        description="market calendar for generated future "
        "timestamps: an exchange_calendars code (XNYS, XLON, XHKG, ...), 24/7, FX or weekdays",
    )
    timezone: str | None = Field(
        default=None, description="FX calendar only: the stamps' time zone (default UTC)"
    )


class SeriesForecast(BaseModel):
    symbol: str
    timestamps: list[datetime] = Field(description="the pred_len forecast timestamps")
    mean: dict[str, list[float]] = Field(description=f"mean over paths of each field {list(FIELDS)}")
    quantiles: dict[str, list[float]] = Field(description="close quantiles, keyed like close_q10, close_q50")
    p_up: float = Field(
        description="share of paths whose last close is above the last observed close (beyond rounding)"
    )
    p_flat: float = Field(
        description="share of paths whose last close equals the last observed close up to rounding"
    )
    flags: list[str] = Field(
        description="forecast warnings: non_positive_price (a mean price or close quantile <= 0)"
    )
    last_close: float


class CsvRequest(BaseModel):
    """The explorer's CSV form (``POST /ui/api/csv``): the file's text and the symbol that seeds its paths."""

    model_config = ConfigDict(extra="forbid")

    csv: str = Field(description="the CSV text: a header row, then one bar per row")
    symbol: str = Field(default="CSV", min_length=1, max_length=128)


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
    sampling: SamplingParams
    quantile_levels: list[float]
    forecasts: list[SeriesForecast]


class ModelsResponse(BaseModel):
    default: str
    models: list[ModelInfo]


class HealthResponse(BaseModel):
    status: str
    models: list[str]


def _at(loc: tuple, e: RuleError) -> RequestError:
    field = e.issue.field
    return RequestError((*loc, field) if field else loc, e.issue.message)


def _stamps(values: list[datetime], loc: tuple) -> np.ndarray:
    # tz-aware -> local wall-clock time, as kronos_core.Series.from_frame does; range checked before the cast
    try:
        return as_stamps(np.array([v.replace(tzinfo=None) for v in values], dtype="datetime64[us]"), loc[-1])
    except RuleError as e:
        raise RequestError(loc, e.issue.message) from None


def check_request(req: ForecastRequest, limits: Limits) -> None:
    """Limit checks that pydantic cannot know (limits are configurable)."""
    if len(req.series) > limits.max_series:
        raise RequestError(
            ("body", "series"), f"{len(req.series)} series; at most {limits.max_series} per request"
        )
    if not limits.min_pred_len <= req.pred_len <= limits.max_pred_len:
        raise RequestError(
            ("body", "pred_len"),
            f"{req.pred_len} is out of range [{limits.min_pred_len}, {limits.max_pred_len}]",
        )
    if req.sampling.sample_count > limits.max_sample_count:
        raise RequestError(
            ("body", "sampling", "sample_count"),
            f"{req.sampling.sample_count} > max_sample_count {limits.max_sample_count}",
        )
    if len(req.quantiles) > limits.max_quantiles:
        raise RequestError(
            ("body", "quantiles"), f"{len(req.quantiles)} levels; at most {limits.max_quantiles}"
        )
    try:
        check_quantile_levels(req.quantiles)
    except RuleError as e:
        raise RequestError(
            ("body", "quantiles", *(() if e.issue.row is None else (e.issue.row,))), e.issue.message
        ) from None
    symbols = [s.symbol for s in req.series]
    if len(set(symbols)) != len(symbols):
        dup = next(s for s in symbols if symbols.count(s) > 1)
        raise RequestError(
            ("body", "series"), f"duplicate symbol {dup!r}; symbols must be unique in one request"
        )


def request_calendar(req: ForecastRequest) -> MarketCalendar | None:
    """The calendar that generates future timestamps (None when every series brings its own)."""
    if all(s.future_timestamps is not None for s in req.series):
        return None
    if req.freq is None:
        raise RequestError(
            ("body", "freq"),
            "missing: give future_timestamps for each series, or freq (and "
            "calendar) at the request level to generate them",
        )
    try:
        return MarketCalendar(req.calendar, req.freq, req.timezone)
    except RuleError as e:
        field = {"frequency": "freq"}.get(e.issue.field, e.issue.field)
        raise RequestError(("body", field), e.issue.message) from None


def request_to_series(req: ForecastRequest, limits: Limits) -> list[Series]:
    """Validate a request against the shared rules and ``limits`` and build ``kronos_core.Series``;
    raises ``RequestError`` at the first problem."""
    check_request(req, limits)
    cal = request_calendar(req)
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
                raise RequestError(
                    (*loc, name), f"{len(col)} values for {n} timestamps; give one per timestamp"
                )
        ts = _stamps(s.timestamps, (*loc, "timestamps"))
        prices = np.column_stack([getattr(s, f) for f in PRICE_FIELDS]).astype(np.float64)
        values, issues = fill_values(prices, s.volume, s.amount)
        issues += candle_issues(values, limits.max_price_ratio) + order_issues(ts)
        if s.future_timestamps is not None:
            if len(s.future_timestamps) != req.pred_len:
                raise RequestError(
                    (*loc, "future_timestamps"),
                    f"{len(s.future_timestamps)} timestamps but pred_len={req.pred_len}",
                )
            fts = _stamps(s.future_timestamps, (*loc, "future_timestamps"))
        else:
            try:
                if not issues:
                    issues += cal.fit_issues(ts, max_gap_fraction=limits.max_gap_fraction)
                fts = cal.next_bars(ts[-1], req.pred_len) if not issues else None
            except RuleError as e:
                raise RequestError(("body", "calendar"), e.issue.message) from None
        if issues:
            raise _at(loc, RuleError(issues[0]))
        try:
            out.append(Series(symbol=s.symbol, timestamps=ts, values=values, future_timestamps=fts))
        except RuleError as e:  # remaining Series rules (future stamps after the history, their order)
            raise _at(loc, e) from None
        except (TypeError, ValueError) as e:
            raise RequestError(loc, str(e)) from None
    return out


def series_forecast(
    symbol: str,
    timestamps: np.ndarray,
    mean: np.ndarray,
    levels,
    close_q: np.ndarray,
    p_up: float,
    p_flat: float,
    flags: list[str],
    last_close: float,
) -> dict:
    """One ``SeriesForecast`` as a plain dict. mean (P, 6), close_q (Q, P)."""
    return {
        "symbol": symbol,
        "timestamps": np.datetime_as_string(timestamps, unit="s").tolist(),
        "mean": {f: mean[:, j].tolist() for j, f in enumerate(FIELDS)},
        "quantiles": {quantile_column(q, "close"): close_q[k].tolist() for k, q in enumerate(levels)},
        "p_up": float(p_up),
        "p_flat": float(p_flat),
        "flags": list(flags),
        "last_close": float(last_close),
    }
