"""Walk-forward backtest: the nightly job at each cutoff (point in time: the job ignores bars after as_of),
then every cutoff scored against the realised bars and the naive baselines."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pipeline.storage import join

from . import artifacts as A
from . import store
from .charts import scorecard_png
from .nightly import IO_RETRIES, SKILL_TITLE, check_input, pick_model, run_forecast_job
from .params import BacktestParams, JobSettings
from .run_names import backtest_run_name
from .scoring import SCORECARD_COLUMNS, quantile_levels_in, score_cutoff, skill_table, summarize_scorecard

__all__ = ["backtest", "auto_cutoffs"]


def auto_cutoffs(sessions: list[dt.date], pred_len: int, n: int, every: int) -> list[dt.date]:
    """The latest ``n`` cutoffs, ``every`` sessions apart, each with ``pred_len`` realised sessions after."""
    sessions = sorted(set(sessions))
    last = len(sessions) - 1 - pred_len
    if last < 0:
        raise ValueError(
            f"only {len(sessions)} sessions in the input; a cutoff needs {pred_len} realised "
            f"sessions after it"
        )
    picks = [sessions[i] for i in range(last, -1, -every)][:n]
    return sorted(picks)


@task(name="resolve-cutoffs", cache_policy=NO_CACHE, **IO_RETRIES)
def resolve_cutoffs(params: BacktestParams) -> list[dt.date]:
    if params.cutoffs:
        return list(params.cutoffs)
    bars = store.read_bars(
        params.input_url,
        params.input_layout,
        dt.date(1970, 1, 1),
        None,
        None,
        params.storage,
        columns=("symbol", "timestamp"),
    )
    sessions = sorted(set(bars["timestamp"].dt.date))
    out = auto_cutoffs(sessions, params.pred_len, params.n_cutoffs, params.every)
    get_run_logger().info("cutoffs: %s", ", ".join(map(str, out)))
    return out


@task(name="score-cutoff", cache_policy=NO_CACHE, **IO_RETRIES)
def score_one(job: JobSettings, summary: dict[str, Any], cutoff: dt.date) -> pd.DataFrame:
    fc = store.read_forecasts(job.warehouse(), cutoff, summary["model"])
    if fc.empty:
        return pd.DataFrame(columns=SCORECARD_COLUMNS)
    start = (pd.Timestamp(cutoff) - pd.Timedelta(days=int(job.lookback * 1.6) + 10)).date()
    bars = store.read_bars(
        job.input_url, job.input_layout, start, None, sorted(fc["symbol"].unique()), job.storage
    )
    return score_cutoff(
        fc,
        bars,
        cutoff,
        quantile_levels_in(fc),
        lookback=job.lookback,
        model=summary.get("model") or job.model.model,
    )


@task(name="write-backtest", cache_policy=NO_CACHE, **IO_RETRIES)
def write_and_publish(job: JobSettings, card: pd.DataFrame, summaries: list[dict[str, Any]]) -> str:
    """Each scored (cutoff, model) replaces its partition of the scorecard table; returns the table's name."""
    wh = job.warehouse()
    store.write_scorecard(wh, card, source="backtest")
    name = wh.identifier("scorecard")
    A.publish_table(
        A.KEYS["backtest"],
        A.frame_rows(card.sort_values(["as_of", "method"])) if len(card) else [],
        f"Walk-forward backtest, {card['as_of'].nunique() if len(card) else 0} cutoffs, "
        "per cutoff and method",
    )
    runs = pd.DataFrame(
        [
            {
                k: s.get(k)
                for k in (
                    "as_of",
                    "model",
                    "assets_forecast",
                    "assets_rejected",
                    "rows_written",
                    "wall_s",
                    "snapshot_id",
                )
            }
            for s in summaries
        ]
    )
    md = [
        "# Walk-forward backtest",
        "",
        f"Scorecard table: `{name}` in `{wh.describe()}` (one partition per cutoff and model)",
        "",
        "## Mean over cutoffs",
        "",
        A.markdown_table(summarize_scorecard(card)),
        "",
        SKILL_TITLE,
        "",
        A.markdown_table(skill_table(card)),
        "",
        "## Runs",
        "",
        A.markdown_table(runs),
    ]
    A.publish_markdown(
        A.KEYS["backtest_summary"], "\n".join(md), "Backtest metrics over time vs the baselines"
    )
    if len(card):
        A.publish_chart(
            A.KEYS["backtest_chart"],
            scorecard_png(card),
            "MAE, RankIC, direction accuracy, CRPS and CRPS skill per cutoff: kronos vs the baselines",
        )
    return name


@flow(name="walk-forward-backtest", flow_run_name=backtest_run_name, log_prints=True)
def backtest(params: BacktestParams = BacktestParams()) -> dict[str, Any]:
    """Run the forecast job at each cutoff (for ``model`` and every model in ``compare``) and score it;
    returns the scorecard location and mean metrics per (model, method)."""
    cutoffs = resolve_cutoffs(params)
    params = pick_model(params)
    jobs = [params] + [
        params.model_copy(update={"model": spec, "model_pointer": None})
        for spec in params.compare
        if spec != params.model  # the registry pointer may name a model that is also listed
    ]
    rows, summaries = [], []
    for cutoff in cutoffs:
        check_input(params, cutoff)
        for job in jobs:
            summary = run_forecast_job(job, cutoff)
            summaries.append(summary)
            rows.append(score_one(job, summary, cutoff))
    card = (
        pd.concat([r for r in rows if len(r)], ignore_index=True)
        if any(len(r) for r in rows)
        else pd.DataFrame(columns=SCORECARD_COLUMNS)
    )
    name = write_and_publish(params, card, summaries)
    mean = summarize_scorecard(card)
    return {
        "cutoffs": [str(c) for c in cutoffs],
        "warehouse": store.local_or_url(params.output_url),
        "scorecard_table": name,
        "mean": A.frame_rows(mean),
        "runs": [
            {k: s.get(k) for k in ("run_id", "as_of", "model", "snapshot_id", "assets_forecast")}
            for s in summaries
        ],
        "chart_dir": store.local_or_url(join(params.output_url, "charts")),
    }
