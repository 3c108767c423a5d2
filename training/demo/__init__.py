"""The demo model's data: a few real public daily series plus the project's synthetic generator.

The real series are committed under ``sources/`` (``extract.py`` re-creates them from the packages that
ship them); ``build_store`` writes the training bars store: every real series **without its last two years**
(``holdout_start``; never read by training, kept for the model card's scores) and a synthetic market that
ends before the validation period. ``SOURCES`` names every series, its origin and its licence.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "SOURCES",
    "DAILY",
    "Source",
    "HOLDOUT_YEARS",
    "SYNTHETIC",
    "load_source",
    "holdout_start",
    "build_store",
]

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
HOLDOUT_YEARS = 2


@dataclass(frozen=True)
class Source:
    symbol: str
    what: str
    origin: str
    licence: str
    sha256: str  # of sources/<symbol>.<ext>: the demo model is trained on exactly these bytes
    start: str | None = None  # first session used (None: all of it)
    freq: str = "1d"
    file: str = ""  # default: <symbol>.parquet

    @property
    def path(self) -> Path:
        return HERE / "sources" / (self.file or f"{self.symbol}.parquet")


SOURCES: dict[str, Source] = {
    s.symbol: s
    for s in (
        Source(
            "SP500",
            "S&P 500 index, daily OHLCV, 1999-01-04 to 2018-12-31",
            "`arch.data.sp500` of the `arch` package (Kevin Sheppard), downloaded by its authors from "
            "Yahoo! Finance",
            "arch: University of Illinois/NCSA Open Source License; the data are Yahoo! Finance's, "
            "redistributed in arch for examples",
            "807271be4fc8b40797daa1e1ea1130da84eebe3fce8eb3d5d5a7b096bf4f9cce",
        ),
        Source(
            "NASDAQ",
            "NASDAQ Composite index, daily OHLCV, 1999-01-04 to 2018-12-31",
            "`arch.data.nasdaq` of the `arch` package, from Yahoo! Finance",
            "as SP500",
            "49b031d9bae59f2bc88c25e9060f9d18a344fe6a6eee6318ab48d37431260c9f",
        ),
        Source(
            "MSFT",
            "Microsoft, daily split-adjusted OHLCV, 1986-03-13 to 2017-11-10 (used from 1993-01-04: "
            "before that the adjusted prices are a few cents on a 1/128 $ tick, flat bars)",
            "`pmdarima.datasets.load_msft` of the `pmdarima` package, from the Kaggle 'Huge Stock Market "
            "Dataset' (Boris Marjanovic)",
            "pmdarima: MIT; the Kaggle dataset is listed there as CC0 (public domain)",
            "cea4fca56480c15cbcbde82410a159cd17f3b11fff83a3e8a6e1508b97c0ba55",
            start="1993-01-01",
        ),
        Source(
            "ASHARE_5MIN",
            "one China A-share stock, 5-minute OHLCV bars with amount, 2024-06-18 to 2024-08-29 (2,500 "
            "bars, trading sessions only). Shorter than the two held-out years, so all of it is held out: "
            "never trained on, scored as an out-of-frequency check (the demo is a daily model)",
            "`tests/data/regression_input.csv` of shiyu-coder/Kronos (upstream's regression input)",
            "MIT licence, Copyright (c) 2025 ShiYu",
            "aa5efe0121b7cc098db1a169ed38f9878681ef14a93c85d54a618fd073048899",
            freq="5min",
            file="ASHARE_5MIN.csv",
        ),
    )
}
DAILY = [s for s in SOURCES if SOURCES[s].freq == "1d"]  # what the demo trains on and is scored on

# The synthetic part (pipeline.synthetic, XNYS daily): ends before the validation period, so it is
# training data only.
SYNTHETIC = dict(n_symbols=24, n_bars=900, min_bars=500, end="2014-12-31", seed=7)


def load_source(symbol: str) -> pd.DataFrame:
    """One real series: ``timestamp, open, high, low, close, volume, amount`` from its ``start`` on
    (amount filled by the shared rule: volume x mean price)."""
    if symbol not in SOURCES:
        raise ValueError(f"unknown demo source {symbol!r}; one of {sorted(SOURCES)}")
    import hashlib

    from kronos_core.rules.candles import fill_values

    source = SOURCES[symbol]
    path = source.path
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != source.sha256:
        raise ValueError(
            f"{path}: sha256 {digest} is not the pinned {source.sha256}; restore it "
            "(git checkout) or re-create it with `python training/demo/extract.py`"
        )
    if path.suffix == ".csv":
        df = pd.read_csv(io.BytesIO(data)).rename(columns={"timestamps": "timestamp"})
        df["timestamp"] = pd.to_datetime(df["timestamp"]).astype("datetime64[ns]")
    else:
        df = pd.read_parquet(io.BytesIO(data))
    start = source.start
    if start:
        df = df[df["timestamp"] >= pd.Timestamp(start)].reset_index(drop=True)
    prices = df[["open", "high", "low", "close"]].to_numpy()
    values, issues = fill_values(
        prices, df["volume"].to_numpy(), df["amount"].to_numpy() if "amount" in df else None
    )
    if issues:
        raise ValueError(f"{symbol}: {[i.code for i in issues]}")
    df["amount"] = values[:, 5]
    return df[["timestamp", "open", "high", "low", "close", "volume", "amount"]]


def holdout_start(df: pd.DataFrame) -> pd.Timestamp:
    """The first held-out bar: everything later than the last bar minus ``HOLDOUT_YEARS`` years (all of a
    series shorter than that)."""
    cut = df["timestamp"].max() - pd.DateOffset(years=HOLDOUT_YEARS)
    return pd.Timestamp(df.loc[df["timestamp"] > cut, "timestamp"].min())


def build_store(url: str) -> dict[str, int]:
    """Write the training bars store at ``url`` (symbol layout): the synthetic market, then every real
    daily series up to (not including) its held-out part. Returns bars written per symbol."""
    from kronos_core import MarketCalendar
    from pipeline.synthetic import BARS_SCHEMA, write_synthetic_market

    market = write_synthetic_market(
        url, calendar=MarketCalendar("XNYS", "1d"), layout="symbol", broken=False, **SYNTHETIC
    )
    written = {"synthetic": market.rows}
    root = Path(url)
    for symbol in DAILY:
        df = load_source(symbol)
        train = df[df["timestamp"] < holdout_start(df)].assign(symbol=symbol)
        table = pa.Table.from_pandas(train[BARS_SCHEMA.names], schema=BARS_SCHEMA, preserve_index=False)
        (root / f"symbol={symbol}").mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        (root / f"symbol={symbol}" / "part-0.parquet").write_bytes(buf.getvalue())
        written[symbol] = len(train)
    log.info("demo training store at %s: %s", url, written)
    return written
