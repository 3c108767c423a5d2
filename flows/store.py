"""Small reads and writes the flows need beside the Ray job: input freshness, realised bars, the scorecard.

Everything goes through ``pipeline.storage`` (fsspec: local folders or ``s3://``), so the flows see the same
store the job does. These are I/O functions; the Prefect tasks that call them carry the retries.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging

import pandas as pd
import pyarrow.parquet as pq

from pipeline.commit import MANIFEST, partition_rel
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


def _partition_keys() -> tuple[str, str]:
    """The hive keys of the pipeline's partition folders (``as_of_tag``, ``model_tag`` today), read off
    ``pipeline.commit.partition_rel`` so a rename there does not silently hide every partition here."""
    rel = partition_rel(pd.Timestamp("2000-01-01"), "m")
    as_of_key, model_key = (seg.split("=", 1)[0] for seg in rel.split("/"))
    return as_of_key, model_key


def forecast_partitions(output_url: str, storage: StorageConfig | None = None) -> dict[tuple[dt.date, str], str]:
    """Every committed forecast partition: {(as_of date, model slug): partition URL}.

    Layout (pipeline.commit): ``<root>/forecasts/<as_of key>=<YYYY-MM-DD[THH-MM-SS]>/<model key>=<slug>/``
    with ``_manifest.json`` as the commit point.
    """
    fs, root = filesystem(output_url, storage), strip_protocol(output_url)
    a_key, m_key = _partition_keys()
    out = {}
    for m in fs.glob(join(root, "forecasts", f"{a_key}=*", f"{m_key}=*", MANIFEST)):
        part = m.rsplit("/", 1)[0]
        model = part.rsplit("/", 1)[-1].split("=", 1)[1]
        tag = part.rsplit("/", 2)[-2].split("=", 1)[1]
        try:
            day = dt.date.fromisoformat(tag[:10])
        except ValueError:
            log.warning("ignoring partition %s (as_of is not a date)", part)
            continue
        out[(day, model)] = to_url(part, output_url)
    return out


def _manifest_files(fs, part: str) -> list[str] | None:
    path = join(part, MANIFEST)
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as f:
        m = json.loads(f.read())
    return [join(part, x["name"] if isinstance(x, dict) else x) for x in m.get("files", [])]


def read_forecasts(partition_url: str, storage: StorageConfig | None = None,
                   columns: list[str] | None = None) -> pd.DataFrame:
    """The rows of one committed partition, through its manifest (consistent mid-commit, like
    ``pipeline.commit.read_partition``); a folder without a manifest is read whole."""
    return read_table(partition_url, storage, columns)


def read_table(url: str, storage: StorageConfig | None = None, columns: list[str] | None = None) -> pd.DataFrame:
    """A partition (through its manifest if it has one), a parquet file or a folder; empty if absent."""
    if not url:
        return pd.DataFrame()
    fs, path = filesystem(url, storage), strip_protocol(url)
    if not fs.exists(path):
        return pd.DataFrame()
    files = _manifest_files(fs, path) if fs.isdir(path) else None
    df = _read_parquet(fs, files if files is not None else [path], columns)
    if "timestamp" in df:
        df["timestamp"] = pd.to_datetime(df["timestamp"])
    return df
