"""The forecast explorer in headless Chromium against the real serving app (Ray Serve on loopback) and a real
store (the batch job's committed tables, ``tests/serving/explorer_store.py``): pick a symbol by the search,
its fan chart, p_up, lineage and scorecard line; a Yahoo CSV through ``POST /v1/forecast``; 422s shown next
to the field. Screenshots of each step (``shoot``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.serving.explorer_store import AS_OF, MODEL, build_store, deploy_app, explorer_args

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]

YAHOO = Path(__file__).parents[1] / "data" / "sp500_yahoo_2012_2013.csv"


@pytest.fixture(scope="module")
def url(ray_local, tmp_path_factory):
    from ray import serve

    store = build_store(tmp_path_factory.mktemp("explorer"))
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    deploy_app(port, explorer_args(store))
    yield f"http://127.0.0.1:{port}", store
    serve.shutdown()


def _expect(locator):
    from playwright.sync_api import expect

    return expect(locator)


def _submit(page, timeout=120_000):
    with page.expect_response(lambda r: r.url.endswith("/v1/forecast"), timeout=timeout) as resp:
        page.click("#csv-submit")
    return resp.value


def test_store_view_and_csv_form(page, shoot, url):
    url, store = url
    page.goto(url + "/")
    page.wait_for_selector("#symbol-list button")
    assert page.locator("#partition option").first.inner_text().startswith(f"{AS_OF} · {MODEL}")
    shoot(page, "explorer-1-loaded")

    # pick a symbol through the search
    page.fill("#symbol-search", "S0013")
    assert page.locator("#symbol-list button").count() == 1
    page.click("#symbol-list button")
    page.wait_for_selector("#store-chart svg path.mean")
    chart = page.locator("#store-chart svg")
    assert chart.locator("path.band").count() == 2  # q10-q90, q25-q75
    assert chart.locator("path.history").count() == 1 and chart.locator("path.median").count() == 1
    assert page.locator("#store-symbol").inner_text().startswith("S0013")
    assert "P(up)" in page.locator("#store-pup").inner_text()
    lineage = page.locator("#lineage").inner_text()
    assert "sample_count\t8" in lineage and "seed\t11" in lineage and MODEL in lineage
    assert "kronos over 2 matured cutoffs" in page.locator("#scorecard-line").inner_text()
    assert page.locator("#scorecard tr").count() == 5  # header + 4 methods
    shoot(page, "explorer-2-symbol")

    # a symbol the run rejected: the 404's message, no chart
    rejected = next(s for s, why in store["market"].broken.items() if why == "high_below_open_close")
    page.fill("#symbol-search", rejected)
    page.press("#symbol-search", "Enter")
    page.wait_for_selector("#store-message.error")
    assert "rejected it (high_below_open_close" in page.locator("#store-message").inner_text()
    shoot(page, "explorer-3-symbol-not-found")

    # a real Yahoo CSV, uploaded, forecast through /v1/forecast
    page.set_input_files("#csv-file", str(YAHOO))
    _expect(page.locator("#csv-symbol")).to_have_value("sp500_yahoo_2012_2013")  # the file is read async
    page.fill("#pred_len", "10")
    assert _submit(page).status == 200
    page.wait_for_selector("#csv-chart svg path.mean")
    assert page.locator("#csv-chart svg path.band").count() == 2
    assert "P(up)" in page.locator("#csv-pup").inner_text()
    assert page.locator("#err-csv").inner_text() == ""
    shoot(page, "explorer-4-csv-forecast")

    # a bad bar (high below the close) -> the 422 message next to the CSV field
    lines = YAHOO.read_text().splitlines()
    cells = lines[-3].split(",")
    cells[2] = str(float(cells[4]) - 5)  # High below Close
    lines[-3] = ",".join(cells)
    page.fill("#csv-text", "\n".join(lines))
    assert _submit(page).status == 422
    _expect(page.locator("#err-csv")).to_contain_text(f"(CSV line {len(lines) - 2})")
    assert "high" in page.locator("#err-csv").inner_text()
    assert "invalid" in page.get_attribute("#csv-text", "class")
    shoot(page, "explorer-5-csv-bad-bar")

    # non-increasing timestamps -> also at the CSV field
    swapped = [lines[0], *YAHOO.read_text().splitlines()[1:-2], lines[-1], lines[-2]]
    page.fill("#csv-text", "\n".join(swapped))
    assert _submit(page).status == 422
    _expect(page.locator("#err-csv")).to_contain_text("timestamps must be strictly increasing")

    # pred_len 0 -> the message next to pred_len, the CSV field clear
    page.fill("#csv-text", YAHOO.read_text())
    page.fill("#pred_len", "0")
    assert _submit(page).status == 422
    _expect(page.locator("#err-pred_len")).to_contain_text("greater than or equal to 1")
    assert page.locator("#err-csv").inner_text() == ""
    shoot(page, "explorer-6-pred-len-error")
    # Chromium logs every non-2xx fetch as a console error: exactly the one 404 and three 422s above
    failed = [e for e in page.console_errors if e.startswith("Failed to load resource")]
    assert [e for e in page.console_errors if e not in failed] == []
    assert sorted(e.rsplit("status of ", 1)[1][:3] for e in failed) == ["404", "422", "422", "422"]
