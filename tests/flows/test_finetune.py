"""The finetune flow: the validation period and decision rule (plain), the model registry (local and a real
S3 server), and the flow end to end under Prefect: train from the incumbent, backtest both, promote, and the
nightly then forecasts with the promoted model."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from pathlib import Path

import pytest

from kronos_core import MarketCalendar

pytestmark = [pytest.mark.timeout(600)]
TINY = {"model": "random:test", "tokenizer": "random:test"}


def test_validation_period_holds_every_backtest_horizon():
    from flows.finetune import validation_period

    cal = MarketCalendar("XNYS", "1d")
    val_start, cutoffs = validation_period(cal, dt.date(2024, 6, 28), 15, 5, 2, 3)
    assert val_start == dt.date(2024, 6, 7)  # 15 sessions up to 06-28 (06-19 was a holiday)
    assert cutoffs == [dt.date(2024, 6, 17), dt.date(2024, 6, 21)]
    sessions = cal.sessions(dt.date(2024, 6, 28), 16)
    for c in cutoffs:  # each cutoff's 5 forecast sessions are inside [val_start, cutoff]
        after = [d for d in sessions if d > c][:5]
        assert len(after) == 5 and after[0] >= val_start and after[-1] <= dt.date(2024, 6, 28)


def _mean(crps):
    return [
        {"model": "m", "method": "kronos", "crps": crps, "mae": 1.0},
        {"model": "m", "method": "bootstrap_rw", "crps": 1.8, "mae": 2.0},
        {"model": "m", "method": "naive_last", "crps": 2.0, "mae": 2.0},
    ]


def test_decide_promotes_only_a_better_crps():
    from flows.finetune import decide, side_by_side

    assert decide(_mean(2.0), _mean(1.5), 0.0)["promote"] is True
    d = decide(_mean(2.0), _mean(1.9), 0.1)  # 5 % better, 10 % needed
    assert (
        d["promote"] is False and "needed > 10.00%" in d["reason"] and d["crps_gain"] == pytest.approx(0.05)
    )
    assert decide(_mean(2.0), _mean(2.0), 0.0)["promote"] is False  # a tie keeps the incumbent
    assert decide(_mean(2.0), _mean(float("nan")), 0.0)["promote"] is False
    assert decide(_mean(float("nan")), _mean(1.0), 0.0)["promote"] is True
    card = side_by_side(_mean(2.0), _mean(1.5))
    assert list(card.columns) == [
        "metric",
        "incumbent",
        "candidate",
        "bootstrap_rw",
        "naive_last",
        "naive_drift",
    ]
    crps = card.set_index("metric").loc["crps"]
    assert crps["candidate"] == 1.5 and crps["bootstrap_rw"] == 1.8 and crps["naive_last"] == 2.0


def test_params_reject_a_validation_period_shorter_than_the_horizon():
    from flows.params import FinetuneParams

    with pytest.raises(ValueError, match=r"val_sessions \(5\) must exceed pred_len \(16\)"):
        FinetuneParams(val_sessions=5)


def test_registry_pointer_is_replaced_atomically_and_keeps_the_previous(tmp_path):
    from pipeline.models import ModelPointer, promote, read_pointer

    root = str(tmp_path / "models")
    assert read_pointer(root, "m") is None
    promote(root, "m", ModelPointer(model="/a/model", tokenizer="/a/tokenizer", run_id="a", reason="first"))
    url = promote(root, "m", ModelPointer(model="/b/model", tokenizer="/b/tokenizer", run_id="b"))
    cur = read_pointer(root, "m")
    assert cur.model == "/b/model" and cur.previous["run_id"] == "a" and "previous" not in cur.previous
    assert url == str(tmp_path / "models" / "m" / "current")
    assert [p.name for p in (tmp_path / "models" / "m").iterdir()] == ["current"]  # no temp file left
    Path(url).write_text("{not json")
    with pytest.raises(ValueError, match="not a model pointer"):
        read_pointer(root, "m")


def test_registry_and_model_download_on_s3(moto_s3, tmp_path, monkeypatch):
    """A model exported to S3 is cached locally, checked against its manifest, and loads with lineage."""
    from kronos_core import Kronos, KronosPredictor, KronosTokenizer
    from kronos_core.loading import file_sha256
    from pipeline.models import CACHE_ENV, ModelPointer, localize, promote, read_pointer
    from pipeline.storage import filesystem

    storage, _ = moto_s3
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    src = tmp_path / "export"
    Kronos.from_pretrained("random:test").save_pretrained(src / "model")
    KronosTokenizer.from_pretrained("random:test").save_pretrained(src / "tokenizer")
    files = {
        f"{d}/{f}": file_sha256(src / d / f)
        for d in ("model", "tokenizer")
        for f in ("config.json", "model.safetensors")
    }
    (src / "training_manifest.json").write_text(
        json.dumps(
            {"run_id": "r1", "base": {"model": "random:test"}, "layout": {"model": "model"}, "files": files}
        )
    )
    fs = filesystem("s3://bkt/reg", storage)
    fs.put(str(src) + "/", "bkt/reg/m/runs/r1/", recursive=True)
    promote(
        "s3://bkt/reg",
        "m",
        ModelPointer(model="s3://bkt/reg/m/runs/r1/model", tokenizer="s3://bkt/reg/m/runs/r1/tokenizer"),
        storage,
    )
    ptr = read_pointer("s3://bkt/reg", "m", storage)
    local_model, local_tok = localize(ptr.model, storage), localize(ptr.tokenizer, storage)
    assert local_model.startswith(str(tmp_path / "cache"))
    p = KronosPredictor.from_pretrained(local_model, local_tok)
    assert p.describe()["base_model"] == "random:test" and p.describe()["training_run"] == "r1"
    assert localize(ptr.model, storage) == local_model  # cached
    # a changed upload is refused, not loaded
    fs.pipe_file("bkt/reg/m/runs/r1/model/model.safetensors", b"tampered")
    import shutil

    shutil.rmtree(tmp_path / "cache")
    with pytest.raises(ValueError, match="do not match the sha256"):
        localize(ptr.model, storage)


def _job(market, out, **kw):
    from flows.params import NightlyParams

    return NightlyParams(
        input_url=market.url,
        output_url=str(out),
        lookback=32,
        pred_len=5,
        validation={"min_history": 24},
        model=TINY,
        sampling={"sample_count": 4},
        chart_assets=0,
        **kw,
    )


def _finetune_params(market, tmp_path, **kw):
    from flows.params import FinetuneParams

    return FinetuneParams(
        **_job(market, tmp_path / "out").job_settings(),
        registry=str(tmp_path / "models" / "tiny"),
        cutoff="2024-06-28",
        val_sessions=15,
        n_cutoffs=2,
        every=3,
        predictor={"epochs": 3, "batch_size": 16, "lr": 1e-3, "early_stopping_patience": None},
        checkpoint={"every_n_steps": 1000},
        **kw,
    )


@pytest.mark.slow  # ~3 min on 2 cores: two trainings, four backtest jobs, a nightly
def test_finetune_promotes_a_better_candidate_and_the_nightly_uses_it(
    prefect_harness, ray_local, small_market, tmp_path
):
    from prefect.artifacts import Artifact

    from flows.artifacts import KEYS
    from flows.finetune import finetune
    from flows.nightly import nightly_forecast
    from pipeline.models import read_pointer

    out = finetune(_finetune_params(small_market, tmp_path))
    assert out["backtest_cutoffs"] == ["2024-06-17", "2024-06-21"] and out["val_start"] == "2024-06-07"
    val = out["stages"]["predictor"]["val_loss"]
    assert val[-1] < val[0]
    # the decision follows the two backtests' CRPS on the same cutoffs
    assert math.isfinite(out["incumbent_crps"]) and math.isfinite(out["candidate_crps"])
    assert out["promote"] is (out["candidate_crps"] < out["incumbent_crps"])
    assert out["promote"], f"the seeded tiny run is expected to beat random weights: {out['reason']}"
    ptr = read_pointer(str(tmp_path / "models"), "tiny")
    assert ptr.model == os.path.join(out["candidate"], "model") and ptr.run_id == out["run_id"]
    assert ptr.metrics["candidate_crps"] == out["candidate_crps"]
    for key, kind in (
        ("finetune_curve", "markdown"),  # the loss curve inline (chart_markdown)
        ("finetune_scorecard", "table"),
        ("finetune_decision", "markdown"),
    ):
        assert Artifact.get(KEYS[key]).type == kind
    assert "Promoted" in str(Artifact.get(KEYS["finetune_decision"]).data)
    # both backtests ran on the same cutoffs, written under the run
    from flows.store import read_scorecard
    from pipeline.tables import warehouse

    for who in ("incumbent", "candidate"):
        where = out["backtests"][who]
        assert where["warehouse"] == str(Path(out["candidate"]) / "backtest" / who)
        namespace = where["scorecard_table"].split(".")[0]
        assert namespace.startswith("finetune_") and namespace.endswith(who)  # never the nightly's tables
        card = read_scorecard(warehouse(where["warehouse"], {"namespace": namespace}))
        assert sorted(card["as_of"].astype(str).unique()) == out["backtest_cutoffs"]

    # the nightly with model_pointer forecasts with the promoted model; its rows carry the lineage
    night = nightly_forecast(
        _job(
            small_market,
            tmp_path / "nightly",
            as_of=dt.date(2024, 6, 28),
            model_pointer=str(tmp_path / "models" / "tiny"),
            score_matured=False,
        )
    )
    assert night["model"] == ptr.model
    from pipeline import read

    fc = read(warehouse(str(tmp_path / "nightly")), "forecasts", "2024-06-28", ptr.model)
    assert len(fc) and set(fc["run_id"]) == {night["run_id"]}
    assert (fc["training_run"] == out["run_id"]).all() and (fc["base_model"] == "random:test").all()

    # a second run starts from the promoted model; demanding a 99 % CRPS gain, it keeps the incumbent
    again = finetune(_finetune_params(small_market, tmp_path, min_crps_gain=0.99))
    assert again["promote"] is False and again["pointer"] is None and "needed > 99.00%" in again["reason"]
    manifest = json.loads((Path(again["candidate"]) / "training_manifest.json").read_text())
    assert manifest["base"]["model"] == ptr.model  # trained from the incumbent the registry names
    assert read_pointer(str(tmp_path / "models"), "tiny") == ptr  # the pointer did not move
    assert "Not promoted" in str(Artifact.get(KEYS["finetune_decision"]).data)
