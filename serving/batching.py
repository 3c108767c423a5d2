"""Cross-request batching as plain functions (testable without Ray).

A *job* is one HTTP request's work: its series plus the parameters that must be equal inside one
``KronosPredictor.forecast`` call (model, pred_len, sampling except the seed, quantile levels); seeds
may differ, since ``forecast`` takes one seed per series. The Serve batch handler receives jobs from
concurrent requests and:

1. groups them by ``Job.group_key`` (model, pred_len, SamplingParams without the seed, quantiles);
2. packs each group into as few forecast calls as possible whose symbols are disjoint (the symbol
   seeds the paths, so it must stay the client's; two requests with the same symbol go to two calls);
3. runs each call once over the concatenated, ragged series and slices the result back per job.

Because a path's randomness depends only on (seed, symbol, path index), every job gets exactly the
numbers a direct ``forecast`` call with its own series would give.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from kronos_core import FIELDS, KronosPredictor, SamplingParams, Series

__all__ = ["Job", "JobError", "JobResult", "call_work", "plan_calls", "run_call"]

log = logging.getLogger(__name__)
_CLOSE = FIELDS.index("close")


@dataclass(frozen=True)
class Job:
    model_id: str
    series: tuple[Series, ...]
    pred_len: int
    sampling: SamplingParams
    quantiles: tuple[float, ...]

    @property
    def group_key(self) -> tuple:
        """What must be equal inside one forecast call; the seed is passed per series."""
        return (self.model_id, self.pred_len, dataclasses.replace(self.sampling, seed=0), self.quantiles)


@dataclass
class JobResult:
    """What the ingress needs for one job (no paths: they can be large)."""

    symbols: list[str]
    future_timestamps: np.ndarray  # (N, P) datetime64[ns]
    mean: np.ndarray  # (N, P, 6) float32
    quantile_levels: tuple[float, ...]
    close_quantiles: np.ndarray  # (N, Q, P) float32
    p_up: np.ndarray  # (N,)
    p_flat: np.ndarray  # (N,)
    flags: list[list[str]]
    last_close: np.ndarray  # (N,)
    identity: dict = field(default_factory=dict)
    batch_requests: int = 1  # jobs that shared this job's Serve batch (for stats and tests)


@dataclass
class JobError:
    """Returned instead of raised, so one bad job cannot fail the others in its batch."""

    status: int  # 422: the client's input; 500: ours
    message: str


def plan_calls(jobs: Sequence[Job]) -> list[list[int]]:
    """Indices of ``jobs`` per forecast call: same group key, disjoint symbols; input order kept."""
    calls: list[tuple[tuple, set[str], list[int]]] = []
    for i, job in enumerate(jobs):
        keys = {s.symbol for s in job.series}
        for gk, used, members in calls:
            if gk == job.group_key and not (used & keys):
                used |= keys
                members.append(i)
                break
        else:
            calls.append((job.group_key, set(keys), [i]))
    return [members for _, _, members in calls]


def call_work(jobs: Sequence[Job]) -> int:
    """A cost proxy for one call: sum over series of sample_count × pred_len × (lookback + pred_len)."""
    return sum(j.sampling.sample_count * j.pred_len * (s.length + j.pred_len) for j in jobs for s in j.series)


def run_call(
    predictor: KronosPredictor, jobs: Sequence[Job], identity: dict | None = None
) -> list[JobResult]:
    """One ``forecast`` over the series of ``jobs`` (same group key, disjoint symbols), sliced per job."""
    first = jobs[0]
    assert all(j.group_key == first.group_key for j in jobs), "run_call needs jobs with one group key"
    series = [s for j in jobs for s in j.series]
    seeds = [j.sampling.seed for j in jobs for _ in j.series]
    res = predictor.forecast(
        series, pred_len=first.pred_len, sampling=first.sampling, quantiles=first.quantiles, seeds=seeds
    )
    out, a = [], 0
    for j in jobs:
        b = a + len(j.series)
        out.append(
            JobResult(
                symbols=res.symbols[a:b],
                future_timestamps=res.future_timestamps[a:b],
                mean=res.mean[a:b],
                quantile_levels=res.quantile_levels,
                close_quantiles=res.quantiles[a:b, :, :, _CLOSE],
                p_up=res.p_up[a:b],
                p_flat=res.p_flat[a:b],
                flags=res.flags[a:b],
                last_close=res.last_close[a:b],
                identity=dict(identity or {}),
                batch_requests=len(jobs),
            )
        )
        a = b
    return out
