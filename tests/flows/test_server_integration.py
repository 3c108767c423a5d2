"""End to end against a real ``prefect server start`` on loopback (started and stopped here):
serve the deployments (flows/deploy.py) in a subprocess, trigger a run through the API with custom parameters
as the UI's "Custom run" form does, wait for it, then check the artifacts by key and the written partition.

The flow run executes the real pipeline job (local Ray started by the job in the run's process).
Measured on 2 cores: server healthy ~12 s, deployments registered ~5 s, the run ~35 s.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import free_port

pytestmark = [pytest.mark.timeout(420)]

REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).parent / "prefect")


def _wait(pred, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            break
        try:
            if pred():
                return time.monotonic() - t0
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.5)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise AssertionError(
        f"{what} not ready after {timeout:.0f}s (exit={proc.poll() if proc else None})\n{tail}"
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """A real Prefect server on 127.0.0.1:<free port> with its own PREFECT_HOME; yields (api_url, env).

    ``prefect server start`` cannot bind port 0 and report it, so a free port is picked first; if another
    process takes it in between, the server exits and is started again on a new port (up to three times)."""
    import httpx

    home = tmp_path_factory.mktemp("prefect_home")
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": "",
        "PREFECT_UI_ENABLED": "false",
        # as scripts/start_local.sh: should the UI be enabled, its bundle goes here, not into site-packages
        "PREFECT_SERVER_UI_STATIC_DIRECTORY": str(home / "ui_build"),
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONPATH": str(REPO),
    }
    env.pop("PREFECT_API_URL")
    log = home / "server.log"
    for attempt in range(3):
        port = free_port()
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{port}/api"
        try:
            _wait(
                lambda u=url: httpx.get(f"{u}/health", timeout=2).json() is True,
                90,
                "prefect server",
                proc,
                log,
            )
            break
        except AssertionError:
            exited = proc.poll() is not None
            _stop(proc)
            if not exited or attempt == 2:
                raise
    try:
        yield url, {**env, "PREFECT_API_URL": url}
    finally:
        _stop(proc)


def test_ui_style_custom_run_against_real_server(prefect_server, small_market, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.artifacts import KEYS

    url, env = prefect_server
    out_url = str(tmp_path / "store")
    log = tmp_path / "serve.log"
    with open(log, "w") as f:
        serve = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flows.deploy",
                "--input-url",
                small_market.url,
                "--output-url",
                out_url,
                "--paused",
            ],
            cwd=REPO,
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with temporary_settings({PREFECT_API_URL: url}):

            async def deployment():
                async with get_client() as c:
                    return await c.read_deployment_by_name("nightly-forecast/nightly")

            import asyncio

            dep = None

            def registered():
                nonlocal dep
                dep = asyncio.run(deployment())
                return dep is not None

            _wait(registered, 90, "served deployments", serve, log)
            crons = sorted((s.schedule.cron, s.schedule.timezone) for s in dep.schedules)
            assert crons == [("30 17 * * 1-4", "America/New_York"), ("30 17 * * 5", "America/New_York")]
            assert dep.parameter_openapi_schema["properties"]["params"]  # the UI form comes from this schema

            # the UI validates the form against the schema; so does the API
            with pytest.raises(Exception, match="(?i)valid|422"):
                run_deployment("nightly-forecast/nightly", parameters={"params": {"pred_len": 0}}, timeout=0)
            # issue 15: a quantile of 1.2 passed the stored schema and failed inside the run; the bounds of
            # kronos_core.rules.quantiles are in the schema now, so the API refuses the run at creation
            form = dep.parameter_openapi_schema["definitions"]["NightlyParams"]["properties"]
            assert form["quantiles"]["items"]["exclusiveMaximum"] == 1 and form["quantiles"]["maxItems"] > 1
            for bad in ({"quantiles": [1.2]}, {"calendar": {"freq": "7min"}}, {"storage": {"secret": "x"}}):
                with pytest.raises(Exception, match="(?i)valid|422"):
                    run_deployment("nightly-forecast/nightly", parameters={"params": bad}, timeout=0)

            custom = {
                "params": {
                    "input_url": small_market.url,
                    "output_url": out_url,
                    "as_of": "2024-06-28",
                    "universe": small_market.symbols[:24],
                    "lookback": 64,
                    "pred_len": 3,
                    "validation": {"min_history": 32},
                    "sampling": {"sample_count": 4, "seed": 7},
                    "chart_assets": 2,
                    "quantiles": [0.1, 0.5, 0.9],
                    "model": {"model": "random:test", "tokenizer": "random:test", "cache": "rolling"},
                }
            }
            t0 = time.monotonic()
            run = run_deployment("nightly-forecast/nightly", parameters=custom, timeout=300, poll_interval=2)
            wall = time.monotonic() - t0
            assert run.state.is_completed(), f"{run.state} after {wall:.0f}s\n{log.read_text()[-4000:]}"
            assert run.name == "nightly-2024-06-28"  # named from the JSON parameters the runner got

            async def artifacts():
                async with get_client() as c:
                    return await c.read_artifacts(
                        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
                    )

            arts = {a.key: a for a in asyncio.run(artifacts()) if a.key}
        for key in ("summary", "rejected", "chart", "outputs"):
            assert KEYS[key] in arts, f"missing artifact {KEYS[key]}; have {sorted(arts)}"
        chart = arts[KEYS["chart"]]
        assert chart.type == "markdown" and "](data:image/png;base64," in chart.data
        assert not any("file://" in str(a.data) for a in arts.values())
        assert "2024-06-28" in str(arts[KEYS["summary"]].data)

        from pipeline import list_runs, read, run_record, warehouse

        wh = warehouse(out_url)
        rows = read(wh, "forecasts", "2024-06-28", "random:test")
        assert len(list_runs(wh)) == 1 and set(rows["run_id"]) == set(list_runs(wh)["run_id"])
        healthy = set(small_market.symbols[:24]) - set(small_market.broken)
        assert (
            set(rows["symbol"]) <= set(small_market.symbols[:24])
            and len(set(rows["symbol"])) >= len(healthy) - 1
        )
        assert rows.groupby("symbol")["step"].max().eq(3).all()  # the custom pred_len reached the job
        record = run_record(wh, rows["run_id"].iloc[0])
        assert record["config"]["model"]["cache"] == "rolling"  # so did a nested model setting
        assert {"close_q10", "close_q50", "close_q90", "p_up"} <= set(rows.columns)
        assert pd.Timestamp(rows["as_of"].iloc[0]).date() == dt.date(2024, 6, 28)
        assert (Path(out_url) / "charts" / "as_of=2024-06-28" / "fan_chart.png").exists()
    finally:
        _stop(serve)
