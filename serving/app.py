"""The Serve application: an HTTP ingress (FastAPI) in front of a multiplexed, batching Forecaster.

    client ──HTTP──▶ Ingress (JSON only → 415; body size → 413; validate → 422; pick model id)
                        │ handle.options(multiplexed_model_id=id).forecast.remote(job)
                        ▼
                     Forecaster replica (models loaded on demand, LRU; @serve.batch across requests)
                        │ group by (model, pred_len, sampling, quantiles) → KronosPredictor.forecast
                        ▼
                     JobResult / JobError ──▶ Ingress builds the JSON response

Every error response has one shape, ``{"message": ..., "detail": [{"loc", "msg", "type"}, ...]}``
(``schemas.ErrorBody``). ``build_app(args)`` is the application builder named in
``serving/serve_config.yaml``.

The forecast explorer is a page of this app (``GET /``, ``/ui``: ``serving/ui/``, static files only) and
its JSON under ``/ui/api/``: the store's forecasts through ``serving/explorer.py``, a pasted CSV through
``POST /v1/forecast`` like any client.
"""

# no `from __future__ import annotations` here: FastAPI must see real types on the ingress methods

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from kronos_core import KronosPredictor

from .batching import Job, JobError, JobResult, call_work, plan_calls, run_call
from .config import DEPLOYMENT_OPTIONS, BatchConfig, ServingConfig
from .explorer import NOT_CONFIGURED, Explorer, ExplorerError, parse_csv
from .schemas import (
    CsvRequest,
    ErrorBody,
    ForecastRequest,
    ForecastResponse,
    HealthResponse,
    ModelsResponse,
    RequestError,
    request_to_series,
    series_forecast,
)

__all__ = ["Forecaster", "Ingress", "build_app", "fastapi_app"]

log = logging.getLogger(__name__)
_BATCH = BatchConfig()


@serve.deployment(name="Forecaster", user_config=_BATCH.model_dump(), **DEPLOYMENT_OPTIONS["Forecaster"])
class Forecaster:
    """Holds up to ``max_models_per_replica`` predictors and batches jobs across concurrent requests."""

    def __init__(self, config: dict):
        import torch

        self.config = ServingConfig(**config)
        if self.config.torch_threads:
            torch.set_num_threads(self.config.torch_threads)
        # one worker: model loads and large forecasts never overlap on a replica
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kronos-forecast")
        self._stats = {"batches": 0, "jobs": 0, "forecast_calls": 0, "max_batch_seen": 0, "errors": 0}
        self._batch = _BATCH

        async def load(model_id: str) -> KronosPredictor:
            return await self._load_predictor(model_id)

        # wired here, not as a decorator, so the LRU size comes from the config (Serve supports this)
        self.get_predictor = serve.multiplexed(max_num_models_per_replica=self.config.max_models_per_replica)(
            load
        )

    def reconfigure(self, user_config: dict) -> None:
        """Serve calls this on deploy and on every ``user_config`` change, without a restart."""
        self._batch = BatchConfig(**(user_config or {}))
        self._run_batch.set_max_batch_size(self._batch.max_batch_size)
        self._run_batch.set_batch_wait_timeout_s(self._batch.batch_wait_timeout_s)
        log.info(
            "batching: max_batch_size=%d batch_wait_timeout_s=%.4f",
            self._batch.max_batch_size,
            self._batch.batch_wait_timeout_s,
        )

    async def _load_predictor(self, model_id: str) -> KronosPredictor:
        spec = self.config.models[model_id]  # the ingress only sends known ids
        t0 = time.perf_counter()
        pred = await asyncio.get_running_loop().run_in_executor(self._pool, KronosPredictor.from_spec, spec)
        pred.serve_identity = {"id": model_id, **pred.describe()}
        log.info("loaded model %r (%s) in %.1f s", model_id, spec.model, time.perf_counter() - t0)
        return pred

    async def forecast(self, job: Job) -> JobResult | JobError:
        return await self._run_batch(job)

    @serve.batch(max_batch_size=_BATCH.max_batch_size, batch_wait_timeout_s=_BATCH.batch_wait_timeout_s)
    async def _run_batch(self, jobs: list[Job]) -> list[JobResult | JobError]:
        self._stats["batches"] += 1
        self._stats["jobs"] += len(jobs)
        self._stats["max_batch_seen"] = max(self._stats["max_batch_seen"], len(jobs))
        out: list[JobResult | JobError | None] = [None] * len(jobs)
        for members in plan_calls(jobs):
            results = await self._call(jobs[members[0]].model_id, [jobs[i] for i in members])
            if len(members) > 1 and any(isinstance(r, JobError) for r in results):
                # isolate the failing job: rerun one by one so the others still get answers
                results = [(await self._call(jobs[i].model_id, [jobs[i]]))[0] for i in members]
            for i, r in zip(members, results, strict=True):
                if isinstance(r, JobResult):
                    r.batch_requests = len(jobs)
                out[i] = r
        self._stats["errors"] += sum(isinstance(r, JobError) for r in out)
        return out

    async def _call(self, model_id: str, jobs: list[Job]) -> list[JobResult | JobError]:
        try:
            pred = await self.get_predictor(model_id)
        except Exception as e:
            log.exception("loading model %r failed", model_id)
            return [JobError(500, f"model {model_id!r} could not be loaded: {type(e).__name__}: {e}")] * len(
                jobs
            )
        self._stats["forecast_calls"] += 1
        try:
            if call_work(jobs) < self.config.thread_min_work:  # see ServingConfig.thread_min_work
                return run_call(pred, jobs, pred.serve_identity)
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, run_call, pred, jobs, pred.serve_identity
            )
        except (ValueError, TypeError) as e:  # input the ingress let through but the model rejects
            return [JobError(422, str(e))] * len(jobs)
        except Exception as e:
            log.exception("forecast with model %r failed", model_id)
            return [JobError(500, f"forecast failed ({type(e).__name__}: {e})")] * len(jobs)

    async def stats(self) -> dict:
        return {**self._stats, **self._batch.model_dump(), "pid": os.getpid()}


fastapi_app = FastAPI(
    title="Kronos forecast service",
    version="0.2.0",
    description="On-demand OHLCV forecasts with Kronos foundation models: several models behind one endpoint "
    "(Ray Serve multiplexing), cross-request dynamic batching. Same seed and symbol give the same "
    "numbers as `KronosPredictor.forecast`. Every error has the body `{message, detail}`.",
)
_ERRORS = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (413, "request body over limits.max_body_mb; send fewer series or rows per request"),
        (415, "the body is not JSON; send it with content-type application/json"),
        (422, "invalid request: `detail` names each field, `message` says what to fix"),
        (500, "the model failed; `message` says how"),
    )
}

_UI = Path(__file__).with_name("ui")  # the explorer page's files (package data)
_STATIC = {"app.js": "text/javascript", "style.css": "text/css"}
_UI_ERRORS = {
    404: {"model": ErrorBody, "description": "no store configured, or no such partition or symbol"},
    500: {"model": ErrorBody, "description": "the store could not be read; `message` says how"},
}


def error(status: int, message: str, detail: list | None = None, headers: dict | None = None) -> JSONResponse:
    """The one error body (``schemas.ErrorBody``)."""
    return JSONResponse(
        status_code=status, content={"message": message, "detail": detail or []}, headers=headers
    )


def _clean(errors) -> list[dict]:
    # never echo the client's input back (it can be large, or hold NaN that JSON cannot carry)
    return [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in errors]


@fastapi_app.exception_handler(RequestValidationError)
async def _on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = jsonable_encoder(_clean(exc.errors()))
    message = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg', '')}" for d in detail)
    return error(422, message, detail)


@fastapi_app.exception_handler(StarletteHTTPException)
async def _on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))


@fastapi_app.exception_handler(Exception)
async def _on_crash(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s", request.url.path)
    return error(500, f"internal error ({type(exc).__name__}: {exc})")


_JSON_TYPES = ("application/json",)


@fastapi_app.middleware("http")
async def _gate(request: Request, call_next):
    """Before FastAPI reads and parses a body: 415 unless it is JSON, 413 if it is over the size limit
    (chunked bodies without a length: only the row limits apply)."""
    if request.method in ("POST", "PUT", "PATCH"):
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in _JSON_TYPES and not kind.endswith("+json"):
            return error(
                415,
                f"content-type {kind or '(none)'!r} is not supported; send the request body as "
                "JSON with content-type application/json",
            )
        limit = getattr(request.app.state, "max_body_bytes", None)
        size = request.headers.get("content-length")
        if limit and size is not None and size.isdigit() and int(size) > limit:
            return error(
                413,
                f"request body of {int(size)} bytes is over the {limit / 2**20:g} MiB limit "
                "(limits.max_body_mb); send fewer series or rows per request",
            )
    return await call_next(request)


@serve.deployment(name="Ingress", **DEPLOYMENT_OPTIONS["Ingress"])
@serve.ingress(fastapi_app)
class Ingress:
    def __init__(self, forecaster: DeploymentHandle, config: dict):
        self.forecaster = forecaster
        self.config = ServingConfig(**config)
        self.limits = self.config.limits
        fastapi_app.state.max_body_bytes = self.limits.max_body_mb * 2**20  # this replica's process only
        self.explorer = Explorer(self.config.explorer) if self.config.explorer else None

    def _model_info(self, model_id: str, identity: dict | None = None) -> dict:
        spec = self.config.models[model_id]
        return {
            "id": model_id,
            "model": spec.model,
            "tokenizer": spec.tokenizer,
            "description": spec.description,
            "identity": identity,
        }

    @fastapi_app.post("/v1/forecast", response_model=ForecastResponse, responses=_ERRORS)
    async def forecast(self, req: ForecastRequest, request: Request):
        """Forecast one or many series. The model comes from `model`, else the `serve_multiplexed_model_id`
        header, else the default."""
        model_id = req.model or request.headers.get("serve_multiplexed_model_id") or self.config.default_model
        try:
            if model_id not in self.config.models:
                raise RequestError(
                    ("body", "model"),
                    f"unknown model {model_id!r}; "
                    f"choose one of {sorted(self.config.models)} (GET /v1/models)",
                )
            series = request_to_series(req, self.limits)
        except RequestError as e:
            raise RequestValidationError([e.detail()]) from None
        job = Job(
            model_id=model_id,
            series=tuple(series),
            pred_len=req.pred_len,
            sampling=req.sampling,
            quantiles=tuple(sorted(req.quantiles)),
        )
        try:
            res = await self.forecaster.options(multiplexed_model_id=model_id).forecast.remote(job)
        except Exception as e:  # replica died, timeout, ...: a clear 500, never a hang
            log.exception("forecaster call failed")
            return error(500, f"forecaster unavailable: {type(e).__name__}: {e}")
        if isinstance(res, JobError):
            if res.status == 422:
                raise RequestValidationError([RequestError(("body", "series"), res.message).detail()])
            return error(res.status, res.message)
        if not (np.isfinite(res.mean).all() and np.isfinite(res.close_quantiles).all()):
            return error(500, "the model produced non-finite values; check the input's magnitudes and scale")
        body = {
            "model": self._model_info(model_id, res.identity),
            "pred_len": req.pred_len,
            "sampling": jsonable_encoder(req.sampling),
            "quantile_levels": list(res.quantile_levels),
            "forecasts": [
                series_forecast(
                    res.symbols[i],
                    res.future_timestamps[i],
                    res.mean[i],
                    res.quantile_levels,
                    res.close_quantiles[i],
                    res.p_up[i],
                    res.p_flat[i],
                    res.flags[i],
                    res.last_close[i],
                )
                for i in range(len(res.symbols))
            ],
        }
        return JSONResponse(content=body, headers={"x-kronos-batch-requests": str(res.batch_requests)})

    @fastapi_app.get("/v1/models", response_model=ModelsResponse)
    async def models(self) -> dict:
        """The model ids a request can choose (`model` field or `serve_multiplexed_model_id` header)."""
        return {
            "default": self.config.default_model,
            "models": [self._model_info(m) for m in self.config.models],
        }

    @fastapi_app.get("/healthz", response_model=HealthResponse)
    async def healthz(self) -> dict:
        return {"status": "ok", "models": sorted(self.config.models)}

    @fastapi_app.get("/v1/stats")
    async def stats(self) -> dict:
        """Counters and the live batching settings of one Forecaster replica."""
        return await self.forecaster.stats.remote()

    # ------------------------------------------------------------------------------- forecast explorer

    @fastapi_app.get("/", include_in_schema=False)
    async def page(self):
        """The forecast explorer (``serving/ui/index.html``); ``/ui`` is an alias."""
        return FileResponse(_UI / "index.html", media_type="text/html")

    @fastapi_app.get("/ui", include_in_schema=False)
    async def page_alias(self):
        return FileResponse(_UI / "index.html", media_type="text/html")

    @fastapi_app.get("/ui/static/{name}", include_in_schema=False)
    async def static(self, name: str):
        if name not in _STATIC:  # a fixed list: no path from the client reaches the file system
            raise StarletteHTTPException(404, f"no static file {name!r}")
        return FileResponse(_UI / name, media_type=_STATIC[name])

    async def _store(self, fn):
        """A store read off the event loop (PyIceberg and parquet reads block); errors in the one shape."""
        if self.explorer is None:
            return error(404, NOT_CONFIGURED)
        try:
            return await asyncio.to_thread(fn)
        except ExplorerError as e:
            return error(e.status, e.message, e.detail())
        except Exception as e:
            log.exception("explorer store read failed")
            return error(500, f"reading the store failed ({type(e).__name__}: {e})")

    @fastapi_app.get("/ui/api/settings")
    async def ui_settings(self) -> dict:
        """What the explorer page needs to build its forms: limits, defaults, whether a store is set."""
        from kronos_core import SamplingParams, defaults

        return {
            "store": self.explorer.describe() if self.explorer else None,
            "message": "" if self.explorer else NOT_CONFIGURED,
            "limits": self.limits.model_dump(),
            "defaults": {
                "model": self.config.default_model,
                "pred_len": min(defaults.PRED_LEN, self.limits.max_pred_len),
                "sample_count": min(SamplingParams().sample_count, self.limits.max_sample_count),
                "lookback": min(defaults.LOOKBACK, self.limits.max_rows),
                "calendar": defaults.CALENDAR,
            },
        }

    @fastapi_app.get("/ui/api/partitions", responses=_UI_ERRORS)
    async def ui_partitions(self):
        """The (as_of, model) partitions of the store's forecasts table, newest as_of first."""
        return await self._store(lambda: {"partitions": self.explorer.partitions()})

    @fastapi_app.get("/ui/api/symbols", responses=_UI_ERRORS)
    async def ui_symbols(self, as_of: str, model: str):
        """The symbols of one partition, with their p_up; 404 when the partition does not exist."""
        return await self._store(lambda: {"symbols": self.explorer.symbols(as_of, model)})

    @fastapi_app.get("/ui/api/forecast", responses=_UI_ERRORS)
    async def ui_forecast(self, as_of: str, model: str, symbol: str):
        """One symbol of one partition: ``history`` (bars up to as_of from the job's input), ``forecast``
        (the /v1/forecast ``SeriesForecast`` shape plus ``quantile_levels``), ``lineage``, ``scorecard``
        (the model's mean metrics over matured cutoffs); 404 for an unknown partition or symbol."""
        return await self._store(lambda: self.explorer.view(as_of, model, symbol))

    @fastapi_app.post("/ui/api/csv", responses=_ERRORS)
    async def ui_csv(self, req: CsvRequest):
        """A CSV of bars (Yahoo/yfinance or our columns, any case) as one /v1/forecast series and the
        frequency read off its stamps; 422 at ``body.csv`` when it cannot be read. The values are not
        checked here: ``POST /v1/forecast`` does, at the field."""
        try:
            return parse_csv(req.csv, req.symbol)
        except ExplorerError as e:
            raise RequestValidationError(e.detail()) from None


def build_app(args: dict | None = None):
    """Serve application builder (``import_path: serving.app:build_app``); ``args`` is a ``ServingConfig``."""
    cfg = ServingConfig(**(args or {}))
    # batching lives only in user_config: changing it reconfigures replicas instead of restarting them
    init = cfg.model_dump(mode="json", exclude={"batching"})
    fc_init = cfg.model_dump(mode="json", exclude={"batching", "explorer"})  # the explorer is the Ingress's
    forecaster = Forecaster.options(user_config=cfg.batching.model_dump()).bind(fc_init)
    return Ingress.bind(forecaster, init)
