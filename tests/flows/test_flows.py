"""Flow logic under prefect_test_harness with the real Ray job (tiny random model, 40-asset market).

Checks the orchestration: cutoffs, fail-fast input checks, scoring of matured forecasts across nights,
the backtest, and the artifacts by key. The deployment path runs in test_server_integration.py.
"""

from __future__ import annotations

import datetime as dt
import os

import pytest

pytestmark = [pytest.mark.timeout(240)]
TINY = {"model": "random:test", "tokenizer": "random:test"}


def _artifact(key: str):
    from prefect.artifacts import Artifact

    return Artifact.get(key)


def _params(market, out, as_of, **kw):
    from flows.params import NightlyParams

    return NightlyParams(
        input_url=market.url,
        output_url=str(out),
        as_of=as_of,
        lookback=64,
        pred_len=5,
        validation={"min_history": 32},
        model=TINY,
        **kw,
    )


def test_nightly_twice_scores_the_matured_run(prefect_harness, ray_local, small_market, tmp_path):
    from flows.artifacts import KEYS
    from flows.nightly import nightly_forecast

    state = nightly_forecast(_params(small_market, tmp_path, dt.date(2024, 6, 20)), return_state=True)
    first = state.result()
    from prefect.client.orchestration import get_client

    async def run_name():
        async with get_client() as c:
            return (await c.read_flow_run(state.state_details.flow_run_id)).name

    import asyncio

    assert asyncio.run(run_name()) == "nightly-2024-06-20"
    assert first["scorecard_rows"] == 0 and first["snapshot_id"] is not None
    assert first["forecasts_table"] == "kronos.forecasts" and first["warehouse"] == str(tmp_path)
    second_params = _params(small_market, tmp_path, dt.date(2024, 6, 28))
    second = nightly_forecast(second_params)
    from flows.store import read_scorecard

    card = read_scorecard(second_params.warehouse())
    assert second["scorecard_table"] == "kronos.scorecard"
    assert set(card["method"]) == {"kronos", "bootstrap_rw", "naive_last", "naive_drift"}
    assert set(card["as_of"].astype(str)) == {"2024-06-20"} and second["scorecard_rows"] == 4
    assert (card["n_assets"] > 20).all() and card["mae"].notna().all()
    boot = card.set_index("method").loc["bootstrap_rw"]
    assert boot["crps"] > 0 and boot["crps_skill"] == 0 and len(boot["crps_by_step"]) == 5
    with open(second["fan_chart"], "rb") as f:
        assert f.read(4) == b"\x89PNG"

    summary = _artifact(KEYS["summary"])
    assert summary.type == "table" and "2024-06-28" in str(summary.data)
    chart = _artifact(KEYS["chart"])  # a markdown image: the UI would print an image artifact's data URI
    assert chart.type == "markdown"
    assert str(chart.data).startswith("![Fan charts as_of 2024-06-28](data:image/png")
    assert str(chart.data).endswith(f"PNG: `{second['fan_chart']}`")
    for key in ("summary", "chart", "outputs", "scorecard_chart"):  # locations are text, never file:// links
        assert "file://" not in str(_artifact(KEYS[key]).data)
    assert "00:00:00" not in str(summary.data)
    assert "naive_drift" in str(_artifact(KEYS["scorecard"]).data)
    assert "Scorecard over time" in str(_artifact(KEYS["outputs"]).data)
    outputs = str(_artifact(KEYS["outputs"]).data)
    assert "CRPS skill vs the bootstrap random walk, per horizon" in outputs
    assert f"snapshot `{second['snapshot_id']}`" in outputs and "read(wh, 'forecasts'" in outputs
    assert _artifact(KEYS["scorecard_chart"]).type == "markdown"
    assert "](data:image/png;base64," in str(_artifact(KEYS["scorecard_chart"]).data)

    # a third night re-runs the same cutoff: the partition is replaced and nothing is scored twice
    third = nightly_forecast(_params(small_market, tmp_path, dt.date(2024, 6, 28)))
    assert third["scorecard_rows"] == 4
    from pipeline import list_runs, read

    wh = second_params.warehouse()
    now = read(wh, "forecasts", "2024-06-28", TINY["model"])
    assert set(now["run_id"]) == {third["run_id"]}
    assert list_runs(wh)["run_id"].tolist() == [first["run_id"], second["run_id"], third["run_id"]]
    assert len(read(wh, "scorecard")) == 4  # the scorecard table: one partition, 4 methods


def test_missing_delivery_fails_fast_with_a_message(prefect_harness, ray_local, small_market, tmp_path):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.nightly import nightly_forecast

    state = nightly_forecast(_params(small_market, tmp_path, dt.date(2024, 7, 3)), return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match=r"no bars for as_of 2024-07-03.*latest bars are from 2024-06-28"):
        state.result()

    async def task_runs():
        async with get_client() as c:
            flt = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
            return await c.read_task_runs(flow_run_filter=flt)

    check = [t for t in asyncio.run(task_runs()) if t.name.startswith("check-input")]
    assert len(check) == 1 and check[0].run_count == 1  # a missing delivery is not retried with backoff
    assert not os.path.exists(tmp_path / "kronos") and not os.path.exists(tmp_path / "catalog.db")


@pytest.mark.parametrize(
    "as_of, says",
    [
        (
            dt.date(2023, 6, 1),
            r"as_of 2023-06-01 is before the first bars under .* last 2024-06-28\): pick an as_of",
        ),
        (
            dt.date(2024, 6, 19),
            r"no bars for as_of 2024-06-19 .*: 2024-06-19 is not a session of calendar XNYS",
        ),
    ],
    ids=["before-the-data", "holiday"],
)
def test_as_of_outside_the_data_says_so(prefect_harness, small_market, tmp_path, as_of, says):
    """Regression (issue 15): an as_of before the first bars (or on a holiday inside them) was told "the
    vendor delivery has not landed yet"; the real check-input task now says where the data is."""
    from flows.job import InputNotReady
    from flows.nightly import nightly_forecast

    state = nightly_forecast(_params(small_market, tmp_path, as_of), return_state=True)
    assert state.is_failed()
    with pytest.raises(InputNotReady, match=says) as e:
        state.result()
    assert "not landed" not in str(e.value)


def test_nightly_below_min_forecast_share_fails_and_publishes_nothing(
    prefect_harness, ray_local, small_market, tmp_path
):
    """Regression (issue 15): a nightly run at an as_of ten sessions into the data (every asset too short
    for min_history) forecast nothing, yet ended Completed, committed an empty partition and published
    artifacts. It now ends Failed with the reasons in its state message, and publishes nothing."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.nightly import nightly_forecast
    from flows.store import input_sessions
    from pipeline import CoverageError, list_runs

    as_of = input_sessions(small_market.url)[9]
    params = _params(small_market, tmp_path, as_of)
    state = nightly_forecast(params, return_state=True)
    assert state.is_failed()
    assert "CoverageError" in state.message and "validation.min_forecast_share=0.5" in state.message
    assert "too_short" in state.message
    with pytest.raises(CoverageError, match=r"forecast 0 of \d+ assets \(0.0% of the symbols read\)"):
        state.result()

    async def artifacts():
        async with get_client() as c:
            ids = ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            return await c.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ids))

    # no summary, no outputs, no chart: nothing claims success (Prefect's own keyless record of the failed
    # result aside)
    assert [a.key for a in asyncio.run(artifacts()) if a.key or a.type] == []
    wh = params.warehouse()
    assert list_runs(wh, "forecasts").empty and list_runs(wh, "rejected").empty


def test_backtest_scores_every_cutoff(prefect_harness, ray_local, small_market, tmp_path):
    """Two cutoffs, two models (``model`` and one in ``compare``), scored side by side."""
    from flows.artifacts import KEYS
    from flows.backtest import backtest
    from flows.params import BacktestParams

    job = _params(small_market, tmp_path, None, chart_assets=0)
    other = {"model": "random:test:1", "tokenizer": "random:test:1"}
    out = backtest(BacktestParams(**job.job_settings(), n_cutoffs=2, every=5, compare=[other]))
    assert len(out["cutoffs"]) == 2 and out["cutoffs"][-1] == "2024-06-21"  # 5 realised sessions after it
    from flows.store import read_scorecard

    card = read_scorecard(job.warehouse())
    assert out["scorecard_table"] == "kronos.scorecard"
    assert card.groupby("as_of").size().tolist() == [8, 8]  # 2 models x 4 methods
    models = sorted(card["model"].unique())
    assert len(models) == 2 and len(out["runs"]) == 4 and all(r["snapshot_id"] for r in out["runs"])
    methods = {(r["model"], r["method"]) for r in out["mean"]}
    assert methods == {
        (m, k) for m in models for k in ("kronos", "bootstrap_rw", "naive_last", "naive_drift")
    }
    by = card.set_index(["as_of", "model", "method"])["crps"]
    for cutoff in card["as_of"].unique():
        # the baseline depends on the data, the seed and the sample count, not on the model beside it
        assert by[(cutoff, models[0], "bootstrap_rw")] == by[(cutoff, models[1], "bootstrap_rw")]
        assert by[(cutoff, models[0], "kronos")] != by[(cutoff, models[1], "kronos")]
    assert _artifact(KEYS["backtest"]).type == "table"
    assert "Mean over cutoffs" in str(_artifact(KEYS["backtest_summary"]).data)
    assert "CRPS skill vs the bootstrap random walk" in str(_artifact(KEYS["backtest_summary"]).data)
    assert _artifact(KEYS["backtest_chart"]).type == "markdown"
    assert "](data:image/png;base64," in str(_artifact(KEYS["backtest_chart"]).data)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_backtest_with_the_real_job(prefect_harness, ray_local, small_market, tmp_path):
    """The real Ray job at two cutoffs (point in time), scored; ~40 s on 2 cores."""
    from flows.backtest import backtest
    from flows.params import BacktestParams

    job = _params(small_market, tmp_path, None, chart_assets=0, sampling={"sample_count": 4})
    backtest(BacktestParams(**job.job_settings(), cutoffs=["2024-06-14", "2024-06-21"]))
    from flows.store import read_scorecard

    card = read_scorecard(job.warehouse())
    assert sorted(card["as_of"].astype(str).unique()) == ["2024-06-14", "2024-06-21"]
    k = card[card["method"] == "kronos"]
    assert (k["n_assets"] >= 25).all() and k["crps"].notna().all() and k["coverage"].between(0, 1).all()
    b = card[card["method"] == "bootstrap_rw"]
    assert len(b) == 2 and b["crps"].notna().all() and b["coverage"].between(0, 1).all()


def test_retry_only_transient_errors():
    from prefect.states import Failed

    from flows.job import InputNotReady
    from flows.nightly import _transient
    from pipeline.storage import StorageError

    def retried(exc):
        return _transient(None, None, Failed(data=exc))

    from tests.pipeline.test_storage import _s3

    assert retried(ConnectionResetError("reset")) and retried(TimeoutError())
    assert retried(_s3("SlowDown", 503)) and not retried(_s3("AccessDenied", 403))
    assert not retried(RuntimeError("503 SlowDown")) and not retried(OSError("EINVAL"))
    assert not retried(InputNotReady("no bars")) and not retried(FileNotFoundError("x"))
    assert not retried(KeyError("close")) and not retried(TypeError("bug"))
    assert not retried(StorageError("write x: PermissionError"))
    try:
        raise StorageError("read x: still failing after 4 retries") from ConnectionResetError("reset")
    except StorageError as e:
        assert retried(e)  # the store may be back by the next task attempt
