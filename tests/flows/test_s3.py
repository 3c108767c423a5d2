"""The flows' own reads and writes on S3 (moto server on loopback): freshness probe, realised bars,
the Iceberg scorecard table and its partitions (the catalog a SQLite file on this machine, the warehouse on
S3), and the chart file. The slow test runs the nightly flow with the real job end to end on S3."""

from __future__ import annotations

import datetime as dt
import logging

import pandas as pd
import pytest

pytestmark = [pytest.mark.timeout(300)]

# moto accepts any credentials; distinctive ones, so a test can tell they were never stored or shown
KEY, SECRET = "AKIAKRONOSFLOWSTEST", "kronos-flows-s3-secret-value"


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
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
    ).create_bucket(Bucket="flows-bkt")
    storage = StorageConfig(endpoint_url=endpoint, region="us-east-1", key=KEY, secret=SECRET, retries=1)
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
    present, first, last = store.input_status(market.url, "date", dt.date(2024, 6, 28), storage)
    assert last == dt.date(2024, 6, 28) and len(present) >= 25 and first < dt.date(2024, 3, 1)
    assert store.input_status(market.url, "date", dt.date(2024, 7, 1), storage) == (set(), first, last)
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
@pytest.mark.timeout(600)  # two real jobs and a Prefect harness: ~5 min on a busy 2-core machine
def test_nightly_flow_with_real_job_on_s3(s3, prefect_harness, ray_local, tmp_path, monkeypatch):
    """The credentials come from a Prefect Secret block named in the parameters (issue 15: storage.key and
    storage.secret were plain-text parameters); no AWS_* variable is set, so nothing else could sign the
    requests. The keys reach neither the stored run parameters nor the logs, artifacts or run record."""
    from prefect.blocks.system import Secret

    from flows import store
    from flows.nightly import nightly_forecast
    from flows.params import NightlyParams

    storage, market = s3
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    Secret(value={"key": KEY, "secret": SECRET}).save("kronos-flows-s3-test", overwrite=True)
    common = dict(
        input_url=market.url,
        output_url="s3://flows-bkt/nightly",
        storage={
            "endpoint_url": storage.endpoint_url,
            "region": "us-east-1",
            "retries": 1,
            "credentials_block": "kronos-flows-s3-test",
        },
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
    state = nightly_forecast(params, return_state=True)
    out = state.result()
    assert out["warehouse"] == "s3://flows-bkt/nightly" and out["snapshot_id"] is not None
    assert out["scorecard_rows"] == 4  # 2024-06-24 + 3 sessions has matured by 2024-06-28: 4 methods
    parts = store.forecast_partitions(params.warehouse())
    assert {d for d, _ in parts} == {dt.date(2024, 6, 24), dt.date(2024, 6, 28)}

    import asyncio
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    from pipeline import run_record

    run_id = state.state_details.flow_run_id

    async def stored():
        async with get_client() as c:
            run = await c.read_flow_run(run_id)
            logs = await c.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
            arts = await c.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
            )
            return run.parameters, [lg.message for lg in logs], [str(a.data) for a in arts]

    stored_params, logs, arts = asyncio.run(stored())
    assert stored_params["params"]["storage"]["credentials_block"] == "kronos-flows-s3-test"
    assert logs and arts
    record = run_record(params.warehouse(), out["run_id"])
    assert record["config"]["storage"]["secret"] == record["config"]["storage"]["key"] == "***"
    for where, text in (
        ("parameters", json.dumps(stored_params, default=str)),
        ("logs", "\n".join(logs)),
        ("artifacts", "\n".join(arts)),
        ("run record", json.dumps(record, default=str)),
    ):
        assert SECRET not in text and KEY not in text, f"a credential in the flow run's {where}"
