"""The Serve application: an HTTP ingress (FastAPI) in front of a multiplexed, batching Forecaster.

    client ──HTTP──▶ Ingress (validate → 422; pick model id)
                        │ handle.options(multiplexed_model_id=id).forecast.remote(job)
                        ▼
                     Forecaster replica (models loaded on demand, LRU; @serve.batch across requests)
                        │ group by (model, pred_len, sampling, quantiles) → KronosPredictor.forecast
                        ▼
                     JobResult / JobError ──▶ Ingress builds the JSON response

``build_app(args)`` is the application builder named in ``serving/serve_config.yaml``.
"""

# no `from __future__ import annotations` here: FastAPI must see real types on the ingress methods

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from kronos_core import KronosPredictor

from .batching import Job, JobError, JobResult, call_work, plan_calls, run_call
from .config import BatchConfig, Limits, ServingConfig
from .schemas import (
    ForecastRequest,
    ForecastResponse,
    HealthResponse,
    ModelsResponse,
    RequestError,
    request_to_series,
    sampling_params,
    series_forecast,
)

__all__ = ["Forecaster", "Ingress", "build_app", "fastapi_app"]

log = logging.getLogger(__name__)

# Fixed when the class is defined (a Serve decorator argument): set it via the Serve config's
# runtime_env env_vars. Each loaded model costs its weights in memory (mini ~20 MB, base ~400 MB).
MAX_MODELS_PER_REPLICA = int(os.environ.get("KRONOS_SERVE_MAX_MODELS_PER_REPLICA", "3"))
_BATCH = BatchConfig()


@serve.deployment(name="Forecaster", max_ongoing_requests=64, user_config=_BATCH.model_dump(),
                  ray_actor_options={"num_cpus": 1, "num_gpus": 0})
class Forecaster:
    """Holds up to ``MAX_MODELS_PER_REPLICA`` predictors and batches jobs across concurrent requests."""

    def __init__(self, config: dict):
        import torch

        self.config = ServingConfig(**config)
        if self.config.torch_threads:
            torch.set_num_threads(self.config.torch_threads)
        dev = self.config.device
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if dev == "auto" else dev
        # one worker: model loads and large forecasts never overlap on a replica
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kronos-forecast")
        self._stats = {"batches": 0, "jobs": 0, "forecast_calls": 0, "max_batch_seen": 0, "errors": 0}
        self._batch = _BATCH

    def reconfigure(self, user_config: dict) -> None:
        """Serve calls this on deploy and on every ``user_config`` change, without a restart."""
        self._batch = BatchConfig(**(user_config or {}))
        self._run_batch.set_max_batch_size(self._batch.max_batch_size)
        self._run_batch.set_batch_wait_timeout_s(self._batch.batch_wait_timeout_s)
        log.info("batching: max_batch_size=%d batch_wait_timeout_s=%.4f", self._batch.max_batch_size,
                 self._batch.batch_wait_timeout_s)

    @serve.multiplexed(max_num_models_per_replica=MAX_MODELS_PER_REPLICA)
    async def get_predictor(self, model_id: str) -> KronosPredictor:
        spec = self.config.models[model_id]  # the ingress only sends known ids
        t0 = time.perf_counter()
        pred = await asyncio.get_running_loop().run_in_executor(self._pool, lambda: KronosPredictor.from_pretrained(
            spec.model, spec.tokenizer, device=self.device, dtype=self.config.dtype,
            model_revision=spec.model_revision, tokenizer_revision=spec.tokenizer_revision,
            max_context=spec.max_context, cache=spec.cache, batch_size=self.config.predictor_batch_size))
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
            return [JobError(500, f"model {model_id!r} could not be loaded: {type(e).__name__}: {e}")] * len(jobs)
        self._stats["forecast_calls"] += 1
        try:
            if call_work(jobs) < self.config.thread_min_work:  # see ServingConfig.thread_min_work
                return run_call(pred, jobs, pred.serve_identity)
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, run_call, pred, jobs, pred.serve_identity)
        except (ValueError, TypeError) as e:  # input the ingress let through but the model rejects
            return [JobError(422, str(e))] * len(jobs)
        except Exception as e:
            log.exception("forecast with model %r failed", model_id)
            return [JobError(500, f"forecast failed ({type(e).__name__}: {e})")] * len(jobs)

    async def stats(self) -> dict:
        return {**self._stats, **self._batch.model_dump(), "device": self.device, "pid": os.getpid()}


fastapi_app = FastAPI(
    title="Kronos forecast service",
    version="0.1.0",
    description="On-demand OHLCV forecasts with Kronos foundation models: several models behind one endpoint "
                "(Ray Serve multiplexing), cross-request dynamic batching. Same seed and symbol give the same "
                "numbers as `KronosPredictor.forecast`.",
)


def _clean(errors) -> list[dict]:
    # never echo the client's input back (it can be large, or hold NaN that JSON cannot carry)
    return [{k: v for k, v in e.items() if k not in ("input", "ctx", "url")} for e in errors]


@fastapi_app.exception_handler(RequestValidationError)
async def _on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = jsonable_encoder(_clean(exc.errors()))
    message = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg', '')}" for d in detail)
    return JSONResponse(status_code=422, content={"detail": detail, "message": message})


# env only (the middleware runs before the Ingress instance and its args): KRONOS_SERVE_MAX_BODY_MB
_BODY_LIMIT = float(os.environ.get("KRONOS_SERVE_MAX_BODY_MB", "64")) * 2**20


@fastapi_app.middleware("http")
async def _limit_body(request: Request, call_next):
    # refuse oversized bodies before FastAPI reads and parses them (chunked bodies: only the row limits apply)
    size = request.headers.get("content-length")
    if size is not None and size.isdigit() and int(size) > _BODY_LIMIT:
        return JSONResponse(status_code=413, content={
            "message": f"request body of {int(size)} bytes is over the {_BODY_LIMIT / 2**20:g} MiB limit; "
                       "send fewer series or rows per request"})
    return await call_next(request)


@serve.deployment(name="Ingress", max_ongoing_requests=256, ray_actor_options={"num_cpus": 0.5})
@serve.ingress(fastapi_app)
class Ingress:
    def __init__(self, forecaster: DeploymentHandle, config: dict):
        self.forecaster = forecaster
        self.config = ServingConfig(**config)
        self.limits = Limits.from_env(self.config.limits.model_dump())

    def _model_info(self, model_id: str, identity: dict | None = None) -> dict:
        spec = self.config.models[model_id]
        return {"id": model_id, "model": spec.model, "tokenizer": spec.tokenizer, "description": spec.description,
                "identity": identity}

    @fastapi_app.post("/v1/forecast", response_model=ForecastResponse,
                      responses={422: {"description": "invalid request: `message` names the field and the problem"},
                                 500: {"description": "the model failed; the message says how"}})
    async def forecast(self, req: ForecastRequest, request: Request):
        """Forecast one or many series. The model comes from `model`, else the `serve_multiplexed_model_id`
        header, else the default."""
        model_id = req.model or request.headers.get("serve_multiplexed_model_id") or self.config.default_model
        try:
            if model_id not in self.config.models:
                raise RequestError(("body", "model"), f"unknown model {model_id!r}; "
                                   f"choose one of {sorted(self.config.models)} (GET /v1/models)")
            series = request_to_series(req, self.limits)
        except RequestError as e:
            raise RequestValidationError([e.detail()]) from None
        job = Job(model_id=model_id, series=tuple(series), pred_len=req.pred_len, sampling=sampling_params(req),
                  quantiles=tuple(sorted(req.quantiles)))
        try:
            res = await self.forecaster.options(multiplexed_model_id=model_id).forecast.remote(job)
        except Exception as e:  # replica died, timeout, ...: a clear 500, never a hang
            log.exception("forecaster call failed")
            return JSONResponse(status_code=500, content={"message": f"forecaster unavailable: {type(e).__name__}: {e}"})
        if isinstance(res, JobError):
            if res.status == 422:
                return JSONResponse(status_code=422, content={
                    "detail": [{"loc": ["body", "series"], "msg": res.message, "type": "value_error"}],
                    "message": f"body.series: {res.message}"})
            return JSONResponse(status_code=res.status, content={"message": res.message})
        if not (np.isfinite(res.mean).all() and np.isfinite(res.close_quantiles).all()):
            return JSONResponse(status_code=500, content={
                "message": "the model produced non-finite values; check the input's magnitudes and scale"})
        body = {
            "model": self._model_info(model_id, res.identity),
            "pred_len": req.pred_len, "seed": req.seed, "sampling": req.sampling.model_dump(),
            "quantile_levels": list(res.quantile_levels),
            "forecasts": [series_forecast(res.keys[i], res.future_timestamps[i], res.mean[i], res.quantile_levels,
                                          res.close_quantiles[i], res.p_up[i], res.last_close[i])
                          for i in range(len(res.keys))],
        }
        return JSONResponse(content=body, headers={"x-kronos-batch-requests": str(res.batch_requests)})

    @fastapi_app.get("/v1/models", response_model=ModelsResponse)
    async def models(self) -> dict:
        """The model ids a request can choose (`model` field or `serve_multiplexed_model_id` header)."""
        return {"default": self.config.default_model, "models": [self._model_info(m) for m in self.config.models]}

    @fastapi_app.get("/healthz", response_model=HealthResponse)
    async def healthz(self) -> dict:
        return {"status": "ok", "models": sorted(self.config.models)}

    @fastapi_app.get("/v1/stats")
    async def stats(self) -> dict:
        """Counters and the live batching settings of one Forecaster replica."""
        return await self.forecaster.stats.remote()


def build_app(args: dict | None = None):
    """Serve application builder (``import_path: serving.app:build_app``); ``args`` is a ``ServingConfig``."""
    cfg = ServingConfig(**(args or {}))
    # batching lives only in user_config: changing it reconfigures replicas instead of restarting them
    init = cfg.model_dump(exclude={"batching"})
    forecaster = Forecaster.options(user_config=cfg.batching.model_dump()).bind(init)
    return Ingress.bind(forecaster, init)
