"""Fixtures for the pipeline tests: small synthetic markets, a moto S3 server and a SeaweedFS S3 server,
both real S3 protocol servers on 127.0.0.1, started and stopped here (never a patched client)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline import JobConfig, write_synthetic_market

AS_OF = "2024-06-28"
TINY = {"model": "random:test", "tokenizer": "random:test"}


def snapshot(path) -> dict:
    """Every file under ``path`` with its mtime and bytes: equal snapshots mean nothing was touched."""
    out = {}
    for d, _, files in os.walk(path):
        for f in files:
            p = os.path.join(d, f)
            out[p] = (os.path.getmtime(p), Path(p).read_bytes())
    return out


def job_config(bars_url: str, out_url: str, **over) -> JobConfig:
    """A small fast job: tiny model, short lookback, few samples."""
    cfg = {
        "as_of": AS_OF,
        "lookback": 48,
        "pred_len": 4,
        "input": {"url": bars_url},
        "output": {"url": out_url},
        "model": TINY,
        "sampling": {"sample_count": 4, "seed": 7},
        "validation": {"min_history": 24},
        "compute": {"concurrency": 1, "batch_size": 32},
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    return JobConfig.model_validate(cfg)


@pytest.fixture(scope="session")
def market(tmp_path_factory):
    """30 assets x 90 daily XNYS bars ending 2024-06-28, one deliberately broken per failure kind, one a
    session late (``lagged``), date layout."""
    url = str(tmp_path_factory.mktemp("pipeline_market") / "bars")
    return write_synthetic_market(url, n_symbols=30, n_bars=90, end=AS_OF, seed=3, lagged=1)
