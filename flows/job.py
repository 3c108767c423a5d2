"""Plain decisions behind the nightly flow: resolve the cutoff, check the input, build the pipeline's JobConfig.

No Prefect here: everything is unit-tested directly, and the flow only wires these into tasks.
"""

from __future__ import annotations

import datetime as dt
import logging

import pandas as pd

from pipeline.config import (
    CalendarConfig,
    ComputeConfig,
    InputConfig,
    JobConfig,
    ModelConfig,
    OutputConfig,
    SamplingConfig,
    UniverseConfig,
)

from .params import NightlyParams
from .sessions import last_completed_session

__all__ = ["InputNotReady", "resolve_as_of", "job_as_of", "to_job_config", "freshness_problem"]

log = logging.getLogger(__name__)


class InputNotReady(RuntimeError):
    """The market data for the requested cutoff is missing or stale; the message says what is missing."""


def resolve_as_of(params: NightlyParams, now: dt.datetime | None = None) -> dt.date:
    """``params.as_of``, or the last completed session of ``params.calendar`` at ``now``."""
    if params.as_of is not None:
        return params.as_of
    cal = params.calendar.exchange or "24/7"
    return last_completed_session(now, calendar=cal, tz="UTC" if params.calendar.exchange is None else
                                  "America/New_York", close="23:59" if params.calendar.exchange is None else "16:00")


def job_as_of(as_of: dt.date, calendar: CalendarConfig) -> pd.Timestamp:
    """The pipeline's point in time for a session date: midnight for daily bars (their stamp), else the end of
    that day (every intraday bar of the session is history)."""
    ts = pd.Timestamp(as_of)
    return ts if calendar.freq == "1d" else ts + pd.Timedelta(hours=23, minutes=59, seconds=59)


def to_job_config(params: NightlyParams, as_of: dt.date, run_id: str | None = None) -> JobConfig:
    """The pipeline job these parameters describe, for one cutoff."""
    s, r = params.sampling, params.ray
    min_history = min(params.validation.min_history, params.lookback)
    return JobConfig(
        as_of=job_as_of(as_of, params.calendar), lookback=params.lookback, pred_len=params.pred_len,
        input=InputConfig(url=params.input_url, layout=params.input_layout),
        output=OutputConfig(url=params.output_url, quantiles=list(params.quantiles)),
        universe=UniverseConfig(symbols=params.universe),
        calendar=params.calendar,
        validation=params.validation.model_copy(update={"min_history": min_history}),
        model=ModelConfig(model=params.model, tokenizer=params.tokenizer),
        sampling=SamplingConfig(temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
                                sample_count=s.sample_count, seed=s.seed),
        compute=ComputeConfig(ray_address=r.address, concurrency=r.concurrency, num_cpus=r.num_cpus,
                              num_gpus=r.num_gpus, batch_size=r.batch_size),
        storage=params.storage, run_id=run_id,
    )


def freshness_problem(as_of: dt.date, symbols_on_as_of: set[str], universe: list[str] | None,
                      last_bar: dt.date | None, min_fresh_share: float, where: str) -> str | None:
    """None if the input is ready for ``as_of``; else a message that says what is missing and what to do."""
    if last_bar is None:
        return f"no bars found under {where}; check input_url (and storage settings for s3://)"
    if not symbols_on_as_of:
        return (f"no bars for as_of {as_of} under {where} (latest bars are from {last_bar}); the vendor delivery "
                f"for {as_of} has not landed yet, or pass an earlier as_of")
    if universe:
        missing = sorted(set(universe) - symbols_on_as_of)
        share = 1 - len(missing) / len(universe)
        if share < min_fresh_share:
            shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            return (f"only {share:.0%} of the universe has a bar on {as_of} (need {min_fresh_share:.0%}); "
                    f"missing {len(missing)}: {shown}")
    return None
