"""The Serve application on real Ray Serve over loopback HTTP (httpx): equality with a direct
``KronosPredictor.forecast`` call, 422s naming the field, multiplexing, live reconfigure, a bounded
load test. One Serve instance for the module (~10 s to start)."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest

from kronos_core import (
    DEFAULT_QUANTILES,
    FIELDS,
    KronosPredictor,
    MarketCalendar,
    SamplingParams,
    Series,
    quantile_column,
)
from kronos_core.testing import synthetic_ohlcv
from tests.conftest import free_port

pytestmark = pytest.mark.timeout(120)

MODELS = {
    "test": {"model": "random:test", "tokenizer": "random:test"},
    "test2": {"model": "random:test:1", "tokenizer": "random:test:1", "description": "another seed"},
    "demo": {"model": "demo", "tokenizer": "demo"},  # the shipped demo model (the default outside tests)
}
LIMITS = {"max_series": 8, "max_rows": 256, "max_pred_len": 32, "max_sample_count": 16, "max_body_mb": 1}
# thread_min_work: the multi-series equality tests take the worker-thread path, the load test runs inline
ARGS = {
    "models": MODELS,
    "default_model": "test",
    "limits": LIMITS,
    "torch_threads": 1,
    "thread_min_work": 2000,
}
ONE_REPLICA = {"num_replicas": 1, "autoscaling_config": None}


def _deploy(port: int, batching: dict, models: dict) -> None:
    """The shipped serving/serve_config.yaml, with test models/limits, one replica each, and ``batching``."""
    from serving.deploy import deploy, load_serve_config, override

    models = {**models, "broken": {"model": "/nonexistent/model", "tokenizer": "/nonexistent/tokenizer"}}
    config = override(
        load_serve_config(),
        host="127.0.0.1",
        port=port,
        args={**ARGS, "models": models},
        batching=batching,
        forecaster={**ONE_REPLICA, "ray_actor_options": {"num_cpus": 1}},
        ingress=ONE_REPLICA,
    )
    deploy(config)


@pytest.fixture(scope="module")
def finetuned(ray_local, tmp_path_factory) -> dict:
    """The output directory of a real ``kronos-train`` run (1 Ray Train worker, 1 epoch
    from ``random:test:2`` on a small synthetic market; ~25 s), served by path with no change."""
    from pipeline import write_synthetic_market
    from tests.training.conftest import END, train_config
    from training import run_training

    d = tmp_path_factory.mktemp("finetuned")
    market = write_synthetic_market(str(d / "bars"), n_symbols=6, n_bars=100, end=END, broken=False, seed=3)
    cfg = train_config(
        market.url,
        str(d / "out"),
        base={"model": "random:test:2", "tokenizer": "random:test:2"},
        predictor={"epochs": 1},
    )
    summary = run_training(cfg)
    out = d / "out"
    spec = {"model": str(out / "model"), "tokenizer": str(out / "tokenizer"), "max_context": 64}
    return {"spec": spec, "run_id": summary.run_id}


@pytest.fixture(scope="module")
def models(finetuned) -> dict:
    """MODELS plus "ft": a fine-tuned model directory."""
    return {**MODELS, "ft": finetuned["spec"]}


@pytest.fixture(scope="module")
def url(ray_local, models):
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    _deploy(port, {"max_batch_size": 16, "batch_wait_timeout_s": 0.02}, models)
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.fixture(scope="module")
def client(url):
    with httpx.Client(base_url=url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def predictors(models):
    return {
        mid: KronosPredictor.from_pretrained(
            m["model"], m["tokenizer"], device="cpu", dtype="float32", max_context=m.get("max_context")
        )
        for mid, m in models.items()
    }


def series_json(symbol: str, n: int, pred_len: int, seed: int = 0, freq: str = "5min") -> dict:
    df = synthetic_ohlcv(n + pred_len, freq=freq, seed=seed)
    ts = [str(t) for t in df["timestamps"]]
    body = {"symbol": symbol, "timestamps": ts[:n], "future_timestamps": ts[n:]}
    for f in FIELDS:
        body[f] = df[f].iloc[:n].tolist()
    return body


def to_series(s: dict) -> Series:
    vals = np.column_stack([s[f] for f in FIELDS])
    return Series(
        symbol=s["symbol"],
        timestamps=np.array(s["timestamps"], dtype="datetime64[ns]"),
        values=vals,
        future_timestamps=np.array(s["future_timestamps"], dtype="datetime64[ns]"),
    )


def request(series: list[dict], pred_len: int, seed: int = 0, sample_count: int = 4, **kw) -> dict:
    return {
        "series": series,
        "pred_len": pred_len,
        "sampling": {
            "temperature": 1.0,
            "top_k": 0,
            "top_p": 0.9,
            "sample_count": sample_count,
            "seed": seed,
        },
        **kw,
    }


def assert_equals_direct(resp: dict, req: dict, pred: KronosPredictor) -> None:
    res = pred.forecast(
        [to_series(x) for x in req["series"]],
        pred_len=req["pred_len"],
        sampling=SamplingParams(**req["sampling"]),
        quantiles=req.get("quantiles", DEFAULT_QUANTILES),
    )
    assert [f["symbol"] for f in resp["forecasts"]] == res.symbols and resp["sampling"] == req["sampling"]
    ci = FIELDS.index("close")
    for i, f in enumerate(resp["forecasts"]):
        assert np.array(f["timestamps"], dtype="datetime64[ns]").tolist() == res.future_timestamps[i].tolist()
        # bit for bit, whatever shared the server's batch (batch-invariant generation)
        for j, field in enumerate(FIELDS):
            np.testing.assert_array_equal(np.array(f["mean"][field], np.float32), res.mean[i, :, j])
        for k, q in enumerate(res.quantile_levels):
            got = np.array(f["quantiles"][quantile_column(q)], np.float32)
            np.testing.assert_array_equal(got, res.quantiles[i, k, :, ci])
        assert f["p_up"] == res.p_up[i] and f["p_flat"] == res.p_flat[i]
        assert f["flags"] == res.flags[i]
        assert f["last_close"] == res.last_close[i]


def test_health_models_docs(client):
    assert client.get("/healthz").json() == {
        "status": "ok",
        "models": ["broken", "demo", "ft", "test", "test2"],
    }
    models = client.get("/v1/models").json()
    assert models["default"] == "test"
    assert {m["id"]: m["model"] for m in models["models"]}.items() >= {
        "test": "random:test",
        "test2": "random:test:1",
    }.items()
    spec = client.get("/openapi.json").json()
    assert "/v1/forecast" in spec["paths"] and "ForecastRequest" in spec["components"]["schemas"]
    responses = spec["paths"]["/v1/forecast"]["post"]["responses"]
    assert {"200", "413", "415", "422", "500"} <= set(responses)  # regression: 413 and 415 were not listed
    for code in ("413", "415", "422", "500"):
        assert responses[code]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert client.get("/docs").status_code == 200


def test_forecast_equals_direct_call(client, predictors):
    # ragged lookbacks, one longer than the test model's 64-token window
    req = request(
        [
            series_json("AAA", 40, 8, seed=1),
            series_json("BBB", 64, 8, seed=2),
            series_json("CCC", 90, 8, seed=3),
        ],
        pred_len=8,
        seed=7,
        quantiles=[0.1, 0.5, 0.9],
    )
    r = client.post("/v1/forecast", json=req)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"]["id"] == "test" and body["model"]["identity"]["random_weights"] is True
    assert body["model"]["identity"]["model"] == predictors["test"].describe()["model"]
    assert_equals_direct(body, req, predictors["test"])


def test_model_choice_by_field_and_header(client, predictors):
    req = request([series_json("AAA", 50, 6, seed=1)], pred_len=6, seed=3)
    by_field = client.post("/v1/forecast", json={**req, "model": "test2"}).json()
    by_header = client.post("/v1/forecast", json=req, headers={"serve_multiplexed_model_id": "test2"}).json()
    default = client.post("/v1/forecast", json=req).json()
    assert by_field["model"]["id"] == by_header["model"]["id"] == "test2" and default["model"]["id"] == "test"
    assert by_field["forecasts"] == by_header["forecasts"] != default["forecasts"]
    assert_equals_direct(by_field, req, predictors["test2"])


def test_finetuned_directory_model(client, predictors, models, finetuned):
    req = request(
        [series_json("AAA", 50, 6, seed=1), series_json("BBB", 30, 6, seed=2)], pred_len=6, seed=5, model="ft"
    )
    r = client.post("/v1/forecast", json=req)
    assert r.status_code == 200, r.text
    identity = r.json()["model"]["identity"]
    assert identity["model"] == models["ft"]["model"] and identity["random_weights"] is False
    # the training lineage, from the run's training_manifest.json
    assert identity["training_run"] == finetuned["run_id"]
    assert identity["base_model"] == "random:test:2"
    assert identity["model_sha256"] == predictors["ft"].describe()["model_sha256"]
    assert_equals_direct(r.json(), req, predictors["ft"])


def test_demo_model_served_with_its_label(client, predictors):
    from kronos_core.demo import DEMO_MODELS, DEMO_NOTE

    req = request([series_json("SPY", 256, 5, seed=4, freq="1d")], pred_len=5, seed=2, model="demo")
    r = client.post("/v1/forecast", json=req)
    assert r.status_code == 200, r.text
    identity = r.json()["model"]["identity"]
    assert identity["demo_model"] is True and identity["random_weights"] is False
    assert identity["label"] == f"demo:daily ({DEMO_NOTE})"
    assert identity["model_sha256"] == DEMO_MODELS["daily"].model_sha256
    assert_equals_direct(r.json(), req, predictors["demo"])


def test_model_that_fails_to_load_is_a_500_not_a_crash(client):
    r = client.post("/v1/forecast", json=request([series_json("AAA", 20, 4)], pred_len=4, model="broken"))
    assert r.status_code == 500 and "could not be loaded" in r.json()["message"], r.text
    assert (
        client.post("/v1/forecast", json=request([series_json("AAA", 20, 4)], pred_len=4)).status_code == 200
    )


def test_generated_future_timestamps(client, predictors):
    s = series_json("DDD", 30, 5, seed=4, freq="1d")
    del s["future_timestamps"]
    r = client.post("/v1/forecast", json=request([s], pred_len=5, freq="1d", calendar="XNYS"))
    assert r.status_code == 200, r.text
    expect = MarketCalendar("XNYS", "1d").next_bars(s["timestamps"][-1], 5)
    assert (
        np.array(r.json()["forecasts"][0]["timestamps"], dtype="datetime64[ns]").tolist() == expect.tolist()
    )
    r = client.post("/v1/forecast", json=request([s], pred_len=3, freq="1d", calendar="weekdays"))
    assert r.status_code == 200, r.text


async def _post_many(url: str, reqs: list[dict], concurrency: int, headers=None) -> list[httpx.Response]:
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(
        base_url=url, timeout=60, limits=httpx.Limits(max_connections=concurrency)
    ) as c:

        async def one(req):
            async with sem:
                return await c.post("/v1/forecast", json=req, headers=headers)

        return await asyncio.gather(*(one(r) for r in reqs))


def test_concurrent_requests_are_batched_and_equal_direct(url, predictors):
    # same symbol with different seeds (split into separate forecast calls), different pred_len and models
    reqs = []
    for i in range(12):
        model = "test2" if i % 4 == 3 else "test"
        pred_len = 4 if i % 3 else 6
        reqs.append(
            request(
                [series_json("AAA", 30 + i, pred_len, seed=i), series_json(f"X{i}", 50, pred_len, seed=99)],
                pred_len=pred_len,
                seed=i % 2,
                model=model,
            )
        )
    resps = asyncio.run(_post_many(url, reqs, concurrency=12))
    assert all(r.status_code == 200 for r in resps), [r.text for r in resps if r.status_code != 200]
    for req, r in zip(reqs, resps, strict=True):
        assert_equals_direct(r.json(), req, predictors[req["model"]])
    assert max(int(r.headers["x-kronos-batch-requests"]) for r in resps) > 1


def _bad(**changes):
    s = series_json("AAA", 20, 4)
    req = request([s], pred_len=4)
    for k, v in changes.items():
        if k.startswith("s_"):
            s[k[2:]] = v
        else:
            req[k] = v
    return req


def _missing_close():
    req = _bad()
    del req["series"][0]["close"]
    return req


BAD = {
    "missing close": (_missing_close(), "close"),
    "missing series": ({"pred_len": 4}, "series"),
    "NaN": (_bad(s_close=[1.0] * 19 + [float("nan")]), "close"),
    "inf volume": (_bad(s_volume=[float("inf")] * 20), "volume"),
    "unsorted": (_bad(s_timestamps=series_json("AAA", 20, 4)["timestamps"][::-1]), "timestamps"),
    "duplicate stamp": (_bad(s_timestamps=[series_json("AAA", 20, 4)["timestamps"][0]] * 20), "timestamps"),
    "too many series": (request([series_json(f"S{i}", 10, 4) for i in range(9)], pred_len=4), "series"),
    "too many rows": (request([series_json("AAA", 257, 4)], pred_len=4), "timestamps"),
    "pred_len 0": (_bad(pred_len=0), "pred_len"),
    "pred_len too big": (_bad(pred_len=33), "pred_len"),
    "pred_len not int": (_bad(pred_len="x"), "pred_len"),
    "row count mismatch": (_bad(s_open=[1.0] * 19), "open"),
    "future count": (_bad(pred_len=5), "future_timestamps"),
    "no future stamps": (_bad(s_future_timestamps=None), "future_timestamps"),
    "future before last": (
        _bad(s_future_timestamps=series_json("AAA", 20, 4)["timestamps"][:4]),
        "future_timestamps",
    ),
    "sample_count": (_bad(sampling={"sample_count": 17}), "sample_count"),
    "temperature": (_bad(sampling={"temperature": 0}), "temperature"),
    "quantile": (_bad(quantiles=[0.5, 1.5]), "quantiles"),
    "unknown model": (_bad(model="nope"), "model"),
    "bad calendar": (_bad(s_future_timestamps=None, freq="5min", calendar="NOPE"), "calendar"),
    "bad frequency": (_bad(s_future_timestamps=None, freq="fortnightly-ish"), "freq"),
    "zero frequency": (_bad(s_future_timestamps=None, freq="0min"), "freq"),
    "negative frequency": (_bad(s_future_timestamps=None, freq="-5min"), "freq"),
    "huge frequency": (_bad(s_future_timestamps=None, freq="1000000D"), "freq"),
    "zero price": (_bad(s_low=[0.0] * 20), "low"),
    "negative volume": (_bad(s_volume=[-1.0] * 20), "volume"),
    "high below close": (_bad(s_high=[0.5] * 20), "high"),
    "amount without volume": (_bad(s_volume=None), "amount"),
    "year 3000": (_bad(s_timestamps=[f"30{i:02d}-01-01T00:00:00" for i in range(20)]), "timestamps"),
    "year 1600": (_bad(s_timestamps=[f"16{i:02d}-01-01T00:00:00" for i in range(20)]), "timestamps"),
    "duplicate symbol": (
        request([series_json("AAA", 10, 4), series_json("AAA", 12, 4)], pred_len=4),
        "series",
    ),
    "empty series": (
        _bad(s_timestamps=[], s_open=[], s_high=[], s_low=[], s_close=[], s_volume=[], s_amount=[]),
        "timestamps",
    ),
    "extra field": (_bad(colour="red"), "colour"),
    "negative seed": (_bad(sampling={"seed": -1}), "seed"),
    "seed at the top level": (_bad(seed=1), "seed"),
    "huge value": (_bad(s_high=[1e300] * 20), "high"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_request_is_422_naming_the_field(client, name):
    req, field = BAD[name]
    content = json.dumps(req)  # NaN/Infinity tokens as Python writes them (httpx refuses to)
    r = client.post("/v1/forecast", content=content, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    body = r.json()
    assert field in body["message"], body
    assert any(field in map(str, d["loc"]) or field in d["msg"] for d in body["detail"]), body


def test_one_error_shape_and_json_only(client):
    """Regression: error bodies had three shapes, and a non-JSON body got "Input should be a valid
    dictionary" instead of a message saying to send application/json."""
    shapes = []
    r = client.post(
        "/v1/forecast", content=b"series=1", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 415 and "application/json" in r.json()["message"]
    shapes.append(r.json())
    r = client.post("/v1/forecast", content=b"{}", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    shapes.append(r.json())
    shapes.append(client.post("/v1/forecast", json=_bad(pred_len=0)).json())  # 422
    shapes.append(
        client.post(
            "/v1/forecast", content=b" " * (2 * 2**20), headers={"content-type": "application/json"}
        ).json()
    )  # 413
    shapes.append(
        client.post(
            "/v1/forecast", json=request([series_json("AAA", 20, 4)], pred_len=4, model="broken")
        ).json()
    )  # 500
    nf = client.get("/nope")
    assert nf.status_code == 404
    shapes.append(nf.json())
    assert all(set(b) == {"message", "detail"} and isinstance(b["message"], str) for b in shapes), shapes


def test_year_3000_is_422_not_500(client):
    """Regression: daily bars past 2262-04-11 answered 500 (IndexError in the time embedding); year 3000
    came back forecast for 1830."""
    s = series_json("AAA", 20, 4, freq="1d")
    s["timestamps"] = [t.replace("2024", "3000", 1) for t in s["timestamps"]]
    del s["future_timestamps"]
    r = client.post("/v1/forecast", json=request([s], pred_len=4, freq="1d", calendar="24/7"))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "series", 0, "timestamps"], (
        r.text
    )
    assert "3000-01-02 is outside the supported range" in r.json()["message"]


def test_garbage_bodies_do_not_crash(client):
    for content in (b"", b"{", b"[]", b"null", b'{"series": 5, "pred_len": 4}', b"\xff\xfe"):
        r = client.post("/v1/forecast", content=content, headers={"content-type": "application/json"})
        assert r.status_code == 422, (content, r.text)
    too_big = client.post(
        "/v1/forecast", content=b" " * (2 * 2**20), headers={"content-type": "application/json"}
    )
    assert too_big.status_code == 413 and "limit" in too_big.json()["message"]
    assert client.get("/healthz").status_code == 200
    assert client.post("/v1/forecast", json=_bad()).status_code == 200


def test_reconfigure_batching_without_restart(url, client, models):
    before = client.get("/v1/stats").json()
    reqs = [request([series_json(f"R{i}", 30, 4, seed=i)], pred_len=4) for i in range(16)]
    port = int(url.rsplit(":", 1)[1])
    _deploy(port, {"max_batch_size": 1, "batch_wait_timeout_s": 0.0}, models)
    stats = client.get("/v1/stats").json()
    assert (stats["max_batch_size"], stats["batch_wait_timeout_s"]) == (1, 0.0)
    assert stats["pid"] == before["pid"]  # same replica: reconfigured, not restarted
    resps = asyncio.run(_post_many(url, reqs, concurrency=16))
    assert {r.headers["x-kronos-batch-requests"] for r in resps} == {"1"}
    _deploy(port, {"max_batch_size": 16, "batch_wait_timeout_s": 0.05}, models)
    assert client.get("/v1/stats").json()["max_batch_size"] == 16
    resps = asyncio.run(_post_many(url, reqs, concurrency=16))
    assert max(int(r.headers["x-kronos-batch-requests"]) for r in resps) > 1


def test_load_300_requests_32_concurrent(url, client):
    reqs = [
        request(
            [series_json(f"L{i % 40}", 24 + i % 17, 4, seed=i % 40)], pred_len=4, seed=i % 3, sample_count=2
        )
        for i in range(300)
    ]
    resps = asyncio.run(asyncio.wait_for(_post_many(url, reqs, concurrency=32), timeout=90))
    assert [r.status_code for r in resps].count(200) == 300, [r.text for r in resps if r.status_code != 200][
        :3
    ]
    assert client.get("/healthz").status_code == 200


def test_explorer_page_without_a_store(client):
    """The app has no explorer store here: the page still loads (CSV form only) and the store endpoints
    say how to configure one, in the one error shape."""
    page = client.get("/")
    assert page.status_code == 200 and "Kronos forecast explorer" in page.text
    settings = client.get("/ui/api/settings").json()
    assert settings["store"] is None and "--explorer-output" in settings["message"]
    assert settings["defaults"]["model"] == "test" and settings["limits"]["max_pred_len"] == 32
    for path, params in (
        ("/ui/api/partitions", {}),
        ("/ui/api/forecast", {"as_of": "2024-06-28", "model": "random:test:0", "symbol": "AAA"}),
    ):
        r = client.get(path, params=params)
        assert r.status_code == 404 and "no store configured" in r.json()["message"], r.text
        assert r.json()["detail"] == []
