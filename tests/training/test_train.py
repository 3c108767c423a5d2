"""run_training end to end on real Ray Train: a 2-worker DDP run over a synthetic market lowers the
validation loss and its output loads in the batch job with lineage; a 1-worker run equals the same loop
run in-process without Ray, bit for bit."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from kronos_core import KronosPredictor
from kronos_core.loading import file_sha256
from pipeline import read, run_job, warehouse
from tests.pipeline.conftest import job_config
from tests.training.conftest import END, train_config
from training import TrainConfig, run_training
from training.data import build_windows
from training.job import MANIFEST, fit_stage, fit_stage_local, load_base
from training.loop import pack_weights


@pytest.fixture(scope="module")
def two_workers(ray_local, train_market, tmp_path_factory):
    out = tmp_path_factory.mktemp("train_out") / "tiny-ft"
    reports = []
    cfg = train_config(
        train_market.url,
        str(out),
        compute={"num_workers": 2},
        checkpoint={"every_n_steps": 4},
    )
    summary = run_training(cfg, on_report=reports.append)
    return dict(out=out, summary=summary, reports=reports, cfg=TrainConfig.model_validate(cfg))


def test_two_worker_run_lowers_the_validation_loss(two_workers):
    s = two_workers["summary"]
    assert s.assets_used == 16 and s.assets_rejected == 0 and s.windows_train > 0 and s.windows_val > 0
    pred = s.stages["predictor"]
    assert pred.epochs_run == 3 and len(pred.val_loss) == 3
    assert pred.val_loss[-1] < pred.val_loss[0] and pred.train_loss[-1] < pred.train_loss[0]
    assert (
        pred.best_val_loss == min(pred.val_loss)
        and pred.best_epoch == pred.val_loss.index(min(pred.val_loss)) + 1
    )
    assert "tokenizer" not in s.stages  # off by default (the S3 test in the slow tier trains it on Ray)
    # both workers trained: the epoch's windows/s counts the batches of both ranks
    steps_per_epoch = pred.steps // 3
    assert steps_per_epoch * 16 * 2 <= s.windows_train
    # progress reached the caller: a step report every 4 steps and one per epoch, per stage
    epochs = [r for r in two_workers["reports"] if r["kind"] == "epoch"]
    assert [(r["stage"], r["epoch"]) for r in epochs] == [("predictor", e) for e in (1, 2, 3)]
    assert any(r["kind"] == "step" and r["checkpoint"] for r in two_workers["reports"])


def test_output_is_a_published_layout_with_a_manifest(two_workers):
    out, s = two_workers["out"], two_workers["summary"]
    m = json.loads((out / MANIFEST).read_text())
    for rel, digest in m["files"].items():
        assert file_sha256(out / rel) == digest, rel
    assert set(m["files"]) == {
        "model/config.json",
        "model/model.safetensors",
        "tokenizer/config.json",
        "tokenizer/model.safetensors",
        "loss_curve.png",
    }
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert m["run_id"] == s.run_id and m["base"]["model"] == "random:test"
    assert (
        m["data"]["cutoff"] == str(pd.Timestamp("2024-06-21"))
        and m["data"]["windows_train"] == s.windows_train
    )
    assert m["stages"]["predictor"]["val_loss"] == s.stages["predictor"].val_loss
    assert m["stages"]["predictor"]["settings"]["lr"] == 1e-3 and m["compute"]["num_workers"] == 2
    assert m["code_version"]
    # the exported weights are the best epoch's, not the base's
    p = KronosPredictor.from_pretrained(out / "model", out / "tokenizer")
    d = p.describe()
    assert d["base_model"] == "random:test" and d["training_run"] == s.run_id and not d["random_weights"]
    assert d["model_sha256"] == m["files"]["model/model.safetensors"]


def test_output_loads_in_the_batch_job_with_lineage(two_workers, train_market, tmp_path):
    out, s = two_workers["out"], two_workers["summary"]
    model = {"model": str(out / "model"), "tokenizer": str(out / "tokenizer")}
    fc_url = str(tmp_path / "forecasts")
    job = run_job(job_config(train_market.url, fc_url, as_of=END, model=model, lookback=24))
    assert job.assets_forecast == 16 and job.assets_rejected == 0
    fc = read(warehouse(fc_url), "forecasts", END, str(out / "model"))
    assert len(fc) == 16 * 4
    assert (fc["base_model"] == "random:test").all() and (fc["training_run"] == s.run_id).all()
    manifest = json.loads((out / MANIFEST).read_text())
    assert (fc["model_sha256"] == manifest["files"]["model/model.safetensors"]).all()


def test_one_worker_ray_train_run_equals_the_loop_without_ray(ray_local, train_market, tmp_path):
    """Seeded: a 1-worker Ray Train stage is bit-reproducible, and Ray Train adds nothing to the numbers
    (the same windows through ``fit_stage`` on Ray and ``fit_stage_local`` in this process)."""
    cfg = TrainConfig.model_validate(
        train_config(train_market.url, str(tmp_path / "one"), predictor={"epochs": 2})
    )
    data = build_windows(cfg)
    model, tok = load_base(cfg)
    packed = {"model": pack_weights(model), "tokenizer": pack_weights(tok)}
    on_ray = fit_stage("predictor", cfg.predictor, cfg, data, packed, "repro")
    local = fit_stage_local("predictor", cfg.predictor, cfg, data, packed)
    for key in ("model", "best_state"):
        assert on_ray[key].keys() == local[key].keys()
        assert all(torch.equal(on_ray[key][k], local[key][k]) for k in local[key]), key
    assert [h["val_loss"] for h in on_ray["history"]] == [h["val_loss"] for h in local["history"]]
    assert on_ray["global_step"] == local["global_step"] > 0
    # and the training moved the weights
    assert not all(torch.equal(local["model"][k], v) for k, v in model.state_dict().items())
