"""Flow-run names (flows/run_names.py): every flow names its runs after what they do, with the parameters in
both forms Prefect hands them to the name callable (the model instance for a Python call, the JSON dict from
the API for a deployment run: UI custom run, schedule, run_deployment), and on real runs against a Prefect
API.
The served-deployment path (a real server and runner) is checked in test_server_integration.py."""

from __future__ import annotations

import datetime as dt

import pytest

from flows.maintenance import MaintenanceParams
from flows.params import BacktestParams, FinetuneParams, NightlyParams
from flows.run_names import backtest_name, finetune_name, maintenance_name, nightly_name

pytestmark = [pytest.mark.timeout(240)]


def _api_dict(model) -> dict:
    """What the API stores and a deployment run gets back: the JSON form, unset fields left out."""
    return model.model_dump(mode="json", exclude_unset=True)


def test_nightly_name_from_model_and_api_dict():
    given = NightlyParams(as_of=dt.date(2024, 6, 28))
    assert nightly_name(given) == nightly_name(_api_dict(given)) == "nightly-2024-06-28"
    assert nightly_name({"as_of": "2024-06-28T00:00:00"}) == "nightly-2024-06-28"
    for empty in (NightlyParams(), {}, {"as_of": None}, None):  # None: no params at all (the defaults)
        assert nightly_name(empty) == "nightly-last-session"


def test_backtest_name_from_model_and_api_dict():
    explicit = BacktestParams(cutoffs=[dt.date(2024, 6, 20), dt.date(2024, 6, 3), dt.date(2024, 6, 10)])
    assert backtest_name(explicit) == "backtest-2024-06-03..2024-06-20"
    assert backtest_name({"cutoffs": ["2024-06-20", "2024-06-03", "2024-06-10"]}) == (
        "backtest-2024-06-03..2024-06-20"
    )
    assert backtest_name({"cutoffs": ["2024-06-20"]}) == "backtest-2024-06-20"
    n = BacktestParams.model_fields["n_cutoffs"].default
    for auto in (BacktestParams(), {}, {"cutoffs": []}, {"cutoffs": None}, None):
        assert backtest_name(auto) == f"backtest-last-{n}"
    assert backtest_name(BacktestParams(n_cutoffs=7)) == backtest_name({"n_cutoffs": 7}) == "backtest-last-7"


def test_finetune_and_maintenance_names():
    assert finetune_name(FinetuneParams()) == finetune_name({}) == "finetune-last-session"
    assert finetune_name({"cutoff": "2024-05-31", "pred_len": 5}) == "finetune-2024-05-31"
    assert finetune_name(None) == "finetune-last-session"
    late = dt.datetime(2024, 6, 30, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-4)))  # 03:30 UTC next day
    assert maintenance_name(late) == "maintenance-2024-07-01"
    assert maintenance_name() == f"maintenance-{dt.datetime.now(dt.timezone.utc).date()}"


def _run_as_deployment(flow, parameters: dict):
    """Create a flow run with JSON parameters through the API and execute it the way a served deployment's
    runner does (``run_flow(flow, flow_run=...)``: the parameters come from the stored run, as a dict); the
    run may fail (no market here); returns the name the API holds for it."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow

    async def create():
        async with get_client() as c:
            return await c.create_flow_run(flow, parameters=parameters)

    flow_run = asyncio.run(create())
    random_name = flow_run.name  # the API's adjective-animal name
    run_flow(flow, flow_run=flow_run, return_type="state")

    async def name():
        async with get_client() as c:
            return (await c.read_flow_run(flow_run.id)).name

    return asyncio.run(name()), random_name


def test_real_runs_are_named_on_the_api(prefect_harness, tmp_path):
    """One real run of each flow (it fails fast on a missing market, after the run has been named) with the
    parameters as a deployment run gets them, plus the Python-call form for the maintenance flow."""
    from flows.backtest import backtest
    from flows.maintenance import table_maintenance
    from flows.nightly import nightly_forecast

    missing = str(tmp_path / "no-market")
    job = {"input_url": missing, "output_url": str(tmp_path / "out")}
    name, random_name = _run_as_deployment(nightly_forecast, {"params": {**job, "as_of": "2024-06-28"}})
    assert name == "nightly-2024-06-28" and random_name != name  # the API's random name was replaced
    name, _ = _run_as_deployment(nightly_forecast, {"params": job})
    assert name == "nightly-last-session"
    name, _ = _run_as_deployment(backtest, {"params": {**job, "cutoffs": ["2024-06-20", "2024-06-03"]}})
    assert name == "backtest-2024-06-03..2024-06-20"
    name, _ = _run_as_deployment(backtest, {"params": job})
    assert name == f"backtest-last-{BacktestParams.model_fields['n_cutoffs'].default}"

    # a Python call: the name callable sees the model instance; an empty warehouse has nothing to maintain
    state = table_maintenance(MaintenanceParams(output_url=str(tmp_path / "wh")), return_state=True)
    assert state.is_completed()
    import asyncio

    from prefect.client.orchestration import get_client

    async def run():
        async with get_client() as c:
            return await c.read_flow_run(state.state_details.flow_run_id)

    fr = asyncio.run(run())
    assert fr.name == maintenance_name(fr.expected_start_time)  # the UTC date it was scheduled for


def test_finetune_real_run_is_named(prefect_harness, ray_local, tmp_path):
    """The finetune flow (reuses the shared local Ray, then fails fast on the missing market)."""
    from flows.finetune import finetune

    job = {"input_url": str(tmp_path / "no-market"), "output_url": str(tmp_path / "out")}
    params = {**job, "registry": str(tmp_path / "registry"), "cutoff": "2024-05-31"}
    name, _ = _run_as_deployment(finetune, {"params": params})
    assert name == "finetune-2024-05-31"
