"""Flow parameters: one pydantic model per flow, so the Prefect UI renders a validated form for a custom run."""

from __future__ import annotations

import datetime as dt
import os

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.config import CalendarConfig, StorageConfig, ValidationConfig

__all__ = ["SamplingSpec", "RaySpec", "NightlyParams", "BacktestParams", "DEMO_INPUT_URL", "DEMO_OUTPUT_URL"]

DEMO_INPUT_URL = "./demo_data/market"
DEMO_OUTPUT_URL = "./demo_data/output"


class SamplingSpec(BaseModel):
    """How sample paths are drawn (mirrors ``kronos_core.SamplingParams``)."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(1.0, gt=0, description="Softmax temperature")
    top_k: int = Field(0, ge=0, description="Keep the k most likely tokens (0 = off; 1 = greedy)")
    top_p: float = Field(0.9, gt=0, le=1, description="Nucleus sampling mass (1 = off)")
    sample_count: int = Field(8, ge=1, le=256, description="Sample paths per asset (quantiles and p_up come from these)")
    seed: int = Field(0, ge=0, description="With the symbol, fixes every asset's paths")


class RaySpec(BaseModel):
    """Where and how wide the Ray Data job runs."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(None, description="Existing cluster, e.g. 'ray://head:10001' or 'auto'; empty = local Ray")
    concurrency: int = Field(2, ge=1, description="Model actors (one model copy each)")
    num_cpus: float = Field(1.0, gt=0, description="CPUs per model actor")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per model actor (0 on CPU-only machines)")
    batch_size: int = Field(64, ge=1, description="Assets per inference batch")

    @field_validator("address")
    @classmethod
    def _blank_is_local(cls, v: str | None) -> str | None:
        return v.strip() or None if isinstance(v, str) else v


class NightlyParams(BaseModel):
    """Nightly universe forecast: read the market up to ``as_of``, forecast every asset, write a partition."""

    model_config = ConfigDict(extra="forbid")

    input_url: str = Field(default_factory=lambda: os.environ.get("KRONOS_INPUT_URL", DEMO_INPUT_URL),
                           description="Hive-partitioned parquet market (local path or s3://...); "
                                       "default $KRONOS_INPUT_URL or ./demo_data/market")
    output_url: str = Field(default_factory=lambda: os.environ.get("KRONOS_OUTPUT_URL", DEMO_OUTPUT_URL),
                            description="Output root: forecasts/, rejected/, scorecard/, charts/; "
                                        "default $KRONOS_OUTPUT_URL or ./demo_data/output")
    as_of: dt.date | None = Field(None, description="Cutoff session; empty = the last completed session")
    universe: list[str] | None = Field(None, description="Symbols to forecast; empty = every symbol in the input")
    model: str = Field("random:test", description="Hub id, local checkpoint dir, or 'random:<size>' (random weights)")
    tokenizer: str = Field("random:test", description="Hub id, local checkpoint dir, or 'random:<size>'")
    lookback: int = Field(128, ge=8, le=4096, description="Bars of history per asset")
    pred_len: int = Field(5, ge=1, le=512, description="Bars to forecast")
    quantiles: list[float] = Field([0.1, 0.25, 0.5, 0.75, 0.9], description="Close quantile levels in (0, 1)")
    sampling: SamplingSpec = Field(default_factory=SamplingSpec)
    ray: RaySpec = Field(default_factory=RaySpec)
    input_layout: str = Field("date", pattern="^(date|symbol)$",
                              description="'date' = <input>/date=YYYY-MM-DD/ (vendor delivery), 'symbol' = <input>/symbol=X/")
    calendar: CalendarConfig = Field(default_factory=CalendarConfig,
                                     description="Bar frequency and exchange calendar (also resolves the default as_of)")
    validation: ValidationConfig = Field(default_factory=ValidationConfig,
                                         description="Per-asset checks; failing assets land in the rejected table")
    min_fresh_share: float = Field(0.5, ge=0, le=1,
                                   description="Fail fast unless this share of the universe has a bar on as_of")
    storage: StorageConfig = Field(default_factory=StorageConfig,
                                   description="s3:// access (endpoint, keys); unset = AWS_* environment variables")
    score_matured: bool = Field(True, description="Also score earlier forecasts that have matured since")
    chart_assets: int = Field(4, ge=0, le=12, description="Assets drawn in the fan chart artifact")

    @field_validator("quantiles")
    @classmethod
    def _levels(cls, v: list[float]) -> list[float]:
        if any(not 0 < q < 1 for q in v):
            raise ValueError(f"quantile levels must be in (0, 1), got {v}")
        if len(set(v)) != len(v):
            raise ValueError(f"quantile levels must be unique, got {v}")
        return sorted(v)

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

    job: NightlyParams = Field(default_factory=NightlyParams, description="Job settings (as_of is set per cutoff)")
    cutoffs: list[dt.date] | None = Field(None, description="Cutoff sessions; empty = the last `n_cutoffs` that have matured")
    n_cutoffs: int = Field(3, ge=1, le=250, description="How many cutoffs when `cutoffs` is empty")
    every: int = Field(5, ge=1, description="Sessions between automatic cutoffs")

    @model_validator(mode="after")
    def _sorted(self) -> BacktestParams:
        if self.cutoffs:
            self.cutoffs = sorted(set(self.cutoffs))
        return self
