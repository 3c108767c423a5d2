"""Training semantics equal the official code: on the same weights and batch, the tokenizer loss (BSQ
quantiser + coarse and full reconstruction) and the predictor loss (DualHead.compute_loss with teacher
forcing, train-mode attention) equal the oracle's, and one AdamW step gives the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kronos_core import Kronos, KronosTokenizer
from kronos_core.features import normalize, time_features
from kronos_core.objectives import predictor_loss, tokenize, tokenizer_loss
from kronos_core.testing import synthetic_ohlcv

TOL = 1e-5


@pytest.fixture(scope="module")
def batch():
    """Three real-shaped windows (lookback 24 + 8 future bars), normalised over the lookback only."""
    xs, stamps = [], []
    for seed in range(3):
        df = synthetic_ohlcv(32, freq="5min", seed=seed)
        values = df[["open", "high", "low", "close", "volume", "amount"]].to_numpy()
        _, mean, std = normalize(values[:24], 5.0)
        xs.append(np.clip((values.astype(np.float32) - mean) / (std + 1e-5), -5, 5))
        stamps.append(time_features(df["timestamps"].to_numpy()))
    return torch.from_numpy(np.stack(xs)).float(), torch.from_numpy(np.stack(stamps))


@pytest.fixture(scope="module")
def pair(oracle_factory):
    om, ot, mdir, tdir = oracle_factory("tiny")
    return om, ot, mdir, tdir


def _step(params, loss, clip):
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], max_norm=clip)
    opt.step()


def _max_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    return max((sa[k].float() - sb[k].float()).abs().max().item() for k in sa)


def test_tokenizer_loss_and_one_step_equal_the_oracle(pair, batch):
    import copy

    _, official, _, tdir = pair
    official = copy.deepcopy(official).train()
    ours = KronosTokenizer.from_pretrained(str(tdir)).train()
    x, _ = batch
    zs, bsq_ref, _, _ = official(x)
    ref = (F.mse_loss(zs[0], x) + F.mse_loss(zs[1], x) + bsq_ref) / 2  # upstream train_tokenizer.py
    loss, parts = tokenizer_loss(ours, x)
    assert abs(loss.item() - ref.item()) < TOL, (loss.item(), ref.item())
    assert abs(parts["bsq"].item() - bsq_ref.item()) < TOL
    _step(list(official.parameters()), ref, clip=2.0)
    _step(list(ours.parameters()), loss, clip=2.0)
    assert _max_diff(official, ours) < TOL


def test_predictor_loss_and_one_step_equal_the_oracle(pair, batch):
    import copy

    official, official_tok, mdir, tdir = pair
    official = copy.deepcopy(official).train()
    ours = Kronos.from_pretrained(str(mdir)).train()
    tok = KronosTokenizer.from_pretrained(str(tdir))
    x, stamp = batch
    s1, s2 = tokenize(tok, x)
    ref_s1, ref_s2 = official_tok.eval().encode(x, half=True)
    assert torch.equal(s1, ref_s1) and torch.equal(s2, ref_s2)  # the frozen tokenizer's ids
    logits = official(s1[:, :-1], s2[:, :-1], stamp[:, :-1], use_teacher_forcing=True, s1_targets=s1[:, 1:])
    ref, ref_s1_ce, ref_s2_ce = official.head.compute_loss(logits[0], logits[1], s1[:, 1:], s2[:, 1:])
    loss, parts = predictor_loss(ours, s1, s2, stamp)
    assert abs(loss.item() - ref.item()) < TOL, (loss.item(), ref.item())
    assert (
        abs(parts["ce_s1"].item() - ref_s1_ce.item()) < TOL
        and abs(parts["ce_s2"].item() - ref_s2_ce.item()) < TOL
    )
    _step(list(official.parameters()), ref, clip=3.0)
    _step(list(ours.parameters()), loss, clip=3.0)
    assert _max_diff(official, ours) < TOL


def test_gradient_checkpointing_gives_the_same_gradients(pair, batch):
    _, _, mdir, tdir = pair
    x, stamp = batch
    tok = KronosTokenizer.from_pretrained(str(tdir))
    s1, s2 = tokenize(tok, x)
    grads = []
    for ckpt in (False, True):
        m = Kronos.from_pretrained(str(mdir)).train()
        m.gradient_checkpointing = ckpt
        loss, _ = predictor_loss(m, s1, s2, stamp)
        loss.backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in m.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)


def test_eval_loss_keeps_the_causal_mask(pair, batch):
    """Upstream's eval-mode s2 head attends to later positions; ours scores with the causal mask, so a
    change to a later token never moves an earlier position's s2 logits."""
    _, _, mdir, tdir = pair
    x, stamp = batch
    s1, s2 = tokenize(KronosTokenizer.from_pretrained(str(tdir)), x)
    m = Kronos.from_pretrained(str(mdir)).eval()
    a = m(s1, s2, stamp, s1_targets=s1, causal_dep=True)[1]
    s1b = s1.clone()
    s1b[:, -1] = (s1b[:, -1] + 1) % (2**m.config.s1_bits)
    b = m(s1b, s2, stamp, s1_targets=s1b, causal_dep=True)[1]
    torch.testing.assert_close(a[:, :-1], b[:, :-1])
