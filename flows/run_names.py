"""Descriptive flow-run names, so runs are told apart in the UI's run list (instead of Prefect's random
adjective-animal names).

Prefect calls a flow's ``flow_run_name`` callable with no arguments when the run starts, *before* it
validates the parameters: the ``params`` it finds in ``prefect.runtime.flow_run.parameters`` is the model
instance when the flow is called in Python (``nightly_forecast(NightlyParams(...))``) and the plain JSON
dict from the API for a deployment run (UI "Custom run", ``run_deployment``, a schedule), possibly with keys
left out (the model's defaults apply) or the whole argument absent. Each ``*_name`` function below takes
either form; a name function never raises (a bad value is the parameter validation's to report).

- ``nightly-<as_of>`` or ``nightly-last-session`` (as_of empty: the calendar's last completed session)
- ``backtest-<first cutoff>..<last cutoff>`` (``backtest-<cutoff>`` for one) or ``backtest-last-<n_cutoffs>``
- ``finetune-<cutoff>`` or ``finetune-last-session``
- ``maintenance-<date>``: the UTC date the run was scheduled for (or started)
"""

from __future__ import annotations

import datetime as dt
from typing import Any

__all__ = [
    "nightly_name",
    "backtest_name",
    "finetune_name",
    "maintenance_name",
    "nightly_run_name",
    "backtest_run_name",
    "finetune_run_name",
    "maintenance_run_name",
]


def _get(params: Any, key: str, default: Any = None) -> Any:
    """``params[key]`` (API dict) or ``params.key`` (model instance); ``default`` when absent or None."""
    if params is None:
        return default
    value = params.get(key) if isinstance(params, dict) else getattr(params, key, None)
    return default if value is None else value


def _day(value: Any) -> str:
    """A date as YYYY-MM-DD: a date, a datetime or an ISO string ('2024-06-28', '2024-06-28T00:00:00')."""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value).strip()
    try:
        return dt.date.fromisoformat(text[:10]).isoformat()
    except ValueError:
        return text


def _default(model: str, field: str, fallback: Any) -> Any:
    """The default of ``flows.params.<model>.<field>`` (what an API dict without that key gets)."""
    try:
        from . import params as P

        info = getattr(P, model).model_fields[field]
        return info.get_default(call_default_factory=True)
    except Exception:  # noqa: BLE001 - a name never fails a run
        return fallback


def nightly_name(params: Any) -> str:
    as_of = _get(params, "as_of")
    return f"nightly-{_day(as_of) if as_of else 'last-session'}"


def backtest_name(params: Any) -> str:
    cutoffs = _get(params, "cutoffs")
    if cutoffs:
        days = sorted({_day(c) for c in cutoffs})
        return f"backtest-{days[0]}" if len(days) == 1 else f"backtest-{days[0]}..{days[-1]}"
    return f"backtest-last-{_get(params, 'n_cutoffs', _default('BacktestParams', 'n_cutoffs', 3))}"


def finetune_name(params: Any) -> str:
    cutoff = _get(params, "cutoff")
    return f"finetune-{_day(cutoff) if cutoff else 'last-session'}"


def maintenance_name(when: dt.datetime | None = None) -> str:
    when = when or dt.datetime.now(dt.timezone.utc)
    if when.tzinfo is not None:
        when = when.astimezone(dt.timezone.utc)
    return f"maintenance-{when.date().isoformat()}"


def _runtime_params() -> Any:
    from prefect.runtime import flow_run

    return (flow_run.parameters or {}).get("params")


def _safe(name_fn, prefix: str) -> str:
    try:
        return name_fn(_runtime_params())
    except Exception:  # noqa: BLE001 - never fail a run over its name
        return f"{prefix}-run"


def nightly_run_name() -> str:
    """``flow_run_name`` of ``nightly-forecast``."""
    return _safe(nightly_name, "nightly")


def backtest_run_name() -> str:
    """``flow_run_name`` of ``walk-forward-backtest``."""
    return _safe(backtest_name, "backtest")


def finetune_run_name() -> str:
    """``flow_run_name`` of ``finetune``."""
    return _safe(finetune_name, "finetune")


def maintenance_run_name() -> str:
    """``flow_run_name`` of ``table-maintenance``: the scheduled start's UTC date (now for an ad-hoc run)."""
    try:
        from prefect.runtime import flow_run

        when = flow_run.scheduled_start_time
        return maintenance_name(when if isinstance(when, dt.datetime) else None)
    except Exception:  # noqa: BLE001
        return maintenance_name()
