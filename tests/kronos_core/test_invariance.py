"""Batch invariance: a series' sample paths are the same bits whatever shares its batch.

Kernel level (each op, one row alone vs inside other batches) and end to end: a fuzz of random batch mixes
(other series, other lengths, batch sizes 1-64, 1-32 paths, T 1.0, top_p 0.9, generation batches split
at random) where every series' tokens and float paths must equal the series forecast alone.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from kronos_core import KronosPredictor, SamplingParams
from kronos_core.invariant import Linear, attention, set_batch_invariant
from kronos_core.testing import synthetic_series

SAMPLED = dict(temperature=1.0, top_k=0, top_p=0.9, seed=5)
PATHS = [1, 2, 3, 5, 8, 13, 21, 32]


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@torch.no_grad()
def test_linear_row_does_not_depend_on_the_other_rows(threads):
    g = torch.Generator().manual_seed(0)
    for k, n in [(256, 256), (256, 1024), (512, 256), (6, 32), (32, 6), (32, 64)]:
        lin = Linear(k, n)
        x = torch.randn(1, k, generator=g)
        alone = lin(x)[0]
        for m in [2, 3, 5, 7, 9, 11, 13, 64, 65, 333]:
            for pos in {0, m // 2, m - 1}:
                batch = torch.randn(m, k, generator=g)
                batch[pos] = x[0]
                assert torch.equal(lin(batch)[pos], alone), (k, n, m, pos)
                # a 3-D input (B, T, d) is the same rows
                assert torch.equal(lin(batch.view(1, m, k))[0, pos], alone)


@torch.no_grad()
def test_causal_attention_row_does_not_depend_on_padding_or_batch(threads):
    g = torch.Generator().manual_seed(1)
    for hd, length in [(16, 2), (16, 5), (32, 10), (64, 37), (64, 70)]:
        q, k, v = (torch.randn(1, 2, length, hd, generator=g) for _ in range(3))
        alone = attention(q, k, v, causal=True)[0]
        for t in [length, length + 1, length + 9, length + 64]:
            for rows in [1, 3]:
                qs, ks, vs = (torch.randn(rows, 2, t, hd, generator=g) for _ in range(3))
                for big, small in ((qs, q), (ks, k), (vs, v)):
                    big[rows - 1, :, :length] = small[0]
                got = attention(qs, ks, vs, causal=True)[rows - 1, :, :length]
                assert torch.equal(got, alone), (hd, length, t, rows)


@torch.no_grad()
def test_decode_attention_row_does_not_depend_on_capacity_or_batch(threads):
    """One query (a generation step) and several queries (the decode after a shared lookback) over a KV
    buffer whose capacity and other rows change with the batch."""
    g = torch.Generator().manual_seed(2)
    for tq, valid in [(1, 1), (1, 5), (1, 100), (3, 9), (24, 40)]:
        q = torch.randn(1, 4, tq, 64, generator=g)
        k, v = (torch.randn(1, 4, valid, 64, generator=g) for _ in range(2))
        own = torch.ones(1, 1, tq, valid, dtype=torch.bool)
        alone = attention(q, k, v, own)[0]
        for cap in [valid, valid + 1, valid + 12, 256]:
            for rows in [1, 2, 7]:
                qs = torch.randn(rows, 4, tq, 64, generator=g)
                ks, vs = (torch.randn(rows, 4, cap, 64, generator=g) for _ in range(2))
                qs[0], ks[0, :, :valid], vs[0, :, :valid] = q[0], k[0], v[0]
                lengths = torch.randint(1, cap + 1, (rows,), generator=g)
                lengths[0] = valid
                mask = (torch.arange(cap).view(1, 1, 1, cap) < lengths.view(rows, 1, 1, 1)).expand(
                    -1, -1, tq, -1
                )
                assert torch.equal(attention(qs, ks, vs, mask)[0], alone), (tq, valid, cap, rows)


@torch.no_grad()
def test_kernels_off_give_the_same_values_to_rounding():
    """``set_batch_invariant(False)`` (plain sgemm and SDPA, to measure the cost) computes the same thing."""
    pred = KronosPredictor.from_pretrained("random:test", "random:test", max_context=32)
    series = [synthetic_series(f"S{i}", n, 5, seed=i) for i, n in enumerate([3, 20, 45])]
    sp = SamplingParams(top_k=1, top_p=1.0, sample_count=1)
    on = pred.forecast(series, sampling=sp)
    for m in (pred.model, pred.tokenizer):
        set_batch_invariant(m, False)
    try:
        off = pred.forecast(series, sampling=sp)
    finally:
        for m in (pred.model, pred.tokenizer):
            set_batch_invariant(m, True)
    np.testing.assert_array_equal(on.tokens, off.tokens)
    np.testing.assert_allclose(on.paths, off.paths, rtol=1e-4, atol=1e-4)


def _fuzz(size: str, context: int, mixes: int, pred_len: int, max_rows: int, seed: int, pool_size: int):
    pred = KronosPredictor.from_pretrained(f"random:{size}", f"random:{size}", max_context=context)
    rng = np.random.default_rng(seed)
    # lookbacks from 1 bar to twice the context: short, growing, sliding from the start and mid-way
    pool = [
        synthetic_series(f"A{i}", int(rng.integers(1, 2 * context)), pred_len, seed=i)
        for i in range(pool_size)
    ]
    alone: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    covered = {"batch": set(), "paths": set()}
    for mix in range(mixes):
        paths = int(rng.choice(PATHS))
        batch = int(rng.integers(1, min(64, max(1, max_rows // paths)) + 1))
        idx = [int(i) for i in rng.permutation(len(pool))[: min(batch, len(pool))]]
        others = [  # beyond the pool: the same bars under other symbols (other keys, so other paths)
            dataclasses.replace(pool[int(i)], symbol=f"B{mix}_{j}")
            for j, i in enumerate(rng.integers(0, len(pool), batch - len(idx)))
        ]
        order = rng.permutation(batch)
        call = [(pool + others)[k] for k in [*idx, *range(len(pool), len(pool) + len(others))]]
        call = [call[k] for k in order]
        pred.batch_size = int(rng.integers(paths, max_rows + 1))  # generation batches split at random
        sp = SamplingParams(sample_count=paths, **SAMPLED)
        got = pred.forecast(call, sampling=sp)
        covered["batch"].add(batch)
        covered["paths"].add(paths)
        for row, i in ((r, int(x.symbol[1:])) for r, x in enumerate(call) if x.symbol.startswith("A")):
            if (i, paths) not in alone:
                one = pred.forecast([pool[i]], sampling=sp)
                alone[(i, paths)] = (one.tokens[0], one.paths[0])
            tokens, values = alone[(i, paths)]
            where = f"mix {mix}: series {i} (lookback {pool[i].values.shape[0]}) among {batch}, {paths} paths"
            np.testing.assert_array_equal(got.tokens[row], tokens, err_msg=where)
            np.testing.assert_array_equal(got.paths[row], values, err_msg=where)
    assert max(covered["batch"]) > 32 and min(covered["batch"]) == 1 and covered["paths"] == set(PATHS)


def test_fuzz_random_mixes_tiny():
    _fuzz("test", context=48, mixes=200, pred_len=6, max_rows=256, seed=0, pool_size=24)


def test_fuzz_random_mixes_mini():
    _fuzz("mini", context=32, mixes=200, pred_len=3, max_rows=64, seed=1, pool_size=16)
