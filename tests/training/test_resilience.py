"""Slow tier: a Ray Train worker killed mid-run (the run resumes from its last checkpoint and ends where
an uninterrupted run ends), and a run whose bars, checkpoints and output all live on a real S3 server."""

from __future__ import annotations

import json
import os
import signal
import tempfile
from pathlib import Path

import pytest
import torch

from kronos_core import KronosPredictor
from kronos_core.loading import file_sha256
from pipeline import write_synthetic_market
from pipeline.storage import filesystem, strip_protocol
from tests.training.conftest import END, train_config
from training import run_training
from training.job import MANIFEST

pytestmark = pytest.mark.slow


def _train_workers() -> list[int]:
    """PIDs of this machine's Ray Train worker processes (Ray names them ray::RayTrainWorker...)."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                cmd = Path(f"/proc/{d}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "RayTrainWorker" in cmd:
                pids.append(int(d))
    return pids


def _weights(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(out / "model" / "model.safetensors")


def test_a_killed_worker_resumes_from_the_last_checkpoint(ray_local, train_market, tmp_path):
    over = dict(
        compute={"num_workers": 2},
        checkpoint={"every_n_steps": 3, "record_windows": True, "max_failures": 2},
    )
    clean = run_training(train_config(train_market.url, str(tmp_path / "clean"), **over))

    killed: list[tuple[int, int]] = []

    def kill_in_epoch_two(report: dict) -> None:
        # the first checkpoint inside the second epoch: SIGKILL one worker process (no clean shutdown)
        if not killed and report["kind"] == "step" and report["epoch"] == 1 and report["checkpoint"]:
            pids = _train_workers()
            assert len(pids) >= 2, pids
            os.kill(pids[-1], signal.SIGKILL)
            killed.append((pids[-1], report["global_step"]))

    reports: list[dict] = []

    def on_report(r: dict) -> None:
        reports.append(r)
        kill_in_epoch_two(r)
        if killed and len(killed) == 1:
            killed.append(len(reports))  # reports after this index come from the resumed workers

    hit = run_training(train_config(train_market.url, str(tmp_path / "hit"), **over), on_report=on_report)
    assert killed, "no checkpoint in epoch 2 to kill after"
    stage, ref = hit.stages["predictor"], clean.stages["predictor"]
    assert stage.restarts >= 1 and ref.restarts == 0
    # the step count continued from the checkpoint (a restart from scratch would report step 3 again) and
    # ended where the uninterrupted run ended
    (_, ckpt_step), first_after = killed[0], killed[1]
    resumed_steps = [r["global_step"] for r in reports[first_after:] if r["kind"] == "step"]
    assert resumed_steps and min(resumed_steps) > ckpt_step
    assert stage.steps == ref.steps == sum(len(v) for v in ref.window_log.values())
    # the data order continued: no window trained twice in an epoch, the same windows as without the kill
    assert stage.window_log == ref.window_log and len(stage.window_log) == 3
    for epoch, steps in stage.window_log.items():
        flat = [w for step in steps for w in step]
        assert len(flat) == len(set(flat)) == len(steps) * 16 * 2, epoch
    # and the weights are the uninterrupted run's, bit for bit
    a, b = _weights(tmp_path / "clean"), _weights(tmp_path / "hit")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert stage.val_loss == ref.val_loss


def test_bars_checkpoints_and_output_on_s3(ray_local, seaweed_s3, tmp_path):
    storage, endpoint = seaweed_s3
    bars = "s3://bkt/train/bars"
    write_synthetic_market(
        bars, n_symbols=12, n_bars=120, min_bars=100, end=END, broken=True, seed=8, storage=storage
    )
    cfg = train_config(
        bars,
        "s3://bkt/models/tiny-ft",
        data={
            "input": {"url": bars},
            "storage": storage.model_dump(),
            "cutoff": END,
            "val_start": "2024-05-15",
            "validation": {"min_history": 24},
        },
        tokenizer={"enabled": True, "epochs": 1, "batch_size": 16, "lr": 1e-3},
        predictor={"epochs": 2, "batch_size": 16, "lr": 1e-3},
        checkpoint={"storage_path": "s3://bkt/checkpoints", "every_n_steps": 5},
    )
    s = run_training(cfg)
    assert s.output_url == "s3://bkt/models/tiny-ft" and s.assets_rejected > 0 and s.reject_reasons
    assert set(s.stages) == {"tokenizer", "predictor"}
    fs = filesystem(bars, storage)
    ckpts = [p for p in fs.find("bkt/checkpoints") if p.endswith("state.pt")]
    assert ckpts, "no checkpoint on S3"
    local = Path(tempfile.mkdtemp(dir=tmp_path))
    fs.get("bkt/models/tiny-ft/", str(local), recursive=True)
    m = json.loads((local / MANIFEST).read_text())
    for rel, digest in m["files"].items():
        assert file_sha256(local / rel) == digest, rel
    assert m["data"]["url"] == bars and m["data"]["assets_rejected"] == s.assets_rejected
    p = KronosPredictor.from_pretrained(local / "model", local / "tokenizer")
    assert p.describe()["training_run"] == s.run_id
    assert strip_protocol(s.output_url) == "bkt/models/tiny-ft"
