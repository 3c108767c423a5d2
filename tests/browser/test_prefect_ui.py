"""The Prefect UI path as a user takes it, in headless Chromium: ``scripts/start_local.sh`` on a port that
is not 4200 (the UI must reach its API there), the nightly deployment's "Run" -> "Custom run" form filled
field by field (as_of from the date picker, a universe, sample_count, pred_len), submitted, the run waited
for until Completed, its Artifacts tab opened: the fan chart drawn inline (no base64 text under it), the
summary table with a readable as_of, locations as text (no ``file://`` links). A bad value (a quantile of
1.2, pred_len 0) is refused by the form next to the field, and no run is created.

Prefect 3.9's default UI is the "v2" app (``/v2/...``; ``/`` redirects there). Screenshots of each step go
to the ``screenshot_dir`` (``$KRONOS_SCREENSHOT_DIR``); ``docs/img/ui-prefect-*.png`` are copies.
Measured on 2 cores: the stack is up in ~60-90 s (market, server, served deployments), the run ~90 s.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.conftest import free_port

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
AS_OF = "2024-06-28"
UNIVERSE = ["S0011", "S0012", "S0013", "S0014", "S0015", "S0002"]  # S0002 is broken: one rejected row


def _wait(pred, timeout: float, what: str, proc: subprocess.Popen, log: Path):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            break
        try:
            out = pred()
            if out:
                return out
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(1)
    tail = log.read_text()[-3000:]
    raise AssertionError(f"{what} not ready after {timeout:.0f}s (exit={proc.poll()})\n{tail}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """``scripts/start_local.sh <free port>`` on a small market (40 assets x 120 sessions ending 2024-06-28),
    schedules paused; yields (base URL, api URL, data dir). The whole process group is stopped at the end."""
    from pipeline import write_synthetic_market

    data = tmp_path_factory.mktemp("local")
    market = write_synthetic_market(
        str(data / "vendor" / "bars"), n_symbols=40, n_bars=120, end=AS_OF, seed=1
    )
    port = free_port()
    while port == 4200:
        port = free_port()
    env = {
        **os.environ,
        "KRONOS_DATA_DIR": str(data),
        "KRONOS_INPUT_URL": market.url,  # not <data>/market: no demo market is generated
        "KRONOS_OUTPUT_URL": str(data / "output"),
        "KRONOS_REGISTRY": str(data / "models" / "kronos-demo"),
        "PAUSED": "1",
        "PYTHON": str(REPO / ".venv" / "bin" / "python")
        if (REPO / ".venv" / "bin" / "python").exists()
        else "python",
    }
    for k in ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_UI_API_URL", "PREFECT_SERVER_UI_API_URL"):
        env.pop(k, None)
    log = data / "start_local.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            ["bash", "scripts/start_local.sh", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    api = f"{base}/api"
    try:

        def served():
            deps = httpx.post(f"{api}/deployments/filter", json={}, timeout=5).json()
            return {d["name"] for d in deps} >= {"nightly", "backtest"}

        _wait(served, 300, "served deployments", proc, log)
        yield base, api, data, proc, log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def _deployment(api: str, name: str) -> dict:
    return next(d for d in httpx.post(f"{api}/deployments/filter", json={}).json() if d["name"] == name)


def _runs(api: str, deployment_id: str) -> list[dict]:
    body = {"deployments": {"id": {"any_": [deployment_id]}}, "sort": "EXPECTED_START_TIME_DESC"}
    return httpx.post(f"{api}/flow_runs/filter", json=body).json()


def _field(page, label: str):
    """The form field whose label reads ``label`` (Prefect adds " (Optional)"): label -> header -> field."""
    rx = re.compile("^" + re.escape(label) + r"( \(Optional\))?$")
    return page.locator("label", has_text=rx).first.locator("xpath=../../..")


def _open_custom_run(page, base: str, dep: dict) -> None:
    page.goto(f"{base}/v2/deployments/deployment/{dep['id']}")
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Custom run").click()
    page.wait_for_url(re.compile(r".*/run(\?.*)?$"))
    _field(page, "As Of").wait_for()


def test_ui_reaches_its_api_on_a_port_other_than_4200(stack, page, shoot):
    base, api, *_ = stack
    assert httpx.get(f"{base}/ui-settings").json()["api_url"] == api
    page.goto(f"{base}/v2/deployments")
    page.get_by_text("nightly-forecast").first.wait_for()
    body = page.inner_text("body")
    assert "Create a deployment to get started" not in body and "Something went wrong" not in body
    for flow in ("nightly-forecast", "walk-forward-backtest", "finetune", "table-maintenance"):
        assert flow in body
    shoot(page, "ui-prefect-1-deployments", full_page=False)


def test_custom_run_from_the_form_completes_with_artifacts(stack, page, shoot):
    base, api, data, proc, log = stack
    dep = _deployment(api, "nightly")
    before = {r["id"] for r in _runs(api, dep["id"])}
    _open_custom_run(page, base, dep)

    f = _field(page, "As Of")
    f.get_by_role("tab", name="date").click()
    f.get_by_role("button", name="Pick a date").click()
    page.get_by_label("Date (yyyy-MM-dd)").fill(AS_OF)
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    f = _field(page, "Universe")
    f.get_by_role("tab", name="list").click()
    for sym in UNIVERSE:
        f.get_by_role("button", name="Add item").click()
        f.locator("textarea").last.fill(sym)
    _field(page, "Sample Count").locator("input").first.fill("4")
    _field(page, "Pred Len").locator("input").first.fill("3")
    _field(page, "Chart Assets").locator("input").first.fill("2")
    _field(page, "Universe").scroll_into_view_if_needed()
    shoot(page, "ui-prefect-2-custom-run-form", full_page=False)
    page.get_by_role("button", name="Submit").click()

    new = _wait(
        lambda: [r for r in _runs(api, dep["id"]) if r["id"] not in before], 60, "flow run", proc, log
    )
    assert len(new) == 1
    run = new[0]
    params = run["parameters"]["params"]
    assert params["as_of"] == AS_OF and params["universe"] == UNIVERSE
    assert params["sampling"]["sample_count"] == 4 and params["pred_len"] == 3

    def finished():
        state = httpx.get(f"{api}/flow_runs/{run['id']}").json()["state"]
        return state if state and state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None

    state = _wait(finished, 600, "the flow run to finish", proc, log)
    assert state["type"] == "COMPLETED", state
    # the UI creates the run under a random name; the flow names it when it starts
    assert httpx.get(f"{api}/flow_runs/{run['id']}").json()["name"] == f"nightly-{AS_OF}"

    page.goto(f"{base}/v2/runs/flow-run/{run['id']}")
    page.get_by_text("Completed").first.wait_for()
    page.get_by_role("tab", name="Artifacts").click()
    for key in ("nightly-fan-chart", "nightly-run-summary", "nightly-rejected-assets", "nightly-outputs"):
        page.get_by_text(key, exact=True).first.wait_for()
    shoot(page, "ui-prefect-3-run-artifacts", full_page=False)

    arts = {
        a["key"]: a
        for a in httpx.post(
            f"{api}/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run["id"]]}}}
        ).json()
    }
    # the fan chart: drawn inline, its location as text, no base64 printed under it
    page.goto(f"{base}/v2/artifacts/artifact/{arts['nightly-fan-chart']['id']}")
    img = page.locator("img[src^='data:image/png;base64,']").first
    img.wait_for()
    assert img.evaluate("e => e.complete && e.naturalWidth > 300")
    text = page.inner_text("body")
    assert "base64" not in text and "iVBOR" not in text
    assert "fan_chart.png" in text and "as_of=2024-06-28" in text and "00:00:00" not in text
    assert page.locator("a[href^='file:']").count() == 0
    shoot(page, "ui-prefect-4-fan-chart")

    # the run summary table: as_of reads as a date, the counts are there
    page.goto(f"{base}/v2/artifacts/artifact/{arts['nightly-run-summary']['id']}")
    # the table is paginated (10 rows a page; as_of and assets_forecast are on the first) and renders after
    # its data arrives: auto-waiting assertions, not a one-off read of the rows (that raced once in CI)
    for field, value in (("as_of", AS_OF), ("assets_forecast", str(len(UNIVERSE) - 1))):
        row = page.locator("tr", has=page.get_by_role("cell", name=field, exact=True))
        expect(row).to_have_count(1)
        expect(row.locator("td").last).to_have_text(value)
    shoot(page, "ui-prefect-5-run-summary")

    # where the outputs are: full paths as text, never file:// links
    page.goto(f"{base}/v2/artifacts/artifact/{arts['nightly-outputs']['id']}")
    page.get_by_text("kronos.forecasts").first.wait_for()
    page.wait_for_load_state("networkidle")
    text = page.inner_text("body")
    i = text.find("warehouse")
    assert str(data / "output") in text, text[i - 200 : i + 800]
    assert page.locator("a[href^='file:']").count() == 0
    shoot(page, "ui-prefect-6-outputs")


def test_bad_values_are_refused_next_to_the_field(stack, page, shoot):
    base, api, *_ = stack
    dep = _deployment(api, "nightly")
    before = len(_runs(api, dep["id"]))

    _open_custom_run(page, base, dep)
    q = _field(page, "Quantiles")
    q.locator("input").last.fill("1.2")
    page.get_by_role("button", name="Submit").click()
    err = q.get_by_text(re.compile(r"1\.2 is greater than or equal to the maximum of 1"))
    err.wait_for()
    assert page.url.split("?")[0].endswith("/run")  # still on the form
    q.scroll_into_view_if_needed()
    shoot(page, "ui-prefect-7-field-error", full_page=False)

    _open_custom_run(page, base, dep)
    pred_len = _field(page, "Pred Len").locator("input").first
    pred_len.fill("0")
    page.get_by_role("button", name="Submit").click()
    message = pred_len.evaluate("e => e.validationMessage")
    assert "greater than or equal to 1" in message, message
    assert page.url.split("?")[0].endswith("/run")
    time.sleep(2)
    assert len(_runs(api, dep["id"])) == before  # neither submit created a run
