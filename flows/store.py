"""Small reads and writes the flows need beside the Ray job: input freshness, realised bars, the scorecard.

Everything goes through ``pipeline.storage`` (fsspec: local folders or ``s3://``), so the flows see the same
store the job does. These are I/O functions; the Prefect tasks that call them carry the retries.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import re

import pandas as pd
import pyarrow.parquet as pq

from pipeline.config import StorageConfig
from pipeline.storage import filesystem, join, strip_protocol, to_url

from .scoring import SCORECARD_COLUMNS

__all__ = ["input_status", "read_bars", "forecast_partitions", "read_forecasts", "read_table", "read_scorecard", "write_scorecard", "write_bytes", "scorecard_url",
           "local_or_url"]

log = logging.getLogger(__name__)


def _date_partitions(fs, root: str) -> dict[dt.date, str]:
    out = {}
    for p in fs.ls(root, detail=False):
        name = p.rstrip("/").rsplit("/", 1)[-1]
        if name.startswith("date="):
            try:
                out[dt.date.fromisoformat(name[5:])] = p
            except ValueError:
                log.warning("ignoring partition %s (not date=YYYY-MM-DD)", p)
    return out


def _read_parquet(fs, paths: list[str], columns: list[str] | None) -> pd.DataFrame:
    frames = []
    for p in paths:
        files = [f for f in fs.find(p) if f.endswith(".parquet")] if fs.isdir(p) else [p]
        for f in files:
            with fs.open(f, "rb") as fh:
                frames.append(pq.read_table(io.BytesIO(fh.read()), columns=columns).to_pandas())
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns or [])


def input_status(input_url: str, layout: str, as_of: dt.date, storage: StorageConfig | None = None
                 ) -> tuple[set[str], dt.date | None]:
    """(symbols with a bar on ``as_of``, date of the latest bar anywhere) for the freshness check."""
    fs, root = filesystem(input_url, storage), strip_protocol(input_url)
    if not fs.exists(root):
        return set(), None
    if layout == "date":
        parts = _date_partitions(fs, root)
        if not parts:
            return set(), None
        last = max(parts)
        if as_of not in parts:
            return set(), last
        return set(_read_parquet(fs, [parts[as_of]], ["symbol"])["symbol"].unique()), last
    bars = _read_parquet(fs, [root], ["symbol", "timestamp"])
    if bars.empty:
        return set(), None
    day = bars["timestamp"].dt.normalize()
    return set(bars.loc[day == pd.Timestamp(as_of), "symbol"].unique()), day.max().date()


def read_bars(input_url: str, layout: str, start: dt.date, end: dt.date | None = None,
              symbols: list[str] | None = None, storage: StorageConfig | None = None,
              columns: tuple[str, ...] = ("symbol", "timestamp", "close")) -> pd.DataFrame:
    """Bars with ``start <= date <= end`` (``end`` None = everything after ``start``), optionally for ``symbols``."""
    fs, root = filesystem(input_url, storage), strip_protocol(input_url)
    if layout == "date":
        parts = _date_partitions(fs, root)
        paths = [p for d, p in sorted(parts.items()) if d >= start and (end is None or d <= end)]
        bars = _read_parquet(fs, paths, list(columns))
    else:
        subdirs = [p for p in fs.ls(root, detail=False) if p.rstrip("/").rsplit("/", 1)[-1].startswith("symbol=")]
        if symbols is not None:
            want = {f"symbol={s}" for s in symbols}
            subdirs = [p for p in subdirs if p.rstrip("/").rsplit("/", 1)[-1] in want]
        bars = _read_parquet(fs, subdirs, list(columns))
    if bars.empty:
        return bars
    bars["timestamp"] = pd.to_datetime(bars["timestamp"])
    day = bars["timestamp"].dt.normalize()
    keep = day >= pd.Timestamp(start)
    if end is not None:
        keep &= day <= pd.Timestamp(end)
    if symbols is not None:
        keep &= bars["symbol"].isin(symbols)
    # the job rejects duplicated stamps; for scoring keep the first delivered bar so positions stay defined
    return bars[keep].drop_duplicates(["symbol", "timestamp"]).sort_values(["symbol", "timestamp"]).reset_index(drop=True)


def scorecard_url(output_url: str, name: str = "scorecard.parquet") -> str:
    return join(output_url, "scorecard", name)


def read_scorecard(output_url: str, storage: StorageConfig | None = None) -> pd.DataFrame:
    url = scorecard_url(output_url)
    fs, path = filesystem(url, storage), strip_protocol(url)
    if not fs.exists(path):
        return pd.DataFrame(columns=SCORECARD_COLUMNS)
    with fs.open(path, "rb") as f:
        return pq.read_table(io.BytesIO(f.read())).to_pandas()


def write_scorecard(output_url: str, scorecard: pd.DataFrame, storage: StorageConfig | None = None,
                    name: str = "scorecard.parquet") -> str:
    """Replace the scorecard table (one small file; rows are keyed by as_of, model, method)."""
    buf = io.BytesIO()
    df = scorecard.copy()
    df["as_of"] = pd.to_datetime(df["as_of"]).dt.date
    df.to_parquet(buf, index=False)
    return write_bytes(scorecard_url(output_url, name), buf.getvalue(), storage)


def write_bytes(url: str, data: bytes, storage: StorageConfig | None = None) -> str:
    fs, path = filesystem(url, storage), strip_protocol(url)
    fs.pipe_file(path, data)
    return to_url(path, url)


def local_or_url(url: str) -> str:
    """Absolute path for local URLs (what a user can open), the URL itself for object stores."""
    return url if "://" in url and not url.startswith("file://") else strip_protocol(url)


_AS_OF = re.compile(r"(?:^|/)as_of=(\d{4}-\d{2}-\d{2})(?:[T ][^/]*)?/")
_SKIP = ("/rejected", "/scorecard", "/charts", "/_tmp", "/_staging", "/.")  # not forecast rows


def forecast_partitions(output_url: str, storage: StorageConfig | None = None) -> dict[tuple[dt.date, str], str]:
    """Every committed forecast partition under ``output_url``: {(as_of date, partition dir): dir}.

    A partition is a folder ``.../as_of=YYYY-MM-DD[/model=...]`` holding parquet files; rejected tables,
    the scorecard and charts are skipped.
    """
    fs, root = filesystem(output_url, storage), strip_protocol(output_url)
    if not fs.exists(root):
        return {}
    out = {}
    for f in fs.find(root):
        rel = f[len(root):]
        if not f.endswith(".parquet") or any(s in rel for s in _SKIP):
            continue
        m = _AS_OF.search(rel)
        if not m:
            continue
        part = f.rsplit("/", 1)[0]
        out[(dt.date.fromisoformat(m.group(1)), part)] = part
    return out


def read_forecasts(partition_url: str, storage: StorageConfig | None = None,
                   columns: list[str] | None = None) -> pd.DataFrame:
    """The forecast rows of one partition (every parquet file under it)."""
    fs, root = filesystem(partition_url, storage), strip_protocol(partition_url)
    df = _read_parquet(fs, [root], columns)
    if "timestamp" in df:
        df["timestamp"] = pd.to_datetime(df["timestamp"])
    return df


def read_table(url: str, storage: StorageConfig | None = None) -> pd.DataFrame:
    """A parquet file or folder of parquet files; empty frame if it does not exist."""
    fs, path = filesystem(url, storage), strip_protocol(url)
    if not url or not fs.exists(path):
        return pd.DataFrame()
    return _read_parquet(fs, [path], None)
