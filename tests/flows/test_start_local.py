"""``scripts/start_local.sh <port>`` as a user runs it, on a port that is not Prefect's default 4200, on a
small market (the script's own 300-asset demo market is skipped by pointing KRONOS_INPUT_URL elsewhere).

Checks (issue 15): the UI served on that port calls the API on that port (``/ui-settings`` api_url) and that
API lists the served deployments; the UI bundle Prefect copies on first start lands in the data folder
(``$PREFECT_HOME/ui_build``), is what the server serves, and nothing is (re)written under site-packages; the
Prefect home defaults to ``$KRONOS_DATA_DIR/prefect_home``.
Slow tier: ~90 s on a busy 2-core machine (a server with a fresh DB, the UI copy, ``python -m flows.deploy``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # ~90 s on a busy 2-core machine

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "start_local.sh"
SERVED = {"nightly", "backtest", "finetune", "maintenance"}


def _default_bundle_state() -> dict[str, float | None]:
    """mtime of the marker Prefect writes when it copies a UI bundle to its default place (None: none)."""
    import prefect

    state = {}
    for sub in (prefect.__ui_static_subpath__, prefect.__ui_v2_static_subpath__):
        ref = Path(sub) / "UI_SERVE_BASE"
        state[str(sub)] = ref.stat().st_mtime if ref.exists() else None
    return state


def _stop(proc: subprocess.Popen) -> None:
    """The whole process group: the script, its server and its serve process."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything the script's trap left behind
    proc.wait(10)


def _served(api: str) -> set[str]:
    import httpx

    rows = httpx.post(f"{api}/deployments/filter", json={}, timeout=5).json()
    return {r["name"] for r in rows}


def test_start_local_on_another_port(tmp_path):
    import httpx

    from pipeline import write_synthetic_market

    market = write_synthetic_market(
        str(tmp_path / "market"), n_symbols=6, n_bars=80, end="2024-06-28", seed=3
    )
    data = tmp_path / "data"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PREFECT_") or k == "PREFECT_SERVER_ANALYTICS_ENABLED"
    }
    env.update(
        KRONOS_DATA_DIR=str(data),
        KRONOS_INPUT_URL=market.url,
        KRONOS_OUTPUT_URL=str(tmp_path / "output"),
        KRONOS_REGISTRY=str(tmp_path / "registry"),
        PAUSED="1",
        PYTHON=sys.executable,
    )
    before = _default_bundle_state()
    home = data / "prefect_home"  # the default Prefect home: <data dir>/prefect_home
    t0 = time.monotonic()
    for attempt in range(3):
        port = free_port()
        assert port != 4200
        log = tmp_path / f"start_local-{attempt}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(
                ["bash", str(SCRIPT), str(port)],
                cwd=tmp_path,  # the script cds to the repo itself
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        api = f"http://127.0.0.1:{port}/api"
        try:
            deadline = time.monotonic() + 180
            names: set[str] = set()
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    names = _served(api)
                    if names >= SERVED:
                        break
                except Exception:  # noqa: BLE001 - not up yet
                    pass
                time.sleep(0.5)
            clash = proc.poll() is not None and "already in use" in (home / "server.log").read_text()
            if clash and attempt < 2:
                continue  # another process took the port in between: try a new one
            text = log.read_text()
            server_log = (home / "server.log").read_text()[-3000:] if (home / "server.log").exists() else ""
            assert names >= SERVED, f"served {names} on {api}\n{text[-3000:]}\n{server_log}"

            # 1. the UI on this port talks to the API on this port, and that API has the deployments
            settings = httpx.get(f"http://127.0.0.1:{port}/ui-settings", timeout=5).json()
            assert settings["api_url"] == api, settings
            flows = {r["name"] for r in httpx.post(f"{api}/flows/filter", json={}, timeout=5).json()}
            assert {"nightly-forecast", "walk-forward-backtest", "finetune", "table-maintenance"} <= flows
            assert f"Prefect UI:  http://127.0.0.1:{port}" in text

            # 2. the UI bundle is in the data folder and served from there; site-packages untouched
            bundle = home / "ui_build"
            assert (bundle / "v1" / "index.html").exists() and (bundle / "v2" / "index.html").exists()
            index = bundle / "v1" / "index.html"
            index.write_text(index.read_text() + "\n<!-- kronos-test-marker -->\n")
            page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
            assert page.status_code == 200 and "kronos-test-marker" in page.text
            assert _default_bundle_state() == before, "the UI bundle was (re)written under site-packages"

            # 3. the Prefect home defaults to <data dir>/prefect_home (kronos-nightly's default too)
            assert (home / "prefect.db").exists() and (home / "server.log").exists()
            break
        finally:
            _stop(proc)
    print(f"start_local.sh up and checked in {time.monotonic() - t0:.0f} s")
