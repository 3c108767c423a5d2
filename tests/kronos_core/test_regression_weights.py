"""Upstream's own regression expectations, reproduced with the real Kronos-small weights.

Opt-in (marker ``weights``). Weights come from ``KRONOS_WEIGHTS_DIR`` (holding ``Kronos-small/`` and
``Kronos-Tokenizer-base/``, each with config.json + model.safetensors) or, with network, from the hub at
the pinned revisions. Run: ``KRONOS_WEIGHTS_DIR=/path pytest -m weights tests/kronos_core``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kronos_core import Kronos, KronosPredictor, KronosTokenizer

pytestmark = pytest.mark.weights

DATA = Path(__file__).resolve().parents[1] / "data"
MODEL_REV = "901c26c1332695a2a8f243eb2f37243a37bea320"
TOKENIZER_REV = "0e0117387f39004a9016484a186a908917e22426"
FIELDS = ["open", "high", "low", "close", "volume", "amount"]
GREEDY = dict(T=1.0, top_k=1, top_p=1.0, sample_count=1)


@pytest.fixture(scope="module")
def predictor():
    local = os.environ.get("KRONOS_WEIGHTS_DIR")
    try:
        if local:
            model = Kronos.from_pretrained(Path(local) / "Kronos-small")
            tok = KronosTokenizer.from_pretrained(Path(local) / "Kronos-Tokenizer-base")
        else:
            model = Kronos.from_pretrained("NeoQuasar/Kronos-small", revision=MODEL_REV)
            tok = KronosTokenizer.from_pretrained("NeoQuasar/Kronos-Tokenizer-base", revision=TOKENIZER_REV)
    except ValueError as exc:
        pytest.skip(
            f"real weights unavailable ({exc}). Set KRONOS_WEIGHTS_DIR to a folder holding Kronos-small/ "
            "and Kronos-Tokenizer-base/ (config.json + model.safetensors each), or allow hub access "
            "(unset HF_HUB_OFFLINE)"
        )
    return KronosPredictor(model, tok, device="cpu", max_context=512)


@pytest.fixture(scope="module")
def bars():
    return pd.read_csv(DATA / "kronos_regression_input.csv", parse_dates=["timestamps"])


@pytest.mark.parametrize("context_len", [512, 256])
@pytest.mark.parametrize("cache", ["exact", "reference"])
def test_upstream_regression_output(predictor, bars, context_len, cache):
    expected = pd.read_csv(DATA / f"kronos_regression_output_{context_len}.csv", parse_dates=["timestamps"])
    ctx = bars.iloc[:context_len]
    future = bars["timestamps"].iloc[context_len : context_len + len(expected)].reset_index(drop=True)
    predictor.cache = cache
    got = predictor.predict(
        ctx[FIELDS].reset_index(drop=True),
        ctx["timestamps"].reset_index(drop=True),
        future,
        pred_len=len(expected),
        **GREEDY,
    )
    np.testing.assert_allclose(
        got[FIELDS].to_numpy(np.float32), expected[FIELDS].to_numpy(np.float32), rtol=1e-5
    )


@pytest.mark.parametrize("context_len,expected_mse", [(512, 0.008979), (256, 0.003741)])
def test_upstream_mse(predictor, bars, context_len, expected_mse):
    predictor.cache = "exact"
    pred_len = 30
    region = bars.iloc[context_len : len(bars) - pred_len]
    rows = region.sample(n=4, random_state=123).sort_index().index
    mses = []
    for r in rows:
        ctx, fut = bars.iloc[r - context_len : r], bars.iloc[r : r + pred_len]
        got = predictor.predict(
            ctx[FIELDS].reset_index(drop=True),
            ctx["timestamps"].reset_index(drop=True),
            fut["timestamps"].reset_index(drop=True),
            pred_len=pred_len,
            **GREEDY,
        )
        ohlc = ["open", "high", "low", "close"]
        mses.append(float(np.mean((got[ohlc].to_numpy(np.float32) - fut[ohlc].to_numpy(np.float32)) ** 2)))
    assert abs(np.mean(mses) - expected_mse) <= 1e-6
