"""Fine-tune, backtest, promote: the model improves itself only when the numbers say so.

1. period     the cutoff (last session training may read) and the validation period: the ``val_sessions``
              sessions up to it; the backtest cutoffs lie inside it, each with ``pred_len`` realised sessions
2. incumbent  what forecasts today: the registry's ``current`` pointer, else ``model``
3. train      ``training.run_training`` from the incumbent's weights on bars up to the cutoff, validation on
              the held-out period; the candidate goes to ``<registry>/runs/<run>/``
4. backtest   the existing walk-forward backtest on the validation period, once per model, same cutoffs
5. decide     promote only if the candidate's CRPS beats the incumbent's by more than ``min_crps_gain``
6. promote    atomically replace ``<registry>/current`` (the nightly's ``model_pointer`` reads it)
Artifacts: the loss curve, the side-by-side scorecard, the decision.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
import uuid
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from kronos_core import MarketCalendar, PredictorSpec
from pipeline.storage import filesystem, join, strip_protocol

from . import artifacts as A
from . import store
from .backtest import auto_cutoffs, backtest
from .baselines import BOOTSTRAP
from .job import job_as_of, resolve_model
from .nightly import IO_RETRIES
from .params import BacktestParams, FinetuneParams, JobSettings
from .run_names import finetune_run_name

__all__ = ["finetune", "validation_period", "decide", "side_by_side", "METRICS"]

METRICS = ("crps", "crps_skill", "pinball", "mae", "mape", "direction_acc", "rank_ic", "coverage")
BASELINES = (BOOTSTRAP, "naive_last", "naive_drift")


def validation_period(
    calendar: MarketCalendar, cutoff: dt.date, val_sessions: int, pred_len: int, n: int, every: int
) -> tuple[dt.date, list[dt.date]]:
    """(first validation session, backtest cutoffs). Each cutoff's ``pred_len`` forecast sessions lie in the
    validation period [first, cutoff]; the earliest cutoff may be the session just before it."""
    days = calendar.sessions(cutoff, val_sessions + 1)
    if len(days) < val_sessions + 1:
        raise ValueError(
            f"calendar {calendar.name} has fewer than {val_sessions + 1} sessions up to {cutoff}"
        )
    return days[1], auto_cutoffs(days, pred_len, n, every)


def _kronos(mean_rows: list[dict]) -> dict:
    rows = [r for r in mean_rows if r.get("method") == "kronos"]
    return rows[0] if rows else {}


def decide(incumbent: list[dict], candidate: list[dict], min_gain: float) -> dict[str, Any]:
    """Promote or not, from the two backtests' mean rows (``summarize_scorecard``): the candidate must have
    a finite CRPS below ``incumbent * (1 - min_gain)``."""
    inc, cand = _kronos(incumbent).get("crps"), _kronos(candidate).get("crps")
    inc = float(inc) if inc is not None else math.nan
    cand = float(cand) if cand is not None else math.nan
    gain = (inc - cand) / inc if math.isfinite(inc) and math.isfinite(cand) and inc > 0 else math.nan
    if not math.isfinite(cand):
        promote, reason = False, "the candidate has no CRPS (no backtest cutoff matured): not promoted"
    elif not math.isfinite(inc):
        promote, reason = True, f"CRPS {cand:.5g}; the incumbent has none to compare with"
    elif cand < inc * (1 - min_gain):
        promote, reason = True, f"CRPS {cand:.5g} vs {inc:.5g} ({gain:+.2%}, needed > {min_gain:.2%})"
    else:
        promote, reason = False, f"CRPS {cand:.5g} vs {inc:.5g} ({gain:+.2%}, needed > {min_gain:.2%})"
    return {
        "promote": promote,
        "reason": reason,
        "incumbent_crps": inc,
        "candidate_crps": cand,
        "crps_gain": gain,
    }


def side_by_side(incumbent: list[dict], candidate: list[dict]) -> pd.DataFrame:
    """metric | incumbent | candidate | bootstrap_rw | naive_last | naive_drift, from the two backtests'
    mean rows (the baselines from the incumbent's backtest: same cutoffs, same data)."""
    cols = {
        "incumbent": _kronos(incumbent),
        "candidate": _kronos(candidate),
        **{m: next((r for r in incumbent if r.get("method") == m), {}) for m in BASELINES},
    }
    return pd.DataFrame(
        [{"metric": m, **{k: v.get(m) for k, v in cols.items()}} for m in METRICS + ("cutoffs",)]
    )


@task(name="resolve-period", cache_policy=NO_CACHE)
def resolve_period(params: FinetuneParams) -> tuple[dt.date, dt.date, list[dt.date]]:
    cutoff = params.cutoff or params.calendar.last_completed_session()
    val_start, cutoffs = validation_period(
        params.calendar, cutoff, params.val_sessions, params.pred_len, params.n_cutoffs, params.every
    )
    get_run_logger().info(
        "training reads bars up to %s; validation %s..%s; backtest cutoffs %s",
        cutoff,
        val_start,
        cutoff,
        ", ".join(map(str, cutoffs)),
    )
    return cutoff, val_start, cutoffs


@task(name="resolve-incumbent", cache_policy=NO_CACHE, **IO_RETRIES)
def resolve_incumbent(params: FinetuneParams) -> PredictorSpec:
    job, why = resolve_model(JobSettings(**{**params.job_settings(), "model_pointer": params.registry}))
    get_run_logger().info("incumbent: %s", why)
    return job.model


def train_config(params: FinetuneParams, incumbent: PredictorSpec, cutoff, val_start, run_url: str):
    """The ``TrainConfig`` of this run: the job's data settings, the incumbent as the base."""
    from pipeline.config import InputConfig, UniverseConfig
    from training.config import BaseSpec, DataSpec, TrainConfig, WindowSpec

    return TrainConfig(
        name=params.registry.rstrip("/").rsplit("/", 1)[-1],
        data=DataSpec(
            input=InputConfig(url=params.input_url, layout=params.input_layout),
            storage=params.storage.resolved(),  # read on this worker; masked in the run's record
            universe=UniverseConfig(symbols=params.universe),
            calendar=params.calendar,
            validation=params.validation,
            cutoff=job_as_of(cutoff, params.calendar),
            val_start=pd.Timestamp(val_start),
        ),
        windows=params.windows or WindowSpec(lookback=params.lookback, pred_len=params.pred_len),
        base=BaseSpec(
            model=incumbent.model,
            tokenizer=incumbent.tokenizer,
            model_revision=incumbent.model_revision,
            tokenizer_revision=incumbent.tokenizer_revision,
        ),
        tokenizer=params.tokenizer,
        predictor=params.predictor,
        compute=params.train_compute,
        checkpoint=params.checkpoint,
        output=run_url,
        seed=params.seed,
    )


@task(name="train-candidate", cache_policy=NO_CACHE)
def train_candidate(
    params: FinetuneParams, incumbent: PredictorSpec, cutoff, val_start, run_url: str
) -> dict:
    from training import run_training

    logger = get_run_logger()
    cfg = train_config(params, incumbent, cutoff, val_start, run_url)

    def progress(r: dict) -> None:
        if r.get("kind") == "epoch":
            logger.info(
                "[%s] epoch %d: loss %.4f, val loss %.4f, %.0f windows/s",
                r["stage"],
                r["epoch"],
                r["train_loss"],
                r["val_loss"],
                r["windows_per_s"],
            )

    summary = run_training(cfg, on_report=progress)
    logger.info("%s", summary.render())
    out = summary.to_dict()
    for s in out["stages"].values():
        s.pop("window_log", None)
    return out


@task(name="decide", cache_policy=NO_CACHE)
def decide_task(incumbent: dict, candidate: dict, min_gain: float) -> dict[str, Any]:
    d = decide(incumbent["mean"], candidate["mean"], min_gain)
    get_run_logger().info("%s: %s", "PROMOTE" if d["promote"] else "keep the incumbent", d["reason"])
    return d


@task(name="promote", cache_policy=NO_CACHE, **IO_RETRIES)
def promote_candidate(params: FinetuneParams, run_url: str, summary: dict, decision: dict) -> str:
    from pipeline.models import ModelPointer, promote

    root, name = params.registry.rstrip("/").rsplit("/", 1)
    pointer = ModelPointer(
        model=join(run_url, "model"),
        tokenizer=join(run_url, "tokenizer"),
        run_id=summary["run_id"],
        reason=decision["reason"],
        metrics={k: decision[k] for k in ("incumbent_crps", "candidate_crps", "crps_gain")},
    )
    return promote(root, name, pointer, params.storage)


@task(name="publish-finetune", cache_policy=NO_CACHE, **IO_RETRIES)
def publish(
    params: FinetuneParams,
    run_url: str,
    summary: dict,
    card: pd.DataFrame,
    decision: dict,
    pointer: str | None,
) -> None:
    storage = params.storage.resolved()
    curve = join(run_url, "loss_curve.png")
    fs = filesystem(curve, storage)
    A.publish_chart(
        A.KEYS["finetune_curve"],
        fs.cat_file(strip_protocol(curve)),
        f"Training and validation loss per epoch, run {summary['run_id']}",
        store.local_or_url(curve),
    )
    A.publish_table(
        A.KEYS["finetune_scorecard"],
        A.frame_rows(card),
        "Backtest on the validation period: incumbent vs candidate (mean over cutoffs), naive baselines",
    )
    stages = "; ".join(
        f"{k}: {len(v['val_loss'])} epochs, best val {v['best_val_loss']:.4f} (epoch {v['best_epoch']})"
        for k, v in summary["stages"].items()
    )
    md = [
        f"# {'Promoted' if decision['promote'] else 'Not promoted'}: {summary['run_id']}",
        "",
        decision["reason"],
        "",
        "| | |",
        "|---|---|",
        f"| candidate | `{store.local_or_url(run_url)}` |",
        f"| registry pointer | `{store.local_or_url(pointer) if pointer else 'unchanged'}` |",
        f"| training data | cutoff {summary['cutoff']}, validation from {summary['val_start']}, "
        f"{summary['assets_used']} assets ({summary['assets_rejected']} rejected), "
        f"{summary['windows_train']:,} train / {summary['windows_val']:,} validation windows |",
        f"| stages | {stages} |",
        "",
        "## Backtest on the validation period",
        "",
        A.markdown_table(card),
    ]
    A.publish_markdown(A.KEYS["finetune_decision"], "\n".join(md), "Fine-tune run: the promotion decision")


@flow(name="finetune", flow_run_name=finetune_run_name, log_prints=True)
def finetune(params: FinetuneParams = FinetuneParams()) -> dict[str, Any]:
    """Train a candidate from the incumbent on the latest bars, backtest both on the held-out validation
    period and promote the candidate only if its CRPS is better. Returns what happened and where."""
    from pipeline.job import ensure_ray

    started = ensure_ray(params.compute.ray_address)  # one Ray session for training and both backtests
    try:
        return _finetune(params)
    finally:
        if started:
            import ray

            ray.shutdown()


def _finetune(params: FinetuneParams) -> dict[str, Any]:
    cutoff, val_start, cutoffs = resolve_period(params)
    incumbent = resolve_incumbent(params)
    run = f"{cutoff}-{uuid.uuid4().hex[:6]}"
    run_url = join(params.registry.rstrip("/"), "runs", run)
    summary = train_candidate(params, incumbent, cutoff, val_start, run_url)
    candidate = dataclasses.replace(
        incumbent,
        model=join(run_url, "model"),
        tokenizer=join(run_url, "tokenizer"),
        model_revision=None,
        tokenizer_revision=None,
    )
    results = {}
    for who, spec in (("incumbent", incumbent), ("candidate", candidate)):
        # each backtest in its own warehouse and namespace: never the nightly's tables, whatever the catalog
        namespace = re.sub(r"\W", "_", f"finetune_{run}_{who}")
        job = {
            **params.job_settings(),
            "model": spec,
            "model_pointer": None,
            "output_url": join(run_url, "backtest", who),
            "catalog": params.catalog.model_copy(update={"namespace": namespace}),
        }
        results[who] = backtest(BacktestParams(**job, cutoffs=cutoffs))
    decision = decide_task(results["incumbent"], results["candidate"], params.min_crps_gain)
    card = side_by_side(results["incumbent"]["mean"], results["candidate"]["mean"])
    pointer = promote_candidate(params, run_url, summary, decision) if decision["promote"] else None
    publish(params, run_url, summary, card, decision, pointer)
    return {
        "run_id": summary["run_id"],
        "candidate": store.local_or_url(run_url),
        "cutoff": str(cutoff),
        "val_start": str(val_start),
        "backtest_cutoffs": [str(c) for c in cutoffs],
        **decision,
        "pointer": store.local_or_url(pointer) if pointer else None,
        "scorecard": A.frame_rows(card),
        "backtests": {
            who: {"warehouse": r["warehouse"], "scorecard_table": r["scorecard_table"]}
            for who, r in results.items()
        },
        "stages": {k: {"val_loss": v["val_loss"]} for k, v in summary["stages"].items()},
    }
