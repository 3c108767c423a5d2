"""The full job over 2,000 synthetic assets on local Ray (tiny model), and the CLI."""

import json
import subprocess
import sys

import pytest

from pipeline import run_job, write_synthetic_market
from pipeline.cli import main

from .conftest import AS_OF, job_config


@pytest.mark.slow  # ~30 s of forecasting on 2 cores: the scale check, not a behaviour the default tier needs
@pytest.mark.timeout(400)
def test_two_thousand_assets(ray_local, tmp_path):
    m = write_synthetic_market(
        str(tmp_path / "bars"), n_symbols=2000, n_bars=40, min_bars=30, end=AS_OF, seed=11
    )
    s = run_job(
        job_config(
            m.url,
            str(tmp_path / "out"),
            lookback=32,
            pred_len=2,
            validation={"min_history": 24},
            sampling={"sample_count": 2},
            compute={"concurrency": 2, "batch_size": 256},
        )
    )
    n_bad = len(m.broken)
    assert s.assets_read == 2000 and s.assets_rejected == n_bad and s.assets_forecast == 2000 - n_bad
    assert s.rows_written == (2000 - n_bad) * 2 and s.series_per_s > 0


def test_cli_bad_config_exits_2_with_the_field(tmp_path, capsys):
    p = tmp_path / "job.yaml"
    p.write_text("as_of: 2024-06-28\ninput: {url: /b}\noutput: {url: /o}\ncompute: {concurency: 2}\n")
    assert main(["--config", str(p)]) == 2
    assert "compute.concurency" in capsys.readouterr().err


@pytest.mark.slow  # its own Ray in a subprocess: ~35 s on 2 cores
@pytest.mark.timeout(300)
def test_cli_runs_a_job(market, tmp_path):
    """A separate process: kronos-batch starts (and stops) its own local Ray."""
    cfg = tmp_path / "job.yaml"
    cfg.write_text(json.dumps(job_config(market.url, str(tmp_path / "out")).model_dump(mode="json")))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "--config",
            str(cfg),
            "--as-of",
            AS_OF,
            "--set",
            "sampling.seed=3",
            "--json",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=280,
        env={**__import__("os").environ, "RAY_AUTH_MODE": "disabled"},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout[r.stdout.index("{") :])
    assert out["assets_forecast"] == len(market.healthy)
    assert out["forecasts_table"] == "kronos.forecasts" and out["snapshot_id"] is not None
    assert out["model"] == "random:test:0"
