"""The weekly table-maintenance flow on a real warehouse (SQLite catalog, local folder), under Prefect's
test harness: compaction, snapshot expiry, orphan removal, the artifact, and readers unaffected."""

from __future__ import annotations

import datetime as dt
import os
import time

import pyarrow as pa
import pytest

from pipeline import tables as T

pytestmark = [pytest.mark.timeout(240)]
MODEL = "random:test:0"


def _rows(as_of, run_id, symbols):
    n = len(symbols)
    return pa.table(
        {
            "symbol": symbols,
            "as_of": pa.array([dt.datetime.fromisoformat(as_of)] * n, pa.timestamp("us")),
            "model": [MODEL] * n,
            "step": pa.array([1] * n, pa.int32()),
            "close": [1.0] * n,
            "run_id": [run_id] * n,
        }
    )


def test_maintenance_flow_compacts_expires_and_removes_orphans(prefect_harness, tmp_path):
    from prefect.artifacts import Artifact

    from flows.artifacts import KEYS
    from flows.maintenance import MaintenanceParams, table_maintenance

    out = tmp_path / "out"
    wh = T.warehouse(str(out))
    T.publish(wh, "forecasts", _rows("2024-06-27", "a", ["A", "B"]), "2024-06-27", MODEL, {"run_id": "a"})
    T.publish(wh, "forecasts", _rows("2024-06-28", "b", ["A", "B"]), "2024-06-28", MODEL, {"run_id": "b"})
    # a run that wrote its 06-28 partition in three files, replacing b
    tbl = wh.load("forecasts")
    files = [
        f
        for sym in ("A", "B", "C")
        for f in T.data_files_of(
            T.write_data_files(_rows("2024-06-28", "c", [sym]), tbl.metadata, tbl.io.properties, "forecasts")
        )
    ]
    T.overwrite_partition(tbl, "forecasts", "2024-06-28", MODEL, files, {"kronos.run_id": "c"})
    # a run killed before its commit left a data file two days ago
    killed = T.write_data_files(_rows("2024-06-28", "k", ["Z"]), tbl.metadata, tbl.io.properties, "forecasts")
    orphan = T.data_files_of(killed)[0].file_path.removeprefix("file://")
    old = time.time() - 2 * 86400
    os.utime(orphan, (old, old))
    before = T.read(wh, "forecasts")
    time.sleep(0.05)

    rows = table_maintenance(
        MaintenanceParams(output_url=str(out), snapshot_retention_days=0, orphan_min_age_hours=1)
    )
    by = {r["table"]: r for r in rows}
    f = by["kronos.forecasts"]
    assert f["partitions_compacted"] == 1 and f["files_before_compaction"] == 3
    # every snapshot older than the flow's start (retention 0 days); compaction's two are newer and stay
    assert f["snapshots_expired"] == f["snapshots_before"] == 4 and f["snapshots_kept"] == 2
    # the killed run's file goes now; files replaced within the last hour stay until next week's run
    assert f["data_files_removed"] == 1 and not os.path.exists(orphan)
    assert by["kronos.scorecard"]["note"] == "no table yet"
    after = T.read(wh, "forecasts")
    assert after.equals(before)  # readers see the same rows
    tbl.refresh()
    assert len(list(tbl.scan().plan_files())) == 2  # one file per partition
    art = Artifact.get(KEYS["maintenance"])
    assert art.type == "table" and "kronos.forecasts" in str(art.data)
    # one more week later every unreferenced file is gone, and the data is intact
    again = table_maintenance(
        MaintenanceParams(output_url=str(out), snapshot_retention_days=0, orphan_min_age_hours=1)
    )
    assert {r["table"]: r.get("partitions_compacted") for r in again}["kronos.forecasts"] == 0
    assert T.read(wh, "forecasts").equals(before)


def test_maintenance_refuses_an_unknown_table_in_its_schema(tmp_path):
    """The table names are a choice in the deployment's schema (the UI shows a picker), so a wrong name is
    refused before any run starts, naming the choices."""
    from pydantic import ValidationError

    from flows.maintenance import MaintenanceParams

    with pytest.raises(ValidationError, match="'forecasts', 'rejected' or 'scorecard'"):
        MaintenanceParams(output_url=str(tmp_path), tables=["forecast"])
    with pytest.raises(ValidationError, match="at least 1 item"):
        MaintenanceParams(output_url=str(tmp_path), tables=[])
    items = MaintenanceParams.model_json_schema()["properties"]["tables"]["items"]
    assert items["enum"] == ["forecasts", "rejected", "scorecard"]
