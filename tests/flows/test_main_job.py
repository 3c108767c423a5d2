"""The README's main job: `kronos-nightly` as a user runs it (its own process, embedded defaults: a generated
market in a local folder, local Ray, Prefect's ephemeral API, the shipped demo model), on a smaller market.
Slow tier (~1-2 min)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kronos_nightly_end_to_end(tmp_path):
    exe = Path(sys.executable).with_name("kronos-nightly")
    assert exe.exists(), f"{exe} missing: install the project (bash scripts/setup.sh)"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect_home")}
    args = [str(exe), "--data-dir", str(tmp_path / "demo"), "--symbols", "24", "--bars", "300"]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=840)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "[3/3] done" in out and "scorecard rows    4 (matured cutoffs x methods)" in out
    assert "crps_skill > 0 beats the bootstrap random walk" in out
    root = tmp_path / "demo" / "output"
    from pipeline import list_runs, read, warehouse

    wh = warehouse(str(root))
    card = read(wh, "scorecard")
    assert set(card["method"]) == {"kronos", "bootstrap_rw", "naive_last", "naive_drift"}
    assert card["crps"].notna().all() and (card["n_assets"] > 15).all()
    assert list((root / "charts").glob("as_of=*/fan_chart.png"))
    runs = list_runs(wh)
    assert len(runs) == 2 and runs["model"].tolist() == ["demo:daily"] * 2
    assert f"snapshot {runs['snapshot_id'].iloc[-1]}" in out  # the job prints the snapshot it committed
    # the default model is the demo model shipped in the package, and the run says so
    from kronos_core.demo import DEMO_MODELS, DEMO_NOTE

    assert f"demo:daily: {DEMO_NOTE}" in out
    forecasts = read(wh, "forecasts")
    assert forecasts["as_of"].nunique() == 2
    assert set(forecasts["model"]) == {"demo:daily"} and not forecasts["random_weights"].any()
    assert set(forecasts["model_sha256"]) == {DEMO_MODELS["daily"].model_sha256}
