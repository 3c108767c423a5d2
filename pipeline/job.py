"""run_job: the batch forecast as a numbered list of Ray Data stages.

0. plan      (driver)  calendar bars, as-of window, partition + row-group pruning
1. read      (CPU)     planned row groups only -> bars -> each symbol's last ``lookback`` bars: shard tasks
                       that each read the window and keep their symbols (no shuffle), or, for large
                       windows, tasks per file group and a group-by symbol
2. validate  (CPU)     is_valid / reject_reason per asset (kronos_core.rules)
3. future    (CPU)     the pred_len calendar bars after as_of, per asset (lagged assets: from their last bar)
4. forecast  (actors)  ForecastActor: predictor loaded once per actor; ragged batches; per-asset seeds
5. postprocess (CPU)   long rows (symbol, step) + quantiles + p_up + flags + lineage
6. write     (CPU)     Iceberg data files (any worker) -> coverage (below validation.min_forecast_share:
                       CoverageError, nothing committed) -> one commit per table on the driver: the
                       (as_of, model) partition replaced in one snapshot, the run's record in its summary
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import subprocess
import time
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .config import JobConfig, RunSummary, load_job_config
from .coverage import CoverageError, coverage_problem
from .forecast import ForecastActor
from .future import future_batch, run_grid, window_start
from .postprocess import forecast_rows, forecast_schema, lineage, rejected_rows
from .read import ReadPlan, plan_iceberg_read, plan_read, read_files, read_shard, window_group
from .tables import (
    Warehouse,
    data_files_of,
    model_key,
    overwrite_partition,
    prepare_table,
    publish,
    run_properties,
    write_data_files,
)
from .validate import validate_batch

__all__ = ["run_job", "code_version", "ensure_ray", "ray_data_settings", "read_shards"]

log = logging.getLogger(__name__)


def code_version() -> str:
    """Package version plus the git commit of the checkout, when there is one."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("kronos-batch")
    except PackageNotFoundError:
        v = "0+unknown"
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{v}+g{sha}" if sha else v


def ensure_ray(address: str | None) -> bool:
    """Reuse an initialised Ray; otherwise start/join one. True if this call started it."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a local job does not report usage (set to 1 to)
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, log_to_driver=False)
    return True


@contextlib.contextmanager
def ray_data_settings(progress: bool):
    """The Ray Data settings of our jobs (batch forecast, training data), restored on exit."""
    import ray

    ctx = ray.data.DataContext.get_current()
    saved = ctx.enable_progress_bars, ctx.shuffle_strategy
    ctx.enable_progress_bars = progress
    # Measured on 2 cores: the default hash shuffle (aggregator actors) took 20-24 s to group 3.7k rows;
    # the pull-based sort shuffle 0.9 s. Actors are restarted and their tasks retried by default (-1/-1).
    ctx.shuffle_strategy = ray.data.context.ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    try:
        yield ctx
    finally:
        ctx.enable_progress_bars, ctx.shuffle_strategy = saved


# Stage 1's two ways. Shard tasks each decode the whole window and keep their own symbols' rows: no exchange
# between tasks, so the first assets reach the forecast actors within a second (measured at 500 assets on 2
# cores: 0.4 s, against 5.5 s for read tasks plus Ray Data's sort shuffle), but the decode work grows with
# the shard count. Above SHARD_READ_MAX_ROWS planned rows the window is exchanged instead (group-by).
SHARD_READ_MAX_ROWS = 4_000_000
ROWS_PER_SHARD = 1_000_000
MAX_AUTO_SHARDS = 4


def read_shards(compute, plan_rows: int) -> int:
    """How many shard read tasks stage 1 runs for a window of ``plan_rows`` planned rows (0: the group-by
    read); ``compute.read_shards`` when set."""
    if compute.read_shards is not None:
        return compute.read_shards
    if plan_rows > SHARD_READ_MAX_ROWS:
        return 0
    return max(1, min(MAX_AUTO_SHARDS, -(-plan_rows // ROWS_PER_SHARD)))


def _coerce(config) -> JobConfig:
    if isinstance(config, JobConfig):
        return config
    if isinstance(config, (str, Path)):
        return load_job_config(config)
    if isinstance(config, dict):
        return JobConfig.model_validate(config)
    raise TypeError(
        f"config must be a JobConfig, a dict or a path to a YAML file, got {type(config).__name__}"
    )


def run_job(
    config: JobConfig | dict | str | Path,
    progress: bool = False,
    actor_cls: type = ForecastActor,
    stream: bool | None = None,
) -> RunSummary:
    """Run one batch forecast; returns what it did. Raises on a permanent storage error, and
    ``CoverageError`` when it forecast less than ``validation.min_forecast_share`` of its universe
    (``pipeline.coverage``); either way nothing is published (no table's partition is touched).

    ``actor_cls`` is the stage-4 callable class (a ``ForecastActor`` subclass; tests inject faults with one).
    ``stream``: run stages 1-6a as one stream (None: when a CPU is free beside the forecast actors; False:
    materialise the assets before the actors start, as a barrier).
    """
    import ray

    cfg = _coerce(config)
    t0 = time.perf_counter()
    run_id = cfg.run_id or f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    created_at = dt.datetime.now(dt.timezone.utc).isoformat()
    as_of, cal, storage = cfg.as_of, cfg.calendar, cfg.storage.resolved()
    model = model_key(cfg.model.model)
    summary = RunSummary(run_id=run_id, as_of=str(as_of), model=model)
    stage_s = summary.stage_s
    # the output catalog first: a bad catalog setting fails here, before Ray starts or anything is read
    wh = Warehouse(cfg.output.url, cfg.output.catalog, storage)
    wh.catalog()
    started = ensure_ray(cfg.compute.ray_address)
    restore = contextlib.ExitStack()
    restore.enter_context(ray_data_settings(progress))
    try:
        # 0. plan (driver): calendar bars, as-of window, pruned read plan
        t = time.perf_counter()
        grid = run_grid(cal, as_of, cfg.lookback, cfg.pred_len)
        start = pd.Timestamp(window_start(grid, as_of, cfg.lookback))
        universe = cfg.universe.resolve()
        inp = cfg.input
        if inp.format == "iceberg":
            plan = plan_iceberg_read(inp.url, inp.table, inp.catalog, storage, start, as_of, universe)
        else:
            plan = plan_read(inp.url, inp.layout, storage, start, as_of, universe)
        if not plan.files:
            raise ValueError(
                f"no bars between {start} and as_of={as_of} under {cfg.input.url}; check as_of, "
                f"input.url and input.layout"
            )
        summary.bytes_read, summary.files_read = plan.bytes_read, plan.n_files
        stage_s["plan"] = time.perf_counter() - t
        log.info(
            "run %s: as_of=%s window %s.., %d files (%s bytes)",
            run_id,
            as_of,
            start,
            plan.n_files,
            f"{plan.bytes_read:,}",
        )

        # 1. read and window (CPU)
        t = time.perf_counter()
        c = cfg.compute
        reader = dict(
            url=inp.url, storage=storage, start=start, end=as_of, universe=universe, iceberg=plan.iceberg
        )
        summary.read_shards = n_shards = read_shards(c, plan.rows)
        if n_shards:
            ds = ray.data.from_items([{"shard": k} for k in range(n_shards)], override_num_blocks=n_shards)
            ds = ds.map_batches(
                read_shard,
                batch_size=1,
                batch_format="numpy",
                fn_kwargs=dict(
                    files=plan.files,
                    n_shards=n_shards,
                    lookback=cfg.lookback,
                    block_assets=c.batch_size,
                    **reader,
                ),
            )
        else:
            ds = ray.data.from_items(plan.files, override_num_blocks=max(1, min(len(plan.files), 64)))
            ds = ds.map_batches(
                read_files, batch_size=c.read_parallelism, batch_format="numpy", fn_kwargs=reader
            )
            n_parts = max(1, min(64, len(plan.files), 4 * (os.cpu_count() or 1)))
            ds = ds.groupby("symbol", num_partitions=n_parts).map_groups(
                window_group, batch_format="pyarrow", fn_kwargs={"lookback": cfg.lookback}
            )
        # 2. validate (CPU)
        ds = ds.map_batches(
            validate_batch,
            batch_format="pyarrow",
            fn_kwargs=dict(as_of=as_of, grid=grid, cal=cal, cfg=cfg.validation),
        )
        # 3. future timestamps (CPU)
        ds = ds.map_batches(
            future_batch,
            batch_format="pyarrow",
            fn_kwargs=dict(grid=grid, cal=cal, pred_len=cfg.pred_len, as_of=as_of),
        )
        # one forecast batch per bundle: a read task's blocks would otherwise reach a single actor together
        ds = ds.repartition(target_num_rows_per_block=c.batch_size)
        # Stages 1-6a run as one stream (actors start while the bars are read; rows are written as they are
        # forecast) when a CPU is left beside the actor pool for the CPU stages; with every CPU held by
        # actors those stages would wait forever, so the assets are materialised first, as a barrier.
        spare = float(ray.cluster_resources().get("CPU", 0)) - c.concurrency * c.num_cpus
        summary.streamed = spare >= 1 if stream is None else bool(stream)
        assets = ds if summary.streamed else ds.materialize()
        if not summary.streamed:
            stage_s["read_validate"] = time.perf_counter() - t
            t = time.perf_counter()
            log.info("no CPU beside the %d forecast actors: stages 1-3 run first, then 4-6", c.concurrency)

        # the forecasts table exists (schema widened) before the first data file is written
        run = lineage(run_id, cfg, created_at, code_version())
        forecasts_tbl = prepare_table(
            wh, "forecasts", forecast_schema(cfg.output.quantiles, run, cfg.pred_len)
        )
        # 4. forecast (actors; the predictor is loaded once per actor; invalid assets pass through)
        fc = assets.map_batches(
            actor_cls,
            batch_size=c.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=c.concurrency),
            num_cpus=c.num_cpus,
            num_gpus=c.num_gpus,
            fn_constructor_kwargs=dict(
                spec=cfg.model,
                sampling=cfg.sampling,
                pred_len=cfg.pred_len,
                quantiles=cfg.output.quantiles,
                num_threads=max(1, int(c.num_cpus)),
                storage=storage,
            ),
        )
        # 5. postprocess and 6a. Iceberg data files (CPU, any worker); every asset's metadata comes back
        out = fc.map_batches(
            finish_batch,
            batch_format="pyarrow",
            fn_kwargs=dict(
                as_of=as_of,
                quantiles=cfg.output.quantiles,
                run=run,
                metadata=forecasts_tbl.metadata,
                io_properties=forecasts_tbl.io.properties,
            ),
        )
        result = _collect(out)
        stage_s["forecast_write" if not summary.streamed else "stream"] = time.perf_counter() - t
        t = time.perf_counter()
        is_file = result["data_file"].is_valid()
        files = data_files_of(result.filter(is_file))
        meta = result.filter(pc.invert(is_file)).select(list(META_COLUMNS)).to_pandas()
        fc_meta = meta[meta["is_valid"].astype(bool)] if len(meta) else meta
        rejected = _rejected_table(meta, fc_meta, universe, as_of, run, model)
        _check_model(fc_meta, model)
        _count(summary, files, meta, fc_meta, rejected, cfg.pred_len)
        stage_s["rejected"] = time.perf_counter() - t

        # 6b. coverage, before any commit: a run below validation.min_forecast_share publishes nothing (an
        # as_of before the histories, a partial delivery or a bad universe must not replace a good partition)
        n_universe = len(universe) if universe is not None else summary.assets_read
        problem = coverage_problem(
            summary.assets_forecast,
            n_universe,
            rejected,
            cfg.validation.min_forecast_share,
            universe is not None,
        )
        if problem:
            summary.wall_s = time.perf_counter() - t0
            raise CoverageError(f"run {run_id} as_of {as_of} model {model}: {problem}", summary, rejected)

        # 6c. commit: per table, the (as_of, model) partition replaced in one snapshot carrying the run record
        t = time.perf_counter()
        record = _record(cfg, as_of, model, created_at, run, fc_meta, start, plan, summary)
        summary.output_url, summary.catalog = cfg.output.url, wh.describe()
        summary.forecasts_table = wh.identifier("forecasts")
        summary.rejected_table = wh.identifier("rejected")
        summary.snapshot_id = overwrite_partition(
            forecasts_tbl, "forecasts", as_of, model, files, run_properties(record)
        ).snapshot_id
        summary.rejected_snapshot_id = publish(wh, "rejected", rejected, as_of, model, record)
        stage_s["commit"] = time.perf_counter() - t
    finally:
        restore.close()
        if started:
            ray.shutdown()
    summary.wall_s = time.perf_counter() - t0
    summary.series_per_s = summary.assets_forecast / summary.wall_s if summary.wall_s else 0.0
    log.info(
        "run %s done in %.1fs: %d forecast, %d rejected, %d rows -> %s snapshot %s",
        run_id,
        summary.wall_s,
        summary.assets_forecast,
        summary.assets_rejected,
        summary.rows_written,
        summary.forecasts_table,
        summary.snapshot_id,
    )
    return summary


# what the stream brings back to the driver: one row per asset (its metadata) and one per data file written
META_COLUMNS = {
    "symbol": pa.string(),
    "n_bars": pa.int64(),
    "is_valid": pa.bool_(),
    "reject_reason": pa.string(),
    "last_timestamp": pa.timestamp("ns"),
    "error": pa.string(),
    "flags": pa.string(),
    "lag_bars": pa.int64(),
    "model_info": pa.string(),
}
RESULT_SCHEMA = pa.schema([*META_COLUMNS.items(), ("data_file", pa.binary()), ("rows", pa.int64())])


def finish_batch(
    batch: pa.Table, as_of, quantiles: list[float], run: dict, metadata, io_properties: dict
) -> pa.Table:
    """Stages 5 and 6a for one batch of forecast actor output: the forecast assets' long rows written as
    Iceberg data files; returns ``RESULT_SCHEMA`` rows, one per asset (metadata) and one per file."""
    ok = batch.filter(pc.and_(batch["is_valid"], pc.is_null(batch["error"])))
    written = (
        write_data_files(forecast_rows(ok, as_of, quantiles, run), metadata, io_properties, "forecasts")
        if ok.num_rows
        else None
    )
    n = batch.num_rows
    assets = {c: batch[c].cast(t) for c, t in META_COLUMNS.items()}
    assets.update(data_file=pa.nulls(n, pa.binary()), rows=pa.nulls(n, pa.int64()))
    parts = [pa.table(assets, schema=RESULT_SCHEMA)]
    if written is not None and written.num_rows:
        m = written.num_rows
        file_rows = {c: pa.nulls(m, t) for c, t in META_COLUMNS.items()}
        file_rows.update(data_file=written["data_file"], rows=written["rows"])
        parts.append(pa.table(file_rows, schema=RESULT_SCHEMA))
    return pa.concat_tables(parts)


def _collect(ds) -> pa.Table:
    """Run the stream and bring its (small) result to the driver."""
    import ray

    blocks = [b for b in ray.get(ds.to_arrow_refs()) if b.num_rows]
    return (
        pa.concat_tables([b.select(RESULT_SCHEMA.names).cast(RESULT_SCHEMA) for b in blocks])
        if blocks
        else (RESULT_SCHEMA.empty_table())
    )


def _check_model(fc_meta: pd.DataFrame, model: str) -> None:
    """The forecast rows' ``model`` column must hold the partition value the commit replaces."""
    if not len(fc_meta):
        return
    seen = {json.loads(i)["model"] for i in fc_meta["model_info"].dropna()}
    if seen - {model}:
        raise RuntimeError(
            f"the forecast actors report model {sorted(seen)} but the run publishes partition model={model!r}"
        )


def _count(
    summary: RunSummary,
    files: list,
    meta: pd.DataFrame,
    fc_meta: pd.DataFrame,
    rejected: pa.Table,
    pred_len: int,
) -> None:
    """Fill the summary's counts from the data files written and the assets seen."""
    summary.rows_written = int(sum(f.record_count for f in files))
    summary.assets_read = len(meta)
    summary.assets_forecast = summary.rows_written // pred_len
    summary.assets_rejected = rejected.num_rows
    reasons = pd.Series(rejected["reject_reason"].to_pylist(), dtype=object)
    summary.reject_reasons = (
        {k: int(v) for k, v in reasons.str.split(";").explode().value_counts().items()}
        if len(reasons)
        else {}
    )
    done = fc_meta[fc_meta["error"].isna()] if len(fc_meta) else fc_meta
    flags = done["flags"].dropna() if len(done) else pd.Series([], dtype=object)
    summary.forecast_flags = (
        {k: int(v) for k, v in flags.str.split(";").explode().value_counts().items()} if len(flags) else {}
    )
    summary.assets_lagged = int((done["lag_bars"] > 0).sum()) if len(done) else 0


def _record(
    cfg: JobConfig,
    as_of,
    model: str,
    created_at: str,
    run: dict,
    fc_meta: pd.DataFrame,
    start: pd.Timestamp,
    plan: ReadPlan,
    summary: RunSummary,
) -> dict:
    """The run's record, stored in its snapshots' summaries: lineage, config, input snapshot and counts."""
    infos = fc_meta["model_info"].dropna() if len(fc_meta) else []
    return {
        "run_id": run["run_id"],
        "as_of": str(pd.Timestamp(as_of)),
        "model": model,
        "created_at": created_at,
        "lineage": run,
        "config": cfg.to_json_dict(),
        "model_info": json.loads(infos.iloc[0]) if len(infos) else {},
        "input": {
            "url": cfg.input.url,
            "format": cfg.input.format,
            "layout": cfg.input.layout if cfg.input.format == "parquet" else None,
            "table": cfg.input.table if cfg.input.format == "iceberg" else None,
            "snapshot_id": (plan.iceberg or {}).get("snapshot_id"),
            "window_start": str(start),
            "bytes_read": plan.bytes_read,
            "partitions_total": plan.partitions_total,
            "partitions_read": plan.partitions_read,
            "files": [{"path": f["path"], "row_groups": list(map(int, f["row_groups"]))} for f in plan.files],
        },
        "counts": {
            "assets_read": summary.assets_read,
            "assets_forecast": summary.assets_forecast,
            "assets_rejected": summary.assets_rejected,
            "reject_reasons": summary.reject_reasons,
            "assets_lagged": summary.assets_lagged,
            "forecast_flags": summary.forecast_flags,
        },
    }


def _rejected_table(
    meta: pd.DataFrame, fc_meta: pd.DataFrame, universe: list[str] | None, as_of, run: dict, model: str
) -> pa.Table:
    """Every asset that is not forecast, with its reason: failed validation, failed at the model input,
    or named in the universe but absent from the data (so nothing disappears silently).

    ``meta``: one row per asset read (symbol, n_bars, is_valid, reject_reason, last_timestamp);
    ``fc_meta``: one row per asset sent to the model (symbol, n_bars, error, ...). Both have their columns
    even when empty (they come from ``RESULT_SCHEMA``)."""
    cols = ["symbol", "n_bars", "reject_reason", "last_timestamp"]
    frames = [
        meta.loc[~meta["is_valid"], cols],
        fc_meta.loc[fc_meta["error"].notna(), ["symbol", "n_bars", "error"]]
        .rename(columns={"error": "reject_reason"})
        .assign(last_timestamp=pd.NaT),
    ]
    if universe is not None:
        seen = set(meta["symbol"])
        frames.append(
            pd.DataFrame(
                {
                    "symbol": [s for s in universe if s not in seen],
                    "n_bars": 0,
                    "reject_reason": "no_data",
                    "last_timestamp": pd.NaT,
                }
            )
        )
    frames = [f for f in frames if len(f)]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({c: [] for c in cols})
    df = df.sort_values("symbol", kind="stable")
    tbl = pa.table(
        {
            "symbol": pa.array(df["symbol"].astype(str).tolist(), pa.string()),
            "n_bars": pa.array(df["n_bars"].astype("int64").tolist(), pa.int64()),
            "reject_reason": pa.array(df["reject_reason"].astype(str).tolist(), pa.string()),
            "last_timestamp": pa.array(
                pd.to_datetime(df["last_timestamp"]).astype("datetime64[ns]"), pa.timestamp("ns")
            ),
        }
    )
    return rejected_rows(tbl, as_of, run, model)
