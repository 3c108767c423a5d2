"""The flows' reads and writes beside the Ray job: input freshness, realised bars, the job's committed
partitions, the scorecard.

Bars are read with the job's own read plan and reader (``pipeline.read.read_bars``) and the job's tables
through its own manifest reader and partition listing (``pipeline.commit``), so the flows see exactly what
the job wrote and would read. These are I/O functions; the Prefect tasks that call them carry the retries.
"""

from __future__ import annotations

import datetime as dt
import io
import logging

import pandas as pd
import pyarrow.parquet as pq

from kronos_core.rules import TIMESTAMP_MAX
from pipeline.commit import list_partitions, read_partition_at
from pipeline.config import StorageConfig
from pipeline.read import list_partitions as list_input_partitions
from pipeline.read import read_bars as read_job_bars
from pipeline.storage import filesystem, join, strip_protocol, to_url

from .scoring import SCORECARD_COLUMNS

__all__ = [
    "input_status",
    "input_sessions",
    "read_bars",
    "forecast_partitions",
    "read_forecasts",
    "read_table",
    "read_scorecard",
    "write_scorecard",
    "write_bytes",
    "scorecard_url",
    "local_or_url",
]

log = logging.getLogger(__name__)
_END_OF_TIME = pd.Timestamp(TIMESTAMP_MAX) - pd.Timedelta(days=1)
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
) -> tuple[set[str], dt.date | None]:
    """(symbols with a bar on ``as_of``, date of the latest bar) for the freshness check."""
    fs = filesystem(input_url, storage)
    if not fs.exists(strip_protocol(input_url)):
        return set(), None
    if layout == "date":
        days = input_sessions(input_url, storage)
        if not days:
            return set(), None
        if as_of not in days:
            return set(), days[-1]
        bars = read_bars(input_url, layout, as_of, as_of, None, storage, columns=("symbol", "timestamp"))
        return set(bars["symbol"]), days[-1]
    bars = read_bars(
        input_url,
        layout,
        as_of - dt.timedelta(days=_RECENT_DAYS),
        None,
        None,
        storage,
        columns=("symbol", "timestamp"),
    )
    if bars.empty:
        return set(), None
    day = bars["timestamp"].dt.normalize()
    return set(bars.loc[day == pd.Timestamp(as_of), "symbol"]), day.max().date()


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


def scorecard_url(output_url: str, name: str = "scorecard.parquet") -> str:
    return join(output_url, "scorecard", name)


def read_scorecard(output_url: str, storage: StorageConfig | None = None) -> pd.DataFrame:
    url = scorecard_url(output_url)
    fs, path = filesystem(url, storage), strip_protocol(url)
    if not fs.exists(path):
        return pd.DataFrame(columns=SCORECARD_COLUMNS)
    with fs.open(path, "rb") as f:
        return pq.read_table(io.BytesIO(f.read())).to_pandas()


def write_scorecard(
    output_url: str,
    scorecard: pd.DataFrame,
    storage: StorageConfig | None = None,
    name: str = "scorecard.parquet",
) -> str:
    """Replace the scorecard table (one small file; rows are keyed by as_of, model, method)."""
    buf = io.BytesIO()
    df = scorecard.copy()
    df["as_of"] = pd.to_datetime(df["as_of"]).dt.date
    if "crps_by_step" in df.columns:  # rows scored before it existed hold NaN: store them as null lists
        df["crps_by_step"] = [
            [float(x) for x in v] if isinstance(v, (list, tuple)) or getattr(v, "ndim", 0) == 1 else None
            for v in df["crps_by_step"]
        ]
    df.to_parquet(buf, index=False)
    return write_bytes(scorecard_url(output_url, name), buf.getvalue(), storage)


def write_bytes(url: str, data: bytes, storage: StorageConfig | None = None) -> str:
    fs, path = filesystem(url, storage), strip_protocol(url)
    fs.pipe_file(path, data)
    return to_url(path, url)


def local_or_url(url: str) -> str:
    """Absolute path for local URLs (what a user can open), the URL itself for object stores."""
    return url if "://" in url and not url.startswith("file://") else strip_protocol(url)


def forecast_partitions(
    output_url: str, storage: StorageConfig | None = None
) -> dict[tuple[dt.date, str], str]:
    """Every committed forecast partition with a daily as_of: {(as_of date, model tag): partition URL}."""
    out = {}
    for p in list_partitions(output_url, "forecasts", _storage(storage)):
        if p.as_of != p.as_of.normalize():
            log.warning("ignoring partition %s (intraday as_of; the scorecard scores daily cutoffs)", p.url)
            continue
        out[(p.as_of.date(), p.model_tag)] = p.url
    return out


def read_forecasts(
    partition_url: str, storage: StorageConfig | None = None, columns: list[str] | None = None
) -> pd.DataFrame:
    """The rows of one committed forecast partition (through its manifest); empty if it is not there."""
    return read_table(partition_url, storage, columns)


def read_table(
    url: str, storage: StorageConfig | None = None, columns: list[str] | None = None
) -> pd.DataFrame:
    """A committed partition of the job's tables by URL (through its manifest); empty if absent."""
    if not url:
        return pd.DataFrame()
    try:
        df = read_partition_at(url, _storage(storage), columns)
    except FileNotFoundError:
        return pd.DataFrame()
    if "timestamp" in df:
        df["timestamp"] = pd.to_datetime(df["timestamp"])
    return df
