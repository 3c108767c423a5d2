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
from typing import Any, ClassVar, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kronos_core import MarketCalendar, PredictorSpec, SamplingParams, defaults
from kronos_core.rules import DEFAULT_MAX_GAP_FRACTION, DEFAULT_QUANTILES, check_quantile_levels

__all__ = [
    "StorageAccess",
    "StorageConfig",
    "InputConfig",
    "UniverseConfig",
    "ValidationConfig",
    "ComputeConfig",
    "OutputConfig",
    "CatalogConfig",
    "JobConfig",
    "RunSummary",
    "load_job_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


_ENDPOINT = re.compile(r"^https?://")


class StorageAccess(_Strict):
    """Where and how to reach an object store, without credentials: the settings a flow's form may show
    (the flows name their credentials instead, ``flows.params.StorageParams``)."""

    endpoint_url: str | None = Field(
        None,
        description="e.g. http://127.0.0.1:8333 for a local SeaweedFS",
        json_schema_extra={"pattern": _ENDPOINT.pattern},  # the forms refuse what _endpoint refuses
    )
    region: str | None = None
    anon: bool = False
    retries: int = Field(4, ge=0, le=20, description="retries for transient object-store errors")
    retry_backoff_s: float = Field(0.2, ge=0, description="first backoff; doubles per retry")

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, v):
        if v is not None and not _ENDPOINT.match(v):
            raise ValueError(f"endpoint_url must start with http:// or https://, got {v!r}")
        return v


class StorageConfig(StorageAccess):
    """Object-store access for ``s3://`` URLs (ignored for local folders).

    Anything left unset falls back to the standard AWS environment variables (``AWS_ENDPOINT_URL``,
    ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``). ``key`` and
    ``secret`` never show in a repr and are masked in every record (``SECRET_FIELDS``).
    """

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("key", "secret")

    key: str | None = Field(None, repr=False, description="access key id")
    secret: str | None = Field(None, repr=False, description="secret access key")

    def resolved(self) -> StorageConfig:
        """A copy with unset fields filled from the standard AWS environment variables of this process,
        so Ray workers on other nodes use exactly what the driver saw."""
        env = os.environ.get
        return self.model_copy(
            update={
                "endpoint_url": self.endpoint_url or env("AWS_ENDPOINT_URL_S3") or env("AWS_ENDPOINT_URL"),
                "region": self.region or env("AWS_REGION") or env("AWS_DEFAULT_REGION"),
                "key": self.key or env("AWS_ACCESS_KEY_ID"),
                "secret": self.secret or env("AWS_SECRET_ACCESS_KEY"),
            }
        )

    @classmethod
    def masked(cls, d: dict[str, Any]) -> dict[str, Any]:
        """A dumped storage section with its credentials replaced by ``***`` (for run records)."""
        return {k: "***" if k in cls.SECRET_FIELDS and v else v for k, v in d.items()}


class UniverseConfig(_Strict):
    symbols: list[str] | None = Field(None, description="inline list of symbols")
    file: str | None = Field(None, description="text file, one symbol per line ('#' comments)")

    @model_validator(mode="after")
    def _one(self):
        if self.symbols is not None and self.file is not None:
            raise ValueError(
                "universe: give either 'symbols' or 'file', not both (neither = every symbol present)"
            )
        return self

    @field_validator("symbols")
    @classmethod
    def _no_blank(cls, v):
        if v is not None and any(not s.strip() for s in v):
            raise ValueError(
                "universe.symbols holds an empty symbol; remove it (rows without a symbol are "
                "always quarantined as empty_symbol)"
            )
        return v

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


class ValidationConfig(_Strict):
    """Per-asset checks of stage 2 (the rules themselves live in ``kronos_core.rules``)."""

    min_history: int = Field(32, ge=1, description="bars needed in the window; fewer -> rejected too_short")
    max_stale_bars: int = Field(
        1,
        ge=0,
        description="calendar bars allowed between an asset's last bar and as_of; "
        "such an asset is forecast from its last bar and its steps still count bars "
        "after as_of (lag_bars says by how much it was behind)",
    )
    max_gap_fraction: float = Field(
        DEFAULT_MAX_GAP_FRACTION,
        ge=0,
        le=1,
        description="share of expected calendar bars allowed missing in the window",
    )
    max_price_ratio: float | None = Field(
        defaults.MAX_PRICE_RATIO,
        gt=1,
        description="a close this many times the previous close (or 1/x), or a "
        "high this many times the low: rejected price_jump; "
        "null turns the check off",
    )
    min_forecast_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="the batch job fails, publishing nothing, when it forecasts less than this share of its "
        "universe (the listed universe, else the symbols read); a run that forecasts no asset always fails "
        "unless it is 0 (training ignores it)",
    )


class ComputeConfig(_Strict):
    ray_address: str | None = Field(
        None, description="join this cluster ('auto', 'ray://host:10001'); None = local"
    )
    concurrency: int = Field(2, ge=1, description="forecast actors")
    num_cpus: float = Field(1.0, gt=0, description="CPUs per forecast actor")
    num_gpus: float = Field(
        0.0,
        ge=0,
        description="GPUs per forecast actor (fractions share a GPU)",
        json_schema_extra={"anyOf": [{"maximum": 1}, {"multipleOf": 1}]},  # as _gpu: above 1, whole GPUs
    )
    batch_size: int = Field(64, ge=1, description="assets per forecast batch")
    read_parallelism: int = Field(8, ge=1, description="max files per read task (group-by read)")
    read_shards: int | None = Field(
        None,
        ge=0,
        description="stage 1 without a shuffle: this many tasks each read the whole window and keep their "
        "symbols' rows; 0 = read by file and group by symbol (Ray's shuffle); null = by the window's size "
        "(1-4 shard tasks up to 4M planned rows, the group-by above)",
    )

    @model_validator(mode="after")
    def _gpu(self):
        if self.num_gpus > 1 and self.num_gpus != int(self.num_gpus):
            raise ValueError(f"num_gpus above 1 must be a whole number, got {self.num_gpus}")
        return self


class CatalogConfig(_Strict):
    """The Iceberg catalog that tracks the output tables (``pipeline.tables``).

    Empty ``properties``: the embedded catalog, PyIceberg's SQL catalog on the SQLite file
    ``<output.url>/catalog.db`` (a local output folder only: it needs no server). Otherwise any catalog
    PyIceberg supports, by its properties: ``{type: rest, uri: https://...}``, ``{type: sql, uri:
    postgresql+psycopg2://...}``, ``{type: glue}``, ``{type: hive, uri: thrift://...}``, or a SQLite file of
    your own for an ``s3://`` warehouse (``{uri: sqlite:////var/lib/kronos/catalog.db}``). The warehouse is
    ``output.url`` unless ``properties.warehouse`` says otherwise; the ``s3.*`` file-IO settings come from
    ``storage`` unless given here. Credentials belong in the environment (``PYICEBERG_CATALOG__<NAME>__...``
    variables are merged by PyIceberg), not in a config file."""

    name: str = Field("kronos", pattern=r"^[A-Za-z0-9_]+$", description="catalog name (PyIceberg's)")
    namespace: str = Field("kronos", pattern=r"^[A-Za-z0-9_]+$", description="namespace of the tables")
    properties: dict[str, str] = Field(
        default_factory=dict,
        description="PyIceberg catalog properties (type, uri, warehouse, ...); empty = the embedded SQLite "
        "catalog beside a local warehouse",
    )


class InputConfig(_Strict):
    url: str = Field(
        ...,
        description="root of the bars table (a local folder or s3://bucket/prefix); for an Iceberg "
        "table, its warehouse",
    )
    format: Literal["parquet", "iceberg"] = Field(
        "parquet", description="'parquet': a hive-partitioned folder (layout); 'iceberg': an Iceberg table"
    )
    layout: Literal["date", "symbol"] = Field(
        "date",
        description="parquet layout: 'date' = <root>/date=YYYY-MM-DD/*.parquet (vendor delivery), "
        "'symbol' = <root>/symbol=XYZ/*.parquet",
    )
    table: str = Field(
        "market.bars",
        pattern=r"^([A-Za-z0-9_]+\.)?[A-Za-z0-9_]+$",
        description="iceberg: the bars table (symbol, timestamp, open..amount), <namespace>.<name>, or "
        "a bare <name> in input.catalog.namespace",
    )
    catalog: CatalogConfig = Field(
        default_factory=CatalogConfig,
        description="iceberg: the input's catalog (default: SQLite at <input.url>/catalog.db)",
    )


class OutputConfig(_Strict):
    url: str = Field(
        ..., description="the Iceberg warehouse of the output tables (local folder or s3://bucket/prefix)"
    )
    quantiles: list[float] = Field(
        list(DEFAULT_QUANTILES), description="levels of the close quantile columns"
    )
    catalog: CatalogConfig = Field(
        default_factory=CatalogConfig, description="the Iceberg catalog (default: SQLite beside the tables)"
    )

    @field_validator("quantiles")
    @classmethod
    def _q(cls, v):
        return list(check_quantile_levels(v, "output.quantiles"))


class JobConfig(_Strict):
    """One batch forecast run: read bars as of ``as_of``, validate, forecast, write partitioned tables."""

    as_of: pd.Timestamp = Field(
        ..., description="point in time (exchange-local wall clock); bars after it are ignored"
    )
    lookback: int = Field(defaults.LOOKBACK, ge=2, description="bars of history per asset fed to the model")
    pred_len: int = Field(
        defaults.PRED_LEN,
        ge=1,
        description="steps to forecast: step k is the k-th calendar bar after as_of, for every asset",
    )
    input: InputConfig
    output: OutputConfig
    universe: UniverseConfig = UniverseConfig()
    calendar: MarketCalendar = Field(
        default_factory=MarketCalendar,
        description="the market's calendar and bar "
        "frequency (kronos_core.rules): validation and future timestamps",
    )
    validation: ValidationConfig = ValidationConfig()
    model: PredictorSpec = Field(default_factory=PredictorSpec, description="what to load and how to run it")
    sampling: SamplingParams = Field(default_factory=SamplingParams, description="how sample paths are drawn")
    compute: ComputeConfig = ComputeConfig()
    storage: StorageConfig = StorageConfig()
    run_id: str | None = Field(None, description="defaults to a fresh <utc time>-<random> id")

    model_config = ConfigDict(extra="forbid", validate_assignment=True, arbitrary_types_allowed=True)

    @field_validator("as_of", mode="before")
    @classmethod
    def _as_of(cls, v):
        try:
            ts = pd.Timestamp(v)
        except (ValueError, TypeError) as e:
            raise ValueError(
                f"as_of must be a date or datetime such as '2024-03-01' or '2024-03-01T16:00', "
                f"got {v!r} ({e})"
            ) from None
        if ts is pd.NaT:
            raise ValueError("as_of must be a date or datetime, got NaT")
        return ts.tz_localize(None) if ts.tz is not None else ts

    @model_validator(mode="after")
    def _coherent(self):
        if self.validation.min_history > self.lookback:
            raise ValueError(
                f"validation.min_history ({self.validation.min_history}) must be <= lookback "
                f"({self.lookback}); lower min_history or raise lookback"
            )
        gpus, device = self.compute.num_gpus, self.model.device
        if gpus > 0 and device in ("cpu", "mps"):
            raise ValueError(
                f"compute.num_gpus={gpus:g} reserves GPUs but model.device is {device!r}; set "
                "model.device to 'auto' (or 'cuda') or compute.num_gpus to 0"
            )
        if gpus == 0 and device.startswith("cuda"):
            raise ValueError(
                f"model.device is {device!r} but compute.num_gpus is 0: Ray gives the actors no GPU; "
                "set compute.num_gpus (e.g. 1, or 0.5 to share a GPU) or model.device to 'auto'"
            )
        return self

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (for the manifest); the storage credentials are masked."""
        d = json.loads(self.model_dump_json())
        d["storage"] = StorageConfig.masked(d["storage"])
        return d


def load_job_config(path: str | Path, **overrides: Any) -> JobConfig:
    """Read a YAML job config and apply dotted overrides (``{"compute.concurrency": 4}``)."""
    return JobConfig.model_validate(read_yaml_config(path, overrides))


def read_yaml_config(path: str | Path, overrides: dict[str, Any]) -> dict:
    """A YAML mapping from ``path`` with dotted overrides applied (``{"compute.concurrency": 4}``); the
    job's and the training's config loaders share it."""
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
    return raw


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
    catalog: str = ""
    forecasts_table: str = ""
    rejected_table: str = ""
    snapshot_id: int | None = None
    rejected_snapshot_id: int | None = None
    bytes_read: int = 0
    files_read: int = 0
    model: str = ""
    reject_reasons: dict[str, int] = field(default_factory=dict)
    forecast_flags: dict[str, int] = field(default_factory=dict)
    assets_lagged: int = 0
    streamed: bool = False  # stages 1-6a ran as one stream (a CPU was free beside the forecast actors)
    read_shards: int = 0  # stage 1's shard read tasks (0: read by file and grouped by symbol)
    stage_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        lines = [
            f"run {self.run_id}  as_of {self.as_of}  model {self.model}",
            f"  assets read      {self.assets_read}",
            f"  assets forecast  {self.assets_forecast}",
            f"  assets rejected  {self.assets_rejected}  {self.reject_reasons or ''}",
            f"  assets lagged    {self.assets_lagged} (forecast from a last bar before as_of)",
            f"  forecast flags   {self.forecast_flags or 'none'}",
            f"  rows written     {self.rows_written}",
            f"  bytes read       {self.bytes_read:,} in {self.files_read} files",
            f"  wall time        {self.wall_s:.1f} s  ({self.series_per_s:.1f} series/s)",
            f"  warehouse        {self.catalog or self.output_url}",
            f"  forecasts        {self.forecasts_table} snapshot {self.snapshot_id}",
            f"  rejected         {self.rejected_table} snapshot {self.rejected_snapshot_id}",
        ]
        return "\n".join(lines)
