"""The per-worker training loop (Ray Train ``TorchTrainer``, DDP) and the plain-function pieces it is
built from, testable and benchmarkable without Ray.

Data order. Every worker streams all windows of its split (``get_dataset_shard``, unsplit, sorted by
``window_id``) and keeps its share: in epoch ``e`` window ``i`` belongs to rank ``mix(seed, e, i) % world``.
Its share is shuffled in chunks of ``shuffle_buffer`` windows (a generator seeded by seed, epoch and
rank) and cut into batches; every rank takes the same number of steps, ``min(share) // batch_size``
(the rest of a share waits for another epoch's draw). The order is a pure function of (seed, epoch,
world size, the windows), so a single-worker run is bit-reproducible, and a run resumed from a checkpoint
taken after step ``k`` of an epoch skips exactly those ``k`` batches: the step count and the data order
continue, and no window of that epoch is trained twice. The cost of this simplicity is that each worker
reads every window (its share is 1/world of them).

Checkpoints (every ``every_n_steps`` and at each epoch end, written by rank 0): model, optimizer,
scheduler, the position in the data, every rank's RNG state, the best weights so far, the history.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = [
    "LoopSettings",
    "assign_keys",
    "steps_per_epoch",
    "epoch_batches",
    "StageModules",
    "build_modules",
    "train_step",
    "evaluate",
    "train_loop",
    "run_worker",
    "run_local",
    "RaySession",
    "LocalSession",
    "ArrayWindows",
    "pack_weights",
    "unpack_weights",
]

log = logging.getLogger(__name__)
_MASK64 = (1 << 64) - 1
STATE_FILE = "state.pt"


@dataclass
class LoopSettings:
    """What the loop needs (plain values: it travels to the workers in ``train_loop_config``)."""

    stage: str  # "tokenizer" | "predictor"
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_pct: float = 0.03
    grad_clip: float | None = 3.0
    accumulation_steps: int = 1
    early_stopping_patience: int | None = 3
    min_delta: float = 0.0
    every_n_steps: int = 50
    shuffle_buffer: int = 4096
    seed: int = 0
    torch_threads: int | None = None
    bf16: bool = True
    gradient_checkpointing: bool = False
    record_windows: bool = False  # keep every step's window ids in the checkpoints (tests)
    train_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    val_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


# --------------------------------------------------------------------------------------- data order
def _splitmix(x: np.ndarray) -> np.ndarray:
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & np.uint64(_MASK64)
    x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & np.uint64(_MASK64)
    x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & np.uint64(_MASK64)
    return x ^ (x >> np.uint64(31))


def assign_keys(ids: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """(N,) uint64 per-epoch keys of window ids: ``key % world`` is the window's rank in that epoch."""
    with np.errstate(over="ignore"):
        salt = _splitmix(np.array([seed * 1_000_003 + epoch], dtype=np.uint64))[0]
        return _splitmix(np.asarray(ids, dtype=np.int64).astype(np.uint64) ^ salt)


def steps_per_epoch(ids: np.ndarray, seed: int, epoch: int, world: int, batch_size: int) -> int:
    """Optimizer steps every rank takes in ``epoch``: the smallest share, in whole batches."""
    if len(ids) == 0:
        return 0
    counts = np.bincount((assign_keys(ids, seed, epoch) % np.uint64(world)).astype(np.int64), minlength=world)
    return int(counts.min() // batch_size)


def epoch_batches(
    batches: Iterator[dict],
    ids_total: np.ndarray,
    seed: int,
    epoch: int,
    rank: int,
    world: int,
    batch_size: int,
    buffer: int,
    skip: int = 0,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """This rank's batches of one epoch, ``(window_id (B,), x (B, W, 6), stamp (B, W, 5))``, from the
    stream of all windows in ``window_id`` order; the first ``skip`` batches are dropped (resume)."""
    steps = steps_per_epoch(ids_total, seed, epoch, world, batch_size)
    rng = np.random.default_rng([seed, epoch, rank])
    pool: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    pooled = emitted = 0

    def concat(parts):
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))

    def emit(chunk):
        """Shuffle one chunk, yield its whole batches; return the remainder (< batch_size windows)."""
        nonlocal emitted
        order = rng.permutation(len(chunk[0]))
        ids, x, st = (c[order] for c in chunk)
        full = len(ids) - len(ids) % batch_size
        for a in range(0, full, batch_size):
            if emitted >= steps:
                return None
            if emitted >= skip:
                yield ids[a : a + batch_size], x[a : a + batch_size], st[a : a + batch_size]
            emitted += 1
        return ids[full:], x[full:], st[full:]

    # chunks are cut at exactly ``buffer`` windows of this rank's stream: the batches do not depend on how
    # the stream arrives (Ray Data's block sizes, or arrays in memory)
    for b in batches:
        mine = (assign_keys(b["window_id"], seed, epoch) % np.uint64(world)) == np.uint64(rank)
        if not mine.any():
            continue
        pool.append(
            (np.asarray(b["window_id"])[mine], np.asarray(b["x"])[mine], np.asarray(b["stamp"])[mine])
        )
        pooled += int(mine.sum())
        while pooled >= buffer:
            ids, x, st = concat(pool)
            rest = yield from emit((ids[:buffer], x[:buffer], st[:buffer]))
            if rest is None:
                return
            pool = [rest, (ids[buffer:], x[buffer:], st[buffer:])]
            pooled = len(rest[0]) + len(ids) - buffer
    if pooled:
        yield from emit(concat(pool))


# --------------------------------------------------------------------------------------- modules
def pack_weights(module: torch.nn.Module) -> dict:
    """A module as plain bytes (config + safetensors): what travels to the workers and into checkpoints."""
    import dataclasses

    from safetensors.torch import save

    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    return {
        "config": dataclasses.asdict(module.config),
        "weights": save(state),
        "source": getattr(module, "source", None),
    }


def unpack_weights(kind: str, packed: dict, device="cpu") -> torch.nn.Module:
    from safetensors.torch import load

    from kronos_core import Kronos, KronosConfig, KronosTokenizer, TokenizerConfig

    cls, cfg_cls = (Kronos, KronosConfig) if kind == "model" else (KronosTokenizer, TokenizerConfig)
    module = cls(cfg_cls(**packed["config"]))
    module.load_state_dict(load(packed["weights"]), strict=True)
    if packed.get("source") is not None:
        module.source = packed["source"]
    return module.to(device)


@dataclass
class StageModules:
    trained: torch.nn.Module  # what the optimizer updates (possibly DDP-wrapped)
    core: torch.nn.Module  # the unwrapped module (its state dict is what is saved)
    tokenizer: torch.nn.Module | None  # the frozen tokenizer of the predictor stage


def build_modules(settings: LoopSettings, init: dict, device) -> StageModules:
    if settings.stage == "tokenizer":
        core = unpack_weights("tokenizer", init["tokenizer"], device)
        frozen = None
    else:
        core = unpack_weights("model", init["model"], device)
        frozen = unpack_weights("tokenizer", init["tokenizer"], device).eval()
        for p in frozen.parameters():
            p.requires_grad_(False)
    core.gradient_checkpointing = settings.gradient_checkpointing
    return StageModules(core, core, frozen)


def _loss(mods: StageModules, model: torch.nn.Module, x: torch.Tensor, stamp: torch.Tensor, stage: str):
    from kronos_core.objectives import predictor_loss, tokenize, tokenizer_loss

    if stage == "tokenizer":
        return tokenizer_loss(model, x)
    s1, s2 = tokenize(mods.tokenizer, x)
    return predictor_loss(model, s1, s2, stamp)


def train_step(
    mods: StageModules,
    optimizer,
    scheduler,
    x: torch.Tensor,
    stamp: torch.Tensor,
    settings: LoopSettings,
    autocast,
) -> float:
    """One optimizer step over a batch split into ``accumulation_steps`` micro-batches; returns the loss."""
    model = mods.trained
    model.train()
    optimizer.zero_grad(set_to_none=True)
    micro = np.array_split(np.arange(x.shape[0]), settings.accumulation_steps)
    total = 0.0
    for i, idx in enumerate(micro):
        sync = i == len(micro) - 1 or not hasattr(model, "no_sync")
        ctx = model.no_sync() if not sync else _null()
        with ctx, autocast():
            loss, _ = _loss(mods, model, x[idx], stamp[idx], settings.stage)
        (loss / settings.accumulation_steps).backward()
        total += loss.item() / settings.accumulation_steps
    if settings.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=settings.grad_clip)
    optimizer.step()
    scheduler.step()
    return total


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@torch.no_grad()
def evaluate(mods: StageModules, batches, settings: LoopSettings, device, autocast) -> tuple[float, int]:
    """(sum of per-window losses, windows) over ``batches``: the tokenizer's full-decode MSE (upstream's
    validation metric) or the predictor's cross-entropy, in eval mode."""
    from kronos_core.objectives import predictor_loss, tokenize, tokenizer_loss

    model = mods.core
    model.eval()
    total, n = 0.0, 0
    for _, x, st in batches:
        x = torch.as_tensor(x, device=device, dtype=torch.float32)
        st = torch.as_tensor(st, device=device, dtype=torch.int64)
        with autocast():
            if settings.stage == "tokenizer":
                _, parts = tokenizer_loss(model, x)
                value = parts["recon"]
            else:
                s1, s2 = tokenize(mods.tokenizer, x)
                value, _ = predictor_loss(model, s1, s2, st)
        total += float(value) * x.shape[0]
        n += x.shape[0]
    return total, n


def make_optimizer(params, settings: LoopSettings, total_steps: int):
    """AdamW and upstream's one-cycle schedule: 3 % warm-up from lr/10, then cosine decay."""
    opt = torch.optim.AdamW(
        params, lr=settings.lr, betas=tuple(settings.betas), weight_decay=settings.weight_decay
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=settings.lr, total_steps=max(1, total_steps), pct_start=settings.warmup_pct, div_factor=10
    )
    return opt, sched


# --------------------------------------------------------------------------------------- sessions
class RaySession:
    """The loop's view of a Ray Train worker: rank, device, dataset shards, checkpoints, reports."""

    def __init__(self):
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()

    def restored(self) -> dict | None:
        import ray.train

        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            return None
        with ckpt.as_directory() as d:
            return torch.load(os.path.join(d, STATE_FILE), map_location="cpu", weights_only=True)

    def shard(self, name: str):
        import ray.train

        return ray.train.get_dataset_shard(name)

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        import ray.train.torch

        return ray.train.torch.prepare_model(module) if self.world > 1 else module

    def report(self, metrics: dict, state: dict | None) -> None:
        """Every rank reports; rank 0 also hands over ``state`` as the checkpoint."""
        import ray.train

        if state is None:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            torch.save(state, os.path.join(d, STATE_FILE))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))


class LocalSession:
    """The same loop in this process without Ray Train (one rank): the benchmark's baseline and the
    reference a one-worker Ray Train run must equal bit for bit. ``datasets``: name -> an object with
    ``iter_batches(batch_size=, batch_format="numpy")`` (a Ray Dataset or ``ArrayWindows``)."""

    rank, world = 0, 1

    def __init__(self, datasets: dict, device="cpu", restore: dict | None = None, keep_states: bool = False):
        self.datasets, self.device = datasets, torch.device(device)
        self.restore, self.keep_states = restore, keep_states
        self.reports: list[dict] = []
        self.states: list[dict] = []  # every checkpoint, when keep_states
        self.last_state: dict | None = None

    def restored(self) -> dict | None:
        return self.restore

    def shard(self, name: str):
        return self.datasets[name]

    def wrap(self, module):
        return module

    def report(self, metrics: dict, state: dict | None) -> None:
        self.reports.append(metrics)
        if state is not None:  # what a checkpoint would hold, copied as torch.save would
            import io

            buf = io.BytesIO()
            torch.save(state, buf)
            buf.seek(0)
            self.last_state = torch.load(buf, map_location="cpu", weights_only=True)
            if self.keep_states:
                self.states.append(self.last_state)


class ArrayWindows:
    """Windows held in memory as numpy arrays, served in ``window_id`` order like the sorted dataset."""

    def __init__(self, columns: dict[str, np.ndarray]):
        order = np.argsort(columns["window_id"], kind="stable")
        self.columns = {k: np.asarray(v)[order] for k, v in columns.items()}

    @classmethod
    def from_dataset(cls, ds) -> ArrayWindows:
        cols = ds.select_columns(["window_id", "x", "stamp"]).to_numpy_refs()
        import ray

        parts = [ray.get(r) for r in cols]
        return cls({k: np.concatenate([p[k] for p in parts]) for k in ("window_id", "x", "stamp")})

    def __len__(self) -> int:
        return len(self.columns["window_id"])

    def iter_batches(self, batch_size: int = 1024, batch_format: str = "numpy"):
        n = len(self)
        for a in range(0, n, batch_size):
            yield {k: v[a : a + batch_size] for k, v in self.columns.items()}


# --------------------------------------------------------------------------------------- the loop
def train_loop(config: dict) -> None:
    """``train_loop_per_worker``: config = {"settings": LoopSettings, "init": ObjectRef of packed weights}."""
    import ray

    run_worker(config["settings"], ray.get(config["init"]), RaySession())


def run_local(
    settings: LoopSettings,
    init: dict,
    train,
    val,
    device="cpu",
    restore: dict | None = None,
    keep_states: bool = False,
) -> LocalSession:
    """The loop without Ray Train, in this process; the session holds the reports and the last checkpoint
    state (``last_state``). ``train``/``val``: see ``LocalSession``; ``restore``: a checkpoint state to
    resume from, as Ray Train would after a failure; ``keep_states``: keep every checkpoint state."""
    session = LocalSession({"train": train, "val": val}, device, restore=restore, keep_states=keep_states)
    threads = torch.get_num_threads()
    try:
        run_worker(settings, init, session)
    finally:
        torch.set_num_threads(threads)  # this process's setting, not the worker's
    return session


def run_worker(settings: LoopSettings, init: dict, session) -> None:
    """One rank's training: epochs of this rank's batches, validation, checkpoints and early stopping."""
    import torch.distributed as dist

    rank, world, device = session.rank, session.world, session.device
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    mods = build_modules(settings, init, device)
    torch.manual_seed(settings.seed * 7919 + rank)
    totals = [
        steps_per_epoch(settings.train_ids, settings.seed, e, world, settings.batch_size)
        for e in range(settings.epochs)
    ]
    if sum(totals) == 0:
        raise ValueError(
            f"{settings.stage}: {len(settings.train_ids)} training windows give no full batch of "
            f"{settings.batch_size} per worker ({world} workers); lower batch_size or add data"
        )
    opt, sched = make_optimizer(mods.core.parameters(), settings, sum(totals))
    use_cuda = device.type == "cuda"

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_cuda and settings.bf16)

    state = _State()
    saved = session.restored()
    if saved is not None:
        state.load(saved, mods.core, opt, sched, rank)
    mods.trained = session.wrap(mods.core)
    train_shard, val_shard = session.shard("train"), session.shard("val")

    def report(metrics: dict) -> None:
        # the RNG gather is a collective: every rank joins it before reporting (rank 0 inside snapshot)
        snap = state.snapshot(mods.core, opt, sched, world) if rank == 0 else state.snapshot_rng(world)
        metrics = {**metrics, "global_step": state.global_step, "rank": rank}
        session.report(metrics, snap if rank == 0 else None)

    for epoch in range(state.epoch, settings.epochs):
        t0, windows = time.perf_counter(), 0
        losses = state.epoch_losses  # a resumed epoch keeps the losses of its steps before the checkpoint
        batches = epoch_batches(
            train_shard.iter_batches(batch_size=1024, batch_format="numpy"),
            settings.train_ids,
            settings.seed,
            epoch,
            rank,
            world,
            settings.batch_size,
            settings.shuffle_buffer,
            skip=state.step_in_epoch,
        )
        for ids, x, st in batches:
            x = torch.as_tensor(x, device=device, dtype=torch.float32)
            st = torch.as_tensor(st, device=device, dtype=torch.int64)
            losses.append(train_step(mods, opt, sched, x, st, settings, autocast))
            windows += len(ids) * world
            state.step_in_epoch += 1
            state.global_step += 1
            if settings.record_windows:
                state.windows.setdefault(epoch, []).append(_gather(ids, world))
            if state.global_step % settings.every_n_steps == 0:
                report({"kind": "step", "epoch": epoch, "train_loss": float(np.mean(losses))})
        train_s = time.perf_counter() - t0  # steps, data and checkpoints; not the validation pass
        # validation: every rank scores its share of the validation windows, the sums are all-reduced
        vsum, vn = evaluate(
            mods, _all_of(val_shard, settings.val_ids, settings.seed, rank, world), settings, device, autocast
        )
        if world > 1:
            t = torch.tensor([vsum, float(vn)], dtype=torch.float64)
            dist.all_reduce(t)
            vsum, vn = float(t[0]), int(t[1])
        val_s = time.perf_counter() - t0 - train_s
        train_loss = _mean_over_ranks(losses, world)
        val_loss = vsum / vn if vn else float("nan")
        state.history.append(
            {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "windows_per_s": windows / train_s if train_s else 0.0,
                "train_s": train_s,
                "val_s": val_s,
                "steps": state.global_step,
            }
        )
        improved = not math.isnan(val_loss) and val_loss < state.best_val - settings.min_delta
        if improved or state.best_state is None:
            state.best_val = val_loss if not math.isnan(val_loss) else state.best_val
            state.best_epoch = epoch + 1
            state.best_state = {k: v.detach().to("cpu").clone() for k, v in mods.core.state_dict().items()}
            state.bad_epochs = 0
        else:
            state.bad_epochs += 1
        state.epoch, state.step_in_epoch, state.epoch_losses = epoch + 1, 0, []
        stop = (
            settings.early_stopping_patience is not None
            and state.bad_epochs >= settings.early_stopping_patience
        )
        state.stopped_early = stop and epoch + 1 < settings.epochs
        report({"kind": "epoch", **state.history[-1]})
        if stop:
            break


def _all_of(shard, ids, seed, rank, world):
    """This rank's share of the validation windows (a fixed split, every batch kept)."""
    it = shard.iter_batches(batch_size=1024, batch_format="numpy")
    for b in it:
        mine = (assign_keys(b["window_id"], seed, 0) % np.uint64(world)) == np.uint64(rank)
        if mine.any():
            yield np.asarray(b["window_id"])[mine], np.asarray(b["x"])[mine], np.asarray(b["stamp"])[mine]


def _gather(values: np.ndarray, world: int) -> list[int]:
    if world == 1:
        return [int(v) for v in values]
    import torch.distributed as dist

    out: list = [None] * world
    dist.all_gather_object(out, [int(v) for v in values])
    return [v for part in out for v in part]


def _mean_over_ranks(losses: list[float], world: int) -> float:
    value = float(np.mean(losses)) if losses else float("nan")
    if world == 1:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t[0]) / world


@dataclass
class _State:
    """Everything a checkpoint restores."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_val: float = float("inf")
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    best_state: dict | None = None
    history: list[dict] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)
    windows: dict[int, list[list[int]]] = field(default_factory=dict)
    restarts: int = 0

    def snapshot(self, core, opt, sched, world: int) -> dict:
        """Rank 0: everything a checkpoint restores (every rank's RNG state gathered)."""
        return {
            "model": core.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "best_val": self.best_val,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "stopped_early": self.stopped_early,
            "best_state": self.best_state,
            "history": self.history,
            "epoch_losses": self.epoch_losses,
            "windows": self.windows,
            "rng": self.snapshot_rng(world),
            "restarts": self.restarts,
        }

    @staticmethod
    def snapshot_rng(world: int) -> list:
        """Every rank's torch RNG state (a collective: every rank calls it at the same point)."""
        if world == 1:
            return [torch.get_rng_state()]
        import torch.distributed as dist

        gathered: list = [None] * world
        dist.all_gather_object(gathered, torch.get_rng_state())
        return gathered

    def load(self, s: dict, core, opt, sched, rank: int) -> None:
        core.load_state_dict(s["model"])
        opt.load_state_dict(s["optimizer"])
        sched.load_state_dict(s["scheduler"])
        for k in (
            "epoch",
            "step_in_epoch",
            "global_step",
            "best_val",
            "best_epoch",
            "bad_epochs",
            "stopped_early",
            "best_state",
            "history",
            "epoch_losses",
            "windows",
        ):
            setattr(self, k, s[k])
        self.restarts = s["restarts"] + 1
        if rank < len(s["rng"]):
            torch.set_rng_state(s["rng"][rank])
        log.warning(
            "resumed from a checkpoint: epoch %d, step %d of it, global step %d (restart %d)",
            self.epoch,
            self.step_in_epoch,
            self.global_step,
            self.restarts,
        )


def read_checkpoint(checkpoint) -> dict:
    """The state dict of a Ray Train checkpoint written by this loop (driver side)."""
    with checkpoint.as_directory() as d:
        return torch.load(os.path.join(d, STATE_FILE), map_location="cpu", weights_only=True)
