"""The output tables (``forecasts``, ``rejected``, ``scorecard``) as Apache Iceberg tables, through PyIceberg.

One home for how the job publishes and how everyone reads: the warehouse is ``output.url`` (a local folder
or ``s3://``), the catalog ``output.catalog`` (default: PyIceberg's SQL catalog on the SQLite file
``<output.url>/catalog.db``, no server). Every table is partitioned by ``day(as_of)`` and ``model`` and
sorted by its ``SORT_KEYS``.

Publishing a run of (as_of, model) is **one** catalog commit per table: a transaction that deletes the
partition's rows and appends the run's data files, so the table's current snapshot moves once, from the
previous run's partition to this run's, and a reader of the current snapshot never sees the partition
empty, half-written or mixed. Other partitions' data files are untouched. The run's record (run_id,
config, lineage, input snapshot, counts, reject reasons), what ``_manifest.json`` held before, rides in the
snapshot's summary properties (``kronos.*``): ``list_runs`` lists them and ``read(..., run_id=...)`` reads
a table as that run left it (Iceberg time travel).

Concurrency is Iceberg's optimistic one: a commit that finds the table moved is retried by PyIceberg
against the new snapshot (runs of different partitions both land); if another run committed the *same*
partition meanwhile, PyIceberg's validation refuses the stale delete and the run fails with
``ConcurrentCommitError`` (nothing of it is published).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import pickle
import threading
import uuid
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import pandas as pd
import pyarrow as pa

from .config import CatalogConfig, StorageConfig
from .storage import StorageError, _is_s3, strip_protocol

__all__ = [
    "TABLES",
    "SORT_KEYS",
    "PROPERTY_PREFIX",
    "ConcurrentCommitError",
    "Warehouse",
    "warehouse",
    "iceberg_schema",
    "prepare_table",
    "write_data_files",
    "data_files_of",
    "overwrite_partition",
    "publish",
    "read",
    "list_runs",
    "run_record",
    "partitions",
    "model_key",
    "expire_snapshots",
    "referenced_files",
    "remove_orphan_files",
    "compact",
]

log = logging.getLogger(__name__)

TableName = Literal["forecasts", "rejected", "scorecard"]
TABLES: tuple[str, ...] = get_args(TableName)
SORT_KEYS: dict[str, tuple[str, ...]] = {
    "forecasts": ("symbol", "step"),
    "rejected": ("symbol",),
    "scorecard": ("method",),
}
PARTITION_COLUMNS = ("as_of", "model")
PROPERTY_PREFIX = "kronos."
TABLE_PROPERTIES = {
    "format-version": "2",
    "write.parquet.compression-codec": "zstd",
    # PyIceberg retries a commit that lost a race against the refreshed table (different partitions)
    "commit.retry.num-retries": "8",
    "commit.retry.min-wait-ms": "50",
    # old metadata.json files beyond the last 100 are deleted at commit (the snapshots stay until expired)
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "100",
}


class ConcurrentCommitError(RuntimeError):
    """Another run committed the same partition while this run was writing; this run published nothing."""


@contextlib.contextmanager
def _io(what: str):
    """Object-store and file errors from PyIceberg's file IO, re-raised as ``StorageError`` naming the place
    (a missing bucket says "The specified bucket does not exist" and nothing else)."""
    try:
        yield
    except OSError as e:
        if isinstance(e, StorageError):
            raise
        raise StorageError(f"{what}: {type(e).__name__}: {e}") from e


def model_key(model_ref: str) -> str:
    """The ``model`` partition value of a model reference: what the forecast rows' ``model`` column holds
    (``kronos_core.loading.canonical_ref``: ``demo`` is ``demo:daily``, ``random:test`` is
    ``random:test:0``)."""
    from kronos_core.loading import canonical_ref

    return canonical_ref(str(model_ref))


# --------------------------------------------------------------------------------------------- catalog


def _warehouse_location(url: str) -> str:
    if _is_s3(url):
        return "s3://" + strip_protocol(url)
    return "file://" + strip_protocol(url)


def _io_properties(url: str, storage: StorageConfig) -> dict[str, str]:
    """PyIceberg file-IO settings from the job's storage settings (s3fs, like the rest of the pipeline)."""
    if not _is_s3(url):
        return {}
    s = storage.resolved()
    props = {"py-io-impl": "pyiceberg.io.fsspec.FsspecFileIO"}
    for key, value in (
        ("s3.endpoint", s.endpoint_url),
        ("s3.region", s.region),
        ("s3.access-key-id", s.key),
        ("s3.secret-access-key", s.secret),
    ):
        if value:
            props[key] = value
    if s.anon:
        props["s3.anonymous"] = "true"
    return props


_CATALOGS: dict[tuple, Any] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Warehouse:
    """Where the output tables live: the warehouse URL, the catalog that tracks them, object-store access."""

    url: str
    catalog_config: CatalogConfig = field(default_factory=CatalogConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def catalog_properties(self) -> dict[str, str]:
        user = dict(self.catalog_config.properties)
        props = {"warehouse": _warehouse_location(self.url), **_io_properties(self.url, self.storage)}
        if not user:
            if _is_s3(self.url) and not _catalog_from_environment(self.catalog_config.name):
                raise ValueError(
                    f"output.url {self.url!r} is an s3:// warehouse, and the embedded catalog is a SQLite "
                    "file beside a local warehouse: set output.catalog.properties, e.g. "
                    "{uri: 'sqlite:////var/lib/kronos/catalog.db'} for a SQLite file on this machine, or a "
                    "shared catalog ({type: rest, uri: https://...}, {type: sql, uri: "
                    "'postgresql+psycopg2://...'}, {type: glue})"
                )
            if not _is_s3(self.url):
                root = strip_protocol(self.url)
                os.makedirs(root, exist_ok=True)
                user = {"type": "sql", "uri": f"sqlite:///{os.path.join(root, 'catalog.db')}"}
        if user.get("uri", "").startswith("sqlite") and "type" not in user:
            user["type"] = "sql"
        return {**props, **user}

    def catalog(self):
        """The PyIceberg catalog (one per process and configuration), its namespace created if missing."""
        props = self.catalog_properties()
        key = (self.catalog_config.name, self.catalog_config.namespace, tuple(sorted(props.items())))
        with _LOCK:
            cat = _CATALOGS.get(key)
            if cat is None:
                from pyiceberg.catalog import load_catalog

                cat = load_catalog(self.catalog_config.name, **props)
                _create_namespace(cat, self.catalog_config.namespace)
                _CATALOGS[key] = cat
        return cat

    def identifier(self, table: str) -> str:
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}; the output tables are {', '.join(TABLES)}")
        return f"{self.catalog_config.namespace}.{table}"

    def load(self, table: str):
        """The Iceberg table, or None if no run has created it yet."""
        from pyiceberg.exceptions import NoSuchTableError

        try:
            return self.catalog().load_table(self.identifier(table))
        except NoSuchTableError:
            return None

    def describe(self) -> str:
        props = self.catalog_properties()
        where = props.get("uri") or props.get("type", "?")
        return f"{self.url} (catalog {self.catalog_config.name}: {where})"


def _catalog_from_environment(name: str) -> bool:
    prefix = f"PYICEBERG_CATALOG__{name.upper()}__"
    return any(k.upper().startswith(prefix) for k in os.environ)


def _create_namespace(cat, namespace: str) -> None:
    from pyiceberg.exceptions import NamespaceAlreadyExistsError

    # another process may create it between the check and the create
    with contextlib.suppress(NamespaceAlreadyExistsError):
        cat.create_namespace_if_not_exists(namespace)


def warehouse(
    url: str, catalog: CatalogConfig | dict | None = None, storage: StorageConfig | None = None
) -> Warehouse:
    """A ``Warehouse`` from plain values (``catalog`` as a ``CatalogConfig`` or its dict)."""
    if isinstance(catalog, dict):
        catalog = CatalogConfig.model_validate(catalog)
    return Warehouse(url, catalog or CatalogConfig(), storage or StorageConfig())


# ---------------------------------------------------------------------------------------------- schema


def _iceberg_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", t.tz)
    if pa.types.is_null(t):
        return pa.string()
    if pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(_iceberg_type(t.value_type))
    return t


def iceberg_schema(schema: pa.Schema) -> pa.Schema:
    """The Arrow schema as stored: timestamps in microseconds (Iceberg's unit), null-typed columns as
    strings."""
    return pa.schema([pa.field(f.name, _iceberg_type(f.type), nullable=True) for f in schema])


def _conform(batch: pa.Table, target: pa.Schema, sort_keys: Iterable[str]) -> pa.Table:
    """``batch`` cast to the table's columns (missing ones null, in the table's order), sorted."""
    cols = []
    for f in target:
        if f.name in batch.column_names:
            col = batch[f.name]
            cols.append(col if col.type == f.type else col.cast(f.type))
        else:
            cols.append(pa.nulls(batch.num_rows, f.type))
    out = pa.table(cols, schema=target)
    keys = [(k, "ascending") for k in sort_keys if k in out.column_names]
    return out.sort_by(keys) if keys and out.num_rows else out


def prepare_table(wh: Warehouse, table: str, schema: pa.Schema):
    """The table, created if missing (partitioned by day(as_of) and model, sorted by ``SORT_KEYS``), its
    schema widened by name with any new column of ``schema`` (e.g. another quantile level)."""
    from pyiceberg.exceptions import CommitFailedException, NoSuchTableError, TableAlreadyExistsError
    from pyiceberg.transforms import DayTransform, IdentityTransform

    schema = iceberg_schema(schema)
    missing = [c for c in (*PARTITION_COLUMNS, *SORT_KEYS[table]) if c not in schema.names]
    if missing:
        raise ValueError(f"rows for the {table} table lack the column(s) {missing}")
    cat, ident = wh.catalog(), wh.identifier(table)
    try:
        tbl = cat.load_table(ident)
    except NoSuchTableError:
        try:
            with (
                _io(f"create table {ident} in warehouse {wh.url}"),
                cat.create_table_transaction(ident, schema=schema, properties=TABLE_PROPERTIES) as tx,
            ):
                with tx.update_spec() as spec:
                    spec.add_field("as_of", DayTransform(), "as_of_day")
                    spec.add_field("model", IdentityTransform(), "model")
                with tx.update_sort_order() as order:
                    for key in SORT_KEYS[table]:
                        order.asc(key, IdentityTransform())
            log.info("created Iceberg table %s in %s", ident, wh.url)
        except (TableAlreadyExistsError, CommitFailedException):  # another run created it first
            pass
        tbl = cat.load_table(ident)
    current = {f.name for f in tbl.schema().fields}
    if any(name not in current for name in schema.names):
        for attempt in range(5):
            try:
                with tbl.update_schema() as upd:
                    upd.union_by_name(schema)
                break
            except CommitFailedException:
                if attempt == 4:
                    raise
                tbl = cat.load_table(ident)
        log.info("%s: schema widened to %s", ident, [f.name for f in tbl.schema().fields])
    return tbl


# ----------------------------------------------------------------------------------------------- write


def write_data_files(batch: pa.Table, metadata, io_properties: dict[str, str], table: str) -> pa.Table:
    """Write ``batch`` as data files of the table whose metadata is ``metadata`` (a Ray Data stage: runs on
    any worker, no catalog needed). Returns one row per file: ``data_file`` (the pickled Iceberg
    ``DataFile``, to be committed by the driver) and ``rows``. Files nobody commits are orphans that the
    maintenance flow removes."""
    from pyiceberg.io import load_file_io
    from pyiceberg.io.pyarrow import _dataframe_to_data_files, schema_to_pyarrow

    if batch.num_rows == 0:
        return pa.table({"data_file": pa.array([], pa.binary()), "rows": pa.array([], pa.int64())})
    target = pa.schema(
        [pa.field(f.name, f.type) for f in schema_to_pyarrow(metadata.schema(), include_field_ids=False)]
    )
    data = _conform(batch, target, SORT_KEYS[table])
    io = load_file_io(io_properties, metadata.location)
    # PyIceberg's own writer (the one Table.append uses; Ray's Iceberg datasink calls it the same way)
    with _io(f"write data files under {metadata.location}"):
        files = list(
            _dataframe_to_data_files(table_metadata=metadata, df=data, io=io, write_uuid=uuid.uuid4())
        )
    return pa.table(
        {
            "data_file": pa.array([pickle.dumps(f) for f in files], pa.binary()),
            "rows": pa.array([int(f.record_count) for f in files], pa.int64()),
        }
    )


def data_files_of(records: Iterable[dict] | pa.Table) -> list:
    """The ``DataFile`` objects of ``write_data_files``' output rows."""
    rows = records.to_pylist() if isinstance(records, pa.Table) else records
    return [pickle.loads(r["data_file"]) for r in rows]


def _as_of_filter(table: str, as_of):
    """``as_of == <as_of>`` in the table's type (a date in the scorecard, a timestamp elsewhere)."""
    from pyiceberg.expressions import EqualTo

    ts = pd.Timestamp(as_of)
    return EqualTo("as_of", ts.date().isoformat() if table == "scorecard" else ts.isoformat())


def _partition_filter(table: str, as_of, model: str):
    from pyiceberg.expressions import And, EqualTo

    return And(_as_of_filter(table, as_of), EqualTo("model", str(model)))


def overwrite_partition(tbl, table: str, as_of, model: str, files: list, properties: dict[str, str]):
    """Replace the (as_of, model) partition of ``tbl`` with ``files`` in one commit (delete + append in one
    transaction); returns the committed snapshot. ``ConcurrentCommitError`` if another run committed the
    same partition since ``tbl`` was loaded."""
    from pyiceberg.exceptions import CommitFailedException, ValidationException

    props = {k: str(v) for k, v in properties.items()}
    try:
        with warnings.catch_warnings(), _io(f"commit {table} in {tbl.metadata.location}"):
            warnings.filterwarnings("ignore", "Delete operation did not match any records")
            with tbl.transaction() as tx:
                tx.delete(_partition_filter(table, as_of, model), snapshot_properties=props)
                with tx.update_snapshot(snapshot_properties=props).fast_append() as append:
                    for f in files:
                        append.append_data_file(f)
    except (CommitFailedException, ValidationException) as e:
        raise ConcurrentCommitError(
            f"{table} partition as_of={pd.Timestamp(as_of)} model={model!r} was committed by another run "
            f"while run {props.get(PROPERTY_PREFIX + 'run_id')!r} was writing it; this run published nothing "
            f"to {table} (its data files are orphans the maintenance flow removes). Re-run to replace it. "
            f"({type(e).__name__}: {e})"
        ) from e
    snap = tbl.current_snapshot()
    run_id = props.get(PROPERTY_PREFIX + "run_id")
    if run_id is not None and (snap is None or snap.summary.get(PROPERTY_PREFIX + "run_id") != run_id):
        snap = next(
            s for s in reversed(tbl.metadata.snapshots) if s.summary.get(PROPERTY_PREFIX + "run_id") == run_id
        )
    return snap


def publish(
    wh: Warehouse, table: str, rows: pa.Table, as_of, model: str, properties: dict[str, Any]
) -> int | None:
    """Write ``rows`` (driver side) and replace their (as_of, model) partition of ``table``; returns the
    snapshot id (None when there is nothing to write and no table yet)."""
    props = run_properties(properties)
    tbl = wh.load(table) if rows.num_rows == 0 else prepare_table(wh, table, rows.schema)
    if tbl is None:
        return None
    files = (
        data_files_of(write_data_files(rows, tbl.metadata, tbl.io.properties, table)) if rows.num_rows else []
    )
    return overwrite_partition(tbl, table, as_of, model, files, props).snapshot_id


def run_properties(record: dict[str, Any]) -> dict[str, str]:
    """A run's record as snapshot summary properties: ``kronos.<key>``, strings as they are, anything else
    as JSON."""
    out = {}
    for k, v in record.items():
        out[PROPERTY_PREFIX + k] = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
    return out


# ------------------------------------------------------------------------------------------------ read


def list_runs(wh: Warehouse, table: str = "forecasts") -> pd.DataFrame:
    """Every run that committed to ``table``, oldest first: ``run_id, snapshot_id, committed_at, as_of,
    model, operation, added_rows, total_rows``, one row per run (its last snapshot)."""
    cols = [
        "run_id",
        "snapshot_id",
        "committed_at",
        "as_of",
        "model",
        "operation",
        "added_rows",
        "total_rows",
    ]
    tbl = wh.load(table)
    if tbl is None:
        return pd.DataFrame(columns=cols)
    rows = []
    for s in tbl.metadata.snapshots:
        run_id = s.summary.get(PROPERTY_PREFIX + "run_id")
        if run_id is None:
            continue
        rows.append(
            {
                "run_id": run_id,
                "snapshot_id": s.snapshot_id,
                "committed_at": pd.Timestamp(s.timestamp_ms, unit="ms", tz="UTC"),
                "as_of": s.summary.get(PROPERTY_PREFIX + "as_of"),
                "model": s.summary.get(PROPERTY_PREFIX + "model"),
                "operation": str(s.summary.operation.value),
                "added_rows": int(s.summary.get("added-records") or 0),
                "total_rows": int(s.summary.get("total-records") or 0),
            }
        )
    df = pd.DataFrame(rows, columns=cols)
    return df.drop_duplicates("run_id", keep="last").reset_index(drop=True)


def run_record(wh: Warehouse, run_id: str, table: str = "forecasts") -> dict[str, Any]:
    """The record a run left in its snapshot's summary (run_id, as_of, model, config, lineage, input,
    counts, ...), JSON values decoded. ``KeyError`` naming the known runs if ``run_id`` never committed."""
    snap = _snapshot_of(wh, table, run_id)
    out: dict[str, Any] = {"snapshot_id": snap.snapshot_id}
    for k, v in snap.summary.additional_properties.items():
        if k.startswith(PROPERTY_PREFIX):
            key = k[len(PROPERTY_PREFIX) :]
            try:
                out[key] = json.loads(v) if v[:1] in "{[" else v
            except json.JSONDecodeError:
                out[key] = v
    return out


def _snapshot_of(wh: Warehouse, table: str, run_id: str):
    tbl = wh.load(table)
    snaps = [] if tbl is None else tbl.metadata.snapshots
    mine = [s for s in snaps if s.summary.get(PROPERTY_PREFIX + "run_id") == run_id]
    if not mine:
        known = list_runs(wh, table)["run_id"].tolist()
        raise KeyError(
            f"run {run_id!r} has no snapshot in the {table} table (expired, or it never committed); "
            f"runs on record: {known[-10:]}"
        )
    return mine[-1]


def read(
    wh: Warehouse,
    table: str,
    as_of=None,
    model: str | None = None,
    *,
    run_id: str | None = None,
    snapshot_id: int | None = None,
    columns: list[str] | None = None,
) -> pd.DataFrame:
    """Rows of ``table`` (current snapshot, or as run ``run_id`` / snapshot ``snapshot_id`` left it),
    optionally only the (as_of, model) partition; empty if the table does not exist yet."""
    from pyiceberg.expressions import AlwaysTrue, And, EqualTo

    tbl = wh.load(table)
    if tbl is None:
        return pd.DataFrame(columns=columns or [])
    if run_id is not None:
        snapshot_id = _snapshot_of(wh, table, run_id).snapshot_id
    row_filter = AlwaysTrue()
    if as_of is not None:
        row_filter = _as_of_filter(table, as_of)
    if model is not None:
        row_filter = And(row_filter, EqualTo("model", model_key(model)))
    names = {f.name for f in tbl.schema().fields}
    selected = tuple(c for c in columns if c in names) if columns else ("*",)
    arrow = tbl.scan(row_filter=row_filter, selected_fields=selected, snapshot_id=snapshot_id).to_arrow()
    df = arrow.to_pandas()
    for c in df.columns:  # Iceberg keeps microseconds; give pandas users the usual nanosecond columns
        if pd.api.types.is_datetime64_any_dtype(df[c]):
            tz = getattr(df[c].dtype, "tz", None)
            df[c] = df[c].astype(f"datetime64[ns, {tz}]" if tz is not None else "datetime64[ns]")
    keys = [k for k in SORT_KEYS[table] if k in df.columns]
    order = [c for c in ("as_of", "model") if c in df.columns] + keys
    return df.sort_values(order, kind="stable").reset_index(drop=True) if order and len(df) else df


def _file_partitions(tbl) -> list[tuple[Any, str, int]] | None:
    """(as_of, model, rows) of each live data file, from the table's metadata alone (the file's ``model``
    partition value, its ``as_of`` bounds and row count); None when only the rows can tell: a data file whose
    bounds span several as_of values (e.g. another engine compacted a day's intraday runs together) or a
    delete file."""
    if tbl.current_snapshot() is None:
        return []
    files = tbl.inspect.files().select(["content", "record_count", "partition", "readable_metrics"])
    found = []
    for f in files.to_pylist():
        lo, hi = (f["readable_metrics"]["as_of"][k] for k in ("lower_bound", "upper_bound"))
        if f["content"] != 0 or lo is None or lo != hi:
            return None
        found.append((lo, f["partition"]["model"], f["record_count"]))
    return found


def partitions(wh: Warehouse, table: str = "forecasts", scan: bool = False) -> pd.DataFrame:
    """The (as_of, model) partitions of ``table`` with their row counts, sorted by as_of then model.

    From the table's metadata (``_file_partitions``), so no data file is opened however large the table
    grows; when the metadata cannot tell, or with ``scan=True`` (the reference path), from the ``as_of`` and
    ``model`` columns of every row."""
    cols = ["as_of", "model", "rows"]
    tbl = wh.load(table)
    found = _file_partitions(tbl) if tbl is not None and not scan else None
    if found is not None:
        df = pd.DataFrame(found, columns=cols)
        df["as_of"] = pd.to_datetime(df["as_of"]).astype("datetime64[ns]")
        return df.groupby(cols[:2])["rows"].sum().reset_index() if len(df) else pd.DataFrame(columns=cols)
    df = read(wh, table, columns=cols[:2])
    if df.empty:
        return pd.DataFrame(columns=cols)
    return df.groupby(cols[:2]).size().rename("rows").reset_index()


# ----------------------------------------------------------------------------------------- maintenance


def expire_snapshots(tbl, older_than: dt.datetime) -> list[int]:
    """Expire every snapshot committed before ``older_than`` (never the current one); returns their ids.
    Their data files are then unreferenced: ``remove_orphan_files`` deletes them."""
    cutoff_ms = int(older_than.timestamp() * 1000)
    current = tbl.current_snapshot()
    ids = [
        s.snapshot_id
        for s in tbl.metadata.snapshots
        if s.timestamp_ms < cutoff_ms and (current is None or s.snapshot_id != current.snapshot_id)
    ]
    if ids:
        tbl.maintenance.expire_snapshots().by_ids(ids).commit()
    return ids


def referenced_files(tbl) -> set[str]:
    """Every file a retained snapshot or the metadata log needs: metadata files, manifest lists, manifests,
    live data and delete files."""
    tbl.refresh()
    paths = {tbl.metadata_location, *(e.metadata_file for e in tbl.metadata.metadata_log)}
    for snap in tbl.metadata.snapshots:
        paths.add(snap.manifest_list)
        for manifest in snap.manifests(tbl.io):
            paths.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(tbl.io, discard_deleted=True):
                paths.add(entry.data_file.file_path)
    for stats in tbl.metadata.statistics:
        paths.add(stats.statistics_path)
    return {strip_protocol(p) for p in paths}  # as fsspec lists them: /x for file:///x, b/k for s3://b/k


def remove_orphan_files(wh: Warehouse, tbl, older_than: dt.datetime, dry_run: bool = False) -> list[str]:
    """Delete files under the table's location that nothing references and that are older than
    ``older_than`` (a write in flight is never touched): data files of runs that died before committing,
    of commits that lost a race, and of expired snapshots. Returns the deleted paths."""
    from .storage import filesystem, with_retries

    fs = filesystem(wh.url, wh.storage)
    root = strip_protocol(tbl.location())
    keep = referenced_files(tbl)
    cutoff = older_than.timestamp()
    gone = []
    if not fs.exists(root):
        return gone
    for path, info in fs.find(root, detail=True).items():
        if path in keep or info.get("type") == "directory":
            continue
        modified = info.get("mtime") or info.get("LastModified") or info.get("last_modified")
        ts = modified.timestamp() if hasattr(modified, "timestamp") else float(modified or 0)
        if ts >= cutoff:
            continue
        if not dry_run:
            with_retries(lambda p=path: fs.rm(p), f"delete orphan {path}", wh.storage.retries)
        gone.append(path)
    return sorted(gone)


def compact(tbl, table: str, min_files: int = 2) -> list[dict[str, Any]]:
    """Rewrite every (as_of, model) partition held in ``min_files`` or more data files as one file per
    partition (the same rows; one commit each, tagged ``kronos.operation=compact``, so ``list_runs`` still
    names the run that wrote them). A partition a run re-commits meanwhile is skipped, never mixed."""
    done = []
    found = _file_partitions(tbl)
    if found is None:  # the metadata cannot tell: every (as_of, model) present, from the rows
        keys = tbl.scan(selected_fields=("as_of", "model")).to_arrow().to_pandas().drop_duplicates()
        candidates = sorted(keys.itertuples(index=False, name=None))
    else:  # no rows read: the partitions held in enough files
        per = Counter((a, m) for a, m, _ in found)
        candidates = sorted(k for k, n in per.items() if n >= min_files)
    for as_of, model in candidates:
        filt = _partition_filter(table, as_of, str(model))
        files = list(tbl.scan(row_filter=filt).plan_files())
        if len(files) < min_files:
            continue
        rows = tbl.scan(row_filter=filt).to_arrow()
        new = data_files_of(write_data_files(rows, tbl.metadata, tbl.io.properties, table))
        try:
            overwrite_partition(
                tbl, table, as_of, str(model), new, {PROPERTY_PREFIX + "operation": "compact"}
            )
        except ConcurrentCommitError as e:
            log.warning("compaction of %s as_of=%s model=%s skipped: %s", table, as_of, model, e)
            continue
        done.append(
            {
                "as_of": pd.Timestamp(as_of),
                "model": str(model),
                "files_before": len(files),
                "files_after": len(new),
                "rows": rows.num_rows,
            }
        )
    return done
