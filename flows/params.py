"""Flow parameters: one pydantic model per flow, so the Prefect UI renders a validated form for a custom run.

``JobSettings`` holds what every flow's forecast job needs (market, layout, universe, lookback, pred_len,
quantiles, model, sampling, calendar, validation, compute, storage, catalog, the registry pointer); the job's
settings groups are embedded as they are (``model``: ``kronos_core.PredictorSpec``, ``sampling``:
``kronos_core.SamplingParams``, ``calendar``: ``kronos_core.MarketCalendar``, ``compute`` and ``validation``
from ``pipeline.config``), so every check and default exists once. ``NightlyParams`` adds the nightly-only
fields (as_of, chart_assets, score_matured). ``BacktestParams`` and ``FinetuneParams`` inherit
``JobSettings`` flattened rather than nesting a ``job`` object: each form then shows exactly the fields that
flow reads, at the top level, instead of a nested nightly form whose as_of, chart_assets and score_matured a
backtest ignores or sets per cutoff (and a parameter is ``pred_len``, not ``job.pred_len``, in the UI, the
API and the code alike).

The bounds the code enforces are in the JSON schema Prefect stores for a deployment (pydantic ``ge``/``le``,
the quantile rule's ``quantile_levels_schema``, the bounds and choices of the kronos_core dataclasses), so
the UI's form and the API refuse a bad value before a run exists.

No secret is ever a parameter (parameters are stored with each run and shown in the UI): ``storage`` names
a Prefect Secret block or environment variables, read on the worker when the run needs the store
(``StorageParams.resolved``). No environment variable is read here: a deployment passes its URLs explicitly.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from kronos_core import MarketCalendar, PredictorSpec, SamplingParams, defaults
from kronos_core.rules import check_quantile_levels, quantile_levels_schema
from pipeline.config import CatalogConfig, ComputeConfig, StorageAccess, StorageConfig, ValidationConfig
from pipeline.tables import Warehouse
from training.config import CheckpointSpec, StageSpec, WindowSpec
from training.config import ComputeSpec as TrainCompute

__all__ = [
    "StorageParams",
    "JobSettings",
    "NightlyParams",
    "BacktestParams",
    "FinetuneParams",
    "DEMO_INPUT_URL",
    "DEMO_OUTPUT_URL",
    "DEMO_REGISTRY",
    "MIN_QUANTILE_LEVELS",
]

DEMO_INPUT_URL = "./demo_data/market"
DEMO_OUTPUT_URL = "./demo_data/output"
DEMO_REGISTRY = "./demo_data/models/kronos-demo"
# the flows score CRPS and coverage and draw bands from the quantile columns: at least one level
MIN_QUANTILE_LEVELS = 1


class StorageParams(StorageAccess):
    """Object-store access for a flow run: endpoint, region and retries as in the job's ``storage``, and the
    credentials by reference only, resolved on the worker into the pipeline's ``StorageConfig``.

    ``resolved()`` has the contract of ``StorageConfig.resolved()`` (the pipeline's storage functions call it
    first), so these parameters go wherever a ``StorageConfig`` does; the Secret block is read once per run.
    """

    credentials_block: str | None = Field(
        None,
        min_length=1,
        description='Name of a Prefect Secret block holding the JSON {"key": <access key id>, "secret": '
        "<secret access key>}; empty = the environment variables below",
    )
    key_env: str = Field(
        "AWS_ACCESS_KEY_ID",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable on the worker holding the access key id (no block named)",
    )
    secret_env: str = Field(
        "AWS_SECRET_ACCESS_KEY",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable on the worker holding the secret access key (no block named)",
    )
    _credentials: tuple[str | None, str | None] | None = PrivateAttr(None)

    def resolved(self) -> StorageConfig:
        """The pipeline's ``StorageConfig`` with the credentials read here (the worker); anything still
        unset falls back to the standard ``AWS_*`` variables as in the job."""
        if self._credentials is None:
            self._credentials = self._read_credentials()
        key, secret = self._credentials
        access = self.model_dump(include=set(StorageAccess.model_fields))
        return StorageConfig(**access, key=key, secret=secret).resolved()

    def _read_credentials(self) -> tuple[str | None, str | None]:
        if not self.credentials_block:
            return os.environ.get(self.key_env) or None, os.environ.get(self.secret_env) or None
        from prefect.blocks.system import Secret

        name = self.credentials_block
        value = Secret.load(name).get()
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                value = None
        if not isinstance(value, dict) or not {"key", "secret"} <= set(value):
            shape = sorted(value) if isinstance(value, dict) else type(value).__name__
            raise ValueError(  # never the value itself: it may be the secret
                f"storage.credentials_block: Secret block {name!r} must hold the JSON "
                f'{{"key": "<access key id>", "secret": "<secret access key>"}}; it holds {shape}'
            )
        return str(value["key"]), str(value["secret"])


class JobSettings(BaseModel):
    """The forecast job's settings, shared by every flow's form (the base of the flows' parameters)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    input_url: str = Field(
        DEMO_INPUT_URL, description="Hive-partitioned parquet market (local path or s3://...)"
    )
    output_url: str = Field(
        DEMO_OUTPUT_URL,
        description="Iceberg warehouse of the forecasts, rejected and scorecard tables; charts/ beside them",
    )
    input_layout: Literal["date", "symbol"] = Field(
        "date",
        description="'date' = <input>/date=YYYY-MM-DD/ (vendor delivery), 'symbol' = <input>/symbol=X/",
    )
    universe: list[str] | None = Field(
        None, description="Symbols to forecast; empty = every symbol in the input"
    )
    lookback: int = Field(defaults.LOOKBACK, ge=8, le=4096, description="Bars of history per asset")
    pred_len: int = Field(defaults.PRED_LEN, ge=1, le=512, description="Bars to forecast after the cutoff")
    quantiles: list[float] = Field(
        list(defaults.QUANTILES),
        description="Close quantile levels in (0, 1), each once",
        json_schema_extra=quantile_levels_schema(MIN_QUANTILE_LEVELS),
    )
    model: PredictorSpec = Field(
        default_factory=PredictorSpec,
        description="Model, tokenizer, revisions, device, dtype, context and cache mode",
    )
    sampling: SamplingParams = Field(default_factory=SamplingParams, description="How sample paths are drawn")
    calendar: MarketCalendar = Field(
        default_factory=MarketCalendar,
        description="Market calendar and bar frequency (also resolves the default cutoff)",
    )
    validation: ValidationConfig = Field(
        default_factory=ValidationConfig,
        description="Per-asset checks; failing assets land in the rejected table",
    )
    compute: ComputeConfig = Field(
        default_factory=ComputeConfig, description="Ray cluster, actors, CPUs and GPUs"
    )
    storage: StorageParams = Field(
        default_factory=StorageParams,
        description="s3:// access: endpoint, region, and where the worker finds the keys (a Prefect Secret "
        "block, else environment variables); never the keys themselves",
    )
    catalog: CatalogConfig = Field(
        default_factory=CatalogConfig,
        description="Iceberg catalog of the output tables; no properties = SQLite beside a local warehouse",
    )
    min_fresh_share: float = Field(
        0.5, ge=0, le=1, description="Fail fast unless this share of the universe has a bar on the cutoff"
    )
    model_pointer: str | None = Field(
        None,
        description="A model registry entry (<root>/<name>, local or s3://): forecast with the model its "
        "'current' pointer names (the finetune flow promotes into it); until one is promoted, `model`",
    )

    @field_validator("quantiles")
    @classmethod
    def _levels(cls, v: list[float]) -> list[float]:
        return list(check_quantile_levels(v, min_levels=MIN_QUANTILE_LEVELS))

    @field_validator("universe")
    @classmethod
    def _universe(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        v = [s.strip() for s in v if s and s.strip()]
        return sorted(set(v)) or None

    def warehouse(self) -> Warehouse:
        """Where the job's tables are (``output_url``, ``catalog``, ``storage`` resolved on this worker)."""
        return Warehouse(self.output_url, self.catalog, self.storage.resolved())

    def job_settings(self) -> dict[str, Any]:
        """This form's ``JobSettings`` fields as they are (no copy, no re-validation): another flow's
        parameters built from them share this run's resolved storage."""
        return {k: getattr(self, k) for k in JobSettings.model_fields}


class NightlyParams(JobSettings):
    """Nightly universe forecast: read the market up to ``as_of``, forecast every asset, write a partition."""

    as_of: dt.date | None = Field(
        None, description="Cutoff session; empty = the calendar's last completed session"
    )
    score_matured: bool = Field(True, description="Also score earlier forecasts that have matured since")
    chart_assets: int = Field(4, ge=0, le=12, description="Assets drawn in the fan chart artifact")


class BacktestParams(JobSettings):
    """Walk-forward backtest: the forecast job at each cutoff (point in time), scored against the realised
    bars."""

    cutoffs: list[dt.date] | None = Field(
        None, description="Cutoff sessions; empty = the last `n_cutoffs` that have matured"
    )
    n_cutoffs: int = Field(3, ge=1, le=250, description="How many cutoffs when `cutoffs` is empty")
    every: int = Field(5, ge=1, description="Sessions between automatic cutoffs")
    compare: list[PredictorSpec] = Field(
        default_factory=list,
        max_length=8,
        description="Other models backtested on the same cutoffs with the same settings (e.g. random:mini "
        "beside `model`); the scorecard has one set of rows per model",
    )

    @model_validator(mode="after")
    def _sorted(self) -> BacktestParams:
        if self.cutoffs:
            self.cutoffs = sorted(set(self.cutoffs))
        seen = [_model_key(self.model)]
        for i, spec in enumerate(self.compare):
            if _model_key(spec) in seen:
                raise ValueError(
                    f"compare[{i}] ({spec.model}, tokenizer {spec.tokenizer}) repeats `model` or an "
                    "earlier entry; list each model once"
                )
            seen.append(_model_key(spec))
        return self


def _model_key(spec: PredictorSpec) -> tuple:
    return (spec.model, spec.tokenizer, spec.model_revision, spec.tokenizer_revision)


class FinetuneParams(JobSettings):
    """Fine-tune on the latest bars, backtest the candidate against the incumbent on the validation period,
    and promote it into the registry only if its CRPS is better. The job settings are the market, calendar,
    checks and storage, and the incumbent (``model``, or the current pointer of ``registry``); the backtests
    run with them, each in its own warehouse under the candidate's run (``output_url`` is not written)."""

    # the incumbent is what `registry` points to: no separate pointer in this form
    model_pointer: SkipJsonSchema[None] = Field(None, exclude=True)
    registry: str = Field(
        DEMO_REGISTRY,
        description="Registry entry <root>/<name> (local or s3://): candidates are written to "
        "<registry>/runs/<run>/, the winner becomes <registry>/current (the nightly's model_pointer)",
    )
    cutoff: dt.date | None = Field(
        None, description="Last session training may read; empty = the calendar's last completed session"
    )
    val_sessions: int = Field(
        20, ge=2, le=2000, description="Sessions before the cutoff held out for validation and the backtest"
    )
    windows: WindowSpec | None = Field(None, description="Training windows; empty = lookback + pred_len bars")
    tokenizer: StageSpec = Field(
        default_factory=lambda: StageSpec(enabled=False, lr=2e-4, grad_clip=2.0),
        description="Stage 1 (off: fine-tune the predictor only)",
    )
    predictor: StageSpec = Field(default_factory=StageSpec, description="Stage 2, the tokenizer frozen")
    train_compute: TrainCompute = Field(default_factory=TrainCompute, description="Ray Train workers")
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec, description="Training checkpoints")
    seed: int = Field(0, ge=0, description="Training seed")
    n_cutoffs: int = Field(3, ge=1, le=250, description="Backtest cutoffs inside the validation period")
    every: int = Field(2, ge=1, description="Sessions between backtest cutoffs")
    min_crps_gain: float = Field(
        0.0, ge=0, lt=1, description="Promote only if CRPS improves by more than this share (0 = any gain)"
    )

    @model_validator(mode="after")
    def _periods(self) -> FinetuneParams:
        if self.val_sessions <= self.pred_len:
            raise ValueError(
                f"val_sessions ({self.val_sessions}) must exceed pred_len ({self.pred_len}): a "
                "backtest cutoff needs pred_len realised sessions inside the validation period"
            )
        return self
