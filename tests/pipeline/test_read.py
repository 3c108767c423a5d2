"""Read plan (no Ray): partition and row-group pruning, bytes read, no look-ahead."""

import os

import numpy as np
import pandas as pd

from pipeline import write_synthetic_market
from pipeline.config import CalendarConfig, StorageConfig
from pipeline.read import plan_read, read_files

ST = StorageConfig()


def _read(plan, url, start, end, universe):
    b = {k: [f[k] for f in plan.files] for k in ("path", "rank", "row_groups")}
    return read_files(b, url, ST, start, end, universe).to_pandas()


def test_date_layout_prunes_partitions_and_never_reads_after_as_of(market):
    start, as_of = pd.Timestamp("2024-05-01"), pd.Timestamp("2024-06-20")
    plan = plan_read(market.url, "date", ST, start, as_of, None)
    dates = sorted(os.listdir(market.url))
    assert plan.partitions_total == len(dates) == 90
    inside = [d for d in dates if "2024-05-01" <= d.split("=")[1] <= "2024-06-20"]
    assert plan.partitions_read == len(inside) == plan.n_files
    total = sum(os.path.getsize(os.path.join(market.url, d, "part-0.parquet")) for d in dates)
    assert 0 < plan.bytes_read < total * len(inside) / len(dates) * 1.05
    df = _read(plan, market.url, start, as_of, None)
    assert df["timestamp"].max() <= as_of and df["timestamp"].min() >= start
    assert set(df.columns) >= {"symbol", "timestamp", "open", "high", "low", "close", "volume", "amount", "_ord"}


def test_universe_prunes_row_groups_and_rows(tmp_path):
    url = str(tmp_path / "bars")
    write_synthetic_market(url, n_symbols=400, n_bars=30, min_bars=30, broken=False, row_group_size=50)
    start, end = pd.Timestamp("2024-01-01"), pd.Timestamp("2024-06-28")
    full = plan_read(url, "date", ST, start, end, None)
    few = plan_read(url, "date", ST, start, end, ["S0001", "S0002"])
    assert few.bytes_read < full.bytes_read / 2  # 1 of 8 row groups per file (+ the footers)
    assert all(f["row_groups"] == [0] for f in few.files)
    df = _read(few, url, start, end, ["S0001", "S0002"])
    assert sorted(df["symbol"].unique()) == ["S0001", "S0002"] and len(df) == 60


def test_symbol_layout_prunes_by_universe(tmp_path):
    url = str(tmp_path / "bars")
    m = write_synthetic_market(url, n_symbols=12, n_bars=40, layout="symbol", broken=False)
    plan = plan_read(url, "symbol", ST, pd.Timestamp("2024-01-01"), m.last, ["S0003", "S0007", "NOPE"])
    assert plan.partitions_total == 12 and plan.partitions_read == 2
    df = _read(plan, url, pd.Timestamp("2024-01-01"), m.last, ["S0003", "S0007"])
    assert set(df["symbol"]) == {"S0003", "S0007"}


def test_intraday_market_on_hkex_calendar(tmp_path):
    url = str(tmp_path / "bars")
    cal = CalendarConfig(freq="30min", exchange="XHKG")
    m = write_synthetic_market(url, n_symbols=3, n_bars=44, calendar=cal, broken=False, min_bars=44)
    df = pd.read_parquet(url)
    times = set(df["timestamp"].dt.strftime("%H:%M"))
    assert "12:30" not in times and "13:30" in times and "10:00" in times
    assert m.last == pd.Timestamp("2024-06-28 16:00")
    assert np.all(df.groupby("symbol").size() == 44)
