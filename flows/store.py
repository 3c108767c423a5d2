"""The flows' reads and writes beside the Ray job: input freshness, realised bars, the job's output tables,
the scorecard.

Bars are read with the job's own read plan and reader (``pipeline.read.read_bars``) and the job's Iceberg
tables through ``pipeline.tables`` (the same catalog and partitioning the job commits to), so the flows see
exactly what the job wrote and would read. These are I/O functions; the Prefect tasks that call them carry
the retries.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import pandas as pd

from kronos_core.rules import TIMESTAMP_MAX, TIMESTAMP_MIN
from pipeline import tables
from pipeline.config import StorageConfig
from pipeline.read import list_partitions as list_input_partitions
from pipeline.read import read_bars as read_job_bars
from pipeline.storage import filesystem, strip_protocol, to_url
from pipeline.tables import Warehouse

from .scoring import SCORECARD_COLUMNS

__all__ = [
    "input_status",
    "input_sessions",
    "read_bars",
    "forecast_partitions",
    "read_forecasts",
    "read_rejected",
    "read_scorecard",
    "write_scorecard",
    "write_bytes",
    "local_or_url",
]

log = logging.getLogger(__name__)
_END_OF_TIME = pd.Timestamp(TIMESTAMP_MAX) - pd.Timedelta(days=1)
_START_OF_TIME = pd.Timestamp(TIMESTAMP_MIN) + pd.Timedelta(days=1)
_RECENT_DAYS = 30  # symbol layout: how far back the freshness check looks for the latest bar


def _storage(storage: StorageConfig | None) -> StorageConfig:
    return (storage or StorageConfig()).resolved()


def input_sessions(input_url: str, storage: StorageConfig | None = None) -> list[dt.date]:
    """The delivered sessions of a date-partitioned input (its ``date=`` partitions), oldest first."""
    fs = filesystem(input_url, storage)
    if not fs.exists(strip_protocol(input_url)):
        return []
    return [dt.date.fromisoformat(v) for v in list_input_partitions(input_url, "date", _storage(storage))]


def input_status(
    input_url: str, layout: str, as_of: dt.date, storage: StorageConfig | None = None
) -> tuple[set[str], dt.date | None, dt.date | None]:
    """(symbols with a bar on ``as_of``, date of the first bar, date of the latest bar) for the freshness
    check; both dates None when there are no bars at all.

    Date layout: from the ``date=`` partition names (only ``as_of``'s partition is read). Symbol layout: the
    timestamps of the last 30 days before ``as_of`` onwards; when none is on ``as_of``, also every timestamp
    up to ``as_of`` (row groups pruned by their statistics: nothing is read for an as_of before the data), so
    ``first`` tells an as_of before the data from a gap. When ``as_of`` has bars, ``first`` is the earliest of
    those 30 days (the freshness check needs no more)."""
    fs = filesystem(input_url, storage)
    if not fs.exists(strip_protocol(input_url)):
        return set(), None, None
    if layout == "date":
        days = input_sessions(input_url, storage)
        if not days:
            return set(), None, None
        if as_of not in days:
            return set(), days[0], days[-1]
        bars = read_bars(input_url, layout, as_of, as_of, None, storage, columns=("symbol", "timestamp"))
        return set(bars["symbol"]), days[0], days[-1]
    columns = ("symbol", "timestamp")
    bars = read_bars(input_url, layout, as_of - dt.timedelta(days=_RECENT_DAYS), None, None, storage, columns)
    day = bars["timestamp"].dt.normalize()
    first, last = (day.min(), day.max()) if len(bars) else (None, None)
    present = set(bars.loc[day == pd.Timestamp(as_of), "symbol"])
    if not present:
        earlier = read_bars(input_url, layout, _START_OF_TIME.date(), as_of, None, storage, columns)[
            "timestamp"
        ]
        if len(earlier):
            first, last = earlier.min().normalize(), last or earlier.max().normalize()
    if first is None:
        return set(), None, None
    return present, first.date(), last.date()


def read_bars(
    input_url: str,
    layout: str,
    start: dt.date,
    end: dt.date | None = None,
    symbols: list[str] | None = None,
    storage: StorageConfig | None = None,
    columns: tuple[str, ...] = ("symbol", "timestamp", "close"),
) -> pd.DataFrame:
    """Bars dated ``start`` .. ``end`` (inclusive days; ``end`` None = everything after ``start``), optionally
    for ``symbols``, sorted by symbol and time. A duplicated stamp keeps its first delivered bar (the job
    rejects such series; scoring only needs a defined position)."""
    lo = pd.Timestamp(start)
    hi = pd.Timestamp(end) + pd.Timedelta(days=1) - pd.Timedelta(1, "ns") if end is not None else _END_OF_TIME
    universe = sorted(set(symbols)) if symbols is not None else None
    try:
        bars = read_job_bars(input_url, layout, _storage(storage), lo, hi, universe, list(columns))
    except ValueError:  # no partitions at all
        return pd.DataFrame(columns=list(columns))
    if bars.empty:
        return bars
    return (
        bars.drop_duplicates(["symbol", "timestamp"])
        .sort_values(["symbol", "timestamp"], kind="stable")
        .reset_index(drop=True)
    )


def read_scorecard(wh: Warehouse) -> pd.DataFrame:
    """Every scored (as_of, model, method) row of the scorecard table; empty (with its columns) at first."""
    card = tables.read(wh, "scorecard")
    if card.empty:
        return pd.DataFrame(columns=SCORECARD_COLUMNS)
    card["as_of"] = pd.to_datetime(card["as_of"]).dt.date
    if "crps_by_step" in card.columns:
        card["crps_by_step"] = [list(v) if v is not None else None for v in card["crps_by_step"]]
    return card


def write_scorecard(wh: Warehouse, scores: pd.DataFrame, source: str) -> list[int]:
    """Publish scored cutoffs: each (as_of, model) partition of the scorecard table replaced by its rows, one
    commit each, the snapshot tagged with ``source`` (the flow that scored it). Returns the snapshot ids."""
    out = []
    if scores.empty:
        return out
    df = scores.reindex(columns=SCORECARD_COLUMNS)  # rows scored before a column existed: null there
    df["as_of"] = pd.to_datetime(df["as_of"]).dt.normalize()
    df["crps_by_step"] = [
        [float(x) for x in v] if isinstance(v, (list, tuple)) or getattr(v, "ndim", 0) == 1 else None
        for v in df["crps_by_step"]
    ]
    for (as_of, model), part in df.groupby(["as_of", "model"], sort=True):
        rows = pa_table(part)
        record = {"run_id": f"{source}-{uuid.uuid4().hex[:8]}", "as_of": str(as_of), "model": model}
        out.append(tables.publish(wh, "scorecard", rows, as_of, model, {**record, "source": source}))
    return out


def pa_table(df: pd.DataFrame):
    """A scorecard frame as Arrow with the table's fixed types (a column of nulls keeps its type)."""
    import pyarrow as pa

    types = {
        "as_of": pa.date32(),
        "model": pa.string(),
        "method": pa.string(),
        "n_assets": pa.int64(),
        "n_points": pa.int64(),
        "crps_by_step": pa.list_(pa.float64()),
        "scored_at": pa.timestamp("us", "UTC"),
    }
    cols = {}
    for c in SCORECARD_COLUMNS:
        values = df[c]
        if c == "as_of":
            cols[c] = pa.array(pd.to_datetime(values).dt.date.tolist(), types[c])
        elif c == "crps_by_step":
            cols[c] = pa.array(values.tolist(), types[c])
        elif c == "scored_at":
            cols[c] = pa.Array.from_pandas(pd.to_datetime(values, utc=True)).cast(types[c])
        else:
            typ = types.get(c, pa.float64())
            cols[c] = pa.array(values.astype(object).where(values.notna(), None).tolist(), typ)
    return pa.table(cols)


def write_bytes(url: str, data: bytes, storage: StorageConfig | None = None) -> str:
    fs, path = filesystem(url, storage), strip_protocol(url)
    fs.pipe_file(path, data)
    return to_url(path, url)


def local_or_url(url: str) -> str:
    """Absolute path for local URLs (what a user can open), the URL itself for object stores."""
    return url if "://" in url and not url.startswith("file://") else strip_protocol(url)


def forecast_partitions(wh: Warehouse) -> list[tuple[dt.date, str]]:
    """Every (as_of date, model) partition of the forecasts table with a daily as_of, sorted."""
    out = []
    for as_of, model in tables.partitions(wh, "forecasts")[["as_of", "model"]].itertuples(index=False):
        ts = pd.Timestamp(as_of)
        if ts != ts.normalize():
            log.warning("ignoring as_of %s (intraday; the scorecard scores daily cutoffs)", ts)
            continue
        out.append((ts.date(), str(model)))
    return sorted(out)


def read_forecasts(wh: Warehouse, as_of, model: str, columns: list[str] | None = None) -> pd.DataFrame:
    """The rows of one (as_of, model) partition of the forecasts table (current snapshot); empty if absent."""
    return tables.read(wh, "forecasts", as_of, model, columns=columns)


def read_rejected(wh: Warehouse, as_of, model: str) -> pd.DataFrame:
    """The rejected assets of one (as_of, model) partition, with their reasons; empty if none."""
    return tables.read(wh, "rejected", as_of, model)
