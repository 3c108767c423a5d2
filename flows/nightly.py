"""Nightly universe forecast: resolve the cutoff, check the input, run the Ray job, score what has matured,
publish artifacts.

The flow is thin: every decision lives in ``flows.job``, ``flows.scoring`` and ``flows.charts`` (plain
functions). Retries with exponential backoff sit on the I/O tasks only; the Ray job is not retried here
(the pipeline retries its own object-store calls and a failed job should page someone, not loop).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from kronos_core.demo import weights_note
from pipeline.storage import StorageError, is_transient, join

from . import artifacts as A
from . import store
from .charts import fan_chart_png, pick_chart_symbols, scorecard_png
from .job import InputNotReady, freshness_problem, local_cpus, resolve_as_of, resolve_model, to_job_config
from .params import JobSettings, NightlyParams
from .run_names import nightly_run_name
from .scoring import (
    SCORECARD_COLUMNS,
    matured_cutoffs,
    quantile_levels_in,
    score_cutoff,
    skill_table,
    summarize_scorecard,
)

__all__ = ["nightly_forecast", "run_forecast_job", "score_matured_forecasts", "IO_RETRIES"]

log = logging.getLogger(__name__)


def _transient(task, task_run, state) -> bool:
    """Retry only what may pass on its own: network and object-store errors, classified by type, S3 error
    code and HTTP status (``pipeline.storage.is_transient``). A missing delivery (``InputNotReady``), a
    missing file or a bug (TypeError, KeyError, ...) fails at once."""
    try:
        state.result()
    except InputNotReady:
        return False
    except StorageError as e:  # pipeline.storage already retried; retry the task once the store recovers
        return e.__cause__ is not None and is_transient(e.__cause__)
    except Exception as e:  # noqa: BLE001 - classified by type and code
        return is_transient(e)
    return False


SKILL_TITLE = (
    "## CRPS skill vs the bootstrap random walk, per horizon (1 - CRPS / baseline CRPS; above 0 beats it)"
)
IO_RETRIES: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),
    "retry_jitter_factor": 0.2,
    "retry_condition_fn": _transient,
}


@task(name="resolve-as-of", cache_policy=NO_CACHE)
def resolve_run(params: NightlyParams) -> dt.date:
    as_of = resolve_as_of(params)
    get_run_logger().info(
        "as_of %s (%s), universe %s",
        as_of,
        "given" if params.as_of else "last completed session",
        f"{len(params.universe)} symbols" if params.universe else "all symbols in the input",
    )
    return as_of


@task(name="pick-model", cache_policy=NO_CACHE, **IO_RETRIES)
def pick_model(params: JobSettings) -> JobSettings:
    """The model this run uses: ``model``, or what the registry pointer ``model_pointer`` names."""
    params, why = resolve_model(params)
    get_run_logger().info("%s", why)
    return params


@task(name="check-input", cache_policy=NO_CACHE, **IO_RETRIES)
def check_input(params: NightlyParams, as_of: dt.date) -> int:
    present, first, last = store.input_status(params.input_url, params.input_layout, as_of, params.storage)
    problem = freshness_problem(
        as_of,
        present,
        params.universe,
        first,
        last,
        params.min_fresh_share,
        params.input_url,
        params.calendar,
    )
    if problem:
        raise InputNotReady(problem)
    get_run_logger().info("input ready: %d symbols have a bar on %s", len(present), as_of)
    return len(present)


@task(name="forecast-universe", cache_policy=NO_CACHE)
def run_forecast_job(params: JobSettings, as_of: dt.date) -> dict[str, Any]:
    """The Ray Data job (local Ray unless ``params.compute.ray_address``); returns the RunSummary dict."""
    from pipeline import run_job

    summary = run_job(
        to_job_config(params, as_of, total_cpus=None if params.compute.ray_address else local_cpus())
    )
    get_run_logger().info("%s", summary.render())
    return summary.to_dict()


@task(name="load-forecasts", cache_policy=NO_CACHE, **IO_RETRIES)
def load_run_outputs(
    params: NightlyParams, summary: dict[str, Any], as_of: dt.date
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(forecast rows, rejected rows, history bars for the chart): the partition this run committed."""
    wh = params.warehouse()
    fc = store.read_forecasts(wh, as_of, summary["model"])
    rejected = store.read_rejected(wh, as_of, summary["model"])
    symbols = pick_chart_symbols(fc, params.chart_assets) if params.chart_assets else []
    start = (pd.Timestamp(as_of) - pd.Timedelta(days=120)).date()
    hist = (
        store.read_bars(params.input_url, params.input_layout, start, as_of, symbols, params.storage)
        if symbols
        else pd.DataFrame(columns=["symbol", "timestamp", "close"])
    )
    return fc, rejected, hist


@task(name="render-fan-chart", cache_policy=NO_CACHE, **IO_RETRIES)
def render_chart(
    params: NightlyParams, fc: pd.DataFrame, hist: pd.DataFrame, as_of: dt.date, model: str
) -> tuple[str, bytes] | None:
    symbols = pick_chart_symbols(fc, params.chart_assets)
    if not symbols:
        return None
    png = fan_chart_png(
        hist,
        fc,
        symbols,
        params.quantiles,
        title=f"{model}{f' ({weights_note(model)})' if weights_note(model) else ''}"
        f"  as_of {A.as_of_label(as_of)}  (mean, quantile bands)",
    )
    url = store.write_bytes(
        join(params.output_url, "charts", f"as_of={as_of}", "fan_chart.png"), png, params.storage
    )
    return url, png


@task(name="score-matured", cache_policy=NO_CACHE, **IO_RETRIES)
def score_matured_forecasts(params: NightlyParams, as_of: dt.date) -> tuple[pd.DataFrame, str]:
    """Score every earlier forecast that has matured since the last run; each scored cutoff is one commit
    to the scorecard table. Returns (the whole scorecard, the table's name)."""
    logger = get_run_logger()
    wh = params.warehouse()
    card = store.read_scorecard(wh)
    parts = store.forecast_partitions(wh)
    # a (cutoff, model) pair is scored once; pred_len, lookback and quantile levels come from the stored rows
    scored = set(zip(pd.to_datetime(card["as_of"]).dt.date, card["model"].astype(str), strict=True))
    ready = set(matured_cutoffs([d for d, _ in parts], [], as_of, 1, params.calendar))
    rows = []
    for cutoff, model in parts:
        if cutoff not in ready or (cutoff, model) in scored or cutoff >= as_of:
            continue
        fc = store.read_forecasts(wh, cutoff, model)
        if fc.empty:
            continue
        lookback = int(fc["lookback"].iloc[0]) if "lookback" in fc else params.lookback
        lookback_start = (pd.Timestamp(cutoff) - pd.Timedelta(days=int(lookback * 1.6) + 10)).date()
        bars = store.read_bars(
            params.input_url,
            params.input_layout,
            lookback_start,
            None,
            sorted(fc["symbol"].unique()),
            params.storage,
        )
        bars = bars[bars["timestamp"].dt.normalize() <= pd.Timestamp(as_of)]  # what was known tonight
        sc = score_cutoff(fc, bars, cutoff, quantile_levels_in(fc), lookback=lookback)
        if not sc.empty:  # empty = not every step realised yet: tried again tomorrow
            rows.append(sc)
            logger.info("scored cutoff %s (model=%s): %d assets", cutoff, model, sc["n_assets"].iloc[0])
    if rows:
        new = pd.concat(rows, ignore_index=True)
        store.write_scorecard(wh, new, source="nightly")
        card = pd.concat([card, new], ignore_index=True) if len(card) else new
        card = card.drop_duplicates(["as_of", "model", "method"], keep="last")
    if card.empty:
        card = pd.DataFrame(columns=SCORECARD_COLUMNS)
    name = wh.identifier("scorecard")
    logger.info("scorecard: %d new cutoffs scored, %d rows in %s", len(rows), len(card), name)
    return card, name


def read_snippet(summary: dict[str, Any]) -> str:
    """How to read this run's partition with PyIceberg, for the outputs artifact."""
    as_of = pd.Timestamp(summary["as_of"]).isoformat()
    return (
        "```python\n"
        "from pipeline import warehouse, read\n"
        f"wh = warehouse({summary['output_url']!r})  # plus catalog=..., storage=... if not the defaults\n"
        f"df = read(wh, 'forecasts', {as_of!r}, {summary['model']!r})\n"
        f"# as this run left it, later re-runs aside: read(wh, 'forecasts', run_id={summary['run_id']!r})\n"
        "```"
    )


@task(name="publish-artifacts", cache_policy=NO_CACHE, **IO_RETRIES)
def publish(
    summary: dict[str, Any],
    rejected: pd.DataFrame,
    chart: tuple[str, bytes] | None,
    scorecard: pd.DataFrame | None,
    scorecard_table: str | None,
) -> None:
    as_of = A.as_of_label(summary["as_of"])
    A.publish_table(
        A.KEYS["summary"], A.summary_rows(summary), f"Nightly forecast run summary, as_of {as_of}"
    )
    A.publish_table(
        A.KEYS["rejected"],
        A.frame_rows(rejected),
        f"{len(rejected)} assets rejected by validation, as_of {as_of}, with reasons",
    )
    if chart is not None:
        A.publish_chart(A.KEYS["chart"], chart[1], f"Fan charts as_of {as_of}", store.local_or_url(chart[0]))
    note = weights_note(summary.get("model") or "")
    lines = [
        f"# Nightly forecast {as_of}",
        "",
        *([f"**{note}**", ""] if note else []),
        "| output | location |",
        "|---|---|",
        f"| warehouse | `{summary.get('catalog') or summary['output_url']}` |",
        f"| forecasts | `{summary.get('forecasts_table')}` snapshot `{summary.get('snapshot_id')}` |",
        f"| rejected assets | `{summary.get('rejected_table')}` "
        f"snapshot `{summary.get('rejected_snapshot_id')}` |",
        f"| scorecard | `{scorecard_table or '-'}` |",
        f"| fan chart | `{store.local_or_url(chart[0]) if chart else '-'}` |",
        "",
        f"The run's record (config, lineage, input files, counts) is in the snapshots' summary "
        f"(`pipeline.run_record(wh, {summary['run_id']!r})`). Read the partition:",
        "",
        read_snippet(summary),
    ]
    if scorecard is not None and len(scorecard):
        lines += ["", "## Scorecard over time", "", A.markdown_table(summarize_scorecard(scorecard))]
        lines += ["", SKILL_TITLE, "", A.markdown_table(skill_table(scorecard))]
        A.publish_table(
            A.KEYS["scorecard"],
            A.frame_rows(scorecard.sort_values(["as_of", "method"])),
            "Matured forecasts scored against realised bars and the baselines",
        )
        A.publish_chart(
            A.KEYS["scorecard_chart"],
            scorecard_png(scorecard),
            "Forecast quality per matured cutoff: kronos vs the baselines",
        )
    A.publish_markdown(A.KEYS["outputs"], "\n".join(lines), f"Where this run's outputs are, as_of {as_of}")


@flow(name="nightly-forecast", flow_run_name=nightly_run_name, log_prints=True)
def nightly_forecast(params: NightlyParams = NightlyParams()) -> dict[str, Any]:
    """Forecast the whole universe as of the last completed session (or ``params.as_of``) and score what has
    matured. Returns where everything was written."""
    as_of = resolve_run(params)
    params = pick_model(params)
    check_input(params, as_of)
    summary = run_forecast_job(params, as_of)
    fc, rejected, hist = load_run_outputs(params, summary, as_of)
    chart = (
        render_chart(params, fc, hist, as_of, summary.get("model") or params.model.model)
        if params.chart_assets
        else None
    )
    card, card_table = score_matured_forecasts(params, as_of) if params.score_matured else (None, None)
    publish(summary, rejected, chart, card, card_table)
    return {
        **{
            k: summary.get(k)
            for k in (
                "run_id",
                "as_of",
                "model",
                "assets_read",
                "assets_forecast",
                "assets_rejected",
                "rows_written",
                "wall_s",
                "catalog",
                "forecasts_table",
                "snapshot_id",
                "rejected_table",
                "rejected_snapshot_id",
            )
        },
        "warehouse": store.local_or_url(summary["output_url"]),
        "scorecard_table": card_table,
        "scorecard_rows": 0 if card is None else len(card),
        "fan_chart": store.local_or_url(chart[0]) if chart else None,
    }
