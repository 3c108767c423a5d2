"""The training loop without Ray: the data order (sharding, shuffling, resume), bit-reproducibility and a
resume from a checkpoint that continues exactly where the uninterrupted run was."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kronos_core import Kronos, KronosTokenizer
from kronos_core.features import time_features
from training.loop import (
    ArrayWindows,
    LoopSettings,
    epoch_batches,
    pack_weights,
    run_local,
    steps_per_epoch,
)


def _stream(ids, chunk):
    n = len(ids)
    x = np.arange(n, dtype=np.float32)[:, None, None] * np.ones((1, 2, 6), np.float32)
    st = np.zeros((n, 2, 5), np.int16)
    for a in range(0, n, chunk):
        yield {"window_id": ids[a : a + chunk], "x": x[a : a + chunk], "stamp": st[a : a + chunk]}


def _epoch(ids, epoch, rank, world, chunk=1024, skip=0, seed=3):
    return [
        b[0].tolist()
        for b in epoch_batches(_stream(ids, chunk), ids, seed, epoch, rank, world, 16, 100, skip=skip)
    ]


def test_epoch_batches_shard_shuffle_and_skip():
    ids = np.sort(np.random.default_rng(0).choice(1 << 40, size=1000, replace=False)).astype(np.int64)
    world = 3
    for epoch in range(3):
        steps = steps_per_epoch(ids, 3, epoch, world, 16)
        per_rank = [_epoch(ids, epoch, r, world) for r in range(world)]
        # every rank takes the same number of steps, whole batches, no window twice in the epoch
        assert [len(b) for b in per_rank] == [steps] * world and steps > 0
        seen = [w for batches in per_rank for b in batches for w in b]
        assert all(len(b) == 16 for batches in per_rank for b in batches)
        assert len(seen) == len(set(seen)) and set(seen) <= set(ids.tolist())
        # a pure function of (seed, epoch, rank, world, windows): not of how the stream is chunked
        assert per_rank[1] == _epoch(ids, epoch, 1, world, chunk=7) == _epoch(ids, epoch, 1, world, chunk=333)
        # resuming after k steps yields exactly the rest
        assert _epoch(ids, epoch, 2, world, skip=5) == per_rank[2][5:]
    # another epoch or seed reshuffles
    assert _epoch(ids, 0, 0, world) != _epoch(ids, 1, 0, world)
    assert _epoch(ids, 0, 0, world) != _epoch(ids, 0, 0, world, seed=4)


def _windows(n: int, seed: int, width: int = 20) -> ArrayWindows:
    rng = np.random.default_rng(seed)
    t = np.arange("2024-01-02", "2024-03-01", dtype="datetime64[D]").astype("datetime64[ns]")[:width]
    walk = np.cumsum(rng.normal(size=(n, width, 1)), axis=1) * 0.3
    x = np.concatenate(
        [walk + rng.normal(scale=0.05, size=(n, width, 4)), rng.normal(size=(n, width, 2))], -1
    )
    stamp = np.broadcast_to(time_features(t).astype(np.int16), (n, width, 5))
    ids = rng.choice(1 << 50, size=n, replace=False).astype(np.int64)
    return ArrayWindows({"window_id": ids, "x": x.astype(np.float32), "stamp": stamp.copy()})


@pytest.fixture(scope="module")
def init():
    return {
        "model": pack_weights(Kronos.from_pretrained("random:test")),
        "tokenizer": pack_weights(KronosTokenizer.from_pretrained("random:test")),
    }


def _settings(stage: str, train: ArrayWindows, val: ArrayWindows, **over) -> LoopSettings:
    kw = dict(
        stage=stage,
        epochs=3,
        batch_size=8,
        lr=2e-3,
        warmup_pct=0.1,
        early_stopping_patience=None,
        every_n_steps=4,
        shuffle_buffer=24,
        seed=11,
        torch_threads=1,
        record_windows=True,
        train_ids=train.columns["window_id"],
        val_ids=val.columns["window_id"],
    )
    return LoopSettings(**{**kw, **over})


def _losses(history: list[dict]) -> list[tuple]:
    return [(h["epoch"], h["train_loss"], h["val_loss"], h["steps"]) for h in history]  # not the speed


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("stage", ["predictor", "tokenizer"])
def test_local_loop_learns_and_is_bit_reproducible(init, stage):
    train, val = _windows(96, 1), _windows(32, 2)
    s = _settings(stage, train, val)
    a, b = run_local(s, init, train, val), run_local(s, init, train, val)
    assert _same(a.last_state["model"], b.last_state["model"])
    assert _losses(a.last_state["history"]) == _losses(b.last_state["history"])
    hist = a.last_state["history"]
    assert len(hist) == 3 and a.last_state["global_step"] == 3 * steps_per_epoch(
        train.columns["window_id"], 11, 0, 1, 8
    )
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    # another seed, other weights
    c = run_local(_settings(stage, train, val, seed=12), init, train, val)
    assert not _same(a.last_state["model"], c.last_state["model"])


def test_resume_from_a_mid_epoch_checkpoint_continues_the_same_run(init):
    """What a killed worker gets from Ray Train: the last checkpoint. Resumed from a checkpoint taken in the
    middle of epoch 2, the run ends with the same weights, optimizer state, history and data order as
    the run that was never interrupted; no window is trained twice in an epoch."""
    train, val = _windows(96, 3), _windows(32, 4)
    s = _settings("predictor", train, val, early_stopping_patience=2, every_n_steps=5)
    full = run_local(s, init, train, val, keep_states=True)
    mid = [st for st in full.states if st["step_in_epoch"] > 0]
    assert mid, "no mid-epoch checkpoint"
    cut = mid[len(mid) // 2]
    resumed = run_local(s, init, train, val, restore=cut)
    end, again = full.last_state, resumed.last_state
    assert _same(end["model"], again["model"]) and _same(end["best_state"], again["best_state"])
    assert _losses(end["history"]) == _losses(again["history"]) and end["global_step"] == again["global_step"]
    assert end["optimizer"]["state"][0]["step"] == again["optimizer"]["state"][0]["step"]
    assert end["windows"] == again["windows"] and again["restarts"] == 1
    for epoch, steps in again["windows"].items():
        flat = [w for step in steps for w in step]
        assert len(flat) == len(set(flat)), f"epoch {epoch}: a window trained twice"
    # the resumed session only trained the steps after the checkpoint
    steps_after = [r for r in resumed.reports if r["kind"] == "step"]
    assert all(r["global_step"] > cut["global_step"] for r in steps_after)
