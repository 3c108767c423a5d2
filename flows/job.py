"""Plain decisions behind the nightly flow: resolve the cutoff, check the input, build the JobConfig.

No Prefect here: everything is unit-tested directly, and the flow only wires these into tasks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

import pandas as pd

from kronos_core import MarketCalendar
from pipeline.config import InputConfig, JobConfig, OutputConfig, UniverseConfig

from .params import NightlyParams

__all__ = ["InputNotReady", "resolve_as_of", "job_as_of", "to_job_config", "freshness_problem", "fit_actors"]

log = logging.getLogger(__name__)


class InputNotReady(RuntimeError):
    """The market data for the requested cutoff is missing or stale; the message says what is missing."""


def resolve_as_of(params: NightlyParams, now: dt.datetime | None = None) -> dt.date:
    """``params.as_of``, or the last completed session of ``params.calendar`` at ``now``."""
    if params.as_of is not None:
        return params.as_of
    return params.calendar.last_completed_session(now)


def resolve_model(params: NightlyParams) -> tuple[NightlyParams, str]:
    """``params`` with ``model`` set from the registry pointer ``params.model_pointer`` names (when one was
    promoted), and a line saying which model runs and why."""
    if not params.model_pointer:
        return params, f"model {params.model.model} (job.model)"
    from pipeline.models import read_pointer

    root, name = params.model_pointer.rstrip("/").rsplit("/", 1)
    ptr = read_pointer(root, name, params.storage)
    if ptr is None:
        return params, (
            f"model {params.model.model}: nothing promoted into {params.model_pointer} yet (job.model)"
        )
    spec = dataclasses.replace(
        params.model, model=ptr.model, tokenizer=ptr.tokenizer, model_revision=None, tokenizer_revision=None
    )
    why = f"model {ptr.model} (current in {params.model_pointer}, promoted {ptr.promoted_at}: {ptr.reason})"
    return params.model_copy(update={"model": spec}), why


def job_as_of(as_of: dt.date, calendar: MarketCalendar) -> pd.Timestamp:
    """The pipeline's point in time for a session date: midnight for daily and coarser bars (their stamp),
    else the end of that day (every intraday bar of the session is history)."""
    ts = pd.Timestamp(as_of)
    return ts + pd.Timedelta(hours=23, minutes=59, seconds=59) if calendar.frequency.intraday else ts


def fit_actors(concurrency: int, num_cpus: float, total_cpus: float) -> tuple[int, float]:
    """Shrink the forecast actor pool so one CPU stays free for the job's CPU stages.

    Ray Data runs the read/validate/postprocess tasks beside the actor pool; if the actors hold every CPU,
    those tasks wait forever (measured: the job hangs at the forecast stage with 2 actors x 1 CPU on a
    2-CPU local Ray). Only applied to a local Ray, where we know the machine.
    """
    free = max(total_cpus - 1, 0.5)
    num_cpus = min(num_cpus, free)
    concurrency = max(1, min(concurrency, int(free // num_cpus)))
    return concurrency, num_cpus


def local_cpus() -> float:
    """CPUs of the local Ray the job will use: the running one, else what ``ray.init()`` would detect."""
    try:
        import ray

        if ray.is_initialized():
            return float(ray.cluster_resources().get("CPU", 1))
    except ImportError:
        pass
    import os

    return float(os.cpu_count() or 1)


def to_job_config(
    params: NightlyParams, as_of: dt.date, run_id: str | None = None, total_cpus: float | None = None
) -> JobConfig:
    """The pipeline job these parameters describe, for one cutoff: every settings group passes through as
    it is. ``total_cpus``: the local Ray's CPUs (the actor pool is fitted to leave one free); ignored when
    ``params.compute.ray_address`` names a cluster."""
    compute = params.compute
    if compute.ray_address is None and total_cpus is not None:
        concurrency, num_cpus = fit_actors(compute.concurrency, compute.num_cpus, total_cpus)
        if (concurrency, num_cpus) != (compute.concurrency, compute.num_cpus):
            log.warning(
                "local Ray has %g CPUs: forecast actors %d x %g CPU -> %d x %g CPU (one CPU kept for the "
                "read/validate/write stages)",
                total_cpus,
                compute.concurrency,
                compute.num_cpus,
                concurrency,
                num_cpus,
            )
            compute = compute.model_copy(update={"concurrency": concurrency, "num_cpus": num_cpus})
    validation = params.validation.model_copy(
        update={"min_history": min(params.validation.min_history, params.lookback)}
    )
    return JobConfig(
        as_of=job_as_of(as_of, params.calendar),
        lookback=params.lookback,
        pred_len=params.pred_len,
        input=InputConfig(url=params.input_url, layout=params.input_layout),
        output=OutputConfig(url=params.output_url, quantiles=list(params.quantiles), catalog=params.catalog),
        universe=UniverseConfig(symbols=params.universe),
        calendar=params.calendar,
        validation=validation,
        model=params.model,
        sampling=params.sampling,
        compute=compute,
        storage=params.storage.resolved(),  # the credentials, read on this worker (masked in the record)
        run_id=run_id,
    )


def freshness_problem(
    as_of: dt.date,
    symbols_on_as_of: set[str],
    universe: list[str] | None,
    first_bar: dt.date | None,
    last_bar: dt.date | None,
    min_fresh_share: float,
    where: str,
    calendar: MarketCalendar | None = None,
) -> str | None:
    """None if the input is ready for ``as_of``; else a message that says what is missing and what to do.

    ``first_bar`` / ``last_bar``: the dates of the input's first and latest bars (``store.input_status``;
    None: no bars at all). Without bars on ``as_of`` the advice depends on where it falls: before the first
    bar (pick an as_of inside the data), after the latest (the delivery has not landed yet), or in a gap
    between them (not a session of ``calendar``, or a missing delivery)."""
    if last_bar is None:
        return f"no bars found under {where}; check input_url (and storage settings for s3://)"
    if not symbols_on_as_of:
        span = f"first {first_bar}, last {last_bar}"
        if first_bar is not None and as_of < first_bar:
            return (
                f"as_of {as_of} is before the first bars under {where} ({span}): pick an as_of between them"
            )
        if as_of > last_bar:
            return (
                f"no bars for as_of {as_of} under {where} (latest bars are from {last_bar}); the vendor "
                f"delivery for {as_of} has not landed yet, or pass an earlier as_of"
            )
        if calendar is not None and calendar.session_end(as_of) is None:
            return (
                f"no bars for as_of {as_of} under {where} ({span}): {as_of} is not a session of calendar "
                f"{calendar.name} (a weekend or holiday); pick a session date"
            )
        return (
            f"no bars for as_of {as_of} under {where}, a gap inside the data ({span}): the delivery for "
            f"{as_of} is missing (re-deliver it) or the market was closed; pick another as_of"
        )
    if universe:
        missing = sorted(set(universe) - symbols_on_as_of)
        share = 1 - len(missing) / len(universe)
        if share < min_fresh_share:
            shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            return (
                f"only {share:.0%} of the universe has a bar on {as_of} (need {min_fresh_share:.0%}); "
                f"missing {len(missing)}: {shown}"
            )
    return None
