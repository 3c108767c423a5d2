"""Training data: the job's read plan and rules, windows normalised over their lookback only, a time split
without leakage, nothing after the cutoff read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline import write_synthetic_market
from pipeline.config import StorageConfig
from pipeline.read import read_bars
from tests.training.conftest import CUTOFF, END, VAL_START, train_config
from training import TrainConfig
from training.data import build_windows, window_id

FIELDS = ["open", "high", "low", "close", "volume", "amount"]


def _windows(ds) -> pd.DataFrame:
    df = ds.to_pandas()
    df["x"] = list(np.stack(df["x"].to_numpy()))
    return df


def _bars(url, layout="date") -> pd.DataFrame:
    return read_bars(url, layout, StorageConfig(), pd.Timestamp("1990-01-01"), pd.Timestamp(END))


def test_windows_split_and_normalisation_match_an_independent_cut(ray_local, train_market, tmp_path):
    cfg = TrainConfig.model_validate(train_config(train_market.url, str(tmp_path / "out")))
    data = build_windows(cfg)
    train, val = _windows(data.train), _windows(data.val)
    L, H = cfg.windows.lookback, cfg.windows.pred_len
    cutoff, val_start = pd.Timestamp(CUTOFF), pd.Timestamp(VAL_START)

    # the same cut, written independently from the raw bars (stride 2, every window up to the cutoff)
    bars = _bars(train_market.url)
    bars = bars[bars["timestamp"] <= cutoff].sort_values(["symbol", "timestamp"])
    expect = {"train": {}, "val": {}, "straddle": {}}
    for sym, g in bars.groupby("symbol"):
        ts, vals = g["timestamp"].to_numpy(), g[FIELDS].to_numpy(np.float32)
        for s in range(0, len(g) - (L + H) + 1, 2):
            split = (
                "train" if ts[s + L + H - 1] < val_start else "val" if ts[s + L] >= val_start else "straddle"
            )
            win, past = vals[s : s + L + H], vals[s : s + L]
            x = np.clip((win - past.mean(0)) / (past.std(0) + 1e-5), -5, 5)
            leaky = np.clip((win - win.mean(0)) / (win.std(0) + 1e-5), -5, 5)  # statistics see the future
            expect[split][window_id(sym, int(pd.Timestamp(ts[s]).value))] = (x, leaky)

    assert set(train["window_id"]) == set(expect["train"]) and len(train) == len(expect["train"])
    assert set(val["window_id"]) == set(expect["val"]) and len(val) == len(expect["val"])
    assert data.windows_straddling == len(expect["straddle"]) > 0
    # no leakage: a training window ends before val_start; a validation window forecasts from it on
    assert (train["end"] < val_start).all() and (val["forecast_start"] >= val_start).all()
    assert not set(train["window_id"]) & set(val["window_id"])
    # nothing after the cutoff
    assert val["end"].max() <= cutoff
    # normalised over the lookback part only (upstream #234): the forecast bars never move the statistics
    # (float32 sums in another order differ by ~2e-5; look-ahead statistics differ by far more)
    for df, split in ((train, "train"), (val, "val")):
        for wid, x in zip(df["window_id"], df["x"], strict=True):
            good, leaky = expect[split][wid]
            np.testing.assert_allclose(x, good, rtol=0, atol=1e-4)
            assert np.abs(x - leaky).max() > 1e-2
    # streamed in window_id order; the ids the loop shards by are the dataset's
    assert list(train["window_id"]) == sorted(train["window_id"]) == list(data.train_ids)
    assert data.assets_used == 16 and data.rejected.empty
    assert data.bars_used == len(bars)


def test_nothing_after_the_cutoff_is_read(ray_local, tmp_path):
    """Every partition after the cutoff is replaced by garbage bytes and, in the symbol layout, every row
    after it gets a negative price: reading any of them would fail the run or reject the asset."""
    cutoff = pd.Timestamp(CUTOFF)
    date_mkt = write_synthetic_market(
        str(tmp_path / "by_date"), n_symbols=6, n_bars=100, end=END, broken=False, seed=2
    )
    poisoned = 0
    for p in sorted((tmp_path / "by_date").glob("date=*")):
        if pd.Timestamp(p.name.split("=")[1]) > cutoff:
            (p / "part-0.parquet").write_bytes(b"not parquet at all")
            poisoned += 1
    sym_mkt = write_synthetic_market(
        str(tmp_path / "by_symbol"), n_symbols=6, n_bars=100, end=END, broken=False, seed=2, layout="symbol"
    )
    for f in (tmp_path / "by_symbol").glob("symbol=*/part-0.parquet"):
        t = pq.read_table(f).to_pandas()
        after = t["timestamp"] > cutoff
        assert after.any()
        t.loc[after, ["open", "high", "low", "close"]] = -1.0
        pq.write_table(pq.read_table(f).from_pandas(t, preserve_index=False), f, row_group_size=4096)
    assert poisoned >= 4
    results = []
    for mkt, layout in ((date_mkt, "date"), (sym_mkt, "symbol")):
        cfg = TrainConfig.model_validate(
            train_config(
                mkt.url,
                str(tmp_path / "out"),
                data={
                    "input": {"url": mkt.url, "layout": layout},
                    "cutoff": CUTOFF,
                    "val_start": VAL_START,
                    "validation": {"min_history": 24},
                },
            )
        )
        data = build_windows(cfg)
        assert data.assets_used == 6 and data.rejected.empty, data.reject_reasons
        assert pd.Timestamp(data.last_bar) <= cutoff
        assert _windows(data.val)["end"].max() <= cutoff
        results.append((sorted(data.train_ids), sorted(data.val_ids), data.bars_used))
    # both layouts saw the same bars and cut the same windows
    assert results[0] == results[1]


def test_invalid_assets_are_quarantined_with_the_jobs_reasons(ray_local, tmp_path):
    """The shared candle rules reject each broken kind with the job's reason; healthy assets still train.
    ``stale`` does not apply to training (a delisted asset's history is still good data)."""
    from pipeline.synthetic import BROKEN_KINDS

    mkt = write_synthetic_market(str(tmp_path / "bars"), n_symbols=16, n_bars=100, end=END, seed=4)
    cfg = TrainConfig.model_validate(
        train_config(
            mkt.url,
            str(tmp_path / "out"),
            data={
                "input": {"url": mkt.url},
                "cutoff": END,
                "val_start": VAL_START,
                "validation": {"min_history": 24},
            },
        )
    )
    data = build_windows(cfg)
    got = dict(zip(data.rejected["symbol"], data.rejected["reject_reason"], strict=True))
    want = {s: r for s, r in mkt.broken.items() if r != BROKEN_KINDS["stale"]}
    assert {s: got.get(s, "").split(";")[0] for s in want} == want
    assert set(got) == set(want)
    assert data.assets_used == 16 - len(want)
    assert data.bars_rejected == int(data.rejected["n_bars"].sum()) > 0
    assert sum(data.reject_reasons.values()) >= len(want)
    symbols_used = set(_windows(data.train)["symbol"]) | set(_windows(data.val)["symbol"])
    assert not symbols_used & set(want)


def test_config_errors_name_the_field_and_the_fix(tmp_path):
    base = train_config("/nowhere", str(tmp_path / "out"))
    with pytest.raises(ValueError, match=r"val_start .* must be before data.cutoff"):
        TrainConfig.model_validate({**base, "data": {**base["data"], "val_start": "2024-07-01"}})
    with pytest.raises(ValueError, match="both stages are disabled"):
        TrainConfig.model_validate({**base, "predictor": {"enabled": False}})
    with pytest.raises(ValueError, match="divisible by accumulation_steps"):
        TrainConfig.model_validate({**base, "predictor": {"batch_size": 10, "accumulation_steps": 3}})
    with pytest.raises(ValueError, match="extra"):
        TrainConfig.model_validate({**base, "epochs": 3})
    with pytest.raises(ValueError, match="cutoff must be a date"):
        TrainConfig.model_validate({**base, "data": {**base["data"], "cutoff": "yesterday-ish"}})
