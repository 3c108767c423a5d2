"""Greedy parity with the official Kronos code: identical generated tokens, outputs within rtol=1e-5."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kronos_core import Kronos, KronosPredictor, KronosTokenizer, SamplingParams, Series
from kronos_core.testing import synthetic_ohlcv

GREEDY = dict(T=1.0, top_k=1, top_p=1.0, sample_count=1)


def official_predict(om, ot, context, frames, xts, yts, pred_len):
    """Run the official predict_batch and capture the tokens it generated (the tail of what it decodes)."""
    from tests.kronos_core.conftest import oracle_module

    km = oracle_module()
    captured = {}
    decode = ot.decode

    def recording_decode(x, half=False):
        captured["s1"], captured["s2"] = x[0].clone(), x[1].clone()
        return decode(x, half=half)

    ot.decode = recording_decode
    try:
        pred = km.KronosPredictor(om, ot, device="cpu", max_context=context)
        out = pred.predict_batch(frames, xts, yts, pred_len, verbose=False, **GREEDY)
    finally:
        ot.decode = decode
    tokens = np.stack([captured["s1"][:, -pred_len:].numpy(), captured["s2"][:, -pred_len:].numpy()], axis=-1)
    return out, tokens


def ours(mdir, tdir, context, cache="exact"):
    return KronosPredictor(
        Kronos.from_pretrained(mdir),
        KronosTokenizer.from_pretrained(tdir),
        device="cpu",
        max_context=context,
        cache=cache,
    )


def windows(bars: pd.DataFrame, starts, lookback, pred_len, drop=()):
    frames, xts, yts = [], [], []
    for s in starts:
        chunk = bars.iloc[s : s + lookback + pred_len].reset_index(drop=True)
        frames.append(chunk.iloc[:lookback].drop(columns=["timestamps", *drop]))
        xts.append(chunk["timestamps"].iloc[:lookback])
        yts.append(chunk["timestamps"].iloc[lookback:].reset_index(drop=True))
    return frames, xts, yts


def check(arch, oracle_factory, frames, xts, yts, pred_len, context, caches=("exact", "reference")):
    om, ot, mdir, tdir = oracle_factory(arch)
    ref, ref_tokens = official_predict(om, ot, context, frames, xts, yts, pred_len)
    for cache in caches:
        mine = ours(mdir, tdir, context, cache)
        got = mine.predict_batch(frames, xts, yts, pred_len, **GREEDY)
        series = [
            Series.from_frame(str(i), f, timestamps=x, future_timestamps=y)
            for i, (f, x, y) in enumerate(zip(frames, xts, yts, strict=True))
        ]
        result = mine.forecast(series, pred_len, sampling=SamplingParams(top_k=1, top_p=1.0, sample_count=1))
        np.testing.assert_array_equal(result.tokens[:, 0], ref_tokens, err_msg=f"tokens differ ({cache})")
        for a, b in zip(ref, got, strict=True):
            assert list(b.columns) == list(a.columns) and b.index.equals(a.index)
            np.testing.assert_allclose(b.to_numpy(), a.to_numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(result.mean, np.stack([a.to_numpy() for a in ref]), rtol=1e-5, atol=1e-6)
    return ref_tokens


CASES = {
    # name: (starts, lookback, pred_len, context)
    "short-lookback": ([0], 40, 10, 64),
    "window-slides": ([100], 50, 30, 64),
    "lookback-over-context": ([300], 100, 12, 64),
    "batch-of-4": ([0, 211, 977, 1500], 60, 16, 64),
}


@pytest.mark.parametrize("case", CASES)
def test_tiny_matches_official(case, oracle_factory, real_bars):
    starts, lookback, pred_len, context = CASES[case]
    frames, xts, yts = windows(real_bars, starts, lookback, pred_len)
    tokens = check("tiny", oracle_factory, frames, xts, yts, pred_len, context)
    assert len(np.unique(tokens[..., 0])) > 1, "trajectory too flat to be a meaningful parity check"


@pytest.mark.parametrize("drop", [("volume", "amount"), ("amount",)], ids=["no-volume", "no-amount"])
def test_missing_volume_or_amount(drop, oracle_factory, real_bars):
    frames, xts, yts = windows(real_bars, [40, 700], 48, 20, drop=drop)
    check("tiny", oracle_factory, frames, xts, yts, 20, 64)


def test_daily_bars(oracle_factory):
    df = synthetic_ohlcv(160, freq="1d", seed=3)
    frames, xts, yts = windows(df, [0, 20], 110, 20)
    check("tiny", oracle_factory, frames, xts, yts, 20, 128)


def test_real_data_upstream_setting(oracle_factory, real_bars):
    """Upstream's regression setting (rows [0, 256), next 8 bars, context 512) on random weights."""
    frames, xts, yts = windows(real_bars, [0], 256, 8)
    check("tiny", oracle_factory, frames, xts, yts, 8, 512)


@pytest.mark.parametrize("case", ["window-slides", "batch-of-4"])
def test_mini_architecture(case, oracle_factory, real_bars):
    starts, lookback, pred_len, context = CASES[case]
    frames, xts, yts = windows(real_bars, starts, lookback, pred_len)
    check("mini", oracle_factory, frames, xts, yts, pred_len, context)


@pytest.mark.slow
@pytest.mark.parametrize("lookback,pred_len,context", [(120, 16, 512), (90, 24, 100)], ids=["grow", "slide"])
def test_small_architecture(lookback, pred_len, context, oracle_factory, real_bars):
    frames, xts, yts = windows(real_bars, [0, 800], lookback, pred_len)
    check("small", oracle_factory, frames, xts, yts, pred_len, context, caches=("exact",))
