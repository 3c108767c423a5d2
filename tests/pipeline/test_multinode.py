"""The batch job and the serving app on a two-node Ray cluster (``ray.cluster_utils.Cluster``: a head and a
worker node on this machine), input and output on a real S3 server (moto's, on loopback).

The job joins the cluster by address (``compute.ray_address``), as a pod of a KubeRay cluster does; two
forecast actors of 2 CPUs on 3-CPU nodes cannot share a node, and Ray's state API must show them on both;
every healthy asset is forecast exactly once and every broken one rejected. Then Serve on the same cluster
answers ``POST /v1/forecast`` over HTTP. The cluster and each driver run in processes of their own
(``tests/pipeline/multinode.py`` says why): the session's shared Ray, if this process has one, is never
touched, and the test stops exactly what it started (Serve, then the cluster) and checks both are gone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import tables as T
from pipeline import write_synthetic_market
from tests.conftest import free_port

from .conftest import AS_OF, TINY

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
MODEL = "random:test"
PRED_LEN = 4
HEALTHY = 12  # plus the 11 broken series of every synthetic market (one per reject reason)


class Role:
    """One process of ``tests/pipeline/multinode.py``; its output goes to ``<logs>/<role>.log``."""

    def __init__(self, logs: Path, role: str, *args, env: dict):
        self.role, self.log = role, logs / f"{role}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.pipeline.multinode", role, *map(str, args)],
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, with the Ray processes it starts
            )

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def result(self, timeout_s: float) -> dict:
        """The role's ``RESULT`` line, once it has printed it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.log.read_text(errors="replace").splitlines():
                if line.startswith("RESULT "):
                    return json.loads(line[len("RESULT ") :])
            if self.proc.poll() is not None:
                pytest.fail(f"{self.role} exited {self.proc.returncode} without a result:\n{self.tail()}")
            time.sleep(0.5)
        pytest.fail(f"{self.role}: no result after {timeout_s:.0f} s:\n{self.tail()}")

    def stop(self, timeout_s: float = 120) -> int:
        """Close its stdin (the role then shuts down what it started) and wait; kill its group if stuck."""
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.proc.pid, sig)
                    return self.proc.wait(timeout=30)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    continue
            return self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def refused(host_port: str) -> bool:
    host, port = host_port.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        return True
    return False


def series_body(pred_len: int) -> dict:
    from kronos_core import FIELDS
    from kronos_core.testing import synthetic_ohlcv

    df = synthetic_ohlcv(40 + pred_len, freq="1d", seed=4)
    ts = [str(t) for t in df["timestamps"]]
    series = {"symbol": "MN1", "timestamps": ts[:40], "future_timestamps": ts[40:]}
    series.update({f: df[f].iloc[:40].tolist() for f in FIELDS})
    return {"series": [series], "pred_len": pred_len, "sampling": {"sample_count": 4, "seed": 3}}


def test_job_and_endpoint_on_a_two_node_cluster(moto_s3, tmp_path):
    import httpx

    ray_mod = sys.modules.get("ray")
    ray_before = bool(ray_mod and ray_mod.is_initialized())  # the session's ray_local, if a test started it
    storage, endpoint = moto_s3
    m = write_synthetic_market(
        "s3://bkt/multinode/bars", n_symbols=HEALTHY + 11, n_bars=60, end=AS_OF, storage=storage, seed=11
    )
    assert len(m.healthy) == HEALTHY
    out = "s3://bkt/multinode/out"
    catalog = {"properties": {"uri": f"sqlite:///{tmp_path / 'catalog.db'}"}}
    config = tmp_path / "job.json"
    config.write_text(
        json.dumps(
            {
                "as_of": AS_OF,
                "lookback": 48,
                "pred_len": PRED_LEN,
                "input": {"url": m.url},
                "output": {"url": out, "catalog": catalog},
                "model": TINY,
                "sampling": {"sample_count": 4, "seed": 7},
                "validation": {"min_history": 24, "min_forecast_share": 0.25},
                # no credentials in the file: the driver has them in its environment, as a pod from a Secret
                "storage": {"endpoint_url": endpoint, "region": "us-east-1", "retries": 1},
                "compute": {"concurrency": 2, "num_cpus": 2, "batch_size": 4},
            }
        )
    )
    # a short private RAY_TMPDIR: Ray's socket paths must stay short, and the cluster's "current cluster"
    # file must not be the one other ray.init() calls on this machine read
    ray_tmp = tempfile.mkdtemp(prefix="kmn-", dir="/tmp")
    env = {
        **os.environ,
        "RAY_TMPDIR": ray_tmp,
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    for k in ("RAY_ADDRESS", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        env.pop(k, None)
    creds = {"AWS_ACCESS_KEY_ID": storage.key, "AWS_SECRET_ACCESS_KEY": storage.secret}
    try:
        with Role(tmp_path, "cluster", env=env) as cluster:
            nodes = cluster.result(timeout_s=180)
            address = nodes["address"]

            # 1. the batch job joins by address; the forecast actors on both nodes (Ray's state API)
            job = Role(tmp_path, "job", address, config, env={**env, **creds})
            ran = job.result(timeout_s=420)
            assert job.proc.wait(timeout=60) == 0, job.tail()
            s = ran["summary"]
            assert (s["assets_read"], s["assets_forecast"], s["assets_rejected"]) == (
                HEALTHY + 11,
                HEALTHY,
                11,
            )
            assert s["streamed"], "each node keeps a CPU beside its actor: stages 1-6a stream"
            forecast_actors = [a for a in ran["actors"] if "ForecastActor" in (a["repr_name"] or "")]
            assert len(forecast_actors) == 2, ran["actors"]
            assert {a["node_id"] for a in forecast_actors} == {nodes["head"], nodes["worker"]}, (
                forecast_actors,
                nodes,
            )

            # 2. the output is complete: every healthy asset exactly once, every broken one rejected
            wh = T.warehouse(out, catalog, storage)
            fc = T.read(wh, "forecasts", AS_OF, MODEL)
            assert set(fc["run_id"]) == {s["run_id"]}
            assert sorted(fc["symbol"].unique()) == sorted(m.healthy)
            assert len(fc) == HEALTHY * PRED_LEN and not fc.duplicated(["symbol", "step"]).any()
            assert set(fc["step"]) == set(range(1, PRED_LEN + 1))
            assert np.isfinite(fc["close"]).all() and set(fc["device"]) == {"cpu"}
            rej = T.read(wh, "rejected", AS_OF, MODEL)
            assert dict(zip(rej["symbol"], rej["reject_reason"], strict=True)) == m.broken
            assert T.run_record(wh, s["run_id"])["snapshot_id"] == s["snapshot_id"]

            # 3. the serving app on the same cluster answers over HTTP
            port = free_port()
            with Role(tmp_path, "serve", address, port, env=env) as served:
                app = served.result(timeout_s=300)
                assert {r["node_id"] for r in app["replicas"]} <= {nodes["head"], nodes["worker"]}
                assert any("Forecaster" in r["class_name"] for r in app["replicas"]), app["replicas"]
                with httpx.Client(base_url=app["url"], timeout=60) as client:
                    assert client.get("/healthz").json()["status"] == "ok"
                    r = client.post("/v1/forecast", json=series_body(PRED_LEN))
                assert r.status_code == 200, r.text
                body = r.json()
                assert body["model"]["id"] == "test" and body["model"]["identity"]["random_weights"]
                (f,) = body["forecasts"]
                assert f["symbol"] == "MN1" and len(f["timestamps"]) == PRED_LEN
                assert np.isfinite(f["mean"]["close"]).all()
            assert served.proc.returncode == 0, served.tail()  # serve.shutdown() ran
            assert refused(f"127.0.0.1:{port}"), "the Serve proxy outlived serve.shutdown()"
        assert cluster.proc.returncode == 0, cluster.tail()  # Cluster.shutdown() ran
        assert refused(address), "the cluster's GCS outlived Cluster.shutdown()"
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    # the session's Ray (if this process had one) is as it was
    ray_mod = sys.modules.get("ray")
    assert bool(ray_mod and ray_mod.is_initialized()) == ray_before
