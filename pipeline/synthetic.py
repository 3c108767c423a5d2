"""Write a synthetic market of any size in the supported layouts, for demos, tests and benchmarks.

Every symbol gets OHLC-consistent candles (``kronos_core.testing.synthetic_ohlcv``) on the configured
calendar, a ragged history (listed at a random date) ending at ``end``, and with ``broken=True`` one
deliberately broken series per failure kind the validate stage knows (``BROKEN_KINDS``).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from kronos_core import MarketCalendar
from kronos_core.testing import synthetic_ohlcv

from .config import StorageConfig
from .storage import filesystem, join, strip_protocol, with_retries

__all__ = ["write_synthetic_market", "SyntheticMarket", "BROKEN_KINDS", "BARS_SCHEMA"]

log = logging.getLogger(__name__)

# kind -> the reject reason the validate stage must give
BROKEN_KINDS = {
    "nan": "non_finite",
    "zero_price": "non_positive_price",
    "high_low": "high_below_open_close",
    "low_high": "low_above_open_close",
    "neg_volume": "negative_volume",
    "duplicate": "duplicate_timestamps",
    "unsorted": "unsorted_timestamps",
    "stale": "stale",
    "short": "too_short",
    "gaps": "gaps",
    "jump": "price_jump",
}

BARS_SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("timestamp", pa.timestamp("ns")),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.float64()),
        ("amount", pa.float64()),
    ]
)


@dataclass
class SyntheticMarket:
    url: str
    layout: str
    symbols: list[str]
    broken: dict[str, str] = field(default_factory=dict)  # symbol -> expected reject reason
    lagged: list[str] = field(
        default_factory=list
    )  # healthy symbols whose last bar is one bar before the end
    rows: int = 0
    files: int = 0
    first: pd.Timestamp | None = None
    last: pd.Timestamp | None = None

    @property
    def healthy(self) -> list[str]:
        return [s for s in self.symbols if s not in self.broken]


def _one_symbol(sym: str, grid: np.ndarray, n: int, seed: int, kind: str | None, rng) -> pd.DataFrame:
    ts = grid[-n:]
    order = np.arange(n)  # delivery position: which grid slot decides the partition
    df = synthetic_ohlcv(n, freq="5min", seed=seed).drop(columns=["timestamps"])
    df.insert(0, "timestamp", ts)
    if kind == "nan":
        df.loc[n - 3, "close"] = np.nan
    elif kind == "zero_price":
        df.loc[n - 4, ["low"]] = 0.0
    elif kind == "high_low":
        df.loc[n - 2, "high"] = df.loc[n - 2, ["open", "close"]].max() * 0.9
    elif kind == "low_high":
        df.loc[n - 2, "low"] = df.loc[n - 2, ["open", "close"]].min() * 1.1
    elif kind == "neg_volume":
        df.loc[n - 5, "volume"] = -10.0
    elif kind == "duplicate":
        df = pd.concat([df, df.iloc[[n - 3]]]).reset_index(drop=True)
        order = np.append(order, n - 3)
    elif kind == "unsorted":  # two bars stamped in each other's slot: delivery order is not time order
        t = df["timestamp"].to_numpy().copy()
        t[n - 6], t[n - 5] = t[n - 5], t[n - 6]
        df["timestamp"] = t
    elif kind == "stale":
        df, order = df.iloc[: n - 6], order[: n - 6]
    elif kind == "short":
        df, order = df.iloc[n - 5 :], order[n - 5 :]
    elif kind == "jump":  # one fat-finger bar, 20 bars before the end: a million times the price
        df.loc[n - 20, ["open", "high", "low", "close"]] *= 1e6
    elif kind == "lagged":  # one bar behind as_of: valid (max_stale_bars=1), forecast from its last bar
        df, order = df.iloc[: n - 1], order[: n - 1]
    elif kind == "gaps":
        keep = np.sort(rng.choice(n, size=int(n * 0.6), replace=False))
        keep[-1] = n - 1
        df, order = df.iloc[keep], order[keep]
    df = df.assign(symbol=sym, _slot=np.asarray(grid[-n:])[order])
    return df


def write_synthetic_market(
    url: str,
    n_symbols: int = 100,
    n_bars: int = 300,
    min_bars: int | None = None,
    end: str | pd.Timestamp = "2024-06-28",
    calendar: MarketCalendar | None = None,
    layout: str = "date",
    broken: bool = True,
    seed: int = 0,
    lagged: int = 0,
    storage: StorageConfig | None = None,
    row_group_size: int = 4096,
) -> SyntheticMarket:
    """Write ``n_symbols`` ragged series (``min_bars``..``n_bars`` bars, ending at ``end``) under ``url``.

    Layouts: ``date`` -> ``<url>/date=YYYY-MM-DD/part-0.parquet`` (all symbols of one session, sorted by
    symbol then time); ``symbol`` -> ``<url>/symbol=XYZ/part-0.parquet``. Returns what was written,
    including which symbols are broken and the reject reason each should get. ``lagged``: that many healthy
    symbols (right after the broken ones) end one bar early (``SyntheticMarket.lagged``).
    """
    if layout not in ("date", "symbol"):
        raise ValueError(f"layout must be 'date' or 'symbol', got {layout!r}")
    if n_symbols < 1 or n_bars < 2:
        raise ValueError(f"need n_symbols >= 1 and n_bars >= 2, got {n_symbols}, {n_bars}")
    calendar = calendar or MarketCalendar()
    min_bars = min_bars if min_bars is not None else max(2, n_bars // 2)
    end = pd.Timestamp(end)
    if calendar.frequency.intraday and end == end.normalize():
        end = end + pd.Timedelta(days=1) - pd.Timedelta(seconds=1)
    grid = calendar.around(end, n_bars, 0)
    grid = grid[grid <= np.datetime64(end, "ns")][-n_bars:]
    rng = np.random.default_rng(seed)
    width = max(4, len(str(n_symbols - 1)))
    symbols = [f"S{i:0{width}d}" for i in range(n_symbols)]
    kinds = (list(BROKEN_KINDS) if broken else []) + ["lagged"] * lagged
    broken_map, lagged_syms = {}, []
    frames = []
    lengths = rng.integers(min_bars, n_bars + 1, size=n_symbols)
    for i, sym in enumerate(symbols):
        kind = kinds[i] if i < len(kinds) else None
        n = int(n_bars if kind else lengths[i])
        if kind == "lagged":
            lagged_syms.append(sym)
        elif kind:
            broken_map[sym] = BROKEN_KINDS[kind]
        frames.append(_one_symbol(sym, grid, n, seed * 1_000_003 + i, kind, rng))
    df = pd.concat(frames, ignore_index=True)
    df["timestamp"] = df["timestamp"].astype("datetime64[ns]")
    fs = filesystem(url, storage)
    root = strip_protocol(url)
    if fs.exists(root):
        fs.rm(root, recursive=True)
    retries = (storage or StorageConfig()).retries
    if layout == "date":
        key = pd.to_datetime(df["_slot"]).dt.strftime("%Y-%m-%d")
        sort = ["symbol", "_slot"]
    else:
        key = df["symbol"]
        sort = ["_slot"]
    files = 0
    for part, g in df.assign(_key=key.to_numpy()).groupby("_key", sort=True):
        g = g.sort_values(sort, kind="stable")
        table = pa.Table.from_pandas(
            g[[c for c in BARS_SCHEMA.names]], schema=BARS_SCHEMA, preserve_index=False
        )
        buf = io.BytesIO()
        pq.write_table(table, buf, row_group_size=row_group_size, compression="zstd")
        path = join(root, f"{layout}={part}", "part-0.parquet")
        with_retries(lambda p=path, b=buf.getvalue(): fs.pipe_file(p, b), f"write {path}", retries)
        files += 1
    log.info("synthetic market: %d symbols, %d rows, %d files at %s", n_symbols, len(df), files, url)
    return SyntheticMarket(
        url=url,
        layout=layout,
        symbols=symbols,
        broken=broken_map,
        lagged=lagged_syms,
        rows=len(df),
        files=files,
        first=pd.Timestamp(grid[0]),
        last=pd.Timestamp(grid[-1]),
    )
