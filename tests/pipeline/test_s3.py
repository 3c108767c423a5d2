"""The job and the commit protocol against real S3 protocol servers on 127.0.0.1, through s3fs:
moto's server (fast tier) and SeaweedFS (one end-to-end job)."""

import json

import pandas as pd
import pyarrow as pa
import pytest

from pipeline import run_job, write_synthetic_market
from pipeline.commit import PartitionLockedError, commit_partition, read_partition, write_staged
from pipeline.storage import StorageError, filesystem, join

from .conftest import AS_OF, job_config

pytestmark = pytest.mark.timeout(300)
MODEL = "random:test"


def assert_published(fs, out_url, summary, n_forecast):
    part = summary.output_url.removeprefix("s3://")
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(part, detail=False))
    assert names[:2] == ["_SUCCESS", "_manifest.json"] and len(names) == 3
    m = json.loads(fs.cat_file(join(part, "_manifest.json")))
    assert m["run_id"] == summary.run_id and m["rows"] == n_forecast * 4
    root = out_url.removeprefix("s3://")
    staging = join(root, "_staging", summary.run_id)
    # no staged file is left (SeaweedFS may keep an empty directory entry for the prefix)
    assert not fs.exists(staging) or not [k for k in fs.find(staging) if k.endswith(".parquet")]
    # no zero-byte directory markers: pandas/s3fs readers can read the tables
    keys = fs.find(root)
    assert all(not k.endswith("/") for k in keys)


def test_job_on_moto_s3(ray_local, moto_s3):
    storage, endpoint = moto_s3
    m = write_synthetic_market(
        "s3://bkt/moto/bars", n_symbols=16, n_bars=60, end=AS_OF, storage=storage, seed=5
    )
    out = "s3://bkt/moto/out"
    s = run_job(job_config(m.url, out, storage=storage.model_dump()))
    n_ok = len(m.healthy)
    assert s.assets_read == 16 and s.assets_rejected == len(m.broken) and s.assets_forecast == n_ok
    fs = filesystem(out, storage)
    assert_published(fs, out, s, n_ok)
    fc = read_partition(out, "forecasts", AS_OF, MODEL, storage)
    assert sorted(fc["symbol"].unique()) == m.healthy and len(fc) == n_ok * 4
    opts = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": endpoint}}
    assert len(pd.read_parquet("s3://bkt/moto/out/forecasts", storage_options=opts)) == n_ok * 4


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


def test_lock_and_permanent_error_on_s3(moto_s3):
    storage, _ = moto_s3
    root = "s3://bkt/locks"
    rec = write_staged(pa.table({"symbol": ["A"], "v": [1.0]}), root, storage, "r1", "forecasts").to_pylist()
    commit_partition(root, storage, "r1", AS_OF, MODEL, {"forecasts": rec}, {"forecasts": None}, {})
    fs = filesystem(root, storage)
    lock = "bkt/locks/_locks/as_of_tag=2024-06-28/model_tag=random-test/LOCK"
    fs.pipe_file(
        lock, json.dumps({"run_id": "other", "since": pd.Timestamp.now(tz="UTC").isoformat()}).encode()
    )
    rec2 = write_staged(pa.table({"symbol": ["A"], "v": [2.0]}), root, storage, "r2", "forecasts").to_pylist()
    with pytest.raises(PartitionLockedError, match="run 'other'"):
        commit_partition(root, storage, "r2", AS_OF, MODEL, {"forecasts": rec2}, {"forecasts": "r1"}, {})
    assert read_partition(root, "forecasts", AS_OF, MODEL, storage)["v"].tolist() == [1.0]
    fs.rm(lock)
    # a permanent error (no such bucket) fails at once with the URL in the message
    with pytest.raises(StorageError, match="s3://no-such-bucket"):
        write_staged(pa.table({"v": [1.0]}), "s3://no-such-bucket/out", storage, "r3", "forecasts")


def test_job_permanent_error_publishes_nothing(ray_local, moto_s3, market, tmp_path):
    storage, _ = moto_s3
    cfg = job_config(market.url, "s3://no-such-bucket/out", storage=storage.model_dump())
    with pytest.raises(Exception, match="no-such-bucket"):
        run_job(cfg)


@pytest.mark.slow  # ~40 s: a second real S3 server end to end (moto covers the default tier)
@pytest.mark.timeout(400)
def test_job_end_to_end_on_seaweedfs(ray_local, seaweed_s3):
    storage, endpoint = seaweed_s3
    m = write_synthetic_market(
        "s3://bkt/sw/bars", n_symbols=15, n_bars=60, end=AS_OF, storage=storage, seed=9
    )
    out = "s3://bkt/sw/out"
    first = run_job(job_config(m.url, out, storage=storage.model_dump()))
    assert first.assets_forecast == 4 and first.assets_rejected == len(m.broken) == 11
    again = run_job(job_config(m.url, out, storage=storage.model_dump()))  # replaces the partition
    fs = filesystem(out, storage)
    assert_published(fs, out, again, 4)
    fc = read_partition(out, "forecasts", AS_OF, MODEL, storage)
    assert (fc["run_id"] == again.run_id).all() and len(fc) == 16
    rej = read_partition(out, "rejected", AS_OF, MODEL, storage)
    assert dict(zip(rej["symbol"], rej["reject_reason"], strict=True)) == m.broken


@pytest.mark.integration  # a real S3 server (moto, in a thread) without a fixture
def test_transient_outage_is_retried_against_a_real_server():
    """A real S3 server goes away and comes back on the same port: the read is retried and succeeds."""
    import threading

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
    restarted = threading.Timer(3.0, second.start)  # longer than botocore's own retry of a refused connection
    restarted.start()
    fresh = filesystem("s3://flaky", storage)
    attempts = []

    def read():
        attempts.append(second._server is not None)
        return fresh.cat_file("flaky/obj")

    assert with_retries(read, "read s3://flaky/obj", storage.retries, storage.retry_backoff_s) == b"payload"
    assert len(attempts) > 1 and attempts[0] is False  # our retry layer saw the outage and retried
    restarted.join()
    second.stop()
