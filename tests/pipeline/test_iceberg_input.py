"""Bars from an Iceberg table (``input.format: iceberg``): the window and universe pushed down to PyIceberg's
scan planning, and the same forecasts as from the parquet folder holding the same bars."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from pipeline import read, run_job, warehouse, write_synthetic_market
from pipeline.config import CatalogConfig, StorageConfig
from pipeline.read import plan_iceberg_read

from .conftest import AS_OF, job_config

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def bars_both_ways(tmp_path_factory):
    """One healthy market, as a date-partitioned parquet folder and as an Iceberg table partitioned by
    day(timestamp) (one data file per session)."""
    from pyiceberg.transforms import DayTransform

    root = tmp_path_factory.mktemp("iceberg_input")
    m = write_synthetic_market(
        str(root / "parquet"), n_symbols=12, n_bars=90, end=AS_OF, seed=11, broken=False
    )
    bars = pd.read_parquet(m.url).drop(columns=["date"], errors="ignore")
    bars = bars.sort_values(["timestamp", "symbol"], kind="stable").reset_index(drop=True)
    table = pa.Table.from_pandas(bars, preserve_index=False)
    table = table.set_column(
        table.schema.get_field_index("timestamp"), "timestamp", table["timestamp"].cast(pa.timestamp("us"))
    )
    wh = warehouse(str(root / "lake"))
    cat = wh.catalog()
    cat.create_namespace_if_not_exists("market")
    with cat.create_table_transaction("market.bars", schema=table.schema) as tx, tx.update_spec() as spec:
        spec.add_field("timestamp", DayTransform(), "day")
    cat.load_table("market.bars").append(table)
    return m, str(root / "lake"), bars


def test_window_and_universe_are_pushed_down(bars_both_ways):
    m, lake, bars = bars_both_ways
    start, end = pd.Timestamp("2024-06-01"), pd.Timestamp(AS_OF)
    plan = plan_iceberg_read(lake, "market.bars", CatalogConfig(), StorageConfig(), start, end, ["S0001"])
    sessions = bars["timestamp"].dt.normalize()
    in_window = sessions[(sessions >= start) & (sessions <= end)].nunique()
    assert plan.n_files == plan.partitions_read == in_window < sessions.nunique()  # only the window's days
    assert plan.partitions_total == sessions.nunique() and plan.iceberg["snapshot_id"] is not None
    with pytest.raises(ValueError, match="no Iceberg table 'market.nope'.*input.table"):
        plan_iceberg_read(lake, "market.nope", CatalogConfig(), StorageConfig(), start, end, None)
    # a bare table name is looked up in the catalog's namespace
    market = CatalogConfig(namespace="market")
    bare = plan_iceberg_read(lake, "bars", market, StorageConfig(), start, end, ["S0001"])
    assert [f["path"] for f in bare.files] == [f["path"] for f in plan.files]
    with pytest.raises(ValueError, match="no Iceberg table 'kronos.bars'"):
        plan_iceberg_read(lake, "bars", CatalogConfig(), StorageConfig(), start, end, None)


def test_iceberg_input_gives_the_same_forecasts_as_the_parquet_folder(ray_local, bars_both_ways, tmp_path):
    m, lake, _ = bars_both_ways
    from_parquet = run_job(job_config(m.url, str(tmp_path / "a"), universe={"symbols": m.symbols[:6]}))
    from_iceberg = run_job(
        job_config(
            lake,
            str(tmp_path / "b"),
            input={"url": lake, "format": "iceberg", "table": "market.bars"},
            universe={"symbols": m.symbols[:6]},
        )
    )
    assert from_iceberg.assets_forecast == from_parquet.assets_forecast == 6
    assert from_iceberg.files_read < 90  # the window's sessions only
    a = read(warehouse(str(tmp_path / "a")), "forecasts")
    b = read(warehouse(str(tmp_path / "b")), "forecasts")
    cols = ["symbol", "step", "timestamp", "close", "close_q10", "close_q90", "p_up", "last_close"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    rec = __import__("pipeline").run_record(warehouse(str(tmp_path / "b")), from_iceberg.run_id)
    assert rec["input"]["format"] == "iceberg" and rec["input"]["snapshot_id"] is not None
