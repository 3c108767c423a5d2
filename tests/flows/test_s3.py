"""The flows' own reads and writes on S3 (moto server on loopback): freshness probe, realised bars,
the Iceberg scorecard table and its partitions (the catalog a SQLite file on this machine, the warehouse on
S3), and the chart file. The slow test runs the nightly flow with the real job end to end on S3."""

from __future__ import annotations

import datetime as dt
import logging

import pandas as pd
import pytest

pytestmark = [pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    pytest.importorskip("moto")
    import boto3
    from moto.server import ThreadedMotoServer

    from pipeline.config import StorageConfig

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # the OS picks the port
    server.start()
    endpoint = f"http://127.0.0.1:{server.get_host_and_port()[1]}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket="flows-bkt")
    storage = StorageConfig(
        endpoint_url=endpoint, region="us-east-1", key="testing", secret="testing", retries=1
    )
    from pipeline import write_synthetic_market

    market = write_synthetic_market(
        "s3://flows-bkt/market", n_symbols=30, n_bars=100, end="2024-06-28", seed=2, storage=storage
    )
    yield storage, market
    server.stop()


def test_store_on_s3(s3, tmp_path):
    from flows import store
    from flows.scoring import SCORECARD_COLUMNS
    from pipeline.tables import warehouse

    storage, market = s3
    present, last = store.input_status(market.url, "date", dt.date(2024, 6, 28), storage)
    assert last == dt.date(2024, 6, 28) and len(present) >= 25
    assert store.input_status(market.url, "date", dt.date(2024, 7, 1), storage) == (set(), last)
    bars = store.read_bars(
        market.url, "date", dt.date(2024, 6, 1), dt.date(2024, 6, 28), ["S0010", "S0011"], storage
    )
    assert set(bars["symbol"]) == {"S0010", "S0011"} and bars["timestamp"].max() == pd.Timestamp("2024-06-28")

    card = pd.DataFrame(
        [
            {c: None for c in SCORECARD_COLUMNS}
            | {"as_of": dt.date(2024, 6, 21), "method": "kronos", "model": "m", "mae": 1.5}
        ]
    )
    card["scored_at"] = pd.Timestamp("2024-06-28 22:00", tz="UTC")
    card["crps_by_step"] = [[1.0, 2.0]]
    wh = warehouse("s3://flows-bkt/out", {"properties": {"uri": f"sqlite:///{tmp_path}/c.db"}}, storage)
    assert len(store.write_scorecard(wh, card, source="test")) == 1
    again = card.assign(mae=2.5)
    store.write_scorecard(wh, again, source="test")  # a re-scored cutoff replaces its rows
    back = store.read_scorecard(wh)
    assert back["mae"].tolist() == [2.5] and str(back["as_of"].iloc[0]) == "2024-06-21"
    assert back["crps_by_step"].iloc[0] == [1.0, 2.0]
    assert store.write_bytes(
        "s3://flows-bkt/out/charts/as_of=2024-06-28/fan_chart.png", b"\x89PNG", storage
    ).startswith("s3://")
    assert store.forecast_partitions(wh) == []


@pytest.mark.slow
def test_nightly_flow_with_real_job_on_s3(s3, prefect_harness, ray_local, tmp_path):
    from flows import store
    from flows.nightly import nightly_forecast
    from flows.params import NightlyParams

    storage, market = s3
    common = dict(
        input_url=market.url,
        output_url="s3://flows-bkt/nightly",
        storage=storage,
        lookback=48,
        pred_len=3,
        validation={"min_history": 24},
        sampling={"sample_count": 4},
        chart_assets=2,
        model={"model": "random:test", "tokenizer": "random:test"},
        catalog={"properties": {"uri": f"sqlite:///{tmp_path}/catalog.db"}},
    )
    nightly_forecast(NightlyParams(as_of="2024-06-24", **common))
    params = NightlyParams(as_of="2024-06-28", **common)
    out = nightly_forecast(params)
    assert out["warehouse"] == "s3://flows-bkt/nightly" and out["snapshot_id"] is not None
    assert out["scorecard_rows"] == 4  # 2024-06-24 + 3 sessions has matured by 2024-06-28: 4 methods
    parts = store.forecast_partitions(params.warehouse())
    assert {d for d, _ in parts} == {dt.date(2024, 6, 24), dt.date(2024, 6, 28)}
