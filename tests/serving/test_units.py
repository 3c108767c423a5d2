"""The plain functions behind the service, without Ray: batching plan and slicing, request
validation, calendars, config and CLI flags."""

from __future__ import annotations

import numpy as np
import pytest

from kronos_core import FIELDS, KronosPredictor, SamplingParams
from kronos_core.testing import synthetic_series
from serving.batching import Job, call_work, plan_calls, run_call
from serving.calendar import future_timestamps
from serving.config import Limits, ServingConfig, parse_model_arg
from serving.schemas import ForecastRequest, RequestError, request_to_series

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def pred():
    return KronosPredictor.from_pretrained("random:test", "random:test", device="cpu", dtype="float32")


def job(keys, seed=0, pred_len=4, model="test", lengths=None):
    series = tuple(synthetic_series(k, (lengths or {}).get(k, 20 + i * 7), pred_len, seed=i) for i, k in enumerate(keys))
    return Job(model, series, pred_len, SamplingParams(sample_count=3, seed=seed), (0.1, 0.5, 0.9))


def test_plan_groups_by_params_and_splits_shared_symbols():
    jobs = [job(["A", "B"]), job(["C"]), job(["A"]), job(["D"], seed=1), job(["E"], pred_len=5),
            job(["F"], model="other"), job(["A"])]
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
        assert got.keys == alone.keys
        # same sampled paths; float32 matmuls over a padded batch may differ in the last bit
        np.testing.assert_allclose(got.mean, alone.mean, rtol=1e-6)
        np.testing.assert_allclose(got.close_quantiles, alone.quantiles[:, :, :, FIELDS.index("close")], rtol=1e-6)
        np.testing.assert_array_equal(got.p_up, alone.p_up)


def _req(**kw):
    s = synthetic_series("X", 10, 3)
    body = {"symbol": "X", "timestamps": s.timestamps.astype(str).tolist(),
            "future_timestamps": s.future_timestamps.astype(str).tolist(),
            **{f: s.values[:, j].tolist() for j, f in enumerate(FIELDS)}}
    body.update(kw.pop("series_changes", {}))
    return ForecastRequest(series=[body], **{"pred_len": 3, **kw})


def test_request_to_series_fills_volume_amount_like_upstream():
    req = _req(series_changes={"volume": None, "amount": None})
    (s,) = request_to_series(req, Limits())
    assert (s.values[:, 4:] == 0).all()
    req = _req(series_changes={"amount": None})
    (s,) = request_to_series(req, Limits())
    np.testing.assert_allclose(s.values[:, 5], s.values[:, 4] * s.values[:, :4].mean(axis=1))


@pytest.mark.parametrize("kw, limits, field", [
    ({"pred_len": 3}, {"max_pred_len": 2}, "pred_len"),
    ({}, {"max_rows": 5}, "timestamps"),
    ({"sampling": {"sample_count": 9}}, {"max_sample_count": 8}, "sample_count"),
    ({"quantiles": [0.1] * 3}, {}, "quantiles"),
])
def test_limits_name_the_field(kw, limits, field):
    with pytest.raises(RequestError, match=field) as e:
        request_to_series(_req(**kw), Limits(**limits))
    assert field in map(str, e.value.loc)


def test_limits_from_env():
    lim = Limits.from_env({"max_series": 3}, environ={"KRONOS_SERVE_MAX_ROWS": "77"})
    assert (lim.max_series, lim.max_rows) == (3, 77)


def test_calendar_and_frequency():
    xnys = future_timestamps(np.datetime64("2024-07-02"), 3, calendar="XNYS")  # skips July 4th
    assert xnys.astype("datetime64[D]").astype(str).tolist() == ["2024-07-03", "2024-07-05", "2024-07-08"]
    intraday = future_timestamps(np.datetime64("2024-07-03T12:30"), 3, "30min", calendar="XNYS")  # half day
    assert intraday.astype(str).tolist()[:2] == ["2024-07-03T13:00:00.000000000", "2024-07-05T10:00:00.000000000"]
    fixed = future_timestamps(np.datetime64("2024-07-05"), 2, "B")
    assert fixed.astype("datetime64[D]").astype(str).tolist() == ["2024-07-08", "2024-07-09"]
    with pytest.raises(ValueError, match="unknown exchange calendar"):
        future_timestamps(np.datetime64("2024-07-05"), 2, calendar="NOPE")
    with pytest.raises(ValueError, match="unknown frequency"):
        future_timestamps(np.datetime64("2024-07-05"), 2, "sometimes")


def test_config_checks_and_cli_flags():
    with pytest.raises(ValueError, match="default_model"):
        ServingConfig(default_model="nope")
    assert parse_model_arg("ft=/m/model,/m/tok")[1].tokenizer == "/m/tok"
    with pytest.raises(ValueError, match="id=model_ref"):
        parse_model_arg("nonsense")
    from serving.cli import _parser, build_config

    cfg = build_config(_parser().parse_args(["--model", "ft=random:test:3", "--default-model", "ft", "--port", "9001",
                                             "--max-batch-size", "1", "--replicas", "2", "--num-gpus", "0.5"]))
    app = cfg["applications"][0]
    fc = next(d for d in app["deployments"] if d["name"] == "Forecaster")
    assert app["args"]["models"]["ft"]["model"] == "random:test:3" and "mini" in app["args"]["models"]
    assert fc["user_config"]["max_batch_size"] == 1 and fc["num_replicas"] == 2 and "autoscaling_config" not in fc
    assert fc["ray_actor_options"]["num_gpus"] == 0.5 and cfg["http_options"]["port"] == 9001
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema(**{k: v for k, v in cfg.items() if k != "http_options"} | {"http_options": cfg["http_options"]})
