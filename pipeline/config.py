"""Job configuration (pydantic, the boundary) and the run summary (a plain dataclass).

A config file is YAML with the sections below; every field has a default except ``input.url`` and
``output.url``. Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "StorageConfig", "InputConfig", "UniverseConfig", "CalendarConfig", "ValidationConfig", "ModelConfig",
    "SamplingConfig", "ComputeConfig", "OutputConfig", "JobConfig", "RunSummary", "load_config",
]

FREQS = ("1min", "5min", "15min", "30min", "60min", "1h", "1d")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StorageConfig(_Strict):
    """Object-store access for ``s3://`` URLs (ignored for local folders).

    Anything left unset falls back to the standard AWS environment variables (``AWS_ENDPOINT_URL``,
    ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``).
    """

    endpoint_url: str | None = Field(None, description="e.g. http://127.0.0.1:8333 for a local SeaweedFS")
    region: str | None = None
    key: str | None = Field(None, description="access key id")
    secret: str | None = Field(None, description="secret access key")
    anon: bool = False
    retries: int = Field(4, ge=0, le=20, description="retries for transient object-store errors")
    retry_backoff_s: float = Field(0.2, ge=0, description="first backoff; doubles per retry")

    def resolved(self) -> StorageConfig:
        """A copy with unset fields filled from the standard AWS environment variables of this process,
        so Ray workers on other nodes use exactly what the driver saw."""
        env = os.environ.get
        return self.model_copy(update={
            "endpoint_url": self.endpoint_url or env("AWS_ENDPOINT_URL_S3") or env("AWS_ENDPOINT_URL"),
            "region": self.region or env("AWS_REGION") or env("AWS_DEFAULT_REGION"),
            "key": self.key or env("AWS_ACCESS_KEY_ID"),
            "secret": self.secret or env("AWS_SECRET_ACCESS_KEY"),
        })

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, v):
        if v is not None and not re.match(r"^https?://", v):
            raise ValueError(f"endpoint_url must start with http:// or https://, got {v!r}")
        return v


class InputConfig(_Strict):
    url: str = Field(..., description="root of the bars table: a local folder or s3://bucket/prefix")
    layout: Literal["date", "symbol"] = Field(
        "date", description="hive layout: 'date' = <root>/date=YYYY-MM-DD/*.parquet (vendor delivery), "
                            "'symbol' = <root>/symbol=XYZ/*.parquet")


class UniverseConfig(_Strict):
    symbols: list[str] | None = Field(None, description="inline list of symbols")
    file: str | None = Field(None, description="text file, one symbol per line ('#' comments)")

    @model_validator(mode="after")
    def _one(self):
        if self.symbols is not None and self.file is not None:
            raise ValueError("universe: give either 'symbols' or 'file', not both (neither = every symbol present)")
        return self

    def resolve(self) -> list[str] | None:
        """The universe as a sorted list, or None for 'all symbols present'."""
        if self.symbols is not None:
            return sorted(set(self.symbols))
        if self.file is not None:
            import fsspec

            with fsspec.open(self.file, "r") as f:
                lines = [ln.split("#")[0].strip() for ln in f]
            return sorted({ln for ln in lines if ln})
        return None


class CalendarConfig(_Strict):
    """How bar timestamps are laid out: an exchange calendar, or a fixed frequency when ``exchange`` is None.

    Timestamps are bar-close times in the exchange's local wall-clock time (tz-naive), as vendors deliver.
    Daily bars are stamped at midnight of the session date.
    """

    freq: str = Field("1d", description=f"bar frequency, one of {FREQS}")
    exchange: str | None = Field("XNYS", description="exchange_calendars code (XNYS, XHKG, XLON, ...); "
                                                     "None = fixed-frequency fallback (24/7 markets)")

    @field_validator("freq")
    @classmethod
    def _freq(cls, v):
        if v not in FREQS:
            raise ValueError(f"freq must be one of {FREQS}, got {v!r}")
        return v

    @field_validator("exchange")
    @classmethod
    def _exchange(cls, v):
        if v is None:
            return v
        import exchange_calendars as xcals

        if v not in xcals.get_calendar_names():
            raise ValueError(f"unknown exchange calendar {v!r}; use an exchange_calendars code such as 'XNYS' "
                             f"or 'XHKG', or null for a fixed-frequency calendar")
        return v

    @property
    def step(self) -> pd.Timedelta:
        return pd.Timedelta("1h" if self.freq == "60min" else self.freq.replace("1d", "1D"))


class ValidationConfig(_Strict):
    min_history: int = Field(32, ge=1, description="bars needed in the window; fewer -> rejected too_short")
    max_stale_bars: int = Field(1, ge=0, description="calendar bars allowed between an asset's last bar and as_of")
    max_gap_fraction: float = Field(0.1, ge=0, le=1, description="share of expected calendar bars allowed missing")


class ModelConfig(_Strict):
    model: str = Field("random:mini", description="hub id, local dir, or random:<test|mini|small|base>")
    tokenizer: str = Field("random:mini", description="hub id, local dir, or random:<size>")
    model_revision: str | None = None
    tokenizer_revision: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    max_context: int | None = Field(None, ge=1)
    cache: Literal["exact", "rolling", "reference"] = "exact"


class SamplingConfig(_Strict):
    temperature: float = Field(1.0, gt=0)
    top_k: int = Field(0, ge=0)
    top_p: float = Field(0.9, gt=0, le=1)
    sample_count: int = Field(8, ge=1)
    seed: int = Field(0, ge=0)


class ComputeConfig(_Strict):
    ray_address: str | None = Field(None, description="join this cluster ('auto', 'ray://host:10001'); None = local")
    concurrency: int = Field(2, ge=1, description="forecast actors")
    num_cpus: float = Field(1.0, gt=0, description="CPUs per forecast actor")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per forecast actor (fractions share a GPU)")
    batch_size: int = Field(64, ge=1, description="assets per forecast batch")
    read_parallelism: int = Field(8, ge=1, description="max files per read task")

    @model_validator(mode="after")
    def _gpu(self):
        if self.num_gpus > 1 and self.num_gpus != int(self.num_gpus):
            raise ValueError(f"num_gpus above 1 must be a whole number, got {self.num_gpus}")
        return self


class OutputConfig(_Strict):
    url: str = Field(..., description="root of the output tables (local folder or s3://bucket/prefix)")
    quantiles: list[float] = Field([0.1, 0.5, 0.9], description="levels of the close quantile columns")
    lock_timeout_s: float = Field(3600, gt=0, description="a commit lock older than this counts as abandoned")

    @field_validator("quantiles")
    @classmethod
    def _q(cls, v):
        if any(not 0 < q < 1 for q in v) or len(set(v)) != len(v):
            raise ValueError(f"quantiles must be unique levels in (0, 1), got {v}")
        return sorted(v)


class ChaosConfig(_Strict):
    """Fault injection for reliability drills and tests; off by default."""

    kill_actor_once_marker: str | None = Field(
        None, description="local path: the first forecast actor to reach its 2nd batch creates this file and "
                          "kills its own process (os._exit), once per marker")


class JobConfig(_Strict):
    """One batch forecast run: read bars as of ``as_of``, validate, forecast, write partitioned tables."""

    as_of: pd.Timestamp = Field(..., description="point in time (exchange-local wall clock); bars after it are ignored")
    lookback: int = Field(256, ge=2, description="bars of history per asset fed to the model")
    pred_len: int = Field(16, ge=1, description="steps to forecast")
    input: InputConfig
    output: OutputConfig
    universe: UniverseConfig = UniverseConfig()
    calendar: CalendarConfig = CalendarConfig()
    validation: ValidationConfig = ValidationConfig()
    model: ModelConfig = ModelConfig()
    sampling: SamplingConfig = SamplingConfig()
    compute: ComputeConfig = ComputeConfig()
    storage: StorageConfig = StorageConfig()
    chaos: ChaosConfig = ChaosConfig()
    run_id: str | None = Field(None, description="defaults to a fresh <utc time>-<random> id")

    model_config = ConfigDict(extra="forbid", validate_assignment=True, arbitrary_types_allowed=True)

    @field_validator("as_of", mode="before")
    @classmethod
    def _as_of(cls, v):
        try:
            ts = pd.Timestamp(v)
        except (ValueError, TypeError) as e:
            raise ValueError(f"as_of must be a date or datetime such as '2024-03-01' or '2024-03-01T16:00', "
                             f"got {v!r} ({e})") from None
        if ts is pd.NaT:
            raise ValueError("as_of must be a date or datetime, got NaT")
        return ts.tz_localize(None) if ts.tz is not None else ts

    @model_validator(mode="after")
    def _coherent(self):
        if self.validation.min_history > self.lookback:
            raise ValueError(f"validation.min_history ({self.validation.min_history}) must be <= lookback "
                             f"({self.lookback}); lower min_history or raise lookback")
        return self

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (for the manifest); secrets are masked."""
        d = json.loads(self.model_dump_json())
        if d["storage"].get("secret"):
            d["storage"]["secret"] = "***"
        return d


def load_config(path: str | Path, **overrides: Any) -> JobConfig:
    """Read a YAML job config and apply dotted overrides (``{"compute.concurrency": 4}``)."""
    import yaml

    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: the config file must be a YAML mapping, got {type(raw).__name__}")
    for dotted, value in overrides.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return JobConfig.model_validate(raw)


@dataclass
class RunSummary:
    """What a run did; ``to_dict()`` is JSON-able (for Prefect artifacts and the CLI)."""

    run_id: str
    as_of: str
    assets_read: int = 0
    assets_forecast: int = 0
    assets_rejected: int = 0
    rows_written: int = 0
    wall_s: float = 0.0
    series_per_s: float = 0.0
    output_url: str = ""
    manifest_url: str = ""
    rejected_url: str = ""
    bytes_read: int = 0
    files_read: int = 0
    model: str = ""
    reject_reasons: dict[str, int] = field(default_factory=dict)
    stage_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        lines = [f"run {self.run_id}  as_of {self.as_of}  model {self.model}",
                 f"  assets read      {self.assets_read}",
                 f"  assets forecast  {self.assets_forecast}",
                 f"  assets rejected  {self.assets_rejected}  {self.reject_reasons or ''}",
                 f"  rows written     {self.rows_written}",
                 f"  bytes read       {self.bytes_read:,} in {self.files_read} files",
                 f"  wall time        {self.wall_s:.1f} s  ({self.series_per_s:.1f} series/s)",
                 f"  output           {self.output_url}",
                 f"  rejected         {self.rejected_url}",
                 f"  manifest         {self.manifest_url}"]
        return "\n".join(lines)
