"""GPU checks (marker ``cuda``): same tokens on CUDA fp32 as on CPU; bf16 runs and stays close."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kronos_core import KronosPredictor, SamplingParams
from kronos_core.testing import synthetic_universe

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine"),
]


@pytest.fixture(scope="module")
def series():
    return synthetic_universe(8, 40, 140, 24, seed=1)


@pytest.mark.parametrize("size", ["test", "mini"])
def test_cuda_fp32_matches_cpu_greedy(size, series):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cpu = KronosPredictor.from_pretrained(f"random:{size}", f"random:{size}", max_context=128)
    gpu = KronosPredictor.from_pretrained(f"random:{size}", f"random:{size}", device="cuda", max_context=128)
    greedy = SamplingParams(top_k=1, top_p=1.0, sample_count=1)
    a, b = cpu.forecast(series, sampling=greedy), gpu.forecast(series, sampling=greedy)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_allclose(a.paths, b.paths, rtol=1e-4, atol=1e-4 * np.abs(a.paths).max())


def test_cuda_exact_equals_reference_when_sampling(series):
    gpu = KronosPredictor.from_pretrained("random:mini", "random:mini", device="cuda", max_context=96)
    params = SamplingParams(top_p=0.9, sample_count=4, seed=3)
    fast = gpu.forecast(series[:4], sampling=params, cache="exact")
    ref = gpu.forecast(series[:4], sampling=params, cache="reference")
    assert (fast.tokens == ref.tokens).mean() > 0.99  # sampled draws can flip on float noise only rarely


def test_cuda_bfloat16_runs(series):
    gpu = KronosPredictor.from_pretrained(
        "random:mini", "random:mini", device="cuda", dtype="bfloat16", max_context=128
    )
    res = gpu.forecast(series, sampling=SamplingParams(sample_count=4, seed=0))
    assert np.isfinite(res.paths).all() and res.paths.shape == (8, 4, 24, 6)
