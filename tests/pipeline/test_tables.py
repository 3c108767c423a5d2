"""The output tables as Iceberg tables (no Ray): one commit per partition replacement, other partitions
untouched, run records and time travel, racing runs, a polling reader, a killed writer, maintenance, and
readers that use no project code."""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from pipeline import tables as T
from pipeline.tables import ConcurrentCommitError, warehouse

MODEL = "random:test:0"
pytestmark = pytest.mark.timeout(300)


def rows(as_of: str, run_id: str, value: float, n: int = 3, model: str = MODEL, **extra) -> pa.Table:
    cols = {
        "symbol": pa.array([f"S{i:02d}" for i in range(n)]),
        "as_of": pa.array([pd.Timestamp(as_of)] * n, pa.timestamp("ns")),
        "model": pa.array([model] * n),
        "step": pa.array([1] * n, pa.int32()),
        "close": pa.array([value] * n),
        "run_id": pa.array([run_id] * n),
        "top_k": pa.nulls(n),  # an all-null lineage value must not break the schema
    }
    for k, v in extra.items():
        cols[k] = pa.array([v] * n)
    return pa.table(cols)


def publish(wh, as_of, run_id, value, n=3, **extra):
    record = {"run_id": run_id, "as_of": as_of, "model": MODEL, "counts": {"rows": n}}
    return T.publish(wh, "forecasts", rows(as_of, run_id, value, n, **extra), as_of, MODEL, record)


def files_of(tbl, as_of) -> dict[str, tuple[float, int]]:
    tbl.refresh()
    out = {}
    for task in tbl.scan(row_filter=T._partition_filter("forecasts", as_of, MODEL)).plan_files():
        p = task.file.file_path.removeprefix("file://")
        out[p] = (os.path.getmtime(p), os.path.getsize(p))
    return out


def metadata_files(root: Path) -> list[Path]:
    return sorted((root / "kronos" / "forecasts" / "metadata").glob("*.metadata.json"))


def test_rerun_replaces_its_partition_in_one_commit_and_leaves_the_others(tmp_path):
    wh = warehouse(str(tmp_path / "out"))
    publish(wh, "2024-06-27", "r1", 1.0)
    s2 = publish(wh, "2024-06-28", "r2", 2.0)
    tbl = wh.load("forecasts")
    other = files_of(tbl, "2024-06-27")
    before = len(metadata_files(tmp_path / "out"))
    s3 = publish(wh, "2024-06-28", "r3", 3.0, n=4)
    # one catalog commit (one new metadata file) moved the table from r2's partition to r3's
    assert len(metadata_files(tmp_path / "out")) == before + 1 and s3 != s2
    now = T.read(wh, "forecasts", "2024-06-28", "random:test")  # the reference, as a user passes it
    assert now["run_id"].unique().tolist() == ["r3"] and len(now) == 4 and (now["close"] == 3.0).all()
    assert files_of(tbl, "2024-06-27") == other  # the other partition's data files are untouched
    everything = T.read(wh, "forecasts")
    assert sorted(everything.groupby("run_id").size().items()) == [("r1", 3), ("r3", 4)]
    # runs, their records and the table as each run left it
    runs = T.list_runs(wh)
    assert runs["run_id"].tolist() == ["r1", "r2", "r3"] and runs["snapshot_id"].iloc[-1] == s3
    rec = T.run_record(wh, "r3")
    assert rec["snapshot_id"] == s3 and rec["counts"] == {"rows": 4} and rec["as_of"] == "2024-06-28"
    then = T.read(wh, "forecasts", "2024-06-28", MODEL, run_id="r2")
    assert then["run_id"].unique().tolist() == ["r2"] and len(then) == 3
    with pytest.raises(KeyError, match="run 'nope' has no snapshot.*'r3'"):
        T.read(wh, "forecasts", run_id="nope")


def test_a_run_with_nothing_to_publish_empties_only_its_partition(tmp_path):
    wh = warehouse(str(tmp_path / "out"))
    publish(wh, "2024-06-27", "keep", 1.0)
    publish(wh, "2024-06-28", "old", 2.0)
    tbl = wh.load("forecasts")
    snap = T.overwrite_partition(tbl, "forecasts", "2024-06-28", MODEL, [], {"kronos.run_id": "empty"})
    assert T.read(wh, "forecasts", "2024-06-28", MODEL).empty
    assert T.read(wh, "forecasts")["run_id"].unique().tolist() == ["keep"]
    assert T.run_record(wh, "empty")["snapshot_id"] == snap.snapshot_id


def test_a_new_column_widens_the_schema_and_old_rows_read_as_null(tmp_path):
    wh = warehouse(str(tmp_path / "out"))
    publish(wh, "2024-06-27", "r1", 1.0)
    publish(wh, "2024-06-28", "r2", 2.0, close_q95=2.5)
    df = T.read(wh, "forecasts")
    assert df.loc[df["run_id"] == "r2", "close_q95"].eq(2.5).all()
    assert df.loc[df["run_id"] == "r1", "close_q95"].isna().all()
    assert df["top_k"].isna().all()  # an all-null column is stored (as a string column), not refused


def test_a_run_racing_on_the_same_partition_fails_cleanly_and_other_partitions_both_land(tmp_path):
    wh = warehouse(str(tmp_path / "out"))
    publish(wh, "2024-06-28", "r0", 0.0)
    # two runs load the table before either commits (both started from r0's snapshot)
    a, b, c = wh.load("forecasts"), wh.load("forecasts"), wh.load("forecasts")
    fa = T.data_files_of(
        T.write_data_files(rows("2024-06-28", "A", 1.0), a.metadata, a.io.properties, "forecasts")
    )
    fb = T.data_files_of(
        T.write_data_files(rows("2024-06-28", "B", 2.0), b.metadata, b.io.properties, "forecasts")
    )
    fc = T.data_files_of(
        T.write_data_files(rows("2024-06-27", "C", 3.0), c.metadata, c.io.properties, "forecasts")
    )
    T.overwrite_partition(a, "forecasts", "2024-06-28", MODEL, fa, {"kronos.run_id": "A"})
    with pytest.raises(ConcurrentCommitError, match="committed by another run while run 'B'.*Re-run"):
        T.overwrite_partition(b, "forecasts", "2024-06-28", MODEL, fb, {"kronos.run_id": "B"})
    # a run of another partition lost the race for the table's head too: PyIceberg retried it and it landed
    T.overwrite_partition(c, "forecasts", "2024-06-27", MODEL, fc, {"kronos.run_id": "C"})
    df = T.read(wh, "forecasts")
    assert df.groupby("as_of")["run_id"].unique().map(list).to_dict() == {
        pd.Timestamp("2024-06-27"): ["C"],
        pd.Timestamp("2024-06-28"): ["A"],
    }


def _commit_in_process(
    out: str, as_of: str, run_id: str, value: float, go, n: int, catalog: dict | None = None
) -> str:
    wh = warehouse(out, catalog)
    tbl = wh.load("forecasts")
    files = T.data_files_of(
        T.write_data_files(rows(as_of, run_id, value, n), tbl.metadata, tbl.io.properties, "forecasts")
    )
    go.wait()
    try:
        T.overwrite_partition(tbl, "forecasts", as_of, MODEL, files, {"kronos.run_id": run_id})
        return "committed"
    except ConcurrentCommitError:
        return "refused"


def test_runs_in_separate_processes_never_mix_a_partition(tmp_path, catalog=None):
    """Four processes commit at once: two to one partition, two to others (also run by the PostgreSQL
    catalog test in the slow tier)."""
    out = str(tmp_path / "out")
    wh = warehouse(out, catalog)
    publish(wh, "2024-06-28", "r0", 0.0)
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        go = manager.Event()
        jobs = [
            ("2024-06-28", "P1", 1.0, 5),
            ("2024-06-28", "P2", 2.0, 7),
            ("2024-06-27", "Q1", 3.0, 4),
            ("2024-06-26", "Q2", 4.0, 6),
        ]
        with ctx.Pool(4) as pool:
            pending = [pool.apply_async(_commit_in_process, (out, *j[:3], go, j[3], catalog)) for j in jobs]
            time.sleep(3.0)
            go.set()
            outcome = dict(zip([j[1] for j in jobs], [p.get(120) for p in pending], strict=True))
    assert outcome["Q1"] == outcome["Q2"] == "committed"  # different partitions: both land
    assert "committed" in (outcome["P1"], outcome["P2"])
    df = T.read(wh, "forecasts")
    same = df[df["as_of"] == pd.Timestamp("2024-06-28")]
    assert same["run_id"].nunique() == 1  # never a mixed partition
    winner = same["run_id"].iloc[0]
    assert outcome[winner] == "committed" and len(same) == {"P1": 5, "P2": 7}[winner]
    assert set(df["run_id"]) == {winner, "Q1", "Q2"}


def test_a_polling_reader_only_ever_sees_complete_snapshots(tmp_path):
    """The experiment from the issue, as a test: a reader polls the current snapshot while runs commit."""
    wh = warehouse(str(tmp_path / "out"))
    publish(wh, "2024-06-27", "other", 9.0, n=5)
    sizes = {f"run{i}": 3 + i for i in range(8)}
    seen, stop = [], threading.Event()

    def poll():
        reader = warehouse(str(tmp_path / "out"))
        while not stop.is_set():
            df = T.read(reader, "forecasts")
            seen.append((df.groupby("run_id").size().to_dict(), len(df)))

    thread = threading.Thread(target=poll)
    thread.start()
    try:
        for run_id, n in sizes.items():
            publish(wh, "2024-06-28", run_id, 1.0, n=n)
    finally:
        stop.set()
        thread.join(60)
    assert len(seen) >= 5, "the reader hardly ran"
    for counts, _total in seen:
        assert counts.get("other") == 5  # the other partition is always there, whole
        runs = [r for r in counts if r != "other"]
        assert len(runs) <= 1, f"a mixed partition: {counts}"
        if runs:  # one run's partition, complete
            assert counts[runs[0]] == sizes[runs[0]], counts


KILLED_WRITER = """
import os, sys
import pandas as pd, pyarrow as pa
from pipeline import tables as T
wh = T.warehouse(sys.argv[1])
tbl = wh.load("forecasts")
n = 4
t = pa.table({"symbol": [f"K{i}" for i in range(n)], "as_of": pa.array([pd.Timestamp("2024-06-28")] * n,
    pa.timestamp("ns")), "model": [sys.argv[2]] * n, "step": pa.array([1] * n, pa.int32()),
    "close": [7.0] * n, "run_id": ["killed"] * n})
T.write_data_files(t, tbl.metadata, tbl.io.properties, "forecasts")
os._exit(9)  # killed after writing its data files, before the commit
"""


def test_a_writer_killed_before_its_commit_changes_nothing_and_maintenance_cleans_up(tmp_path):
    out = tmp_path / "out"
    wh = warehouse(str(out))
    publish(wh, "2024-06-28", "good", 1.0)
    publish(wh, "2024-06-27", "old", 2.0)
    publish(wh, "2024-06-27", "new", 3.0)
    before = T.read(wh, "forecasts")
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(out), MODEL], capture_output=True, text=True
    )
    assert proc.returncode == 9, proc.stderr
    data = out / "kronos" / "forecasts" / "data"
    orphans = [p for p in data.rglob("*.parquet") if str(p) not in T.referenced_files(wh.load("forecasts"))]
    # only the killed run's file: the file "new" replaced is still referenced by the older snapshots
    assert len(orphans) == 1
    pd.testing.assert_frame_equal(T.read(wh, "forecasts"), before)  # the table is at its previous snapshot
    tbl = wh.load("forecasts")
    # a recent orphan may belong to a write in flight: left alone
    assert T.remove_orphan_files(wh, tbl, older_than=dt.datetime.now() - dt.timedelta(hours=1)) == []
    later = dt.datetime.now() + dt.timedelta(seconds=1)
    removed = T.remove_orphan_files(wh, tbl, older_than=later)
    killed = [p for p in removed if p.endswith(".parquet")]
    assert killed == [str(orphans[0])]
    then = T.read(wh, "forecasts", run_id="old")  # time travel still works before expiry
    assert sorted(then["run_id"]) == ["good"] * 3 + ["old"] * 3
    # expiring the old snapshots frees the replaced file too; the current data stays readable
    expired = T.expire_snapshots(tbl, later)
    assert len(expired) == 3
    removed = [p for p in T.remove_orphan_files(wh, tbl, older_than=later) if p.endswith(".parquet")]
    assert len(removed) == 1 and not Path(removed[0]).exists()
    pd.testing.assert_frame_equal(T.read(wh, "forecasts"), before)
    assert sorted(p.name for p in data.rglob("*.parquet")) == sorted(
        Path(f.removeprefix("file://")).name
        for f in files_of(tbl, "2024-06-27") | files_of(tbl, "2024-06-28")
    )
    with pytest.raises(KeyError, match="expired"):
        T.read(wh, "forecasts", run_id="old")


def test_compaction_rewrites_many_small_files_as_one_with_the_same_rows(tmp_path):
    wh = warehouse(str(tmp_path / "out"))
    tbl = T.prepare_table(wh, "forecasts", rows("2024-06-28", "r", 1.0).schema)
    parts = [
        rows("2024-06-28", "r", float(i), n=2).set_column(0, "symbol", pa.array([f"S{i}a", f"S{i}b"]))
        for i in range(3)
    ]
    files = [
        f
        for p in parts
        for f in T.data_files_of(T.write_data_files(p, tbl.metadata, tbl.io.properties, "forecasts"))
    ]
    T.overwrite_partition(tbl, "forecasts", "2024-06-28", MODEL, files, {"kronos.run_id": "r"})
    publish(wh, "2024-06-27", "single", 5.0)
    before = T.read(wh, "forecasts")
    assert len(files_of(tbl, "2024-06-28")) == 3
    done = T.compact(tbl, "forecasts")
    assert [(d["files_before"], d["files_after"], d["rows"]) for d in done] == [(3, 1, 6)]
    assert len(files_of(tbl, "2024-06-28")) == 1 and len(files_of(tbl, "2024-06-27")) == 1
    pd.testing.assert_frame_equal(T.read(wh, "forecasts"), before)
    assert T.list_runs(wh)["run_id"].tolist() == ["r", "single"]  # compaction is not a run


DUCKDB_READER = """
import sys
import duckdb
from pyiceberg.catalog import load_catalog
out = sys.argv[1]
cat = load_catalog("kronos", type="sql", uri=f"sqlite:///{out}/catalog.db", warehouse=f"file://{out}")
arrow = cat.load_table("kronos.forecasts").scan().to_arrow()
con = duckdb.connect()
con.register("forecasts", arrow)
q = "select run_id, count(*) as n, max(close) from forecasts group by run_id order by run_id"
print(con.sql(q).fetchall())
import polars as pl
tbl = cat.load_table("kronos.forecasts")
lazy = pl.scan_iceberg(tbl).group_by("run_id").agg(pl.len().alias("n")).sort("run_id")
print(lazy.collect().rows(), pl.from_arrow(arrow).height, len(tbl.scan().to_pandas()))
"""


def test_duckdb_polars_and_pandas_read_the_tables_with_no_project_code(tmp_path):
    pytest.importorskip("duckdb")
    pytest.importorskip("polars")
    out = tmp_path / "out"
    wh = warehouse(str(out))
    publish(wh, "2024-06-27", "a", 1.0)
    publish(wh, "2024-06-28", "b", 2.0, n=4)
    publish(wh, "2024-06-28", "c", 3.0, n=2)  # replaces b
    proc = subprocess.run(
        [sys.executable, "-c", DUCKDB_READER, str(out)], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    duck, rest = proc.stdout.strip().splitlines()
    assert duck == "[('a', 3, 1.0), ('c', 2, 3.0)]"
    assert rest == "[('a', 3), ('c', 2)] 5 5"


def test_catalog_settings_are_checked_with_a_clear_message(tmp_path):
    with pytest.raises(ValueError, match="s3:// warehouse.*output.catalog.properties"):
        warehouse("s3://bucket/out").catalog()
    with pytest.raises(ValueError, match="unknown table 'forecast'"):
        warehouse(str(tmp_path)).identifier("forecast")
    assert T.model_key("demo") == "demo:daily" and T.model_key("random:mini") == "random:mini:0"
    assert T.read(warehouse(str(tmp_path / "empty")), "forecasts").empty


def test_partitions_come_from_metadata_alone_and_equal_a_scan(tmp_path):
    """``partitions`` (what the nightly scores and the explorer lists) reads the table's metadata, not its
    rows: with every data file moved away it gives the same answer; files that span two as_of values (intraday
    runs compacted together) fall back to scanning, with the same answer."""
    wh = warehouse(str(tmp_path / "out"))
    assert T.partitions(wh).empty
    publish(wh, "2024-06-27", "a", 1.0, n=3)
    publish(wh, "2024-06-28", "b", 2.0, n=5)
    other = rows("2024-06-28", "c", 3.0, 4, model="other:1")
    T.publish(wh, "forecasts", other, "2024-06-28", "other:1", {"run_id": "c", "model": "other:1"})
    for hhmm, n in (("10:30", 2), ("11:00", 6)):
        publish(wh, f"2024-06-28 {hhmm}", f"i{hhmm}", 4.0, n=n)
    want = pd.DataFrame(
        {
            "as_of": pd.to_datetime(
                ["2024-06-27", "2024-06-28", "2024-06-28", "2024-06-28 10:30", "2024-06-28 11:00"],
                format="ISO8601",
            ).astype("datetime64[ns]"),
            "model": [MODEL, "other:1", MODEL, MODEL, MODEL],
            "rows": [3, 4, 5, 2, 6],
        }
    )
    scanned = T.partitions(wh, scan=True)
    pd.testing.assert_frame_equal(scanned, want, check_dtype=False)
    pd.testing.assert_frame_equal(T.partitions(wh), scanned)
    data = sorted((tmp_path / "out").rglob("*.parquet"))
    assert len(data) >= 5
    moved = {p: tmp_path / f"away-{i}.parquet" for i, p in enumerate(data)}
    for src, dst in moved.items():
        src.rename(dst)
    pd.testing.assert_frame_equal(T.partitions(wh), scanned)  # no data file was needed
    with pytest.raises(OSError):
        T.partitions(wh, scan=True)
    for src, dst in moved.items():
        dst.rename(src)
    # another engine compacts the day's two intraday runs into one file (our compaction keeps as_of apart)
    tbl = wh.load("forecasts")
    both = T.read(wh, "forecasts", model=MODEL)
    both = both[both["as_of"].dt.hour > 0]
    merged = pa.Table.from_pandas(both, preserve_index=False).cast(tbl.schema().as_arrow())
    files = T.data_files_of(T.write_data_files(merged, tbl.metadata, tbl.io.properties, "forecasts"))
    with tbl.transaction() as tx:
        tx.delete(T._partition_filter("forecasts", "2024-06-28 10:30", MODEL))
        tx.delete(T._partition_filter("forecasts", "2024-06-28 11:00", MODEL))
        with tx.update_snapshot().fast_append() as app:
            for f in files:
                app.append_data_file(f)
    assert T._file_partitions(wh.load("forecasts")) is None  # the metadata cannot tell: the rows are read
    pd.testing.assert_frame_equal(T.partitions(wh), scanned)
