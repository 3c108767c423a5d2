"""The whole job on local Ray and a local folder: quarantine, no look-ahead, partition replacement,
determinism, and exactly-once forecasts after a forecast actor is killed mid-job."""

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import run_job
from pipeline.commit import partition_path, read_partition

from .conftest import AS_OF, job_config, snapshot

pytestmark = pytest.mark.timeout(300)
MODEL = "random:test"


@pytest.fixture(scope="module")
def runs(ray_local, market, tmp_path_factory):
    """Three runs into one output root: as_of 06-28, as_of 06-20, then 06-28 again with a different
    batching, two actors, and one actor killed mid-job."""
    out = str(tmp_path_factory.mktemp("pipeline_out") / "forecasts")
    first = run_job(job_config(market.url, out))
    first_rows = read_partition(out, "forecasts", AS_OF, MODEL)
    earlier = run_job(job_config(market.url, out, as_of="2024-06-20"))
    other_before = snapshot(partition_path(out, "forecasts", "2024-06-20", MODEL))
    marker = str(tmp_path_factory.mktemp("chaos") / "killed")
    again = run_job(job_config(market.url, out, compute={"concurrency": 2, "batch_size": 5},
                               chaos={"kill_actor_once_marker": marker}))
    return dict(out=out, first=first, first_rows=first_rows, earlier=earlier, again=again,
                other_before=other_before, marker=marker)


def test_counts_and_quarantine(runs, market):
    s = runs["first"]
    assert s.assets_read == 30 and s.assets_rejected == 10 and s.assets_forecast == 20
    assert s.rows_written == 20 * 4 and s.bytes_read > 0 and s.files_read == 48
    rej = read_partition(runs["out"], "rejected", AS_OF, MODEL)
    assert dict(zip(rej["symbol"], rej["reject_reason"], strict=True)) == market.broken
    fc = runs["first_rows"]
    assert set(fc["symbol"]) == set(market.healthy)
    assert not fc.duplicated(["symbol", "step"]).any() and sorted(fc["step"].unique()) == [1, 2, 3, 4]
    for col in ("open", "high", "low", "close", "volume", "amount", "close_q10", "close_q50", "close_q90", "p_up",
                "run_id", "model", "model_sha256", "tokenizer", "temperature", "top_p", "sample_count", "seed",
                "lookback", "pred_len", "code_version", "device", "dtype", "created_at", "as_of", "timestamp"):
        assert col in fc.columns, col
    assert (fc["run_id"] == s.run_id).all() and (fc["model"] == "random:test:0").all()
    assert ((fc["close_q10"] <= fc["close_q50"]) & (fc["close_q50"] <= fc["close_q90"])).all()


def test_no_look_ahead_and_calendar_future(runs, market):
    fc = read_partition(runs["out"], "forecasts", "2024-06-20", MODEL)
    assert runs["earlier"].assets_forecast > 0
    bars = pd.read_parquet(market.url)
    at = bars[bars["timestamp"] == pd.Timestamp("2024-06-20")].set_index("symbol")["close"]
    last = fc.groupby("symbol")["last_close"].first()
    np.testing.assert_allclose(last.to_numpy(), at.loc[last.index].to_numpy())
    steps = fc[fc["symbol"] == fc["symbol"].iloc[0]].sort_values("step")["timestamp"].dt.strftime("%m-%d")
    assert list(steps) == ["06-21", "06-24", "06-25", "06-26"]  # weekend skipped
    m = json.loads(Path(partition_path(runs["out"], "forecasts", "2024-06-20", MODEL), "_manifest.json").read_text())
    assert max(f["path"].split("date=")[1][:10] for f in m["input"]["files"]) == "2024-06-20"


def test_rerun_replaces_only_its_partition_after_actor_kill(runs):
    assert os.path.exists(runs["marker"]), "the chaos actor did not die"
    again = runs["again"]
    assert again.assets_forecast == 20 and again.rows_written == 80
    part = partition_path(runs["out"], "forecasts", AS_OF, MODEL)
    assert json.loads(Path(part, "_manifest.json").read_text())["run_id"] == again.run_id
    assert Path(os.path.join(part, "_SUCCESS")).read_text() == again.run_id
    fc = read_partition(runs["out"], "forecasts", AS_OF, MODEL)
    assert len(fc) == 80 and not fc.duplicated(["symbol", "step"]).any()  # exactly once
    assert snapshot(partition_path(runs["out"], "forecasts", "2024-06-20", MODEL)) == runs["other_before"]
    # same seed, same asset -> same forecast, whatever the batching, actor count or retry
    cols = ["symbol", "step", "close", "close_q50", "p_up"]
    a = runs["first_rows"][cols].sort_values(["symbol", "step"]).reset_index(drop=True)
    b = fc[cols].sort_values(["symbol", "step"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    hive = pd.read_parquet(os.path.join(runs["out"], "forecasts"))
    assert len(hive) == 80 + runs["earlier"].rows_written  # plain hive readers see committed rows only


def test_universe_file_missing_symbol_is_reported(ray_local, market, tmp_path):
    u = tmp_path / "universe.txt"
    u.write_text("S0010\nS0011\nS0000\nGHOST\n")
    s = run_job(job_config(market.url, str(tmp_path / "out"), universe={"file": str(u)}))
    assert s.assets_read == 3 and s.assets_forecast == 2
    rej = read_partition(str(tmp_path / "out"), "rejected", AS_OF, MODEL)
    assert dict(zip(rej["symbol"], rej["reject_reason"], strict=True)) == {"GHOST": "no_data", "S0000": "non_finite"}


def test_intraday_hkex_job_lunch_break_and_holiday(ray_local, tmp_path):
    """30-minute HKEX bars: forecasts skip the lunch break and the 1 July holiday."""
    from pipeline import write_synthetic_market
    from pipeline.config import CalendarConfig

    cal = {"exchange": "XHKG", "freq": "30min"}
    m = write_synthetic_market(str(tmp_path / "bars"), n_symbols=4, n_bars=80, min_bars=80, broken=False,
                               calendar=CalendarConfig(**cal), end="2024-06-28")
    s = run_job(job_config(m.url, str(tmp_path / "out"), as_of="2024-06-28 16:00", calendar=cal, pred_len=6))
    assert s.assets_forecast == 4 and s.output_url.endswith("as_of_tag=2024-06-28T16-00-00/model_tag=random-test")
    fc = read_partition(str(tmp_path / "out"), "forecasts", "2024-06-28 16:00", MODEL)
    stamps = fc[fc["symbol"] == "S0000"].sort_values("step")["timestamp"].dt.strftime("%m-%d %H:%M").tolist()
    assert stamps == ["07-02 10:00", "07-02 10:30", "07-02 11:00", "07-02 11:30", "07-02 12:00", "07-02 13:30"]
