"""Flow parameters: one pydantic model per flow, so the Prefect UI renders a validated form for a custom run.

The job's settings groups are embedded as they are (``model``: ``kronos_core.PredictorSpec``, ``sampling``:
``kronos_core.SamplingParams``, ``calendar``: ``kronos_core.MarketCalendar``, ``compute``, ``validation``
and ``storage`` from ``pipeline.config``), so a nightly run can set everything a job can and every check and
default exists once. No environment variable is read here: a deployment passes its URLs explicitly.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kronos_core import MarketCalendar, PredictorSpec, SamplingParams, defaults
from kronos_core.rules import check_quantile_levels
from pipeline.config import CatalogConfig, ComputeConfig, StorageConfig, ValidationConfig
from pipeline.tables import Warehouse
from training.config import CheckpointSpec, StageSpec, WindowSpec
from training.config import ComputeSpec as TrainCompute

__all__ = [
    "NightlyParams",
    "BacktestParams",
    "FinetuneParams",
    "DEMO_INPUT_URL",
    "DEMO_OUTPUT_URL",
    "DEMO_REGISTRY",
]

DEMO_INPUT_URL = "./demo_data/market"
DEMO_OUTPUT_URL = "./demo_data/output"
DEMO_REGISTRY = "./demo_data/models/kronos-demo"


class NightlyParams(BaseModel):
    """Nightly universe forecast: read the market up to ``as_of``, forecast every asset, write a partition."""

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
    as_of: dt.date | None = Field(
        None, description="Cutoff session; empty = the calendar's last completed session"
    )
    universe: list[str] | None = Field(
        None, description="Symbols to forecast; empty = every symbol in the input"
    )
    lookback: int = Field(defaults.LOOKBACK, ge=8, le=4096, description="Bars of history per asset")
    pred_len: int = Field(defaults.PRED_LEN, ge=1, le=512, description="Bars to forecast after as_of")
    quantiles: list[float] = Field(list(defaults.QUANTILES), description="Close quantile levels in (0, 1)")
    model: PredictorSpec = Field(
        default_factory=PredictorSpec,
        description="Model, tokenizer, revisions, device, dtype, context and cache mode",
    )
    sampling: SamplingParams = Field(default_factory=SamplingParams, description="How sample paths are drawn")
    calendar: MarketCalendar = Field(
        default_factory=MarketCalendar,
        description="Market calendar and bar frequency (also resolves the default as_of)",
    )
    validation: ValidationConfig = Field(
        default_factory=ValidationConfig,
        description="Per-asset checks; failing assets land in the rejected table",
    )
    compute: ComputeConfig = Field(
        default_factory=ComputeConfig, description="Ray cluster, actors, CPUs and GPUs"
    )
    storage: StorageConfig = Field(
        default_factory=StorageConfig,
        description="s3:// access (endpoint, keys); unset = AWS_* environment variables",
    )
    catalog: CatalogConfig = Field(
        default_factory=CatalogConfig,
        description="Iceberg catalog of the output tables; no properties = SQLite beside a local warehouse",
    )
    min_fresh_share: float = Field(
        0.5, ge=0, le=1, description="Fail fast unless this share of the universe has a bar on as_of"
    )
    model_pointer: str | None = Field(
        None,
        description="A model registry entry (<root>/<name>, local or s3://): forecast with the model its "
        "'current' pointer names (the finetune flow promotes into it); until one is promoted, `model`",
    )
    score_matured: bool = Field(True, description="Also score earlier forecasts that have matured since")
    chart_assets: int = Field(4, ge=0, le=12, description="Assets drawn in the fan chart artifact")

    @field_validator("quantiles")
    @classmethod
    def _levels(cls, v: list[float]) -> list[float]:
        return list(check_quantile_levels(v))

    def warehouse(self) -> Warehouse:
        """Where the job's tables are (``output_url``, ``catalog``, ``storage``)."""
        return Warehouse(self.output_url, self.catalog, self.storage)

    @field_validator("universe")
    @classmethod
    def _universe(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        v = [s.strip() for s in v if s and s.strip()]
        return sorted(set(v)) or None


class BacktestParams(BaseModel):
    """Walk-forward backtest: the nightly job at each cutoff (point in time), scored against realised bars."""

    model_config = ConfigDict(extra="forbid")

    job: NightlyParams = Field(
        default_factory=NightlyParams, description="Job settings (as_of is set per cutoff)"
    )
    cutoffs: list[dt.date] | None = Field(
        None, description="Cutoff sessions; empty = the last `n_cutoffs` that have matured"
    )
    n_cutoffs: int = Field(3, ge=1, le=250, description="How many cutoffs when `cutoffs` is empty")
    every: int = Field(5, ge=1, description="Sessions between automatic cutoffs")
    compare: list[PredictorSpec] = Field(
        default_factory=list,
        max_length=8,
        description="Other models backtested on the same cutoffs with the same settings (e.g. random:mini "
        "beside job.model); the scorecard has one set of rows per model",
    )

    @model_validator(mode="after")
    def _sorted(self) -> BacktestParams:
        if self.cutoffs:
            self.cutoffs = sorted(set(self.cutoffs))
        seen = [_model_key(self.job.model)]
        for i, spec in enumerate(self.compare):
            if _model_key(spec) in seen:
                raise ValueError(
                    f"compare[{i}] ({spec.model}, tokenizer {spec.tokenizer}) repeats job.model or an "
                    "earlier entry; list each model once"
                )
            seen.append(_model_key(spec))
        return self


def _model_key(spec: PredictorSpec) -> tuple:
    return (spec.model, spec.tokenizer, spec.model_revision, spec.tokenizer_revision)


class FinetuneParams(BaseModel):
    """Fine-tune on the latest bars, backtest the candidate against the incumbent on the validation period,
    and promote it into the registry only if its CRPS is better."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    job: NightlyParams = Field(
        default_factory=NightlyParams,
        description="The market, calendar, checks, storage and the incumbent (job.model, or the current "
        "pointer of `registry`); the backtests run with these settings",
    )
    registry: str = Field(
        DEMO_REGISTRY,
        description="Registry entry <root>/<name> (local or s3://): candidates are written to "
        "<registry>/runs/<run>/, the winner becomes <registry>/current (the nightly's model_pointer)",
    )
    cutoff: dt.date | None = Field(
        None, description="Last session training may read; empty = job.as_of or the last completed session"
    )
    val_sessions: int = Field(
        20, ge=2, le=2000, description="Sessions before the cutoff held out for validation and the backtest"
    )
    windows: WindowSpec | None = Field(
        None, description="Training windows; empty = job.lookback + job.pred_len bars"
    )
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
        if self.val_sessions <= self.job.pred_len:
            raise ValueError(
                f"val_sessions ({self.val_sessions}) must exceed job.pred_len ({self.job.pred_len}): a "
                "backtest cutoff needs pred_len realised sessions inside the validation period"
            )
        return self
