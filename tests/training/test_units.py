"""Training pieces without Ray: starting weights, the checks that stop a run early with the fix in the
message, the atomic local publish, and (with a GPU) the loop under bf16 autocast."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tests.training.conftest import train_config
from training import TrainConfig
from training.data import WindowData
from training.job import _check_windows, _publish, load_base


def _cfg(tmp_path, **over) -> TrainConfig:
    return TrainConfig.model_validate(train_config("/nowhere", str(tmp_path / "out"), **over))


def test_base_from_a_new_architecture_or_a_mismatched_pair(tmp_path):
    cfg = _cfg(
        tmp_path,
        base={
            "model_arch": {
                "d_model": 32,
                "n_heads": 2,
                "ff_dim": 64,
                "n_layers": 1,
                "s1_bits": 4,
                "s2_bits": 4,
            },
            "tokenizer_arch": {
                "d_model": 32,
                "n_heads": 2,
                "ff_dim": 64,
                "n_enc_layers": 1,
                "n_dec_layers": 1,
                "s1_bits": 4,
                "s2_bits": 4,
            },
        },
    )
    model, tok = load_base(cfg)
    assert model.config.d_model == 32 and model.config.n_layers == 1 and tok.s1_bits == 4
    again, _ = load_base(cfg)  # seeded: the same architecture and seed give the same init
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True)
    )
    bad = _cfg(
        tmp_path, base={"model": "random:test", "tokenizer_arch": {**cfg.base.tokenizer_arch, "s1_bits": 8}}
    )
    with pytest.raises(ValueError, match="do not match the tokenizer's"):
        load_base(bad)


def _data(n_train: int, n_val: int) -> WindowData:
    return WindowData(
        train=None,
        val=None,
        train_ids=np.arange(n_train, dtype=np.int64),
        val_ids=np.arange(n_val, dtype=np.int64),
        assets_used=3,
        rejected=pd.DataFrame({"symbol": ["X"], "n_bars": [5], "reject_reason": ["too_short"]}),
    )


def test_too_few_windows_stop_the_run_with_the_fix(tmp_path):
    cfg = _cfg(tmp_path, compute={"num_workers": 2})  # batch 16 x 2 workers
    with pytest.raises(
        ValueError, match=r"20 training windows .* need at least batch_size x num_workers = 32"
    ):
        _check_windows(cfg, _data(20, 10))
    with pytest.raises(ValueError, match="no validation windows.*move val_start earlier"):
        _check_windows(cfg, _data(64, 0))
    _check_windows(cfg, _data(64, 1))


def test_local_publish_replaces_the_output_in_one_rename(tmp_path):
    cfg = _cfg(tmp_path)
    for version in (b"v1", b"v2"):
        staged = tmp_path / f"staged-{version.decode()}"
        (staged / "model").mkdir(parents=True)
        (staged / "model" / "model.safetensors").write_bytes(version)
        _publish(cfg, staged, b'{"run": "%s"}' % version)
    out = tmp_path / "out"
    assert (out / "model" / "model.safetensors").read_bytes() == b"v2"
    assert (out / "training_manifest.json").read_bytes() == b'{"run": "v2"}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "staged-v1", "staged-v2"]  # no temp dirs


@pytest.mark.cuda
def test_the_loop_on_a_gpu_with_bf16_autocast():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from kronos_core import Kronos, KronosTokenizer
    from tests.training.test_loop import _settings, _windows
    from training.loop import pack_weights, run_local

    init = {
        "model": pack_weights(Kronos.from_pretrained("random:test")),
        "tokenizer": pack_weights(KronosTokenizer.from_pretrained("random:test")),
    }
    train, val = _windows(96, 1), _windows(32, 2)
    hist = run_local(
        _settings("predictor", train, val, bf16=True), init, train, val, device="cuda"
    ).last_state
    losses = [h["train_loss"] for h in hist["history"]]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
