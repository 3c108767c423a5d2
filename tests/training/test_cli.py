"""kronos-train: the example config is valid, bad configs exit 2 naming the field, and (slow tier) a real run
from the command line prints the per-epoch lines and the summary."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from training import load_train_config
from training.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_is_valid_and_overrides_apply():
    cfg = load_train_config(
        ROOT / "examples" / "train.yaml", **{"compute.num_workers": 2, "predictor.epochs": 1}
    )
    assert cfg.compute.num_workers == 2 and cfg.predictor.epochs == 1
    assert cfg.tokenizer.enabled is False and cfg.windows.lookback == 64


def test_bad_configs_exit_2_with_the_reason(tmp_path, capsys):
    good = yaml.safe_load((ROOT / "examples" / "train.yaml").read_text())
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({**good, "predictor": {**good["predictor"], "epoch": 3}}))
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "predictor.epoch" in err and "Extra inputs are not permitted" in err
    path.write_text(yaml.safe_dump(good))
    assert main(["--config", str(path), "--set", "data.val_start=2025-01-01"]) == 2
    err = capsys.readouterr().err
    assert "val_start" in err and "must be before data.cutoff" in err
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err


def test_main_in_process_leaves_the_hosts_logging_alone(tmp_path, capsys):
    """Regression: ``basicConfig(force=True)`` replaced pytest's root handlers with one writing to this
    test's captured stderr; once closed, every later Prefect log record failed (3 flow tests broke)."""
    root = logging.getLogger()
    before = list(root.handlers)
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert root.handlers == before


@pytest.mark.slow
def test_a_run_from_the_command_line(train_market, tmp_path):
    """A fresh process (its own local Ray): per-epoch lines on the log, the summary as JSON on stdout."""
    from tests.training.conftest import train_config

    cfg = train_config(train_market.url, str(tmp_path / "out"), predictor={"epochs": 2, "batch_size": 16})
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(cfg))))
    run = subprocess.run(
        [sys.executable, "-m", "training.cli", "--config", str(path), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "[predictor] epoch 1/2: loss" in run.stderr and "[predictor] epoch 2/2" in run.stderr
    summary = json.loads(run.stdout)
    assert (
        summary["stages"]["predictor"]["epochs_run"] == 2
        and (tmp_path / "out" / "training_manifest.json").exists()
    )
