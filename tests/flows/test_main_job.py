"""The README's main job: `kronos-nightly` as a user runs it (its own process, embedded defaults: a generated
market in a local folder, local Ray, Prefect's ephemeral API, the shipped demo model), on a smaller market.
Slow tier (~1-2 min). Also: its Prefect runs land in ``<data-dir>/prefect_home`` (the home
scripts/start_local.sh serves), and the closing message says so and how to open them (unit tests of the
home and the message below)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kronos_nightly_end_to_end(tmp_path):
    exe = Path(sys.executable).with_name("kronos-nightly")
    assert exe.exists(), f"{exe} missing: install the project (bash scripts/setup.sh)"
    # no PREFECT_HOME / PREFECT_API_URL: the job picks <data-dir>/prefect_home itself
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_HOME", "PREFECT_API_URL")}
    args = [str(exe), "--data-dir", str(tmp_path / "demo"), "--symbols", "24", "--bars", "300"]
    # run from outside the checkout: the message then names the script by its absolute path
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=840, cwd=tmp_path)
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

    # the runs are in <data-dir>/prefect_home (start_local.sh serves it); the message says how to see them
    home = tmp_path / "demo" / "prefect_home"
    import sqlite3

    with sqlite3.connect(home / "prefect.db") as db:
        runs_db = db.execute(
            "select flow_run.name, flow_run.state_type from flow_run join flow on flow.id = flow_run.flow_id "
            "where flow.name = 'nightly-forecast' order by flow_run.expected_start_time"
        ).fetchall()
    as_ofs = sorted(str(a)[:10] for a in forecasts["as_of"].unique())
    assert runs_db == [(f"nightly-{a}", "COMPLETED") for a in as_ofs]
    assert f"local Prefect home {home}" in out
    assert f"run `KRONOS_DATA_DIR={tmp_path / 'demo'} {REPO / 'scripts' / 'start_local.sh'}`" in out
    assert "open http://127.0.0.1:4200" in out
    assert not (tmp_path / "prefect_home").exists()


def test_prefect_home_defaults_to_the_data_dir(tmp_path, monkeypatch):
    from flows.cli import DEFAULT_DATA_DIR, prefect_home_for, process_env

    env: dict[str, str] = {}
    process_env(env, str(tmp_path / "data"))
    assert env["PREFECT_HOME"] == str(tmp_path / "data" / "prefect_home")
    monkeypatch.chdir(tmp_path)
    env = {}
    process_env(env)  # the default data dir, relative to where the job runs, made absolute
    assert env["PREFECT_HOME"] == str(tmp_path / "demo_data" / "prefect_home")
    assert DEFAULT_DATA_DIR == "./demo_data"
    env = {"PREFECT_HOME": "/somewhere/else"}
    process_env(env, str(tmp_path / "data"))  # the user's own setting wins
    assert env["PREFECT_HOME"] == "/somewhere/else"
    # start_local.sh (run from anywhere; it cds to the repo) uses <repo>/demo_data/prefect_home by default:
    # the same folder as kronos-nightly run from the repo root, as the README runs both
    script = (REPO / "scripts" / "start_local.sh").read_text()
    assert 'cd "$(dirname "$0")/.."' in script and 'DATA="${KRONOS_DATA_DIR:-$PWD/demo_data}"' in script
    assert 'PREFECT_HOME="${PREFECT_HOME:-$DATA/prefect_home}"' in script
    monkeypatch.chdir(REPO)
    assert prefect_home_for(DEFAULT_DATA_DIR) == str(REPO / "demo_data" / "prefect_home")


def test_closing_message_names_the_home_the_ui_and_the_command(tmp_path):
    from flows.cli import runs_message

    script = str(REPO / "scripts" / "start_local.sh")
    default_home = str(REPO / "demo_data" / "prefect_home")
    msg = runs_message("./demo_data", default_home, cwd=str(REPO))
    assert f"local Prefect home {default_home}" in msg
    assert "run `scripts/start_local.sh`, open http://127.0.0.1:4200" in msg
    elsewhere = runs_message("./demo_data", default_home, cwd=str(tmp_path))
    assert f"run `{script}`, open http://127.0.0.1:4200" in elsewhere
    data = tmp_path / "d"
    msg = runs_message(str(data), str(data / "prefect_home"), cwd=str(tmp_path))
    assert f"run `KRONOS_DATA_DIR={data} {script}`, open http://127.0.0.1:4200" in msg
    msg = runs_message(str(data), "/my/home", cwd=str(tmp_path))  # the user's own PREFECT_HOME
    assert "local Prefect home /my/home" in msg and f"run `PREFECT_HOME=/my/home {script}`" in msg
    missing = str(tmp_path / "scripts" / "start_local.sh")  # installed without the checkout
    msg = runs_message(str(data), "/my/home", cwd=str(tmp_path), start_local=missing)
    assert "run `PREFECT_HOME=/my/home prefect server start`, open http://127.0.0.1:4200" in msg
    # PREFECT_API_URL set: the runs are on that server, and its UI shows them
    msg = runs_message(
        str(data), "/my/home", api_url="http://10.0.0.5:4200/api", ui_url="http://10.0.0.5:4200"
    )
    assert "Prefect API http://10.0.0.5:4200/api" in msg and "open http://10.0.0.5:4200" in msg
