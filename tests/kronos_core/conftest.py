"""Oracle fixtures: the official Kronos code (kronos-finance==0.1.5, test-only) with random weights saved by
its own ``save_pretrained`` and loaded by our loader."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch

DATA = Path(__file__).resolve().parents[1] / "data"

# name -> (model kwargs, tokenizer kwargs); architectures of upstream's sizes plus a tiny one
ARCHS = {
    "tiny": (
        dict(n_layers=2, d_model=32, n_heads=2, ff_dim=64, s1_bits=6, s2_bits=6, learn_te=False),
        dict(d_model=32, n_heads=2, ff_dim=64, n_enc_layers=2, n_dec_layers=2, s1_bits=6, s2_bits=6),
    ),
    "mini": (
        dict(n_layers=4, d_model=256, n_heads=4, ff_dim=512, s1_bits=10, s2_bits=10, learn_te=True),
        dict(d_model=256, n_heads=4, ff_dim=512, n_enc_layers=4, n_dec_layers=4, s1_bits=10, s2_bits=10),
    ),
    "small": (
        dict(n_layers=8, d_model=512, n_heads=8, ff_dim=1024, s1_bits=10, s2_bits=10, learn_te=True),
        dict(d_model=256, n_heads=4, ff_dim=512, n_enc_layers=4, n_dec_layers=4, s1_bits=10, s2_bits=10),
    ),
}
_DROPOUT = dict(ffn_dropout_p=0.0, attn_dropout_p=0.0, resid_dropout_p=0.0)


def oracle_module():
    pytest.importorskip("kronos_finance", reason="the oracle needs the test extra: pip install -e .[test]")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from kronos_finance._vendor import kronos_model
    return kronos_model


def make_oracle(arch: str, directory: Path, seed: int = 0):
    """Random-init official model + tokenizer (heads scaled x20 so trajectories are diverse), saved with the
    official ``save_pretrained``. Returns (official model, official tokenizer, model dir, tokenizer dir)."""
    km = oracle_module()
    mk, tk = ARCHS[arch]
    torch.manual_seed(seed)
    tok = km.KronosTokenizer(
        d_in=6, beta=0.05, gamma0=1.0, gamma=1.1, zeta=0.05, group_size=4, **_DROPOUT, **tk
    )
    model = km.Kronos(token_dropout_p=0.0, **_DROPOUT, **mk)
    with torch.no_grad():
        model.head.proj_s1.weight.mul_(20)
        model.head.proj_s2.weight.mul_(20)
    mdir, tdir = directory / f"{arch}-model", directory / f"{arch}-tokenizer"
    model.save_pretrained(mdir)
    tok.save_pretrained(tdir)
    return model.eval(), tok.eval(), mdir, tdir


@pytest.fixture(scope="session")
def real_bars() -> pd.DataFrame:
    return pd.read_csv(DATA / "kronos_regression_input.csv", parse_dates=["timestamps"])


@pytest.fixture(scope="session")
def oracle_factory(tmp_path_factory):
    cache = {}

    def get(arch: str):
        if arch not in cache:
            cache[arch] = make_oracle(arch, tmp_path_factory.mktemp(f"oracle-{arch}"))
        return cache[arch]

    return get
