"""Read plan (no Ray): partition and row-group pruning, bytes read, no look-ahead."""

import os

import numpy as np
import pandas as pd
import pytest

from kronos_core import MarketCalendar
from pipeline import write_synthetic_market
from pipeline.config import StorageConfig
from pipeline.read import file_columns, plan_read, read_files

ST = StorageConfig()


def _read(plan, url, start, end, universe):
    return read_files(file_columns(plan.files), url, ST, start, end, universe).to_pandas()


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
    assert set(df.columns) >= {
        "symbol",
        "timestamp",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "amount",
        "_ord",
    }


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
    cal = MarketCalendar("XHKG", "30min")
    m = write_synthetic_market(url, n_symbols=3, n_bars=44, calendar=cal, broken=False, min_bars=44)
    df = pd.read_parquet(url)
    times = set(df["timestamp"].dt.strftime("%H:%M"))
    assert "12:30" not in times and "13:30" in times and "10:00" in times
    assert m.last == pd.Timestamp("2024-06-28 16:00")
    assert np.all(df.groupby("symbol").size() == 44)


def _write_us_market(tmp_path):
    """Two date partitions in microsecond units (as pandas 3 writes): S1 has a bar stamped year 3000 and one
    stamped 1600 inside the 06-27 delivery, S2 is clean, and two rows have no symbol ("" and null)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    url = tmp_path / "bars"
    rows = {
        "2024-06-26": [("S1", "2024-06-26"), ("S2", "2024-06-26")],
        "2024-06-27": [
            ("S1", "3000-01-01"),
            ("S1", "1600-01-01"),
            ("S2", "2024-06-27"),
            ("", "2024-06-27"),
            (None, "2024-06-27"),
        ],
    }
    for day, rs in rows.items():
        t = pa.table(
            {
                "symbol": pa.array([r[0] for r in rs], pa.string()),
                "timestamp": pa.array(
                    np.array([r[1] for r in rs], dtype="datetime64[us]"), pa.timestamp("us")
                ),
                **{c: [10.0] * len(rs) for c in ("open", "high", "low", "close", "volume", "amount")},
            }
        )
        (url / f"date={day}").mkdir(parents=True)
        pq.write_table(t, url / f"date={day}" / "part-0.parquet")
    return str(url)


def test_out_of_range_timestamps_and_missing_symbols_are_kept_for_quarantine(tmp_path):
    """Regression: a year-3000 bar in microseconds wrapped to 1830 on the cast to nanoseconds (its row
    group's statistics did too, pruning good bars); a row without a symbol vanished under a universe."""
    url = _write_us_market(tmp_path)
    start, end = pd.Timestamp("2024-06-20"), pd.Timestamp("2024-06-28")
    plan = plan_read(url, "date", ST, start, end, ["S1", "S2"])
    assert plan.n_files == 2  # the 06-27 file's statistics (1600 .. 3000) did not prune it
    df = _read(plan, url, start, end, ["S1", "S2"])
    s1 = df[df["symbol"] == "S1"].sort_values("_ord")
    assert s1["_issue"].tolist() == ["", "timestamp_out_of_range", "timestamp_out_of_range"]
    assert s1["timestamp"].isna().tolist() == [False, True, True]  # never a wrapped 1830 / 2184
    assert (df["symbol"] == "").sum() == 2  # "" and null: kept although outside the universe
    assert df.loc[df["symbol"] == "S2", "_issue"].tolist() == ["", ""]


def _assets(tables) -> dict[str, dict]:
    """ASSET_SCHEMA rows by symbol; a symbol seen twice fails (it must live in exactly one shard)."""
    out = {}
    for t in tables:
        for r in t.to_pylist():
            assert r["symbol"] not in out, f"{r['symbol']!r} windowed twice"
            out[r["symbol"]] = r
    return out


@pytest.mark.parametrize("n_shards", [1, 3, 7])
def test_shard_reads_window_exactly_as_the_group_by(market, tmp_path, n_shards):
    """Stage 1 without a shuffle: the union of the shard tasks' assets equals read-all-then-group-by-symbol,
    asset for asset (unsorted and duplicated bars, bad timestamps, rows without a symbol included), and every
    symbol is windowed by exactly one shard."""
    import pyarrow as pa

    from pipeline.read import ASSET_SCHEMA, read_shard, window_group

    messy = _write_us_market(tmp_path)
    for url, start, end, universe in (
        (market.url, pd.Timestamp("2024-04-01"), pd.Timestamp("2024-06-28"), None),
        (messy, pd.Timestamp("2024-06-20"), pd.Timestamp("2024-06-28"), ["S1", "S2"]),
        (messy, pd.Timestamp("2024-06-20"), pd.Timestamp("2024-06-28"), None),
    ):
        plan = plan_read(url, "date", ST, start, end, universe)
        rows = pa.Table.from_pandas(_read(plan, url, start, end, universe), preserve_index=False)
        want = _assets(
            window_group(rows.filter(pa.compute.equal(rows["symbol"], s)), 40)
            for s in sorted(set(rows["symbol"].to_pylist()))
        )
        kw = dict(url=url, storage=ST, start=start, end=end, universe=universe)
        got = _assets(
            b
            for k in range(n_shards)
            for b in read_shard({"shard": [k]}, plan.files, n_shards, 40, 4, **kw, threads=3)
        )
        assert want.keys() == got.keys() and len(want) > 1
        for s in want:
            g, w = dict(got[s]), dict(want[s])
            assert np.array_equal(g.pop("values"), w.pop("values"), equal_nan=True), s  # NaN bars too
            assert g == w, s
        blocks = list(read_shard({"shard": [0]}, plan.files, n_shards, 40, 4, **kw))
        assert all(b.schema == ASSET_SCHEMA and b.num_rows <= 4 for b in blocks)


def test_symbol_shard_is_a_property_of_the_symbol_alone():
    """Every read task must agree on a symbol's shard whatever else its files hold."""
    import pyarrow as pa

    from pipeline.read import shard_of

    many = pa.array([f"S{i:04d}" for i in range(2000)] + ["", "Ω"])
    n = 5
    whole = shard_of(many, n)
    assert set(whole) == set(range(n))  # spread over every shard
    assert np.bincount(whole).min() > 2000 / n / 2
    rev = shard_of(pa.chunked_array([many[::-1][:1000], many[::-1][1000:]]), n)
    assert (rev[::-1] == whole).all()
    alone = [shard_of(pa.array([s]), n)[0] for s in many.to_pylist()[:50]]
    assert (np.array(alone) == whole[:50]).all()
    assert (shard_of(many, 1) == 0).all()
