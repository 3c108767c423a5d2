"""The demo model shipped in the package: loads offline as ``demo`` / ``demo:daily``, its sha256 is pinned, it
fits the size budget, every label says it is a demo, and it is what every entry point runs by default."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from kronos_core import Kronos, KronosPredictor, KronosTokenizer, PredictorSpec, SamplingParams, defaults
from kronos_core import demo as demo_mod
from kronos_core.demo import DEFAULT_DEMO, DEMO_MODELS, DEMO_NOTE, demo_model, weights_note
from kronos_core.loading import file_sha256
from kronos_core.predictor import default_max_context
from kronos_core.testing import synthetic_series

DAILY = DEMO_MODELS["daily"]


def test_packaged_files_match_the_pins_and_fit_five_megabytes():
    root = demo_mod.WEIGHTS / "daily"
    assert file_sha256(root / "model" / "model.safetensors") == DAILY.model_sha256
    assert file_sha256(root / "tokenizer" / "model.safetensors") == DAILY.tokenizer_sha256
    size = sum((root / k / "model.safetensors").stat().st_size for k in ("model", "tokenizer"))
    assert size <= 5 * 1024 * 1024, size
    # the card ships beside the weights, and the training record names the weights it produced
    assert DAILY.card.is_file() and DEMO_NOTE.split(":")[0] in DAILY.card.read_text()
    manifest = json.loads((root / "training_manifest.json").read_text())
    assert manifest["files"]["model/model.safetensors"] == DAILY.model_sha256
    assert manifest["files"]["tokenizer/model.safetensors"] == DAILY.tokenizer_sha256


@pytest.mark.parametrize("ref", ["demo", "demo:daily"])
def test_loads_offline_and_says_it_is_a_demo(ref):
    model = Kronos.from_pretrained(ref)
    tok = KronosTokenizer.from_pretrained(ref)
    assert model.source.demo and not model.source.random and tok.source.demo
    assert model.source.ref == tok.source.ref == "demo:daily"
    assert model.source.sha256 == DAILY.model_sha256 and tok.source.sha256 == DAILY.tokenizer_sha256
    assert model.source.label == f"demo:daily ({DEMO_NOTE})"
    assert model.config.s1_bits == tok.s1_bits and not model.training


def test_unknown_name_and_tampered_weights_are_refused(tmp_path, monkeypatch):
    with pytest.raises(
        ValueError, match=r"unknown demo model 'demo:weekly'; use 'demo' or one of \['demo:daily'\]"
    ):
        Kronos.from_pretrained("demo:weekly")
    shutil.copytree(demo_mod.WEIGHTS / "daily", tmp_path / "daily")
    weights = tmp_path / "daily" / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    monkeypatch.setattr(demo_mod, "WEIGHTS", tmp_path)
    with pytest.raises(ValueError, match="does not match the expected " + DAILY.model_sha256):
        Kronos.from_pretrained("demo")
    (tmp_path / "daily" / "tokenizer" / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="packaged weights are missing"):
        KronosTokenizer.from_pretrained("demo")


def test_the_demo_is_every_entry_points_default_and_forecasts():
    assert (defaults.MODEL, defaults.TOKENIZER) == ("demo", "demo") and DEFAULT_DEMO == "daily"
    # the shared default lookback is the one the demo was normalised on in training
    assert DAILY.lookback == defaults.LOOKBACK and DAILY.max_context >= DAILY.lookback
    pred = KronosPredictor.from_spec(PredictorSpec(device="cpu"))
    assert pred.max_context == default_max_context(pred.model) == DAILY.max_context
    info = pred.describe()
    assert info["demo_model"] and not info["random_weights"] and DEMO_NOTE in info["label"]
    series = synthetic_series("SPY", defaults.LOOKBACK, 5, freq="1d", seed=1)
    res = pred.forecast([series], sampling=SamplingParams(sample_count=16, seed=0))
    close = res.paths[0, :, :, 3]
    last = series.values[-1, 3]
    assert np.isfinite(res.paths).all() and (close > 0).all()
    # a trained model, not noise: one-day moves of a daily series stay within a few percent of the last close
    assert np.abs(close[:, 0] / last - 1).max() < 0.15


def test_weights_note_is_the_one_label_rule():
    assert weights_note("demo") == weights_note("demo:daily") == DEMO_NOTE
    assert weights_note("random:test") == "RANDOM WEIGHTS"
    assert weights_note("/models/kronos-ft/model") == weights_note("NeoQuasar/Kronos-small") == ""
    assert demo_model("demo") is demo_model("demo:daily") is DAILY
