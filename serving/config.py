"""Serving configuration, the one source of the service's defaults: which models, request limits,
batching, and the Serve deployment options. ``serving/serve_config.yaml`` is generated from this module
(``python -m serving.deploy --write-config``; a test keeps them equal). Nothing is read from the environment.

Pydantic, because it arrives from a Serve config file (``args:`` / ``user_config:``) or the ``kronos-serve``
CLI; each model id is a ``kronos_core.PredictorSpec`` plus a description.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kronos_core import PredictorSpec, defaults
from kronos_core.demo import DEMO_NOTE
from kronos_core.rules import DEFAULT_MAX_GAP_FRACTION

__all__ = [
    "BatchConfig",
    "ExplorerConfig",
    "Limits",
    "ModelSpec",
    "ServingConfig",
    "DEFAULT_MODELS",
    "DEPLOYMENT_OPTIONS",
    "parse_model_arg",
]


@dataclass(frozen=True)
class ModelSpec(PredictorSpec):
    """One model id: a ``kronos_core.PredictorSpec`` (refs, revisions, device, dtype, context, cache) and a
    description shown by ``GET /v1/models``."""

    description: str = field(default="", metadata={"description": "shown by GET /v1/models"})


DEFAULT_MODELS: dict[str, ModelSpec] = {
    "demo": ModelSpec(model="demo", tokenizer="demo", description=DEMO_NOTE),
    "test": ModelSpec(
        model="random:test", tokenizer="random:test", description="tiny random model, for tests"
    ),
    "mini": ModelSpec(
        model="random:mini", tokenizer="random:mini", description="Kronos-mini architecture, random weights"
    ),
    "small": ModelSpec(
        model="random:small",
        tokenizer="random:small",
        description="Kronos-small architecture, random weights",
    ),
}


class Limits(BaseModel):
    """Request limits and checks; each breach is a 422 naming the field (413 for the body size)."""

    model_config = ConfigDict(extra="forbid")

    max_series: int = Field(default=64, ge=1, description="series per request")
    max_rows: int = Field(default=2048, ge=1, description="observed rows per series")
    min_pred_len: int = Field(default=1, ge=1)
    max_pred_len: int = Field(default=256, ge=1)
    max_sample_count: int = Field(default=64, ge=1)
    max_quantiles: int = Field(default=19, ge=0)
    max_body_mb: float = Field(
        default=64, gt=0, description="request bodies above this get 413 before parsing"
    )
    max_price_ratio: float | None = Field(
        default=defaults.MAX_PRICE_RATIO, gt=1, description="price_jump check (kronos_core.rules); null = off"
    )
    max_gap_fraction: float = Field(
        default=DEFAULT_MAX_GAP_FRACTION,
        ge=0,
        le=1,
        description="when future timestamps are generated from a calendar: the share "
        "of the calendar's bars a series may miss",
    )

    @model_validator(mode="after")
    def _check(self) -> Limits:
        if self.min_pred_len > self.max_pred_len:
            raise ValueError(f"min_pred_len ({self.min_pred_len}) > max_pred_len ({self.max_pred_len})")
        return self


class BatchConfig(BaseModel):
    """The Forecaster's ``user_config``: changed with ``serve deploy`` / ``serve.run`` without restarting
    replicas (Serve calls ``reconfigure``)."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(default=32, ge=1, description="requests per batch; 1 turns batching off")
    batch_wait_timeout_s: float = Field(default=0.01, ge=0.0, le=10.0)


class ExplorerConfig(BaseModel):
    """Where the forecast explorer (``GET /``) reads: the batch job's output warehouse (Iceberg tables
    ``forecasts`` and ``scorecard``) and, for the history drawn before each forecast, its market input.
    ``catalog`` and ``storage`` are ``pipeline.config.CatalogConfig`` / ``StorageConfig`` as dicts (the job
    config's ``output.catalog`` and ``storage``), checked against them here; ``pipeline`` is imported only
    when an explorer is configured."""

    model_config = ConfigDict(extra="forbid")

    output_url: str = Field(description="the job's output.url: the Iceberg warehouse (local folder or s3://)")
    catalog: dict[str, Any] = Field(
        default_factory=dict,
        description="the job's output.catalog (name, namespace, properties); empty = SQLite beside "
        "the tables",
    )
    storage: dict[str, Any] = Field(
        default_factory=dict,
        description="the job's storage settings for s3:// URLs (endpoint_url, region, ...)",
    )
    input_url: str | None = Field(
        default=None, description="the job's input.url (hive-partitioned parquet); None = no history drawn"
    )
    input_layout: Literal["date", "symbol"] = Field(default="date", description="the job's input.layout")
    history_bars: int = Field(default=120, ge=1, le=5000, description="bars of history drawn before as_of")

    @model_validator(mode="after")
    def _check(self) -> ExplorerConfig:
        from pipeline.config import CatalogConfig, StorageConfig

        CatalogConfig.model_validate(self.catalog)
        StorageConfig.model_validate(self.storage)
        return self


class ServingConfig(BaseModel):
    """Everything ``build_app`` needs (the ``args:`` of the Serve config)."""

    model_config = ConfigDict(extra="forbid")

    models: dict[str, ModelSpec] = Field(default_factory=lambda: dict(DEFAULT_MODELS))
    default_model: str = Field(default="demo", description="model id used when a request names none")
    torch_threads: int | None = Field(
        default=1,
        ge=1,
        description="torch.set_num_threads in each replica (one per replica CPU: ray_actor_options.num_cpus)",
    )
    max_models_per_replica: int = Field(
        default=3,
        ge=1,
        description="loaded models kept per Forecaster replica "
        "(LRU); each costs its weights in memory (mini ~20 MB, base ~400 MB)",
    )
    thread_min_work: int = Field(
        default=1_000_000,
        ge=0,
        description="forecast calls with at least this much work (sum over series of "
        "sample_count x pred_len x (lookback + pred_len)) run in a worker thread, so a huge request cannot "
        "block the replica's event loop for long; smaller calls run on the loop. Why: measured on 2 CPUs "
        "(Kronos-small, 32 clients), with every call in a thread the Python-heavy generation loop starved "
        "request intake (GIL): batches averaged 1.3 requests and batching gained 1.2x; inline, batches "
        "averaged 16 and batching gained 3.6x. 0 = always a thread",
    )
    limits: Limits = Field(default_factory=Limits)
    batching: BatchConfig = Field(default_factory=BatchConfig)
    explorer: ExplorerConfig | None = Field(
        default=None,
        description="the forecast explorer's store (GET /); None = the page offers only the CSV form",
    )

    @model_validator(mode="after")
    def _check(self) -> ServingConfig:
        if not self.models:
            raise ValueError("models is empty; give at least one model id")
        if self.default_model not in self.models:
            raise ValueError(
                f"default_model {self.default_model!r} is not one of the models {sorted(self.models)}"
            )
        return self


# Serve deployment options: the @serve.deployment decorators use them, and serve_config.yaml is generated
# from them. max_ongoing_requests of the Forecaster must be >= max_batch_size.
DEPLOYMENT_OPTIONS: dict[str, dict] = {
    "Ingress": {
        "max_ongoing_requests": 256,
        "ray_actor_options": {"num_cpus": 0.5},
        "autoscaling_config": {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 64},
    },
    "Forecaster": {
        "max_ongoing_requests": 64,
        "ray_actor_options": {"num_cpus": 1, "num_gpus": 0},
        "autoscaling_config": {
            "min_replicas": 1,
            "max_replicas": 4,
            "target_ongoing_requests": 32,
            "upscale_delay_s": 10,
            "downscale_delay_s": 120,
        },
    },
}


def parse_model_arg(text: str) -> tuple[str, ModelSpec]:
    """``id=model_ref[,tokenizer_ref]`` (CLI ``--model``); the tokenizer defaults to the model ref."""
    if "=" not in text:
        raise ValueError(f"--model {text!r}: use id=model_ref[,tokenizer_ref], e.g. mini=random:mini")
    mid, refs = text.split("=", 1)
    parts = refs.split(",")
    if not mid or not parts[0] or len(parts) > 2:
        raise ValueError(f"--model {text!r}: use id=model_ref[,tokenizer_ref]")
    return mid, ModelSpec(model=parts[0], tokenizer=parts[1] if len(parts) == 2 else parts[0])
