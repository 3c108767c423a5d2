"""Stage 1, read and window: plan which files and row groups the as-of window needs, read only those
columns and rows, then cut each asset's last ``lookback`` bars.

Pruning happens in three places, cheapest first:
  1. partitions: ``date=`` folders outside [window start, as_of] (or ``symbol=`` folders outside the
     universe) are never listed further or opened;
  2. row groups: parquet footer statistics on ``timestamp`` (and ``symbol``) skip row groups that cannot
     hold a wanted row;
  3. rows: a filter on ``timestamp`` in the window and ``symbol`` in the universe after decoding.
``bytes_read`` counts the footers plus the compressed column chunks of the row groups actually read.

An Iceberg table of bars (``input.format: iceberg``) is planned by PyIceberg instead
(``plan_iceberg_read``): the as-of window and the universe are pushed down as a row filter, which prunes
partitions and data files by their metadata; each planned file is then read by the same stage 1 tasks with
the same row-level checks.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kronos_core.rules import fill_values, in_range_mask

from .config import StorageConfig
from .storage import filesystem, strip_protocol, with_retries

__all__ = [
    "ReadPlan",
    "list_partitions",
    "plan_read",
    "plan_iceberg_read",
    "read_files",
    "file_columns",
    "read_shard",
    "shard_of",
    "window_assets",
    "read_bars",
    "window_group",
    "BAR_COLUMNS",
    "ASSET_SCHEMA",
]

log = logging.getLogger(__name__)

PRICE_COLUMNS = ["open", "high", "low", "close"]
BAR_COLUMNS = ["symbol", "timestamp", *PRICE_COLUMNS, "volume", "amount"]

# one row per asset after windowing; ``values`` is the (L, 6) window flattened row-major; ``read_issues``
# holds rule codes found while reading (';'-joined): rows whose timestamp is out of range or missing, an
# amount without a volume. Stage 2 turns them into reject reasons.
ASSET_SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("n_bars", pa.int64()),
        ("timestamps", pa.list_(pa.int64())),
        ("values", pa.list_(pa.float64())),
        ("has_volume", pa.bool_()),
        ("read_issues", pa.string()),
    ]
)
_READ_SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("timestamp", pa.timestamp("ns")),
        *[(c, pa.float64()) for c in [*PRICE_COLUMNS, "volume", "amount"]],
        ("_ord", pa.int64()),
        ("_issue", pa.string()),
    ]
)


@dataclass
class ReadPlan:
    files: list[dict] = field(default_factory=list)  # {path, rank, row_groups} (+ task: an Iceberg scan task)
    bytes_read: int = 0
    rows: int = 0  # rows in the planned row groups (before the row-level window and universe filter)
    partitions_total: int = 0
    partitions_read: int = 0
    window_start: pd.Timestamp | None = None
    iceberg: dict | None = None  # Iceberg input: table, snapshot_id, and what the readers need (metadata, io)

    @property
    def n_files(self) -> int:
        return len(self.files)


def _partition_value(name: str, key: str) -> str | None:
    base = name.rstrip("/").rsplit("/", 1)[-1]
    return base.split("=", 1)[1] if base.startswith(f"{key}=") else None


def _row_groups(
    pf: pq.ParquetFile, columns: list[str], start: pd.Timestamp, end: pd.Timestamp, universe: list[str] | None
) -> tuple[list[int], int, int]:
    """Row groups whose statistics overlap the window (and universe), their compressed bytes and rows."""
    md = pf.metadata
    names = [md.schema.column(i).name for i in range(md.num_columns)]
    want = [names.index(c) for c in columns if c in names]
    ts_i = names.index("timestamp")
    sym_i = names.index("symbol") if "symbol" in names else None
    keep, nbytes, rows = [], 0, 0
    # compare in microseconds: statistics of a year-3000 bar wrap around in nanoseconds (to 1830), which
    # pruned a whole row group of good bars
    lo, hi = np.datetime64(start, "us"), np.datetime64(end, "us")
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        st = rg.column(ts_i).statistics
        if (
            st is not None
            and st.has_min_max
            and not st.null_count
            and (np.datetime64(st.max, "us") < lo or np.datetime64(st.min, "us") > hi)
        ):
            continue
        if universe is not None and sym_i is not None:
            ss = rg.column(sym_i).statistics
            # a row group with a missing or empty symbol is read: those rows are quarantined, never skipped
            if ss is not None and ss.has_min_max and not ss.null_count and ss.min != "":
                i = int(np.searchsorted(universe, ss.min, side="left"))
                if i >= len(universe) or universe[i] > ss.max:
                    continue
        keep.append(g)
        nbytes += sum(rg.column(c).total_compressed_size for c in want)
        rows += rg.num_rows
    return keep, nbytes, rows


def list_partitions(url: str, layout: str, storage: StorageConfig) -> dict[str, str]:
    """The bars table's partitions: value (``2024-06-28`` or a symbol) -> path, sorted by value."""
    fs = filesystem(url, storage)
    entries = with_retries(lambda: fs.ls(strip_protocol(url), detail=False), f"list {url}", storage.retries)
    key = "date" if layout == "date" else "symbol"
    found = {_partition_value(p, key): p for p in entries}
    found.pop(None, None)
    if layout == "date":
        bad = sorted(v for v in found if not _is_iso_date(v))
        if bad:
            log.warning(
                "ignoring %d partitions under %s that are not date=YYYY-MM-DD (%s)", len(bad), url, bad[:3]
            )
            found = {v: p for v, p in found.items() if v not in bad}
    return dict(sorted(found.items()))


def _is_iso_date(value: str) -> bool:
    try:
        return pd.Timestamp(value).strftime("%Y-%m-%d") == value
    except ValueError:
        return False


def plan_read(
    url: str,
    layout: str,
    storage: StorageConfig,
    start: pd.Timestamp,
    end: pd.Timestamp,
    universe: list[str] | None,
    threads: int = 8,
) -> ReadPlan:
    """List partitions, prune them, read footers, pick row groups. Runs in the driver (metadata only)."""
    fs = filesystem(url, storage)
    r = storage.retries
    partitions = list_partitions(url, layout, storage)
    if not partitions:
        key = "date" if layout == "date" else "symbol"
        raise ValueError(f"no '{key}=...' partitions under {url}; is input.layout ({layout!r}) right?")
    parts = list(partitions.values())
    plan = ReadPlan(partitions_total=len(parts), window_start=start)
    if layout == "date":
        lo, hi = start.strftime("%Y-%m-%d"), end.strftime("%Y-%m-%d")
        parts = [p for p in parts if lo <= _partition_value(p, "date") <= hi]
    elif universe is not None:
        wanted = set(universe)
        parts = [p for p in parts if _partition_value(p, "symbol") in wanted]
    plan.partitions_read = len(parts)

    def files_in(part: str) -> list[str]:
        found = with_retries(lambda: fs.ls(part, detail=False), f"list {part}", r)
        return sorted(f for f in found if f.endswith(".parquet"))

    def footer(path: str):
        def go():
            with fs.open(path, "rb") as f:
                pf = pq.ParquetFile(f)
                rgs, nbytes, rows = _row_groups(pf, BAR_COLUMNS, start, end, universe)
                return rgs, nbytes + pf.metadata.serialized_size + 8, rows

        return with_retries(go, f"read footer {path}", r)

    with ThreadPoolExecutor(threads) as ex:
        paths = [f for fl in ex.map(files_in, parts) for f in fl]
        footers = list(ex.map(footer, paths))
    for rank, (path, (rgs, nbytes, rows)) in enumerate(zip(paths, footers, strict=True)):
        if rgs:
            plan.files.append({"path": path, "rank": rank, "row_groups": rgs})
            plan.bytes_read += nbytes
            plan.rows += rows
    log.info(
        "read plan: %d/%d partitions, %d files, %s bytes, window %s..%s",
        plan.partitions_read,
        plan.partitions_total,
        plan.n_files,
        f"{plan.bytes_read:,}",
        start,
        end,
    )
    return plan


def plan_iceberg_read(
    url: str,
    table: str,
    catalog,
    storage: StorageConfig,
    start: pd.Timestamp,
    end: pd.Timestamp,
    universe: list[str] | None,
) -> ReadPlan:
    """The read plan of an Iceberg table of bars (``table``: ``<namespace>.<name>`` or a name in
    ``catalog.namespace``; ``catalog``: a ``CatalogConfig``; ``url`` its warehouse):
    PyIceberg plans the scan with the window (and the universe) pushed down, so only the data files that can
    hold a wanted row are read. Rows a later check must see (no timestamp, no symbol) pass the filter."""
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError
    from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, In, IsNull, LessThanOrEqual, Or
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    from .tables import Warehouse

    table = table if "." in table else f"{catalog.namespace}.{table}"  # a bare name: the catalog's namespace
    try:
        tbl = Warehouse(url, catalog, storage).catalog().load_table(table)
    except (NoSuchTableError, NoSuchNamespaceError) as e:
        raise ValueError(
            f"no Iceberg table {table!r} in the input catalog ({url}); check input.table and input.catalog"
        ) from e
    names = set(schema_to_pyarrow(tbl.schema()).names)
    missing = {"symbol", "timestamp", *PRICE_COLUMNS} - names
    if missing:
        raise ValueError(
            f"Iceberg table {table!r} has no column(s) {sorted(missing)}; bars need {BAR_COLUMNS}"
        )
    window = Or(
        And(
            GreaterThanOrEqual("timestamp", start.isoformat()), LessThanOrEqual("timestamp", end.isoformat())
        ),
        IsNull("timestamp"),
    )
    row_filter = window
    if universe is not None:
        row_filter = And(window, Or(In("symbol", set(universe)), Or(IsNull("symbol"), EqualTo("symbol", ""))))
    columns = tuple(c for c in BAR_COLUMNS if c in names)
    scan = tbl.scan(row_filter=row_filter, selected_fields=columns)
    tasks = list(scan.plan_files())
    snap = tbl.current_snapshot()
    plan = ReadPlan(
        partitions_total=len(tbl.inspect.partitions()) if snap is not None and tbl.spec().fields else 1,
        window_start=start,
    )
    plan.partitions_read = len({tuple(t.file.partition) for t in tasks})
    for rank, task in enumerate(tasks):
        plan.files.append(
            {"path": task.file.file_path, "rank": rank, "row_groups": [], "task": pickle.dumps(task)}
        )
        plan.bytes_read += int(task.file.file_size_in_bytes)
        plan.rows += int(task.file.record_count)
    plan.iceberg = {
        "table": table,
        "snapshot_id": snap.snapshot_id if snap is not None else None,
        "metadata": pickle.dumps(tbl.metadata),
        "io": dict(tbl.io.properties),
        "row_filter": pickle.dumps(row_filter),
        "columns": columns,
    }
    log.info(
        "iceberg read plan: %s snapshot %s, %d files (%s bytes), window %s..%s",
        table,
        plan.iceberg["snapshot_id"],
        plan.n_files,
        f"{plan.bytes_read:,}",
        start,
        end,
    )
    return plan


def _read_iceberg_task(task_bytes: bytes, iceberg: dict) -> pa.Table:
    """One planned Iceberg data file, the row filter applied (PyIceberg's reader: deletes honoured)."""
    from pyiceberg.io import load_file_io
    from pyiceberg.io.pyarrow import ArrowScan

    metadata = pickle.loads(iceberg["metadata"])
    io = load_file_io(iceberg["io"], metadata.location)
    schema = metadata.schema().select(*iceberg["columns"])
    scan = ArrowScan(metadata, io, schema, pickle.loads(iceberg["row_filter"]))
    return scan.to_table([pickle.loads(task_bytes)])


def _row_issues(ts: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps as datetime64[ns] with NaT where unusable, per-row issue code or '').

    The range is checked in the column's own unit before any cast: a microsecond timestamp of year 3000
    would otherwise wrap around to 1830 in nanoseconds (``kronos_core.rules.timestamps``)."""
    native = ts.to_numpy()
    if native.dtype.kind != "M":
        native = np.asarray(native, dtype="datetime64[ns]")
    ok = in_range_mask(native)
    out = np.full(native.shape, np.datetime64("NaT"), dtype="datetime64[ns]")
    out[ok] = native[ok].astype("datetime64[ns]")
    issue = np.where(ok, "", np.where(np.isnat(native), "missing_timestamp", "timestamp_out_of_range"))
    return out, issue.astype(object)


def shard_of(symbol: pa.Array | pa.ChunkedArray, n_shards: int) -> np.ndarray:
    """Each row's symbol shard in ``[0, n_shards)``: a hash of the symbol string (pandas' SipHash with its
    fixed key, the same in every process), so read tasks that each keep one shard agree on who owns what."""
    if n_shards == 1:
        return np.zeros(len(symbol), np.int64)
    if isinstance(symbol, pa.ChunkedArray):
        symbol = symbol.combine_chunks()
    enc = pc.dictionary_encode(symbol)
    uniques = np.asarray(enc.dictionary.to_pylist(), dtype=object)
    per_unique = (pd.util.hash_array(uniques, categorize=False) % np.uint64(n_shards)).astype(np.int64)
    return per_unique[enc.indices.to_numpy(zero_copy_only=False)]


def read_files(
    batch: dict,
    url: str,
    storage: StorageConfig,
    start: pd.Timestamp,
    end: pd.Timestamp,
    universe: list[str] | None,
    iceberg: dict | None = None,
    shard: tuple[int, int] | None = None,
    threads: int = 1,
) -> pa.Table:
    """Read the planned row groups of a batch of files (columns ``path, rank, row_groups``; for an Iceberg
    input ``task``, read through PyIceberg with the plan's ``iceberg`` settings), keep the rows
    in [start, end] and the universe, and tag each row with ``_ord`` = (file rank, row) delivery order.
    ``shard=(k, n)`` keeps only the rows whose symbol is in shard ``k`` of ``n`` (``shard_of``); ``threads``
    files are read at once.

    Rows that cannot be placed are kept for quarantine, never dropped silently: a row without a symbol
    (whatever the universe: it belongs to no asset, so it becomes the asset ``""``, rejected ``empty_symbol``)
    and a row of a wanted symbol whose timestamp is missing or outside the representable range
    (``_issue``)."""
    fs = filesystem(url, storage)
    lo, hi = np.datetime64(start, "ns"), np.datetime64(end, "ns")
    wanted = pa.array(universe, pa.string()) if universe is not None else None
    tasks = batch["task"] if iceberg is not None else [None] * len(batch["path"])
    files = list(zip(batch["path"], batch["rank"], batch["row_groups"], tasks, strict=True))

    def one(file) -> pa.Table:
        path, rank, rgs, task = file

        def go():
            if task is not None:
                return _read_iceberg_task(task, iceberg)
            with fs.open(path, "rb") as f:
                pf = pq.ParquetFile(f)
                cols = [c for c in BAR_COLUMNS if c in pf.schema_arrow.names]
                return pf.read_row_groups([int(g) for g in rgs], columns=cols)

        t = with_retries(go, f"read {path}", storage.retries)
        symbol = pc.fill_null(t["symbol"].cast(pa.string()), "")
        row = np.arange(t.num_rows)  # the row's place in the file: delivery order, before any filter
        if shard is not None and shard[1] > 1:
            mine = pa.array(shard_of(symbol, shard[1]) == shard[0])
            t, symbol, row = t.filter(mine), symbol.filter(mine), row[mine.to_numpy(zero_copy_only=False)]
        ts, issue = _row_issues(t["timestamp"])
        in_window = ~np.isnat(ts) & (ts >= lo) & (ts <= hi)
        no_symbol = pc.equal(symbol, "").to_numpy(zero_copy_only=False)
        member = (
            pc.is_in(symbol, value_set=wanted).to_numpy(zero_copy_only=False) if wanted is not None else True
        )
        keep = ((in_window | (issue != "")) & member) | (in_window & no_symbol)
        cols = {"symbol": symbol, "timestamp": pa.array(ts, pa.timestamp("ns"))}
        for c in [*PRICE_COLUMNS, "volume", "amount"]:
            cols[c] = t[c].cast(pa.float64()) if c in t.column_names else pa.nulls(t.num_rows, pa.float64())
        cols["_ord"] = pa.array((int(rank) << 32) + row, pa.int64())
        cols["_issue"] = pa.array(issue, pa.string())
        return pa.table(cols, schema=_READ_SCHEMA).filter(pa.array(keep))

    if threads > 1 and len(files) > 1:
        with ThreadPoolExecutor(min(threads, len(files))) as ex:
            out = list(ex.map(one, files))
    else:
        out = [one(f) for f in files]
    return pa.concat_tables(out) if out else _READ_SCHEMA.empty_table()


def file_columns(files: list[dict], iceberg: dict | None = None) -> dict[str, list]:
    """A plan's files as the column batch ``read_files`` takes (``task`` too for an Iceberg input)."""
    keys = ("path", "rank", "row_groups", *(("task",) if iceberg is not None else ()))
    return {k: [f[k] for f in files] for k in keys}


def window_assets(t: pa.Table, lookback: int, block_assets: int) -> Iterator[pa.Table]:
    """Rows of many symbols (``read_files``' output) -> ``ASSET_SCHEMA`` blocks of at most ``block_assets``
    assets: each symbol's rows through ``window_group``, as the group-by path does after its shuffle."""
    if not t.num_rows:
        return
    t = t.sort_by([("symbol", "ascending"), ("_ord", "ascending")])
    sym = t["symbol"].to_numpy(zero_copy_only=False)
    bounds = [*np.flatnonzero(np.r_[True, sym[1:] != sym[:-1]]), len(sym)]
    out = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        out.append(window_group(t.slice(a, b - a), lookback))
        if len(out) == block_assets:
            yield pa.concat_tables(out)
            out = []
    if out:
        yield pa.concat_tables(out)


def read_shard(
    batch: dict,
    files: list[dict],
    n_shards: int,
    lookback: int,
    block_assets: int,
    url: str,
    storage: StorageConfig,
    start: pd.Timestamp,
    end: pd.Timestamp,
    universe: list[str] | None,
    iceberg: dict | None = None,
    threads: int = 8,
) -> Iterator[pa.Table]:
    """Stage 1 without a shuffle, for each shard number in ``batch["shard"]``: read every planned file,
    keep the rows of this shard's symbols, window them. Each asset's rows are all in one task, so no
    exchange between tasks is needed; the price is that every task decodes every planned row group, so the
    job uses it for windows of modest size (``pipeline.job.read_shards``)."""
    cols = file_columns(files, iceberg)
    for k in batch["shard"]:
        t = read_files(cols, url, storage, start, end, universe, iceberg, (int(k), n_shards), threads)
        yield from window_assets(t, lookback, block_assets)


def _list(values: np.ndarray, typ) -> pa.ListArray:
    return pa.ListArray.from_arrays(pa.array([0, len(values)], pa.int32()), pa.array(values, typ))


def window_group(t: pa.Table, lookback: int) -> pa.Table:
    """All rows of one symbol -> one asset row: the last ``lookback`` bars in delivery order (no sorting by
    time: an unsorted or duplicated series must stay visible to the validate stage). Volume and amount are
    filled by the shared rule (``kronos_core.rules.fill_values``); rows flagged while reading are left out
    of the window and their codes recorded in ``read_issues``.

    Plain numpy on a pyarrow table: 0.1 ms per asset, against 1.4 ms with a pandas version."""
    flagged = t["_issue"].to_numpy(zero_copy_only=False) != ""
    issues = sorted(set(t["_issue"].filter(pa.array(flagged)).to_pylist())) if flagged.any() else []
    good = t.filter(pa.array(~flagged)) if flagged.any() else t
    order = np.argsort(good["_ord"].to_numpy(), kind="stable")[-lookback:]
    prices = np.column_stack(
        [good[c].to_numpy(zero_copy_only=False).astype(np.float64)[order] for c in PRICE_COLUMNS]
    ).reshape(-1, 4)
    has_volume = good.num_rows > 0 and good["volume"].null_count < good.num_rows
    has_amount = good.num_rows > 0 and good["amount"].null_count < good.num_rows
    vol = good["volume"].to_numpy(zero_copy_only=False).astype(np.float64)[order] if has_volume else None
    amt = good["amount"].to_numpy(zero_copy_only=False).astype(np.float64)[order] if has_amount else None
    vals, fill_issues = fill_values(prices, vol, amt)
    issues += [i.code for i in fill_issues]
    ts = good["timestamp"].cast(pa.int64()).to_numpy()[order]
    return pa.table(
        {
            "symbol": pa.array([t["symbol"][0].as_py()], pa.string()),
            "n_bars": pa.array([len(order)], pa.int64()),
            "timestamps": _list(ts, pa.int64()),
            "values": _list(vals.reshape(-1), pa.float64()),
            "has_volume": pa.array([bool(has_volume)]),
            "read_issues": pa.array([";".join(issues) or None], pa.string()),
        },
        schema=ASSET_SCHEMA,
    )


def read_bars(
    url: str,
    layout: str,
    storage: StorageConfig,
    start: pd.Timestamp,
    end: pd.Timestamp,
    universe: list[str] | None = None,
    columns: list[str] | None = None,
) -> pd.DataFrame:
    """Bars in [start, end] as one DataFrame (driver-side, no Ray): the job's read plan and reader, so a
    caller beside the job (the flows' scoring and freshness checks) reads exactly what the job would. Rows
    without a usable timestamp or symbol are left out here (the job quarantines them)."""
    plan = plan_read(url, layout, storage, start, end, universe)
    t = read_files(file_columns(plan.files), url, storage, start, end, universe)
    ok = pc.and_(pc.equal(t["_issue"], ""), pc.not_equal(t["symbol"], ""))
    df = t.filter(ok).sort_by("_ord").to_pandas()
    return df[columns] if columns is not None else df.drop(columns=["_ord", "_issue"])
