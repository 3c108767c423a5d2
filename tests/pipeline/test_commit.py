"""Commit protocol on a local folder (no Ray): replace one partition, leave others, survive a crash,
detect racing runs."""

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from pipeline.commit import (
    ConcurrentCommitError,
    PartitionLockedError,
    commit_partition,
    copy_in,
    current_generation,
    partition_path,
    read_partition,
    write_staged,
)
from pipeline.config import StorageConfig
from pipeline.storage import filesystem, join

from .conftest import snapshot

ST = StorageConfig()
MODEL = "random:test"


def publish(root, run_id, as_of, values, expected=None):
    rec = write_staged(pa.table({"symbol": ["A", "B"], "v": values}), root, ST, run_id, "forecasts")
    return commit_partition(
        root,
        ST,
        run_id,
        as_of,
        MODEL,
        {"forecasts": rec.to_pylist()},
        {"forecasts": expected},
        {"note": "test"},
    )


def test_replace_one_partition_and_leave_the_other(tmp_path):
    root = str(tmp_path / "out")
    publish(root, "r1", "2024-06-27", [1.0, 2.0])
    publish(root, "r2", "2024-06-28", [3.0, 4.0])
    other = snapshot(partition_path(root, "forecasts", "2024-06-27", MODEL))
    urls = publish(root, "r3", "2024-06-28", [5.0, 6.0], expected="r2")
    part = urls["forecasts"]
    names = sorted(os.listdir(part))
    assert names[0] == "_SUCCESS" and names[1] == "_manifest.json" and len(names) == 3  # old file gone
    assert Path(join(part, "_SUCCESS")).read_text() == "r3"
    m = json.loads(Path(part, "_manifest.json").read_text())
    assert m["run_id"] == "r3" and m["rows"] == 2 and m["files"][0]["sha256"]
    assert read_partition(root, "forecasts", "2024-06-28", MODEL)["v"].tolist() == [5.0, 6.0]
    assert snapshot(partition_path(root, "forecasts", "2024-06-27", MODEL)) == other
    assert not os.path.exists(join(root, "_staging", "r3")) and not os.listdir(join(root, "_staging"))
    # a plain hive reader sees exactly the committed rows
    df = pd.read_parquet(join(root, "forecasts"))
    assert len(df) == 4 and sorted(df["v"]) == [1.0, 2.0, 5.0, 6.0]


def test_crash_mid_commit_leaves_previous_partition_readable(tmp_path):
    root = str(tmp_path / "out")
    publish(root, "good", "2024-06-28", [1.0, 2.0])
    # run "crash" staged its files and copied them in, then died before writing the manifest
    rec = write_staged(pa.table({"symbol": ["A", "B"], "v": [9.0, 9.0]}), root, ST, "crash", "forecasts")
    fs = filesystem(root)
    copy_in(fs, root, "crash", "forecasts", "as_of_tag=2024-06-28/model_tag=random-test", rec.to_pylist(), 0)
    assert read_partition(root, "forecasts", "2024-06-28", MODEL)["v"].tolist() == [1.0, 2.0]
    assert current_generation(root, ST, "forecasts", "2024-06-28", MODEL) == "good"
    # the next run publishes and sweeps the orphan
    publish(root, "next", "2024-06-28", [3.0, 4.0], expected="good")
    part = partition_path(root, "forecasts", "2024-06-28", MODEL)
    assert len([f for f in os.listdir(part) if f.endswith(".parquet")]) == 1
    assert read_partition(root, "forecasts", "2024-06-28", MODEL)["v"].tolist() == [3.0, 4.0]


def test_racing_runs_are_detected(tmp_path):
    root = str(tmp_path / "out")
    publish(root, "first", "2024-06-28", [1.0, 2.0])
    # a run that started before "first" committed expected no partition: refused, nothing changes
    with pytest.raises(ConcurrentCommitError, match="committed by run 'first'"):
        publish(root, "late", "2024-06-28", [7.0, 7.0], expected=None)
    # a run holding the lock right now
    lock = join(root, "_locks", "as_of_tag=2024-06-28", "model_tag=random-test", "LOCK")
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    with open(lock, "w") as f:
        json.dump({"run_id": "other", "since": pd.Timestamp.now(tz="UTC").isoformat()}, f)
    with pytest.raises(PartitionLockedError, match="run 'other'"):
        publish(root, "third", "2024-06-28", [8.0, 8.0], expected="first")
    assert read_partition(root, "forecasts", "2024-06-28", MODEL)["v"].tolist() == [1.0, 2.0]
    # an abandoned lock (older than lock_timeout_s) is broken
    with open(lock, "w") as f:
        json.dump({"run_id": "dead", "since": "2020-01-01T00:00:00+00:00"}, f)
    publish(root, "fourth", "2024-06-28", [6.0, 6.0], expected="first")
    assert not os.path.exists(lock)
