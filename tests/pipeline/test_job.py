"""The whole job on local Ray and a local folder: quarantine, no look-ahead, partition replacement,
determinism, and exactly-once forecasts after a forecast actor is killed mid-job."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import run_job, warehouse
from pipeline import tables as T
from pipeline.forecast import ForecastActor

from .conftest import AS_OF, job_config

pytestmark = pytest.mark.timeout(300)
MODEL = "random:test"


def read_partition(out: str, table: str, as_of, model: str = MODEL):
    return T.read(warehouse(out), table, as_of, model)


def partition_files(out: str, as_of) -> dict[str, tuple[float, int]]:
    """The data files of the forecasts partition (as_of, MODEL), with mtime and size."""
    tbl = warehouse(out).load("forecasts")
    found = {}
    for task in tbl.scan(row_filter=T._partition_filter("forecasts", as_of, T.model_key(MODEL))).plan_files():
        p = task.file.file_path.removeprefix("file://")
        found[p] = (os.path.getmtime(p), os.path.getsize(p))
    return found


def dying_actor(marker: str) -> type:
    """A test-only ForecastActor whose first instance to reach its 2nd batch creates ``marker`` and kills its
    own process (os._exit), once: the fault comes from outside the production actor and config."""

    class DyingActor(ForecastActor):
        def __call__(self, batch):
            self.batches = getattr(self, "batches", 0) + 1
            if self.batches == 2:
                try:
                    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    return super().__call__(batch)
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                os._exit(1)
            return super().__call__(batch)

    return DyingActor


@pytest.fixture(scope="module")
def runs(ray_local, market, tmp_path_factory):
    """Three runs into one output root: as_of 06-28, as_of 06-20, then 06-28 again with a different
    batching, two actors, and one actor killed mid-job."""
    out = str(tmp_path_factory.mktemp("pipeline_out") / "forecasts")
    first = run_job(job_config(market.url, out))
    first_rows = read_partition(out, "forecasts", AS_OF, MODEL)
    earlier = run_job(job_config(market.url, out, as_of="2024-06-20"))
    other_before = partition_files(out, "2024-06-20")
    marker = str(tmp_path_factory.mktemp("fault") / "killed")
    again = run_job(
        job_config(market.url, out, compute={"concurrency": 2, "batch_size": 5}),
        actor_cls=dying_actor(marker),
    )
    return dict(
        out=out,
        first=first,
        first_rows=first_rows,
        earlier=earlier,
        again=again,
        other_before=other_before,
        marker=marker,
        market_broken=market.broken,
    )


def test_counts_and_quarantine(runs, market):
    s = runs["first"]
    n_bad = len(market.broken)
    assert s.assets_read == 30 and s.assets_rejected == n_bad and s.assets_forecast == 30 - n_bad
    assert s.rows_written == (30 - n_bad) * 4 and s.bytes_read > 0 and s.files_read == 48
    rej = read_partition(runs["out"], "rejected", AS_OF, MODEL)
    assert dict(zip(rej["symbol"], rej["reject_reason"], strict=True)) == market.broken
    fc = runs["first_rows"]
    assert set(fc["symbol"]) == set(market.healthy)
    assert not fc.duplicated(["symbol", "step"]).any() and sorted(fc["step"].unique()) == [1, 2, 3, 4]
    for col in (
        "open",
        "high",
        "low",
        "close",
        "volume",
        "amount",
        "close_q10",
        "close_q50",
        "close_q90",
        "p_up",
        "run_id",
        "model",
        "model_sha256",
        "tokenizer",
        "temperature",
        "top_p",
        "sample_count",
        "seed",
        "lookback",
        "pred_len",
        "code_version",
        "device",
        "dtype",
        "created_at",
        "as_of",
        "timestamp",
    ):
        assert col in fc.columns, col
    assert (fc["run_id"] == s.run_id).all() and (fc["model"] == "random:test:0").all()
    assert ((fc["close_q10"] <= fc["close_q50"]) & (fc["close_q50"] <= fc["close_q90"])).all()
    assert {"p_flat", "flags", "lag_bars"} <= set(fc.columns) and (fc["p_up"] + fc["p_flat"] <= 1).all()
    assert (
        rej.loc[
            rej["symbol"] == next(k for k, v in market.broken.items() if v == "price_jump"), "reject_reason"
        ].item()
        == "price_jump"
    )  # the 1e6x bar is quarantined, not forecast


def test_every_step_is_a_bar_after_as_of_even_for_a_lagged_asset(runs, market):
    """Regression: an asset one session late had its step-1 row stamped on as_of itself."""
    fc = runs["first_rows"]
    late = market.lagged[0]
    assert fc.loc[fc["symbol"] == late, "lag_bars"].unique().tolist() == [1]
    assert runs["first"].assets_lagged == 1 and set(fc.loc[fc["symbol"] != late, "lag_bars"]) == {0}
    stamps = fc.pivot(index="symbol", columns="step", values="timestamp")
    assert (stamps.nunique() == 1).all()  # step k has one date across every asset
    assert stamps[1].iloc[0] == pd.Timestamp("2024-07-01")  # the first session after as_of 2024-06-28


def test_no_look_ahead_and_calendar_future(runs, market):
    fc = read_partition(runs["out"], "forecasts", "2024-06-20", MODEL)
    assert runs["earlier"].assets_forecast > 0
    bars = pd.read_parquet(market.url)
    at = bars[bars["timestamp"] == pd.Timestamp("2024-06-20")].set_index("symbol")["close"]
    last = fc.groupby("symbol")["last_close"].first()
    np.testing.assert_allclose(last.to_numpy(), at.loc[last.index].to_numpy())
    steps = fc[fc["symbol"] == fc["symbol"].iloc[0]].sort_values("step")["timestamp"].dt.strftime("%m-%d")
    assert list(steps) == ["06-21", "06-24", "06-25", "06-26"]  # weekend skipped
    m = T.run_record(warehouse(runs["out"]), runs["earlier"].run_id)
    assert max(f["path"].split("date=")[1][:10] for f in m["input"]["files"]) == "2024-06-20"
    assert m["config"]["as_of"].startswith("2024-06-20") and m["counts"]["assets_forecast"] > 0


def test_rerun_replaces_only_its_partition_after_actor_kill(runs):
    assert os.path.exists(runs["marker"]), "the test actor did not die"
    again = runs["again"]
    n_ok = 30 - len(runs["market_broken"])
    assert again.assets_forecast == n_ok and again.rows_written == n_ok * 4
    wh = warehouse(runs["out"])
    assert T.run_record(wh, again.run_id)["snapshot_id"] == again.snapshot_id
    assert wh.load("forecasts").current_snapshot().snapshot_id == again.snapshot_id
    fc = read_partition(runs["out"], "forecasts", AS_OF, MODEL)
    assert len(fc) == n_ok * 4 and not fc.duplicated(["symbol", "step"]).any()  # exactly once
    assert set(fc["run_id"]) == {again.run_id}
    assert partition_files(runs["out"], "2024-06-20") == runs["other_before"]  # untouched
    # same seed, same asset -> same forecast, whatever the batching, actor count or retry
    cols = ["symbol", "step", "close", "close_q50", "p_up"]
    a = runs["first_rows"][cols].sort_values(["symbol", "step"]).reset_index(drop=True)
    b = fc[cols].sort_values(["symbol", "step"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=True)  # bit for bit: batch-invariant generation
    everything = T.read(wh, "forecasts")
    assert len(everything) == n_ok * 4 + runs["earlier"].rows_written
    # the first run's partition is still there for audit, as the first run left it
    then = T.read(wh, "forecasts", AS_OF, MODEL, run_id=runs["first"].run_id)
    assert set(then["run_id"]) == {runs["first"].run_id} and len(then) == n_ok * 4


@pytest.mark.parametrize(
    "stream, shards", [(False, None), (True, 0), (True, 3)], ids=["barrier", "group-by", "3-shards"]
)
def test_read_paths_and_barrier_give_the_same_tables(runs, market, tmp_path, stream, shards):
    """Every way through stage 1 gives the default run's forecasts and rejects: ``stream=False`` (assets
    materialised before the actors start, what the job does when no CPU is left beside the actors), the
    group-by read (Ray's shuffle, used for large windows) and several shard read tasks."""
    assert runs["first"].streamed and runs["first"].read_shards == 1  # the defaults for this small window
    out = str(tmp_path / "other")
    s = run_job(job_config(market.url, out, compute={"read_shards": shards}), stream=stream)
    assert s.streamed == stream and ("read_validate" in s.stage_s) == (not stream)
    assert s.read_shards == (1 if shards is None else shards)
    cols = ["symbol", "step", "timestamp", "close", "close_q10", "close_q90", "p_up", "lag_bars"]
    got = read_partition(out, "forecasts", AS_OF)[cols]
    pd.testing.assert_frame_equal(runs["first_rows"][cols], got, check_exact=True)
    a = read_partition(runs["out"], "rejected", AS_OF).set_index("symbol")["reject_reason"]
    b = read_partition(out, "rejected", AS_OF).set_index("symbol")["reject_reason"]
    pd.testing.assert_series_equal(a.sort_index(), b.sort_index())


def test_universe_file_missing_symbol_and_empty_symbol_are_reported(ray_local, tmp_path):
    """Regression: with a universe file, rows whose symbol is the empty string disappeared from both the
    forecasts and the rejected table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline import write_synthetic_market
    from pipeline.synthetic import BARS_SCHEMA

    m = write_synthetic_market(str(tmp_path / "bars"), n_symbols=14, n_bars=90, end=AS_OF, seed=5)
    last = pq.read_table(Path(m.url, f"date={AS_OF}", "part-0.parquet"))
    nameless = last.slice(0, 2).set_column(0, "symbol", pa.array(["", None], pa.string())).cast(BARS_SCHEMA)
    pq.write_table(nameless, Path(m.url, f"date={AS_OF}", "part-1.parquet"))
    u = tmp_path / "universe.txt"
    u.write_text("S0012\nS0013\nS0000\nGHOST\n")
    s = run_job(job_config(m.url, str(tmp_path / "out"), universe={"file": str(u)}))
    assert s.assets_read == 4 and s.assets_forecast == 2
    rej = read_partition(str(tmp_path / "out"), "rejected", AS_OF, MODEL)
    got = dict(zip(rej["symbol"], rej["reject_reason"], strict=True))
    assert got == {
        "GHOST": "no_data",
        "S0000": "non_finite",
        "": "empty_symbol;too_short;duplicate_timestamps",
    }


def test_run_below_min_forecast_share_fails_and_publishes_nothing(ray_local, tmp_path, capsys):
    """Regression (issue 15): a run that forecast no asset (as_of ten sessions into the data, every asset too
    short for min_history) ended green and replaced its partition with an empty one. Below
    ``validation.min_forecast_share`` run_job and kronos-batch fail with the reasons and commit nothing."""
    from pipeline import CoverageError, write_synthetic_market
    from pipeline.cli import main

    m = write_synthetic_market(
        str(tmp_path / "bars"), n_symbols=6, n_bars=60, min_bars=60, broken=False, end=AS_OF, seed=2
    )
    out = str(tmp_path / "out")
    good = run_job(job_config(m.url, out))
    wh = warehouse(out)

    def tables_state():  # the snapshot ids of each output table (None: no such table)
        tables = {t: wh.load(t) for t in ("forecasts", "rejected")}
        return {t: tbl and [s.snapshot_id for s in tbl.metadata.snapshots] for t, tbl in tables.items()}

    before, files_before = tables_state(), partition_files(out, AS_OF)
    early = sorted(p.name.removeprefix("date=") for p in Path(m.url).glob("date=*"))[9]  # the 10th session
    with pytest.raises(CoverageError) as failed:
        run_job(job_config(m.url, out, as_of=early))
    msg = str(failed.value)
    assert f"as_of {early}" in msg and "forecast 0 of 6 assets (0.0% of the symbols read)" in msg
    assert "validation.min_forecast_share=0.5" in msg and "too_short 6 (S0000, S0001, S0002, ...)" in msg
    s = failed.value.summary
    assert (s.assets_read, s.assets_forecast, s.snapshot_id) == (6, 0, None)
    assert failed.value.rejected.num_rows == 6
    # kronos-batch gets the same protection (exit 1, the reasons), here at the good run's as_of with a
    # listed universe: listed symbols missing from the input count as not forecast
    cfg = tmp_path / "job.yaml"
    cfg.write_text(job_config(m.url, out).model_dump_json())
    ghosts = [f"G{i}" for i in range(7)]
    assert (
        main(["--config", str(cfg), "--set", f"universe.symbols={m.symbols + ghosts}", "--no-progress"]) == 1
    )
    err = capsys.readouterr().err
    assert "job failed: CoverageError" in err and "6 of 13 assets (46.2% of the listed universe)" in err
    assert "no_data 7 (G0, G1, G2, ...)" in err
    # nothing published: no snapshot added to either table, the good partition's files untouched
    assert tables_state() == before and partition_files(out, AS_OF) == files_before
    assert T.list_runs(wh)["run_id"].tolist() == [good.run_id]
    assert T.partitions(wh)["as_of"].tolist() == [pd.Timestamp(AS_OF)]
    assert set(read_partition(out, "forecasts", AS_OF)["run_id"]) == {good.run_id}


def test_intraday_hkex_job_lunch_break_and_holiday(ray_local, tmp_path):
    """30-minute HKEX bars: forecasts skip the lunch break and the 1 July holiday."""
    from kronos_core import MarketCalendar
    from pipeline import write_synthetic_market

    cal = {"name": "XHKG", "freq": "30min"}
    m = write_synthetic_market(
        str(tmp_path / "bars"),
        n_symbols=4,
        n_bars=80,
        min_bars=80,
        broken=False,
        calendar=MarketCalendar(**cal),
        end="2024-06-28",
    )
    s = run_job(job_config(m.url, str(tmp_path / "out"), as_of="2024-06-28 16:00", calendar=cal, pred_len=6))
    assert s.assets_forecast == 4 and s.model == "random:test:0" and s.snapshot_id is not None
    fc = read_partition(str(tmp_path / "out"), "forecasts", "2024-06-28 16:00", MODEL)
    stamps = fc[fc["symbol"] == "S0000"].sort_values("step")["timestamp"].dt.strftime("%m-%d %H:%M").tolist()
    assert stamps == [
        "07-02 10:00",
        "07-02 10:30",
        "07-02 11:00",
        "07-02 11:30",
        "07-02 12:00",
        "07-02 13:30",
    ]


@pytest.mark.parametrize(
    "cal,as_of,expected",
    [
        # hourly EURUSD-like bars (UTC stamps): Friday's last bar closes 21:00 UTC, the week reopens Sun 22:00
        (
            {"name": "FX", "freq": "1h"},
            "2024-06-28 21:00",
            ["06-30 22:00", "06-30 23:00", "07-01 00:00", "07-01 01:00"],
        ),
        # monthly BTC-like bars on a 24/7 calendar, stamped on the 1st
        (
            {"name": "24/7", "freq": "1mo"},
            "2024-06-01",
            ["07-01 00:00", "08-01 00:00", "09-01 00:00", "10-01 00:00"],
        ),
    ],
)
def test_fx_hourly_and_monthly_crypto_jobs(ray_local, tmp_path, cal, as_of, expected):
    """Regression: hourly FX on a fixed grid was rejected for gaps (weekends) or forecast into the weekend
    closure; no monthly frequency existed."""
    from kronos_core import MarketCalendar
    from pipeline import write_synthetic_market

    m = write_synthetic_market(
        str(tmp_path / "bars"),
        n_symbols=3,
        n_bars=60,
        min_bars=60,
        broken=False,
        calendar=MarketCalendar(**cal),
        end=as_of,
    )
    s = run_job(job_config(m.url, str(tmp_path / "out"), as_of=as_of, calendar=cal, pred_len=4))
    assert s.assets_forecast == 3 and s.assets_rejected == 0
    fc = read_partition(str(tmp_path / "out"), "forecasts", as_of, MODEL)
    stamps = fc[fc["symbol"] == "S0000"].sort_values("step")["timestamp"].dt.strftime("%m-%d %H:%M").tolist()
    assert stamps == expected


def test_read_shards_rule():
    """Shard reads (no shuffle) for windows up to SHARD_READ_MAX_ROWS planned rows, one task per million
    rows up to four; the group-by read above; an explicit ``compute.read_shards`` wins."""
    from pipeline.config import ComputeConfig
    from pipeline.job import SHARD_READ_MAX_ROWS, read_shards

    auto = ComputeConfig()
    assert [read_shards(auto, n) for n in (0, 30_000, 1_000_001, 2_500_000)] == [1, 1, 2, 3]
    assert read_shards(auto, SHARD_READ_MAX_ROWS) == 4 and read_shards(auto, SHARD_READ_MAX_ROWS + 1) == 0
    assert read_shards(ComputeConfig(read_shards=0), 10) == 0
    assert read_shards(ComputeConfig(read_shards=6), 10**9) == 6
