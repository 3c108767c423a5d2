"""Serving configuration: which models, request limits, batching. Pydantic, because it arrives from a
Serve config file (``args:`` / ``user_config:``), environment variables or the ``kronos-serve`` CLI."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["BatchConfig", "Limits", "ModelSpec", "ServingConfig", "DEFAULT_MODELS", "parse_model_arg"]


class ModelSpec(BaseModel):
    """One model id: refs accepted by ``KronosPredictor.from_pretrained`` (``random:<size>``, a local
    directory or a hub id) and optional predictor settings."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="model ref: random:<size>, a local directory or a hub id")
    tokenizer: str = Field(description="tokenizer ref, same forms as model")
    model_revision: str | None = None
    tokenizer_revision: str | None = None
    max_context: int | None = Field(default=None, ge=1, description="None: the size's default")
    cache: str = "exact"
    description: str = ""


DEFAULT_MODELS: dict[str, ModelSpec] = {
    "test": ModelSpec(model="random:test", tokenizer="random:test", description="tiny random model, for tests"),
    "mini": ModelSpec(model="random:mini", tokenizer="random:mini", description="Kronos-mini architecture, random weights"),
    "small": ModelSpec(model="random:small", tokenizer="random:small",
                       description="Kronos-small architecture, random weights"),
}


class Limits(BaseModel):
    """Request limits; each breach is a 422 naming the field. Env: ``KRONOS_SERVE_MAX_SERIES`` etc."""

    model_config = ConfigDict(extra="forbid")

    max_series: int = Field(default=64, ge=1, description="series per request")
    max_rows: int = Field(default=2048, ge=1, description="observed rows per series")
    min_pred_len: int = Field(default=1, ge=1)
    max_pred_len: int = Field(default=256, ge=1)
    max_sample_count: int = Field(default=64, ge=1)
    max_quantiles: int = Field(default=19, ge=0)
    max_abs_value: float = Field(default=1e15, gt=0, description="|price|, volume and amount above this: 422 "
                                 "(beyond it float32 normalisation overflows)")

    @model_validator(mode="after")
    def _check(self) -> Limits:
        if self.min_pred_len > self.max_pred_len:
            raise ValueError(f"min_pred_len ({self.min_pred_len}) > max_pred_len ({self.max_pred_len})")
        return self

    @classmethod
    def from_env(cls, base: dict | None = None, environ=os.environ) -> Limits:
        values = dict(base or {})
        for name in cls.model_fields:
            env = f"KRONOS_SERVE_{name.upper()}"
            if env in environ:
                values[name] = float(environ[env]) if name == "max_abs_value" else int(environ[env])
        return cls(**values)


class BatchConfig(BaseModel):
    """The Forecaster's ``user_config``: changed with ``serve deploy`` / ``serve.run`` without restarting
    replicas (Serve calls ``reconfigure``)."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(default=16, ge=1, description="requests per batch; 1 turns batching off")
    batch_wait_timeout_s: float = Field(default=0.01, ge=0.0, le=10.0)


class ServingConfig(BaseModel):
    """Everything ``build_app`` needs (the ``args:`` of the Serve config)."""

    model_config = ConfigDict(extra="forbid")

    models: dict[str, ModelSpec] = Field(default_factory=lambda: dict(DEFAULT_MODELS))
    default_model: str = "test"
    device: str = Field(default="auto", description="'auto' (cuda if available), 'cpu', 'cuda', 'cuda:N'")
    dtype: str = "float32"
    torch_threads: int | None = Field(default=None, ge=1, description="torch.set_num_threads in each replica")
    max_models_per_replica: int = Field(default=3, ge=1)
    predictor_batch_size: int = Field(default=64, ge=1, description="series per model call inside a batch")
    thread_min_work: int = Field(
        default=1_000_000, ge=0, description="forecast calls with at least this much work (sum over series of "
        "sample_count x pred_len x (lookback + pred_len)) run in a worker thread, so a huge request cannot "
        "block the replica's event loop for long; smaller calls run on the loop. Why: measured on 2 CPUs "
        "(Kronos-small, 32 clients), with every call in a thread the Python-heavy generation loop starved "
        "request intake (GIL): batches averaged 1.3 requests and batching gained 1.2x; inline, batches "
        "averaged 16 and batching gained 3.6x. 0 = always a thread")
    limits: Limits = Field(default_factory=Limits)
    batching: BatchConfig = Field(default_factory=BatchConfig)

    @model_validator(mode="after")
    def _check(self) -> ServingConfig:
        if not self.models:
            raise ValueError("models is empty; give at least one model id")
        if self.default_model not in self.models:
            raise ValueError(f"default_model {self.default_model!r} is not one of the models {sorted(self.models)}")
        return self


def parse_model_arg(text: str) -> tuple[str, ModelSpec]:
    """``id=model_ref[,tokenizer_ref]`` (CLI ``--model``); the tokenizer defaults to the model ref."""
    if "=" not in text:
        raise ValueError(f"--model {text!r}: use id=model_ref[,tokenizer_ref], e.g. mini=random:mini")
    mid, refs = text.split("=", 1)
    parts = refs.split(",")
    if not mid or not parts[0] or len(parts) > 2:
        raise ValueError(f"--model {text!r}: use id=model_ref[,tokenizer_ref]")
    return mid, ModelSpec(model=parts[0], tokenizer=parts[1] if len(parts) == 2 else parts[0])
