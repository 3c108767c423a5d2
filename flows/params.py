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
from pipeline.config import ComputeConfig, StorageConfig, ValidationConfig

__all__ = ["NightlyParams", "BacktestParams", "DEMO_INPUT_URL", "DEMO_OUTPUT_URL"]

DEMO_INPUT_URL = "./demo_data/market"
DEMO_OUTPUT_URL = "./demo_data/output"


class NightlyParams(BaseModel):
    """Nightly universe forecast: read the market up to ``as_of``, forecast every asset, write a partition."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    input_url: str = Field(
        DEMO_INPUT_URL, description="Hive-partitioned parquet market (local path or s3://...)"
    )
    output_url: str = Field(
        DEMO_OUTPUT_URL, description="Output root: forecasts/, rejected/, scorecard/, charts/"
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
    min_fresh_share: float = Field(
        0.5, ge=0, le=1, description="Fail fast unless this share of the universe has a bar on as_of"
    )
    score_matured: bool = Field(True, description="Also score earlier forecasts that have matured since")
    chart_assets: int = Field(4, ge=0, le=12, description="Assets drawn in the fan chart artifact")

    @field_validator("quantiles")
    @classmethod
    def _levels(cls, v: list[float]) -> list[float]:
        return list(check_quantile_levels(v))

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

    @model_validator(mode="after")
    def _sorted(self) -> BacktestParams:
        if self.cutoffs:
            self.cutoffs = sorted(set(self.cutoffs))
        return self
