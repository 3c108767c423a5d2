"""The job and the Iceberg tables against real S3 protocol servers on 127.0.0.1, through s3fs: moto's server
(fast tier) and SeaweedFS (one end-to-end job). The catalog is a SQLite file on this machine."""

import datetime as dt

import pyarrow as pa
import pytest

from pipeline import run_job, write_synthetic_market
from pipeline import tables as T
from pipeline.storage import filesystem

from .conftest import AS_OF, job_config

pytestmark = pytest.mark.timeout(300)
MODEL = "random:test"


def catalog(tmp_path) -> dict:
    return {"properties": {"uri": f"sqlite:///{tmp_path / 'catalog.db'}"}}


def assert_published(fs, out_url: str, wh, summary, n_forecast: int) -> None:
    fc = T.read(wh, "forecasts", AS_OF, MODEL)
    assert set(fc["run_id"]) == {summary.run_id} and len(fc) == n_forecast * 4
    assert T.run_record(wh, summary.run_id)["snapshot_id"] == summary.snapshot_id
    keys = fs.find(out_url.removeprefix("s3://"))
    assert any(k.endswith(".parquet") for k in keys) and any(k.endswith(".metadata.json") for k in keys)
    # no zero-byte directory markers: pandas/s3fs readers can list the warehouse
    assert all(not k.endswith("/") for k in keys)


def test_job_on_moto_s3(ray_local, moto_s3, tmp_path):
    storage, _ = moto_s3
    m = write_synthetic_market(
        "s3://bkt/moto/bars", n_symbols=16, n_bars=60, end=AS_OF, storage=storage, seed=5
    )
    out = "s3://bkt/moto/out"
    # 11 of the 16 assets are broken on purpose: the run forecasts 31%, below the default min_forecast_share
    over = dict(validation={"min_forecast_share": 0.25}, storage=storage.model_dump())
    s = run_job(job_config(m.url, out, output={"catalog": catalog(tmp_path)}, **over))
    n_ok = len(m.healthy)
    assert s.assets_read == 16 and s.assets_rejected == len(m.broken) and s.assets_forecast == n_ok
    wh = T.warehouse(out, catalog(tmp_path), storage)
    assert_published(filesystem(out, storage), out, wh, s, n_ok)
    fc = T.read(wh, "forecasts", AS_OF, MODEL)
    assert sorted(fc["symbol"].unique()) == m.healthy


def test_credentials_from_aws_environment(moto_s3, monkeypatch):
    storage, endpoint = moto_s3
    for k, v in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    fs = filesystem("s3://bkt/env")
    fs.pipe_file("bkt/env/hello", b"hi")
    assert fs.cat_file("bkt/env/hello") == b"hi"


def test_tables_and_maintenance_on_s3(moto_s3, tmp_path):
    storage, _ = moto_s3
    wh = T.warehouse("s3://bkt/tables", catalog(tmp_path), storage)

    def rows(run_id, v):
        return pa.table(
            {
                "symbol": ["A", "B"],
                "as_of": pa.array([dt.datetime(2024, 6, 28)] * 2, pa.timestamp("us")),
                "model": ["m", "m"],
                "step": pa.array([1, 1], pa.int32()),
                "v": [v, v],
                "run_id": [run_id] * 2,
            }
        )

    for run_id, v in (("r1", 1.0), ("r2", 2.0)):
        T.publish(wh, "forecasts", rows(run_id, v), AS_OF, "m", {"run_id": run_id})
    assert T.read(wh, "forecasts")["v"].tolist() == [2.0, 2.0]
    assert T.read(wh, "forecasts", run_id="r1")["v"].tolist() == [1.0, 1.0]
    tbl = wh.load("forecasts")
    later = dt.datetime.now() + dt.timedelta(seconds=1)
    assert len(T.expire_snapshots(tbl, later)) == 2  # r1's and r2's delete snapshot; r2's append stays
    removed = T.remove_orphan_files(wh, tbl, older_than=later)
    assert [p for p in removed if p.endswith(".parquet")] and all(
        p.startswith("bkt/tables/") for p in removed
    )
    assert T.read(wh, "forecasts")["v"].tolist() == [2.0, 2.0]
    # a permanent error (no such bucket) fails with the bucket in the message
    bad = T.warehouse("s3://no-such-bucket/out", catalog(tmp_path / "x"), storage)
    (tmp_path / "x").mkdir()
    with pytest.raises(Exception, match="no-such-bucket"):
        T.publish(bad, "forecasts", rows("r3", 3.0), AS_OF, "m", {"run_id": "r3"})


def test_job_permanent_error_publishes_nothing(ray_local, moto_s3, market, tmp_path):
    storage, _ = moto_s3
    cfg = job_config(
        market.url,
        "s3://no-such-bucket/out",
        storage=storage.model_dump(),
        output={"catalog": catalog(tmp_path)},
    )
    with pytest.raises(Exception, match="no-such-bucket"):
        run_job(cfg)


def test_s3_output_without_a_catalog_is_refused_before_any_work(market):
    with pytest.raises(ValueError, match="s3:// warehouse.*output.catalog.properties"):
        run_job(job_config(market.url, "s3://bkt/no-catalog"))


@pytest.mark.slow  # ~40 s: a second real S3 server end to end (moto covers the default tier)
@pytest.mark.timeout(400)
def test_job_end_to_end_on_seaweedfs(ray_local, seaweed_s3, tmp_path):
    storage, endpoint = seaweed_s3
    m = write_synthetic_market(
        "s3://bkt/sw/bars", n_symbols=15, n_bars=60, end=AS_OF, storage=storage, seed=9
    )
    out = "s3://bkt/sw/out"
    # 11 of the 15 assets are broken on purpose (27% forecast, below the default min_forecast_share)
    over = dict(
        storage=storage.model_dump(),
        output={"catalog": catalog(tmp_path)},
        validation={"min_forecast_share": 0.25},
    )
    first = run_job(job_config(m.url, out, **over))
    assert first.assets_forecast == 4 and first.assets_rejected == len(m.broken) == 11
    again = run_job(job_config(m.url, out, **over))  # replaces the partition
    wh = T.warehouse(out, catalog(tmp_path), storage)
    assert_published(filesystem(out, storage), out, wh, again, 4)
    rej = T.read(wh, "rejected", AS_OF, MODEL)
    assert dict(zip(rej["symbol"], rej["reject_reason"], strict=True)) == m.broken
    assert T.list_runs(wh)["run_id"].tolist() == [first.run_id, again.run_id]


@pytest.mark.integration  # a real S3 server (moto, in a thread) without a fixture
def test_transient_outage_is_retried_against_a_real_server():
    """A real S3 server goes away and comes back on the same port: the read is retried and succeeds."""

    from moto.server import ThreadedMotoServer

    from pipeline.config import StorageConfig
    from pipeline.storage import with_retries

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port = server.get_host_and_port()[1]
    storage = StorageConfig(
        endpoint_url=f"http://127.0.0.1:{port}",
        region="us-east-1",
        key="testing",
        secret="testing",
        retries=6,
        retry_backoff_s=0.2,
    )
    import boto3

    boto3.client(
        "s3",
        endpoint_url=storage.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket="flaky")
    fs = filesystem("s3://flaky", storage)
    fs.pipe_file("flaky/obj", b"payload")
    server.stop()  # outage: connection refused (the server comes back on the same address below)
    second = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)  # moto state is in-process
    fresh = filesystem("s3://flaky", storage)
    attempts = []

    def read():
        attempts.append(second._server is not None)
        if len(attempts) == 2:
            # the outage ends once our layer's first attempt has failed (after botocore's own retries of the
            # refused connection): not on a timer, which botocore's retries sometimes outlasted (a flake)
            second.start()
        return fresh.cat_file("flaky/obj")

    try:
        got = with_retries(read, "read s3://flaky/obj", storage.retries, storage.retry_backoff_s)
    finally:
        if second._server is not None:
            second.stop()
    assert got == b"payload"
    assert attempts == [False, False]  # the first attempt met the outage; our retry layer tried again
