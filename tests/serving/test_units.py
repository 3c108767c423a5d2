"""The plain functions behind the service, without Ray: batching plan and slicing, request
validation, calendars, config and CLI flags."""

from __future__ import annotations

import numpy as np
import pytest

from kronos_core import FIELDS, KronosPredictor, SamplingParams
from kronos_core.testing import synthetic_series
from serving.batching import Job, call_work, plan_calls, run_call
from serving.config import Limits, ServingConfig, parse_model_arg
from serving.schemas import ForecastRequest, RequestError, request_to_series

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def pred():
    return KronosPredictor.from_pretrained("random:test", "random:test", device="cpu", dtype="float32")


def job(keys, seed=0, pred_len=4, model="test", lengths=None):
    series = tuple(
        synthetic_series(k, (lengths or {}).get(k, 20 + i * 7), pred_len, seed=i) for i, k in enumerate(keys)
    )
    return Job(model, series, pred_len, SamplingParams(sample_count=3, seed=seed), (0.1, 0.5, 0.9))


def test_plan_groups_by_params_and_splits_shared_symbols():
    jobs = [
        job(["A", "B"]),
        job(["C"]),
        job(["A"]),
        job(["D"], seed=1),
        job(["E"], pred_len=5),
        job(["F"], model="other"),
        job(["A"]),
    ]
    # a different seed shares the call (seeds are per series); pred_len and model do not
    assert plan_calls(jobs) == [[0, 1, 3], [2], [4], [5], [6]]
    assert plan_calls([job(["A"]), job(["B"]), job(["A"]), job(["C"])]) == [[0, 1, 3], [2]]


def test_call_work():
    j = job(["A", "B"], pred_len=4, lengths={"A": 10, "B": 20})  # 3 paths
    assert call_work([j, j]) == 2 * 3 * 4 * ((10 + 4) + (20 + 4))


def test_batched_call_equals_one_call_per_job(pred):
    jobs = [job(["A", "B"]), job(["C"], lengths={"C": 90}, seed=5), job(["D"], seed=9)]
    batched = run_call(pred, jobs)
    for j, got in zip(jobs, batched, strict=True):
        alone = pred.forecast(list(j.series), pred_len=j.pred_len, sampling=j.sampling, quantiles=j.quantiles)
        assert got.symbols == alone.symbols
        # the same bits: generation is batch-invariant (kronos_core/invariant.py)
        np.testing.assert_array_equal(got.mean, alone.mean)
        np.testing.assert_array_equal(got.close_quantiles, alone.quantiles[:, :, :, FIELDS.index("close")])
        np.testing.assert_array_equal(got.p_up, alone.p_up)


def _req(**kw):
    s = synthetic_series("X", 10, 3)
    body = {
        "symbol": "X",
        "timestamps": s.timestamps.astype(str).tolist(),
        "future_timestamps": s.future_timestamps.astype(str).tolist(),
        **{f: s.values[:, j].tolist() for j, f in enumerate(FIELDS)},
    }
    body.update(kw.pop("series_changes", {}))
    return ForecastRequest(series=[body], **{"pred_len": 3, **kw})


def test_request_to_series_fills_volume_amount_like_upstream():
    req = _req(series_changes={"volume": None, "amount": None})
    (s,) = request_to_series(req, Limits())
    assert (s.values[:, 4:] == 0).all()
    req = _req(series_changes={"amount": None})
    (s,) = request_to_series(req, Limits())
    np.testing.assert_allclose(s.values[:, 5], s.values[:, 4] * s.values[:, :4].mean(axis=1))


@pytest.mark.parametrize(
    "kw, limits, field",
    [
        ({"pred_len": 3}, {"max_pred_len": 2}, "pred_len"),
        ({}, {"max_rows": 5}, "timestamps"),
        ({"sampling": {"sample_count": 9}}, {"max_sample_count": 8}, "sample_count"),
        ({"quantiles": [0.1] * 3}, {}, "quantiles"),
    ],
)
def test_limits_name_the_field(kw, limits, field):
    with pytest.raises(RequestError, match=field) as e:
        request_to_series(_req(**kw), Limits(**limits))
    assert field in map(str, e.value.loc)


def _generated(last: str, freq: str, calendar: str, n: int = 3, bars: int = 30, **kw) -> list[str]:
    """Future stamps generated for a request whose ``bars`` history ends at ``last`` on ``calendar``."""
    from kronos_core import MarketCalendar

    hist = MarketCalendar(calendar, freq).around(last, bars, 0)
    hist = hist[hist <= np.datetime64(last, "ns")][-bars:]
    s = synthetic_series("X", bars, 1)
    body = {
        "symbol": "X",
        "timestamps": hist.astype(str).tolist(),
        **{f: s.values[:, j].tolist() for j, f in enumerate(FIELDS)},
    }
    req = ForecastRequest(series=[body], pred_len=n, freq=freq, calendar=calendar, **kw)
    (series,) = request_to_series(req, Limits())
    return np.datetime_as_string(series.future_timestamps, unit="m").tolist()


def test_generated_future_timestamps_use_the_shared_calendars():
    assert _generated("2024-07-02", "1d", "XNYS") == [
        "2024-07-03T00:00",
        "2024-07-05T00:00",
        "2024-07-08T00:00",
    ]
    assert _generated("2024-07-03 12:30", "30min", "XNYS", n=2) == ["2024-07-03T13:00", "2024-07-05T10:00"]
    assert _generated("2024-07-05", "1d", "weekdays", n=2) == ["2024-07-08T00:00", "2024-07-09T00:00"]
    assert _generated("2024-06-28 21:00", "1h", "FX", n=2) == ["2024-06-30T22:00", "2024-06-30T23:00"]
    assert _generated("2024-06-01", "1mo", "24/7", n=2, bars=12) == ["2024-07-01T00:00", "2024-08-01T00:00"]


@pytest.mark.parametrize(
    "kw,field,match",
    [
        ({"freq": "0min"}, "freq", "frequency '0min': the count must be a whole number >= 1"),
        ({"freq": "-5min"}, "freq", "frequency '-5min': the count must be a whole number >= 1"),
        ({"freq": "1000000D"}, "freq", "frequency '1000000D': only one-day bars are supported"),
        ({"freq": "5min", "calendar": "NOPE"}, "calendar", "unknown calendar 'NOPE'"),
        ({}, "freq", "missing: give future_timestamps for each series, or freq"),
    ],
)
def test_frequency_and_calendar_errors_name_the_field_the_client_sent(kw, field, match):
    """Regression: frequency 0min answered "range() arg 3 must not be zero", -5min blamed a field the client
    never sent, 1000000D leaked a pandas message."""
    with pytest.raises(RequestError, match=match) as e:
        request_to_series(_req(series_changes={"future_timestamps": None}, **kw), Limits())
    assert e.value.loc == ("body", field)


@pytest.mark.parametrize(
    "changes,field,match",
    [
        ({"low": "zero"}, "low", "prices must be > 0"),
        ({"volume": "negative"}, "volume", "must be >= 0"),
        ({"high": "below"}, "high", "high must be the bar's highest price"),
        ({"volume": None}, "amount", "amount given without volume"),
        ({"close": "jump"}, "close", "the previous close"),
        (
            {"timestamps": "year3000"},
            "timestamps",
            r"timestamps\[0\] = 3000-01-02 09:35 is outside the supported range",
        ),
    ],
)
def test_bars_the_job_rejects_get_a_422_at_the_field(changes, field, match):
    """Regression: the endpoint forecast bars the batch job rejected, and a year-3000 stamp answered 500."""
    base = _req().series[0].model_dump()
    ((key, how),) = changes.items()
    if how is None:
        base[key] = None
    elif how == "zero":
        base[key][2] = 0.0
    elif how == "negative":
        base[key][2] = -1.0
    elif how == "below":
        base[key][2] = min(base["open"][2], base["close"][2]) * 0.5
    elif how == "jump":
        base["open"][5], base["high"][5], base["low"][5], base["close"][5] = (
            x * 1e6 for x in (base["open"][5], base["high"][5], base["low"][5], base["close"][5])
        )
    elif how == "year3000":
        base["timestamps"] = [t.replace(year=3000 + i) for i, t in enumerate(base["timestamps"])]
    with pytest.raises(RequestError, match=match) as e:
        request_to_series(ForecastRequest(series=[base], pred_len=3), Limits())
    assert e.value.loc[:3] == ("body", "series", 0) and e.value.loc[3] == field


def test_config_checks_and_cli_flags():
    with pytest.raises(ValueError, match="default_model"):
        ServingConfig(default_model="nope")
    assert parse_model_arg("ft=/m/model,/m/tok")[1].tokenizer == "/m/tok"
    with pytest.raises(ValueError, match="id=model_ref"):
        parse_model_arg("nonsense")
    from serving.cli import _parser, build_config

    cfg = build_config(
        _parser().parse_args(
            [
                "--model",
                "ft=random:test:3",
                "--default-model",
                "ft",
                "--port",
                "9001",
                "--max-batch-size",
                "1",
                "--replicas",
                "2",
                "--num-gpus",
                "0.5",
            ]
        )
    )
    app = cfg["applications"][0]
    fc = next(d for d in app["deployments"] if d["name"] == "Forecaster")
    assert app["args"]["models"]["ft"]["model"] == "random:test:3" and "mini" in app["args"]["models"]
    assert app["args"]["default_model"] == "ft"
    assert (
        fc["user_config"]["max_batch_size"] == 1
        and fc["num_replicas"] == 2
        and "autoscaling_config" not in fc
    )
    assert fc["ray_actor_options"]["num_gpus"] == 0.5 and cfg["http_options"]["port"] == 9001
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema(
        **{k: v for k, v in cfg.items() if k != "http_options"} | {"http_options": cfg["http_options"]}
    )


def test_serve_config_yaml_is_generated_from_the_code():
    """One source for serving defaults: serve_config.yaml equals what serving/config.py generates, and
    nothing is configured through environment variables any more."""
    from pathlib import Path

    from serving.deploy import DEFAULT_CONFIG_FILE, default_serve_config, load_serve_config, serve_config_yaml

    assert DEFAULT_CONFIG_FILE.read_text() == serve_config_yaml(), (
        "regenerate: python -m serving.deploy --write-config serving/serve_config.yaml"
    )
    assert load_serve_config(DEFAULT_CONFIG_FILE) == default_serve_config()
    app = load_serve_config(DEFAULT_CONFIG_FILE)["applications"][0]
    assert ServingConfig(**app["args"]) == ServingConfig()
    assert "env_vars" not in str({k: v for k, v in app.items() if k != "runtime_env"})
    source = "".join(p.read_text() for p in Path(__file__).parents[2].joinpath("serving").glob("*.py"))
    assert (
        "environ.get" not in source and "KRONOS_SERVE_" not in source
    )  # no settings read from the environment


def test_explorer_flags_and_config():
    from serving.cli import _parser, build_config
    from serving.config import ExplorerConfig

    flags = ["--explorer-output", "/data/out", "--explorer-input", "/data/bars"]
    flags += ["--explorer-input-layout", "symbol", "--explorer-history-bars", "30"]
    flags += ["--explorer-catalog", '{"namespace": "prod"}']
    explorer = build_config(_parser().parse_args(flags))["applications"][0]["args"]["explorer"]
    assert explorer == {
        "output_url": "/data/out",
        "input_url": "/data/bars",
        "input_layout": "symbol",
        "history_bars": 30,
        "catalog": {"namespace": "prod"},
    }
    assert build_config(_parser().parse_args([]))["applications"][0]["args"].get("explorer") is None
    with pytest.raises(ValueError, match="--explorer-output"):
        build_config(_parser().parse_args(["--explorer-input", "/data/bars"]))
    with pytest.raises(ValueError, match="not JSON"):
        build_config(_parser().parse_args(["--explorer-output", "/o", "--explorer-storage", "{nope"]))
    with pytest.raises(ValueError, match="namespace"):  # pipeline.config.CatalogConfig's own check
        ExplorerConfig(output_url="/o", catalog={"namespace": "bad name"})
    with pytest.raises(ValueError, match="endpoint_url"):
        ExplorerConfig(output_url="/o", storage={"endpoint_url": "localhost:9000"})


def test_explorer_csv_rule_and_scorecard_line():
    """The CSV form reads columns by kronos-forecast's rule (a Yahoo file as it is); the scorecard line
    equals flows.scoring.summarize_scorecard on the same rows."""
    from pathlib import Path

    import pandas as pd

    from flows.scoring import summarize_scorecard
    from serving.explorer import ExplorerError, parse_csv, scorecard_line
    from tests.serving.explorer_store import MODEL, scorecard_rows

    yahoo = (Path(__file__).parents[1] / "data" / "sp500_yahoo_2012_2013.csv").read_text()
    out = parse_csv(yahoo, "SPX")
    assert out["freq"] == "1d" and out["series"]["timestamps"][-1] == "2013-03-01T00:00:00"
    assert out["series"]["close"][0] == 1374.089966 and "amount" not in out["series"]
    with pytest.raises(ExplorerError, match=r"data row 2 \(CSV line 3\): close is 'null'"):
        parse_csv("timestamp,open,high,low,close\n2024-01-02,1,2,1,1\n2024-01-03,1,2,1,null\n")
    with pytest.raises(ExplorerError, match="no timestamp column"):
        parse_csv("open,high,low,close\n1,2,1,1\n")
    card = pd.concat([scorecard_rows(0).to_pandas(), scorecard_rows(1).to_pandas()])
    line = scorecard_line(card, MODEL)
    want = summarize_scorecard(card).set_index("method")
    for row in line["methods"]:
        for m in ("mae", "crps", "crps_skill", "coverage", "direction_acc", "rank_ic"):
            expect = want.loc[row["method"], m]
            assert (row[m] is None and pd.isna(expect)) or row[m] == pytest.approx(expect), (row["method"], m)
    assert scorecard_line(card, "other") is None
