"""A real store for the explorer tests (HTTP and browser): the real batch job (``pipeline.run_job``, model
``random:test``) over a small synthetic market (11 of 24 series broken, one per reject reason: the job
rejects them), an older partition committed with ``pipeline.tables.publish`` (a copy of the run's rows at an
earlier as_of: a second job run would cost ~30 s on 2 cores), scorecard partitions published the way the
scoring flow publishes them, and a Serve deployment of the app on that store."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa

AS_OF, OLDER = "2024-06-28", "2024-06-21"
MODEL = "random:test:0"  # the partition value of model random:test (pipeline.tables.model_key)
TINY = {"model": "random:test", "tokenizer": "random:test"}


def job_config(bars_url: str, out_url: str, as_of: str):
    from pipeline import JobConfig

    return JobConfig.model_validate(
        {
            "as_of": as_of,
            "lookback": 48,
            "pred_len": 5,
            "input": {"url": bars_url},
            "output": {"url": out_url},
            "model": TINY,
            "sampling": {"sample_count": 8, "seed": 11},
            "validation": {"min_history": 24},
            "compute": {"concurrency": 1, "batch_size": 32},
        }
    )


CUTOFFS = ("2024-05-01", "2024-05-02")


def scorecard_rows(k: int) -> pa.Table:
    """Cutoff ``CUTOFFS[k]`` of MODEL scored, four methods: the scorecard table's columns and types
    (``flows.store.pa_table``)."""
    rows = []
    as_of = CUTOFFS[k]
    for j, method in enumerate(("kronos", "bootstrap_rw", "naive_last", "naive_drift")):
        prob = method in ("kronos", "bootstrap_rw")
        rows.append(
            {
                "as_of": pd.Timestamp(as_of).date(),
                "model": MODEL,
                "method": method,
                "n_assets": 10,
                "n_points": 50,
                "mae": 1.0 + 0.1 * j + 0.05 * k,
                "mape": 0.01 + 0.001 * j,
                "direction_acc": 0.5 + 0.05 * j - 0.02 * k,
                "ic": 0.02 * (j - 1) + 0.01 * k,
                "rank_ic": 0.03 * (j - 1) - 0.01 * k,
                "coverage": 0.7 + 0.05 * k if prob else None,
                "coverage_nominal": 0.8 if prob else None,
                "crps": 0.9 + 0.1 * j + 0.03 * k,
                "pinball": 0.2 + 0.01 * j,
                "crps_skill": None,
                "crps_by_step": [0.5, 0.6],
                "scored_at": pd.Timestamp("2024-06-01", tz="UTC"),
            }
        )
    types = {
        "as_of": pa.date32(),
        "model": pa.string(),
        "method": pa.string(),
        "n_assets": pa.int64(),
        "n_points": pa.int64(),
        "crps_by_step": pa.list_(pa.float64()),
        "scored_at": pa.timestamp("us", "UTC"),
    }
    names = list(rows[0])
    return pa.table({c: pa.array([r[c] for r in rows], types.get(c, pa.float64())) for c in names})


def build_store(root: Path) -> dict:
    """Bars under ``root/bars`` (date layout), the job's tables under ``root/out`` (~30 s on 2 cores)."""
    from pipeline import read, run_job, warehouse, write_synthetic_market
    from pipeline.tables import publish

    market = write_synthetic_market(str(root / "bars"), n_symbols=24, n_bars=120, end=AS_OF, seed=5)
    out = str(root / "out")
    summary = run_job(job_config(market.url, out, AS_OF))
    wh = warehouse(out)
    older = read(wh, "forecasts", AS_OF, MODEL).head(15).assign(as_of=pd.Timestamp(OLDER))
    publish(
        wh,
        "forecasts",
        pa.Table.from_pandas(older, preserve_index=False),
        pd.Timestamp(OLDER),
        MODEL,
        {"run_id": "older", "as_of": OLDER, "model": MODEL},
    )
    for k, as_of in enumerate(CUTOFFS):
        record = {"run_id": f"score-{as_of}", "as_of": as_of, "model": MODEL, "source": "test"}
        publish(wh, "scorecard", scorecard_rows(k), pd.Timestamp(as_of), MODEL, record)
    return {"market": market, "bars": market.url, "out": out, "wh": wh, "run_id": summary.run_id}


def explorer_args(store: dict, **over) -> dict:
    return {"output_url": store["out"], "input_url": store["bars"], "history_bars": 60, **over}


def deploy_app(port: int, explorer: dict | None, models: dict | None = None) -> None:
    """The shipped Serve config with one tiny model, one replica each, and ``explorer``."""
    from serving.deploy import deploy, load_serve_config, override

    one = {"num_replicas": 1, "autoscaling_config": None}
    config = override(
        load_serve_config(),
        host="127.0.0.1",
        port=port,
        args={
            "models": models or {"test": TINY, "demo": {"model": "demo", "tokenizer": "demo"}},
            "default_model": "test",
            "explorer": explorer,
        },
        forecaster={**one, "ray_actor_options": {"num_cpus": 1}},
        ingress=one,
    )
    deploy(config)
