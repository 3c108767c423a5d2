"""Stage 1, read and window: plan which files and row groups the as-of window needs, read only those
columns and rows, then cut each asset's last ``lookback`` bars.

Pruning happens in three places, cheapest first:
  1. partitions: ``date=`` folders outside [window start, as_of] (or ``symbol=`` folders outside the
     universe) are never listed further or opened;
  2. row groups: parquet footer statistics on ``timestamp`` (and ``symbol``) skip row groups that cannot
     hold a wanted row;
  3. rows: a filter on ``timestamp`` in the window and ``symbol`` in the universe after decoding.
``bytes_read`` counts the footers plus the compressed column chunks of the row groups actually read.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .config import StorageConfig
from .storage import filesystem, strip_protocol, with_retries

__all__ = ["ReadPlan", "plan_read", "read_files", "window_group", "BAR_COLUMNS", "ASSET_SCHEMA"]

log = logging.getLogger(__name__)

PRICE_COLUMNS = ["open", "high", "low", "close"]
BAR_COLUMNS = ["symbol", "timestamp", *PRICE_COLUMNS, "volume", "amount"]

# one row per asset after windowing; ``values`` is the (L, 6) window flattened row-major
ASSET_SCHEMA = pa.schema([
    ("symbol", pa.string()), ("n_bars", pa.int64()), ("timestamps", pa.list_(pa.int64())),
    ("values", pa.list_(pa.float64())), ("has_volume", pa.bool_()),
])


@dataclass
class ReadPlan:
    files: list[dict] = field(default_factory=list)  # {path, rank, row_groups}
    bytes_read: int = 0
    partitions_total: int = 0
    partitions_read: int = 0
    window_start: pd.Timestamp | None = None

    @property
    def n_files(self) -> int:
        return len(self.files)


def _partition_value(name: str, key: str) -> str | None:
    base = name.rstrip("/").rsplit("/", 1)[-1]
    return base.split("=", 1)[1] if base.startswith(f"{key}=") else None


def _row_groups(pf: pq.ParquetFile, columns: list[str], start: pd.Timestamp, end: pd.Timestamp,
                universe: list[str] | None) -> tuple[list[int], int]:
    """Row groups whose statistics overlap the window (and universe), and their compressed bytes."""
    md = pf.metadata
    names = [md.schema.column(i).name for i in range(md.num_columns)]
    want = [names.index(c) for c in columns if c in names]
    ts_i = names.index("timestamp")
    sym_i = names.index("symbol") if "symbol" in names else None
    keep, nbytes = [], 0
    lo, hi = np.datetime64(start, "ns"), np.datetime64(end, "ns")
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        st = rg.column(ts_i).statistics
        if st is not None and st.has_min_max and (np.datetime64(st.max, "ns") < lo or np.datetime64(st.min, "ns") > hi):
            continue
        if universe is not None and sym_i is not None:
            ss = rg.column(sym_i).statistics
            if ss is not None and ss.has_min_max:
                i = int(np.searchsorted(universe, ss.min, side="left"))
                if i >= len(universe) or universe[i] > ss.max:
                    continue
        keep.append(g)
        nbytes += sum(rg.column(c).total_compressed_size for c in want)
    return keep, nbytes


def plan_read(url: str, layout: str, storage: StorageConfig, start: pd.Timestamp, end: pd.Timestamp,
              universe: list[str] | None, threads: int = 8) -> ReadPlan:
    """List partitions, prune them, read footers, pick row groups. Runs in the driver (metadata only)."""
    fs = filesystem(url, storage)
    root = strip_protocol(url)
    r = storage.retries
    entries = with_retries(lambda: fs.ls(root, detail=False), f"list {url}", r)
    key = "date" if layout == "date" else "symbol"
    parts = sorted(p for p in entries if _partition_value(p, key) is not None)
    if not parts:
        raise ValueError(f"no '{key}=...' partitions under {url}; is input.layout ({layout!r}) right?")
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
                rgs, nbytes = _row_groups(pf, BAR_COLUMNS, start, end, universe)
                return rgs, nbytes + pf.metadata.serialized_size + 8
        return with_retries(go, f"read footer {path}", r)

    with ThreadPoolExecutor(threads) as ex:
        paths = [f for fl in ex.map(files_in, parts) for f in fl]
        footers = list(ex.map(footer, paths))
    for rank, (path, (rgs, nbytes)) in enumerate(zip(paths, footers, strict=True)):
        if rgs:
            plan.files.append({"path": path, "rank": rank, "row_groups": rgs})
            plan.bytes_read += nbytes
    log.info("read plan: %d/%d partitions, %d files, %s bytes, window %s..%s", plan.partitions_read,
             plan.partitions_total, plan.n_files, f"{plan.bytes_read:,}", start, end)
    return plan


def read_files(batch: dict, url: str, storage: StorageConfig, start: pd.Timestamp, end: pd.Timestamp,
               universe: list[str] | None) -> pa.Table:
    """Read the planned row groups of a batch of files (columns ``path, rank, row_groups``), keep the rows
    in [start, end] and the universe, and tag each row with ``_ord`` = (file rank, row) delivery order."""
    fs = filesystem(url, storage)
    out = []
    for path, rank, rgs in zip(batch["path"], batch["rank"], batch["row_groups"], strict=True):
        def go(path=path, rgs=rgs):
            with fs.open(path, "rb") as f:
                pf = pq.ParquetFile(f)
                cols = [c for c in BAR_COLUMNS if c in pf.schema_arrow.names]
                return pf.read_row_groups([int(g) for g in rgs], columns=cols)
        t = with_retries(go, f"read {path}", storage.retries)
        t = t.append_column("_ord", pa.array((int(rank) << 32) + np.arange(t.num_rows), pa.int64()))
        ts = t["timestamp"].cast(pa.timestamp("ns"))
        mask = pc.and_(pc.greater_equal(ts, pa.scalar(np.datetime64(start, "ns"), pa.timestamp("ns"))),
                       pc.less_equal(ts, pa.scalar(np.datetime64(end, "ns"), pa.timestamp("ns"))))
        if universe is not None:
            mask = pc.and_(mask, pc.is_in(t["symbol"], value_set=pa.array(universe, pa.string())))
        t = t.filter(mask)
        for c in ("volume", "amount"):
            if c not in t.column_names:
                t = t.append_column(c, pa.nulls(t.num_rows, pa.float64()))
        t = t.select([*BAR_COLUMNS, "_ord"])
        out.append(t.set_column(1, "timestamp", t["timestamp"].cast(pa.timestamp("ns"))).cast(pa.schema([
            ("symbol", pa.string()), ("timestamp", pa.timestamp("ns")),
            *[(c, pa.float64()) for c in [*PRICE_COLUMNS, "volume", "amount"]], ("_ord", pa.int64())])))
    return pa.concat_tables(out) if out else pa.table({c: [] for c in [*BAR_COLUMNS, "_ord"]})


def _list(values: np.ndarray, typ) -> pa.ListArray:
    return pa.ListArray.from_arrays(pa.array([0, len(values)], pa.int32()), pa.array(values, typ))


def window_group(t: pa.Table, lookback: int) -> pa.Table:
    """All rows of one symbol -> one asset row: the last ``lookback`` bars in delivery order (no sorting by
    time: an unsorted or duplicated series must stay visible to the validate stage).

    Plain numpy on a pyarrow table: 0.1 ms per asset, against 1.4 ms with a pandas version."""
    order = np.argsort(t["_ord"].to_numpy(), kind="stable")[-lookback:]
    cols = [t[c].to_numpy(zero_copy_only=False).astype(np.float64)[order]
            for c in (*PRICE_COLUMNS, "volume", "amount")]
    vals = np.column_stack(cols)
    has_volume = bool(np.isfinite(cols[4]).any()) and t["volume"].null_count < t.num_rows
    if not has_volume:  # upstream's fill: no volume -> volume = amount = 0
        vals[:, 4:] = 0.0
    elif t["amount"].null_count == t.num_rows:  # no amount -> volume x mean(OHLC)
        vals[:, 5] = vals[:, 4] * vals[:, :4].mean(axis=1)
    ts = t["timestamp"].cast(pa.int64()).to_numpy()[order]
    return pa.table({
        "symbol": pa.array([t["symbol"][0].as_py()], pa.string()), "n_bars": pa.array([len(order)], pa.int64()),
        "timestamps": _list(ts, pa.int64()), "values": _list(vals.reshape(-1), pa.float64()),
        "has_volume": pa.array([has_volume]),
    }, schema=ASSET_SCHEMA)
