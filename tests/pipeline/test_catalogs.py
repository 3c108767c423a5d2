"""The output tables in a shared catalog: PyIceberg's SQL catalog on a real PostgreSQL server (started by the
fixture from Debian's package), the job end to end and racing processes. Slow tier."""

from __future__ import annotations

import pytest

from pipeline import run_job
from pipeline import tables as T

from .conftest import AS_OF, job_config
from .test_tables import test_runs_in_separate_processes_never_mix_a_partition as racing_processes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_job_and_racing_runs_with_a_postgresql_catalog(ray_local, market, postgres_url, tmp_path):
    catalog = {"properties": {"type": "sql", "uri": postgres_url}, "namespace": "nightly"}
    out = str(tmp_path / "warehouse")
    first = run_job(job_config(market.url, out, output={"catalog": catalog}))
    again = run_job(job_config(market.url, out, output={"catalog": catalog}))
    wh = T.warehouse(out, catalog)
    assert "postgresql" in first.catalog and first.forecasts_table == "nightly.forecasts"
    assert not (tmp_path / "warehouse" / "catalog.db").exists()  # the tables are tracked in PostgreSQL
    fc = T.read(wh, "forecasts", AS_OF, "random:test")
    assert set(fc["run_id"]) == {again.run_id} and len(fc) == again.rows_written
    assert T.list_runs(wh)["run_id"].tolist() == [first.run_id, again.run_id]
    assert T.run_record(wh, first.run_id)["counts"]["assets_forecast"] == first.assets_forecast
    # the same catalog through PyIceberg's own loader, no project code (a SQL catalog scopes its tables by
    # the catalog name: "kronos", output.catalog.name)
    from pyiceberg.catalog import load_catalog

    tbl = load_catalog("kronos", type="sql", uri=postgres_url).load_table("nightly.forecasts")
    assert tbl.scan().to_arrow().num_rows == again.rows_written
    # four processes committing at once through PostgreSQL: never a mixed partition
    racing_processes(tmp_path / "race", catalog={"properties": {"type": "sql", "uri": postgres_url}})
