"""The forecast explorer over real Ray Serve and a real store (``explorer_store``: the batch job's committed
tables): the page and its files, the JSON endpoints equal to what ``pipeline`` reads for the partition, the
scorecard line equal to ``flows.scoring.summarize_scorecard``, 404s in the one error shape, and the CSV
path through ``POST /v1/forecast``. The explorer-off state is tested on test_app.py's app."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from kronos_core import FIELDS
from tests.conftest import free_port
from tests.serving.explorer_store import AS_OF, MODEL, OLDER, build_store, deploy_app, explorer_args

pytestmark = pytest.mark.timeout(240)

YAHOO = Path(__file__).parents[1] / "data" / "sp500_yahoo_2012_2013.csv"


@pytest.fixture(scope="module")
def store(ray_local, tmp_path_factory) -> dict:
    return build_store(tmp_path_factory.mktemp("explorer"))


@pytest.fixture(scope="module")
def client(store):
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    deploy_app(port, explorer_args(store))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
        yield c
    serve.shutdown()


def test_page_and_its_files(client):
    for path in ("/", "/ui"):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "Kronos forecast explorer" in r.text and "/ui/static/app.js" in r.text
    assert "drawChart" in client.get("/ui/static/app.js").text
    assert client.get("/ui/static/style.css").headers["content-type"].startswith("text/css")
    nope = client.get("/ui/static/index.py")
    assert nope.status_code == 404 and set(nope.json()) == {"message", "detail"}


def test_partitions_newest_first(client, store):
    from pipeline.tables import partitions

    body = client.get("/ui/api/partitions").json()
    assert [(p["as_of"][:10], p["model"]) for p in body["partitions"]] == [(AS_OF, MODEL), (OLDER, MODEL)]
    expect = partitions(store["wh"]).set_index("as_of")["rows"]
    assert {p["rows"] for p in body["partitions"]} == set(expect.tolist())
    settings = client.get("/ui/api/settings").json()
    assert settings["store"]["output_url"] == store["out"] and settings["message"] == ""


def test_forecast_equals_the_committed_partition(client, store):
    from pipeline import read
    from pipeline.config import StorageConfig
    from pipeline.read import read_bars

    rows = read(store["wh"], "forecasts", AS_OF, MODEL)
    symbols = client.get("/ui/api/symbols", params={"as_of": AS_OF, "model": MODEL}).json()["symbols"]
    assert [s["symbol"] for s in symbols] == sorted(rows["symbol"].unique())
    sym = symbols[-1]["symbol"]
    r = client.get("/ui/api/forecast", params={"as_of": AS_OF, "model": MODEL, "symbol": sym})
    assert r.status_code == 200, r.text
    v = r.json()
    mine = rows[rows["symbol"] == sym].sort_values("step")
    f = v["forecast"]
    assert np.array(f["timestamps"], "datetime64[ns]").tolist() == mine["timestamp"].to_numpy().tolist()
    for field in FIELDS:
        np.testing.assert_array_equal(np.array(f["mean"][field], np.float32), mine[field].to_numpy())
    assert f["quantile_levels"] == [0.1, 0.25, 0.5, 0.75, 0.9]
    for col, values in f["quantiles"].items():
        np.testing.assert_array_equal(np.array(values, np.float32), mine[col].to_numpy())
    assert f["p_up"] == mine["p_up"].iloc[0] and f["last_close"] == mine["last_close"].iloc[0]
    lineage = v["lineage"]
    assert (lineage["model"], lineage["sample_count"], lineage["seed"]) == (MODEL, 8, 11)
    assert lineage["run_id"] == store["run_id"] and lineage["random_weights"] is True
    # history: the job's input up to as_of, the last history_bars (60) of them
    bars = read_bars(
        store["bars"], "date", StorageConfig(), pd.Timestamp("2024-01-01"), pd.Timestamp(AS_OF), [sym]
    )
    bars = bars[bars["symbol"] == sym].sort_values("timestamp").tail(60)
    h = v["history"]
    assert len(h["timestamps"]) == 60 and v["history_note"] == ""
    assert np.array(h["timestamps"], "datetime64[ns]").tolist() == bars["timestamp"].to_numpy().tolist()
    np.testing.assert_array_equal(h["close"], bars["close"].to_numpy())


def test_scorecard_line_equals_the_flows_summary(client, store):
    from flows.scoring import summarize_scorecard
    from pipeline import read

    sym = client.get("/ui/api/symbols", params={"as_of": AS_OF, "model": MODEL}).json()["symbols"][0][
        "symbol"
    ]
    card = client.get("/ui/api/forecast", params={"as_of": AS_OF, "model": MODEL, "symbol": sym}).json()
    line = card["scorecard"]["line"]
    assert line["model"] == MODEL and line["methods"][0]["method"] == "kronos"
    summary = summarize_scorecard(read(store["wh"], "scorecard")).set_index("method")
    for row in line["methods"]:
        want = summary.loc[row["method"]]
        assert row["cutoffs"] == want["cutoffs"] == 2
        for m in ("mae", "direction_acc", "rank_ic", "crps", "crps_skill", "coverage"):
            assert row[m] == pytest.approx(want[m], nan_ok=True) or (row[m] is None and np.isnan(want[m])), m


def test_unknown_symbol_or_partition_is_404_with_a_message(client, store):
    q = {"as_of": AS_OF, "model": MODEL}
    r = client.get("/ui/api/forecast", params={**q, "symbol": "NOPE"})
    assert r.status_code == 404 and r.json()["detail"] == []
    assert "symbol 'NOPE' is not in the forecasts of as_of 2024-06-28" in r.json()["message"]
    rejected = next(s for s, why in store["market"].broken.items() if why == "high_below_open_close")
    r = client.get("/ui/api/forecast", params={**q, "symbol": rejected})
    assert r.status_code == 404 and "the run rejected it (high_below_open_close" in r.json()["message"]
    r = client.get("/ui/api/symbols", params={"as_of": "2020-01-01", "model": MODEL})
    assert r.status_code == 404 and "latest partitions: 2024-06-28" in r.json()["message"]
    r = client.get("/ui/api/symbols", params={"as_of": "not a date", "model": MODEL})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "as_of"]


def test_csv_form_path_goes_through_v1_forecast(client):
    parsed = client.post("/ui/api/csv", json={"csv": YAHOO.read_text(), "symbol": "SPX"}).json()
    s = parsed["series"]
    assert parsed["freq"] == "1d" and parsed["rows"] == len(s["timestamps"]) == 251
    assert s["timestamps"][0] == "2012-03-01T00:00:00" and set(s) == {"symbol", "timestamps", *FIELDS[:5]}
    req = {"series": [s], "pred_len": 5, "freq": parsed["freq"], "sampling": {"sample_count": 4}}
    r = client.post("/v1/forecast", json=req)
    assert r.status_code == 200, r.text
    assert len(r.json()["forecasts"][0]["timestamps"]) == 5
    bad = client.post("/ui/api/csv", json={"csv": "Date,Open,High\n2024-01-02,1,2\n"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "csv"]
    assert "no low, close column" in bad.json()["message"]
