"""Fixtures for the training tests: a small synthetic daily market and a tiny, fast training config."""

from __future__ import annotations

import pytest

from pipeline import write_synthetic_market

END = "2024-06-28"
CUTOFF = "2024-06-21"
VAL_START = "2024-05-15"


def train_config(bars_url: str, output: str, **over) -> dict:
    """The tiny config (random:test weights, 24+4-bar windows): a stage takes seconds on one CPU."""
    cfg = {
        "name": "tiny",
        "data": {
            "input": {"url": bars_url},
            "cutoff": CUTOFF,
            "val_start": VAL_START,
            "validation": {"min_history": 24},
        },
        "windows": {"lookback": 24, "pred_len": 4, "stride": 2},
        "base": {"model": "random:test", "tokenizer": "random:test"},
        "predictor": {"epochs": 3, "batch_size": 16, "lr": 1e-3, "early_stopping_patience": None},
        "checkpoint": {"every_n_steps": 1000},
        "output": output,
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    return cfg


@pytest.fixture(scope="session")
def train_market(tmp_path_factory):
    """16 healthy assets x 120 daily XNYS bars ending 2024-06-28 (date layout)."""
    url = str(tmp_path_factory.mktemp("train_market") / "bars")
    return write_synthetic_market(url, n_symbols=16, n_bars=120, min_bars=100, end=END, broken=False, seed=5)
