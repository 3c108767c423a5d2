"""Table maintenance, weekly: compact small files, expire old snapshots, remove orphan files, per table.

Every nightly run adds snapshots (the time travel that ``pipeline.tables.read(..., run_id=...)`` uses) and a
few small data files; a run that died before its commit leaves data files no snapshot references. This flow
keeps the warehouse small without touching what readers see:

1. compact   partitions held in ``min_files`` or more data files are rewritten as one (same rows; a
             partition a run re-commits meanwhile is skipped);
2. expire    snapshots older than ``snapshot_retention_days`` are dropped (never the current one), so runs
             older than that can no longer be read by run_id;
3. orphans   files under the table that no retained snapshot references and older than
             ``orphan_min_age_hours`` (a write in flight is younger) are deleted.

Artifacts: a table of what was done per table.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field

from pipeline import tables as T
from pipeline.config import CatalogConfig

from . import artifacts as A
from .params import DEMO_OUTPUT_URL, StorageParams
from .run_names import maintenance_run_name

__all__ = ["MaintenanceParams", "table_maintenance", "maintain_table"]


class MaintenanceParams(BaseModel):
    """Which warehouse to maintain and how much history to keep."""

    model_config = ConfigDict(extra="forbid")

    output_url: str = Field(DEMO_OUTPUT_URL, description="The Iceberg warehouse (the nightly's output_url)")
    catalog: CatalogConfig = Field(default_factory=CatalogConfig, description="Its Iceberg catalog")
    storage: StorageParams = Field(
        default_factory=StorageParams, description="s3:// access (keys: a Secret block or the environment)"
    )
    tables: list[T.TableName] = Field(list(T.TABLES), min_length=1, description="Tables to maintain")
    snapshot_retention_days: float = Field(
        30, ge=0, description="Keep snapshots (runs readable by run_id) this many days"
    )
    orphan_min_age_hours: float = Field(
        24, ge=1, description="Only delete unreferenced files older than this (never a write in flight)"
    )
    compact: bool = Field(True, description="Rewrite partitions held in many small files as one file")
    min_files: int = Field(2, ge=2, description="Compact a partition held in at least this many files")

    def warehouse(self) -> T.Warehouse:
        return T.Warehouse(self.output_url, self.catalog, self.storage.resolved())


@task(name="maintain-table", cache_policy=NO_CACHE)
def maintain_table(params: MaintenanceParams, table: str, now: dt.datetime) -> dict[str, Any]:
    """Compact, expire and clean one table; returns what was done."""
    logger = get_run_logger()
    wh = params.warehouse()
    tbl = wh.load(table)
    row: dict[str, Any] = {"table": wh.identifier(table)}
    if tbl is None:
        logger.info("%s: no such table yet; nothing to do", row["table"])
        return {**row, "note": "no table yet"}
    before = len(tbl.metadata.snapshots)
    compacted = T.compact(tbl, table, params.min_files) if params.compact else []
    expired = T.expire_snapshots(tbl, now - dt.timedelta(days=params.snapshot_retention_days))
    removed = T.remove_orphan_files(wh, tbl, now - dt.timedelta(hours=params.orphan_min_age_hours))
    tbl.refresh()
    row.update(
        partitions_compacted=len(compacted),
        files_before_compaction=sum(c["files_before"] for c in compacted),
        snapshots_before=before,
        snapshots_expired=len(expired),
        snapshots_kept=len(tbl.metadata.snapshots),
        orphan_files_removed=len(removed),
        data_files_removed=sum(p.endswith(".parquet") for p in removed),
    )
    logger.info("%s: %s", row["table"], row)
    return row


@flow(name="table-maintenance", flow_run_name=maintenance_run_name, log_prints=True)
def table_maintenance(params: MaintenanceParams = MaintenanceParams()) -> list[dict[str, Any]]:
    """Compact, expire and clean every output table; returns one row per table."""
    now = dt.datetime.now(dt.timezone.utc)
    rows = [maintain_table(params, table, now) for table in params.tables]
    A.publish_table(
        A.KEYS["maintenance"],
        rows,
        f"Table maintenance of {params.output_url}: snapshots older than "
        f"{params.snapshot_retention_days:g} days expired, orphan files older than "
        f"{params.orphan_min_age_hours:g} h removed",
    )
    return rows
