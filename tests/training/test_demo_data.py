"""The demo model's training data: pinned sources, the held-out two years never written to the training store,
the synthetic part ending before the validation period."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

import training.demo as demo
from training.demo import DAILY, HOLDOUT_YEARS, SOURCES, build_store, holdout_start, load_source

CONFIG = demo.HERE / "daily.yaml"


@pytest.mark.parametrize("symbol", sorted(SOURCES))
def test_sources_are_real_daily_candles_from_their_start(symbol):
    df = load_source(symbol)
    assert list(df.columns) == ["timestamp", "open", "high", "low", "close", "volume", "amount"]
    assert df["timestamp"].is_monotonic_increasing and df["timestamp"].is_unique
    start = SOURCES[symbol].start
    if start:
        assert df["timestamp"].min() >= pd.Timestamp(start)
    assert (df[["open", "high", "low", "close"]] > 0).all().all()
    assert (df["high"] >= df[["open", "close"]].max(axis=1) - 1e-9).all()
    if SOURCES[symbol].freq == "1d":  # no amount published: filled by the shared rule, volume x mean price
        mean_price = df[["open", "high", "low", "close"]].mean(axis=1)
        np.testing.assert_allclose(df["amount"], df["volume"] * mean_price, rtol=1e-12)
    else:
        assert (df["amount"] > 0).any()


def test_a_changed_source_file_is_refused(tmp_path, monkeypatch):
    src = tmp_path / "sources"
    shutil.copytree(demo.HERE / "sources", src)
    data = bytearray((src / "SP500.parquet").read_bytes())
    data[-20] ^= 1
    (src / "SP500.parquet").write_bytes(bytes(data))
    monkeypatch.setattr(demo, "HERE", tmp_path)
    with pytest.raises(ValueError, match="SP500.parquet: sha256 .* is not the pinned"):
        load_source("SP500")
    with pytest.raises(ValueError, match="unknown demo source 'AAPL'"):
        load_source("AAPL")


def test_holdout_is_the_last_two_years():
    for symbol in DAILY:
        df = load_source(symbol)
        start, last = holdout_start(df), df["timestamp"].max()
        assert (
            last - pd.DateOffset(years=HOLDOUT_YEARS)
            < start
            <= last - pd.DateOffset(years=HOLDOUT_YEARS) + pd.Timedelta(days=5)
        )
        # held out: at least 480 sessions (two years of NYSE sessions is about 503)
        assert (df["timestamp"] >= start).sum() >= 480
    # a series shorter than two years (the 5-minute A-share bars) is held out entirely: never trained on
    ashare = load_source("ASHARE_5MIN")
    assert holdout_start(ashare) == ashare["timestamp"].min() and SOURCES["ASHARE_5MIN"].freq == "5min"


def test_training_store_never_holds_a_held_out_bar(tmp_path):
    import yaml

    written = build_store(str(tmp_path / "bars"))
    files = sorted((tmp_path / "bars").glob("symbol=*/part-0.parquet"))
    store = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    cfg = yaml.safe_load(CONFIG.read_text())
    assert "ASHARE_5MIN" not in set(store["symbol"]) and set(DAILY) == {"SP500", "NASDAQ", "MSFT"}
    for symbol in DAILY:
        bars = store[store["symbol"] == symbol]
        full = load_source(symbol)
        assert len(bars) == written[symbol] > 3000
        assert bars["timestamp"].max() < holdout_start(full)
        assert bars["timestamp"].max() <= pd.Timestamp(cfg["data"]["cutoff"])
        # the bars are the source's, unchanged
        merged = bars.merge(full, on="timestamp", suffixes=("", "_src"))
        assert len(merged) == len(bars)
        np.testing.assert_array_equal(merged["close"], merged["close_src"])
    synthetic = store[~store["symbol"].isin(list(SOURCES))]
    assert (
        synthetic["symbol"].nunique() == demo.SYNTHETIC["n_symbols"]
        and len(synthetic) == written["synthetic"]
    )
    # synthetic bars are training data only: they end before the validation period starts
    assert synthetic["timestamp"].max() < pd.Timestamp(cfg["data"]["val_start"])
