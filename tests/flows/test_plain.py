"""Plain functions behind the flows: parameters, cutoffs, freshness, charts, artifacts rows (no Prefect)."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from flows import artifacts as A
from flows.artifacts import frame_rows, markdown_table, summary_rows
from flows.backtest import auto_cutoffs
from flows.charts import fan_chart_png, pick_chart_symbols
from flows.cli import EPHEMERAL_STARTUP_TIMEOUT_S, demo_cutoffs, process_env
from flows.job import fit_actors, freshness_problem, job_as_of, resolve_as_of, to_job_config
from flows.params import BacktestParams, NightlyParams
from kronos_core import MarketCalendar, PredictorSpec, SamplingParams, defaults


def test_params_validate_and_map_to_job_config():
    p = NightlyParams(universe=[" B", "A", "A", ""], quantiles=[0.9, 0.1], compute={"ray_address": None})
    assert p.universe == ["A", "B"] and p.quantiles == [0.1, 0.9] and p.compute.ray_address is None
    with pytest.raises(ValidationError, match="quantile"):
        NightlyParams(quantiles=[0.0, 0.5])
    with pytest.raises(ValidationError):
        NightlyParams(lookbak=10)  # typo: extra fields are errors, not silently ignored
    with pytest.raises(ValidationError, match="sampling.temprature"):
        NightlyParams(sampling={"temprature": 2})
    cfg = to_job_config(p.model_copy(update={"lookback": 16}), dt.date(2024, 6, 28))
    assert cfg.as_of == pd.Timestamp("2024-06-28") and cfg.validation.min_history == 16
    assert cfg.universe.symbols == ["A", "B"] and cfg.output.quantiles == [0.1, 0.9]
    assert cfg.compute.ray_address is None and cfg.model.model == defaults.MODEL
    schema = NightlyParams.model_json_schema()  # what the Prefect UI renders as the form
    assert {"as_of", "universe", "model", "sampling", "compute", "calendar", "quantiles"} <= set(
        schema["properties"]
    )
    assert "top_p" in str(schema) and "nucleus sampling" in str(schema)  # descriptions come from kronos_core


def test_every_model_setting_reaches_the_job():
    """Regression: the flow built the model config from model and tokenizer only, so a hub revision, dtype,
    max_context or cache mode could not be set, and ray.num_gpus reserved GPUs for a model on device='cpu'."""
    spec = {
        "model": "NeoQuasar/Kronos-mini",
        "tokenizer": "NeoQuasar/Kronos-Tokenizer-2k",
        "model_revision": "abc123",
        "tokenizer_revision": "def456",
        "dtype": "bfloat16",
        "max_context": 1024,
        "cache": "rolling",
        "device": "auto",
        "batch_size": 32,
    }
    p = NightlyParams(
        model=spec,
        compute={"num_gpus": 0.5, "concurrency": 4},
        sampling={"temperature": 0.7, "top_k": 5, "sample_count": 3, "seed": 9},
        calendar={"name": "FX", "freq": "1h"},
        validation={"max_price_ratio": 20},
    )
    cfg = to_job_config(p, dt.date(2024, 6, 28), total_cpus=16)
    assert cfg.model == PredictorSpec(**spec) and cfg.sampling == SamplingParams(0.7, 5, 1.0, 3, 9)
    assert cfg.compute.num_gpus == 0.5 and cfg.calendar == MarketCalendar("FX", "1h")
    assert cfg.validation.max_price_ratio == 20
    with pytest.raises(ValidationError, match="reserves GPUs but model.device is 'cpu'"):
        to_job_config(p.model_copy(update={"model": PredictorSpec(device="cpu")}), dt.date(2024, 6, 28))


def test_actor_pool_leaves_a_cpu_for_the_cpu_stages():
    assert fit_actors(2, 1.0, 2) == (1, 1.0)  # the 2-core hang: 2 actors x 1 CPU left nothing for tasks
    assert fit_actors(2, 1.0, 8) == (2, 1.0)
    assert fit_actors(4, 2.0, 1) == (1, 0.5)
    cfg = to_job_config(NightlyParams(), dt.date(2024, 6, 28), total_cpus=2)
    assert (cfg.compute.concurrency, cfg.compute.num_cpus) == (1, 1.0)
    remote = to_job_config(
        NightlyParams(compute={"ray_address": "ray://head:10001"}), dt.date(2024, 6, 28), total_cpus=2
    )
    assert remote.compute.concurrency == 2  # a cluster's size is not ours to guess


def test_backtest_params_sort_cutoffs():
    b = BacktestParams(cutoffs=["2024-03-01", "2024-02-01", "2024-03-01"])
    assert b.cutoffs == [dt.date(2024, 2, 1), dt.date(2024, 3, 1)]


def test_backtest_compare_lists_each_model_once():
    job = {"model": {"model": "random:test", "tokenizer": "random:test"}}
    ok = BacktestParams(**job, compare=[{"model": "random:mini", "tokenizer": "random:mini"}])
    assert [m.model for m in ok.compare] == ["random:mini"]
    with pytest.raises(ValidationError, match=r"compare\[0\] \(random:test, tokenizer random:test\) repeats"):
        BacktestParams(**job, compare=[{"model": "random:test", "tokenizer": "random:test"}])
    twice = [{"model": "random:mini", "tokenizer": "random:mini"}] * 2
    with pytest.raises(ValidationError, match=r"compare\[1\].*list each model once"):
        BacktestParams(**job, compare=twice)


def test_resolve_as_of_from_the_calendar_and_intraday_cutoff():
    assert resolve_as_of(NightlyParams(as_of="2024-01-05")) == dt.date(2024, 1, 5)
    # Wed 2026-11-25 15:00 New York: the close has not happened -> Tuesday; Thanksgiving is not a session
    assert resolve_as_of(NightlyParams(), pd.Timestamp("2026-11-25 20:00", tz="UTC")) == dt.date(2026, 11, 24)
    assert resolve_as_of(NightlyParams(), pd.Timestamp("2026-11-26 23:00", tz="UTC")) == dt.date(2026, 11, 25)
    fx = NightlyParams(calendar={"name": "FX", "freq": "1h"})
    assert resolve_as_of(fx, pd.Timestamp("2024-06-30 12:00", tz="UTC")) == dt.date(2024, 6, 28)
    intraday = NightlyParams(calendar={"freq": "5min"}).calendar
    assert job_as_of(dt.date(2024, 1, 5), intraday) == pd.Timestamp("2024-01-05 23:59:59")


def test_no_environment_read_at_import_or_default():
    """Regression: default parameters froze $KRONOS_* at import, and the CLI set HF_HUB_OFFLINE for the
    whole process."""
    import json
    import os
    import subprocess
    import sys

    code = (
        "import json, os; import flows.cli, flows.deploy; from flows.params import NightlyParams; "
        "print(json.dumps([NightlyParams().input_url, sorted(k for k in os.environ if k.startswith(('HF_', "
        "'PREFECT_', 'RAY_')))]))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PREFECT_", "RAY_"))}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "KRONOS_INPUT_URL": "/elsewhere"},
        capture_output=True,
        text=True,
        check=True,
    )
    url, touched = json.loads(out.stdout.strip().splitlines()[-1])
    assert url == "./demo_data/market" and touched == []


def test_prefect_yaml_is_generated_from_flows_deploy():
    """One source per deployment: prefect.yaml is generated from flows/deploy.py and must equal it."""
    from pathlib import Path

    from flows.deploy import SCHEDULES, prefect_yaml
    from flows.params import FinetuneParams

    committed = (Path(__file__).parents[2] / "prefect.yaml").read_text()
    assert committed == prefect_yaml(), "regenerate: python -m flows.deploy --write-prefect-yaml prefect.yaml"
    import yaml

    doc = yaml.safe_load(committed)
    nightly = next(d for d in doc["deployments"] if d["name"] == "nightly")
    assert [s["cron"] for s in nightly["schedules"]] == [s.cron for s in SCHEDULES]
    for sched in nightly["schedules"]:  # every schedule's parameters are a valid form
        NightlyParams(**{**sched["parameters"]["params"], "input_url": "/x", "output_url": "/y"})
    urls = {"input_url": "/x", "output_url": "/y"}  # the placeholders are filled in by `prefect deploy`
    finetune = next(d for d in doc["deployments"] if d["name"] == "finetune")
    [weekly] = finetune["schedules"]
    assert weekly["active"] is False  # off until turned on
    params = weekly["parameters"]["params"]
    assert params["registry"] == "{{ $KRONOS_REGISTRY }}" and "model_pointer" not in params  # registry is it
    FinetuneParams(**{**params, **urls, "registry": "/models/m"})
    backtest = next(d for d in doc["deployments"] if d["name"] == "backtest")
    assert backtest["parameters"]["params"]["model_pointer"] == "{{ $KRONOS_REGISTRY }}"  # flat, no "job"
    BacktestParams(**{**backtest["parameters"]["params"], **urls, "model_pointer": "/models/m"})
    assert all(s["active"] for s in nightly["schedules"])


def test_freshness_messages_say_what_is_missing():
    d, first = dt.date(2024, 6, 28), dt.date(2024, 1, 2)
    assert "no bars found" in freshness_problem(d, set(), None, None, None, 0.5, "/x")
    msg = freshness_problem(d, set(), None, first, dt.date(2024, 6, 27), 0.5, "/x")
    assert "no bars for as_of 2024-06-28" in msg and "latest bars are from 2024-06-27" in msg
    assert "has not landed yet" in msg
    msg = freshness_problem(d, {"A"}, ["A", "B", "C"], first, d, 0.5, "/x")
    assert "33%" in msg and "B, C" in msg
    assert freshness_problem(d, {"A", "B"}, ["A", "B", "C"], first, d, 0.5, "/x") is None


def test_freshness_message_for_an_as_of_before_the_data_or_in_a_gap():
    """Regression (issue 15): an as_of before the first bars was told the delivery "has not landed yet"."""
    first, last, xnys = dt.date(2024, 1, 2), dt.date(2024, 6, 28), MarketCalendar()
    msg = freshness_problem(dt.date(2023, 6, 1), set(), None, first, last, 0.5, "/x", xnys)
    assert msg == (
        "as_of 2023-06-01 is before the first bars under /x (first 2024-01-02, last 2024-06-28): "
        "pick an as_of between them"
    )
    assert "not landed" not in msg
    # a gap inside the data: a holiday of the calendar (Juneteenth), a weekend, or a missing delivery
    holiday = freshness_problem(dt.date(2024, 6, 19), set(), None, first, last, 0.5, "/x", xnys)
    assert "2024-06-19 is not a session of calendar XNYS (a weekend or holiday)" in holiday
    assert "first 2024-01-02, last 2024-06-28" in holiday and "not landed" not in holiday
    weekend = freshness_problem(dt.date(2024, 6, 22), set(), None, first, last, 0.5, "/x", xnys)
    assert "not a session" in weekend
    missing = freshness_problem(dt.date(2024, 6, 18), set(), None, first, last, 0.5, "/x", xnys)
    assert "a gap inside the data" in missing and "delivery for 2024-06-18 is missing" in missing
    # without a calendar a gap is still a gap, not a late delivery
    assert "a gap inside the data" in freshness_problem(
        dt.date(2024, 6, 19), set(), None, first, last, 0.5, "/x"
    )


@pytest.mark.parametrize("layout", ["date", "symbol"])
def test_input_status_gives_the_first_and_latest_bar(tmp_path, layout):
    from flows.store import input_status
    from pipeline import write_synthetic_market

    m = write_synthetic_market(
        str(tmp_path / "bars"), n_symbols=3, n_bars=40, min_bars=40, broken=False, layout=layout
    )
    first, last = dt.date(2024, 5, 2), dt.date(2024, 6, 28)  # 40 XNYS sessions up to 2024-06-28
    present, seen, latest = input_status(m.url, layout, last)
    assert present == set(m.symbols) and latest == last
    # symbol layout: with bars on as_of the probe reads only the 30 days before it
    assert seen == (first if layout == "date" else dt.date(2024, 5, 29))
    assert input_status(m.url, layout, dt.date(2024, 3, 1)) == (set(), first, last)  # before the data
    assert input_status(m.url, layout, dt.date(2024, 6, 19)) == (set(), first, last)  # a holiday inside
    assert input_status(m.url, layout, dt.date(2024, 9, 2)) == (set(), first, last)  # after: not landed
    assert input_status(str(tmp_path / "nothing"), layout, last) == (set(), None, None)


def test_cutoff_choices():
    days = [dt.date(2024, 1, i) for i in range(1, 21)]
    assert auto_cutoffs(days, 5, 3, 4) == [days[6], days[10], days[14]]
    with pytest.raises(ValueError, match="realised"):
        auto_cutoffs(days[:3], 5, 1, 1)
    assert demo_cutoffs(days, 5, 2) == [days[14], days[19]]


def _toy():
    ts = pd.bdate_range("2024-01-01", periods=30)
    hist = pd.DataFrame(
        {
            "symbol": np.repeat(["A", "B", "C"], 30),
            "timestamp": np.tile(ts, 3),
            "close": np.r_[np.linspace(10, 12, 30), np.linspace(20, 18, 30), np.full(30, 5.0)],
        }
    )
    fts = pd.bdate_range(ts[-1] + pd.Timedelta(days=1), periods=3)
    fc = pd.DataFrame(
        {
            "symbol": np.repeat(["A", "B", "C"], 3),
            "timestamp": np.tile(fts, 3),
            "step": np.tile([1, 2, 3], 3),
            "close": 10.0,
            "close_q10": 9.0,
            "close_q50": 10.0,
            "close_q90": 11.0,
            "p_up": np.repeat([0.9, 0.1, 0.5], 3),
        }
    )
    return hist, fc


def test_fan_chart_png_and_symbol_choice():
    hist, fc = _toy()
    assert pick_chart_symbols(fc, 2) == ["A", "B"]  # most bullish, most bearish
    png = fan_chart_png(hist, fc, ["A", "B", "C"], [0.1, 0.5, 0.9], title="t")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) < 300_000
    where = "/data/out/charts/as_of=2024-06-28/fan_chart.png"
    md = A.chart_markdown(png, "Fan [charts] as_of 2024-06-28", where)
    assert md.startswith("![Fan (charts) as_of 2024-06-28](data:image/png;base64,iVBOR")  # no ] in the alt
    assert md.endswith(f"\n\nPNG: `{where}`")  # the full path as text, not a link


def test_as_of_label_reads_as_a_date_for_daily_runs():
    assert A.as_of_label("2026-11-12 00:00:00") == "2026-11-12"
    assert A.as_of_label(pd.Timestamp("2026-11-12")) == "2026-11-12"
    assert A.as_of_label(dt.date(2026, 11, 12)) == "2026-11-12"
    assert A.as_of_label("2026-11-12 23:59:59") == "2026-11-12 23:59:59"
    assert A.as_of_label("2026-11-12 15:30:00") == "2026-11-12 15:30"
    rows = {r["field"]: r["value"] for r in summary_rows({"as_of": "2026-11-12 00:00:00", "run_id": "r"})}
    assert rows["as_of"] == "2026-11-12"


def test_artifact_rows_are_json_safe():
    rows = summary_rows({"run_id": "r", "wall_s": 1.23456, "reject_reasons": {"stale": 2}, "x": float("nan")})
    assert rows[1]["value"] == 1.235 and rows[2]["value"] == "stale=2" and rows[3]["value"] is None
    df = pd.DataFrame({"a": [1.0, np.nan], "d": [dt.date(2024, 1, 1)] * 2})
    assert frame_rows(df) == [{"a": 1.0, "d": "2024-01-01"}, {"a": None, "d": "2024-01-01"}]
    assert markdown_table(df).splitlines()[0] == "| a | d |"


def test_scorecard_chart_has_a_skill_panel_when_the_card_has_skill():
    import struct

    from flows.charts import scorecard_png

    card = pd.DataFrame(
        {
            "as_of": ["2024-01-02", "2024-01-03"] * 2,
            "method": ["kronos", "kronos", "bootstrap_rw", "bootstrap_rw"],
            "mae": [1.0, 2.0, 1.5, 1.5],
            "rank_ic": 0.1,
            "direction_acc": 0.5,
            "crps": [0.5, 0.7, 0.6, 0.6],
            "crps_skill": [1 - 0.5 / 0.6, 1 - 0.7 / 0.6, 0.0, 0.0],
        }
    )

    def width(png: bytes) -> int:
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        return struct.unpack(">I", png[16:20])[0]

    five, four = width(scorecard_png(card)), width(scorecard_png(card.drop(columns=["crps_skill"])))
    assert five == pytest.approx(four * 5 / 4, rel=0.02)  # one 3.6-inch panel more; old cards still draw


def test_main_job_gives_the_ephemeral_prefect_api_time_to_start(monkeypatch):
    # CI's main-job run failed with "Timed out while attempting to connect to ephemeral Prefect API server":
    # Prefect's 20 s limit is less than a fresh PREFECT_HOME's database migration takes on a busy machine
    env: dict[str, str] = {}
    process_env(env)
    assert int(env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]) == EPHEMERAL_STARTUP_TIMEOUT_S >= 120
    assert env["RAY_AUTH_MODE"] == "disabled" and env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    user = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "45", "RAY_AUTH_MODE": "token"}
    process_env(user)
    assert (
        user["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "45" and user["RAY_AUTH_MODE"] == "token"
    )
    # the variable is the one Prefect reads
    from prefect.settings import Settings

    monkeypatch.setenv(
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
        env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"],
    )
    assert Settings().server.ephemeral.startup_timeout_seconds == EPHEMERAL_STARTUP_TIMEOUT_S
