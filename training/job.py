"""run_training: fine-tune Kronos on the user's bars, as numbered stages on Ray.

1. data       Ray Data: the job's read plan up to the cutoff, the shared rules, windows, the time split
2. base       load the starting weights (published checkpoint, hub id, random:<size> or an architecture)
3. tokenizer  (optional) Ray Train TorchTrainer: reconstruction + BSQ loss, early stopping on validation
4. predictor  (optional) Ray Train TorchTrainer: next-token cross-entropy, the tokenizer frozen
5. export     the published layout (model/, tokenizer/: config.json + model.safetensors),
              training_manifest.json (lineage, data, hyper-parameters, losses, sha256 of every file),
              loss_curve.png; the manifest is written last (the commit point)
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.job import code_version, ensure_ray
from pipeline.storage import filesystem, join, strip_protocol, to_url

from .config import StageSpec, TrainConfig, TrainSummary, load_train_config
from .data import WindowData, build_windows
from .loop import (
    ArrayWindows,
    LoopSettings,
    pack_weights,
    read_checkpoint,
    run_local,
    train_loop,
    unpack_weights,
)

__all__ = ["run_training", "load_base", "fit_stage", "fit_stage_local", "MANIFEST", "LAYOUT"]

log = logging.getLogger(__name__)
MANIFEST = "training_manifest.json"
LAYOUT = {"model": "model", "tokenizer": "tokenizer"}


def _coerce(config) -> TrainConfig:
    if isinstance(config, TrainConfig):
        return config
    if isinstance(config, (str, Path)):
        return load_train_config(config)
    if isinstance(config, dict):
        return TrainConfig.model_validate(config)
    raise TypeError(
        f"config must be a TrainConfig, a dict or a path to a YAML file, got {type(config).__name__}"
    )


def load_base(cfg: TrainConfig):
    """Stage 2: the starting (model, tokenizer), on the CPU, in train-ready form."""
    from kronos_core import Kronos, KronosConfig, KronosTokenizer, TokenizerConfig
    from kronos_core.config import config_from_dict
    from pipeline.models import localize

    b = cfg.base
    storage = cfg.data.storage.resolved()  # a base on S3 (a registry there) is read through a local copy
    if b.model_arch is not None:
        model = Kronos.from_config(
            config_from_dict(KronosConfig, b.model_arch, "base.model_arch"), seed=cfg.seed
        )
    else:
        model = Kronos.from_pretrained(localize(b.model, storage), revision=b.model_revision)
    if b.tokenizer_arch is not None:
        tok = KronosTokenizer.from_config(
            config_from_dict(TokenizerConfig, b.tokenizer_arch, "base.tokenizer_arch"), seed=cfg.seed
        )
    else:
        tok = KronosTokenizer.from_pretrained(localize(b.tokenizer, storage), revision=b.tokenizer_revision)
    if (model.config.s1_bits, model.config.s2_bits) != (tok.s1_bits, tok.s2_bits):
        raise ValueError(
            f"base model bits (s1={model.config.s1_bits}, s2={model.config.s2_bits}) do not match the "
            f"tokenizer's (s1={tok.s1_bits}, s2={tok.s2_bits}); pair a model with its tokenizer"
        )
    return model, tok


def _storage_path(cfg: TrainConfig, run_id: str) -> tuple[str, object | None]:
    """(storage_path, pyarrow filesystem or None) for Ray Train's checkpoints."""
    path = cfg.checkpoint.storage_path
    if path is None:
        if cfg.output.startswith(("s3://", "s3a://")):
            path = join(cfg.output.rstrip("/") + "-checkpoints")
        else:
            path = os.path.abspath(cfg.output.rstrip("/")) + "-checkpoints"
    if not path.startswith(("s3://", "s3a://")):
        return os.path.abspath(path), None
    import pyarrow.fs as pafs

    # the project's own s3fs client (the job's storage settings, endpoint and credentials), as pyarrow sees it
    fs = filesystem(path, cfg.data.storage.resolved())
    return strip_protocol(path), pafs.PyFileSystem(pafs.FSSpecHandler(fs))


def _settings(stage: str, spec: StageSpec, cfg: TrainConfig, data: WindowData) -> LoopSettings:
    c = cfg.compute
    threads = c.torch_threads or max(1, int(c.resources_per_worker.get("CPU", 1)))
    return LoopSettings(
        stage=stage,
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        lr=spec.lr,
        weight_decay=spec.weight_decay,
        betas=tuple(spec.betas),
        warmup_pct=spec.warmup_pct,
        grad_clip=spec.grad_clip,
        accumulation_steps=spec.accumulation_steps,
        early_stopping_patience=spec.early_stopping_patience,
        min_delta=spec.min_delta,
        every_n_steps=cfg.checkpoint.every_n_steps,
        shuffle_buffer=cfg.windows.shuffle_buffer,
        seed=cfg.seed,
        torch_threads=threads,
        bf16=c.bf16,
        gradient_checkpointing=c.gradient_checkpointing,
        train_ids=data.train_ids,
        val_ids=data.val_ids,
        record_windows=cfg.checkpoint.record_windows,
    )


def fit_stage(
    stage: str,
    spec: StageSpec,
    cfg: TrainConfig,
    data: WindowData,
    packed: dict,
    run_id: str,
    on_report: Callable[[dict], None] | None = None,
) -> dict:
    """Stages 3-4: one Ray Train run; returns the final training state (history, best weights...)."""
    import ray
    from ray.data import ExecutionOptions
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from .progress import relay  # imports ray.train: only when a run starts

    settings = _settings(stage, spec, cfg, data)
    path, fs = _storage_path(cfg, run_id)
    c = cfg.compute
    with relay(stage, spec.epochs, on_report) as progress:
        trainer = TorchTrainer(
            train_loop,
            train_loop_config={"settings": settings, "init": ray.put(packed)},
            scaling_config=ScalingConfig(
                num_workers=c.num_workers,
                use_gpu=c.use_gpu,
                resources_per_worker=dict(c.resources_per_worker),
            ),
            run_config=RunConfig(
                name=f"{cfg.name}-{run_id}-{stage}",
                storage_path=path,
                storage_filesystem=fs,
                failure_config=FailureConfig(max_failures=cfg.checkpoint.max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=cfg.checkpoint.keep),
                callbacks=[progress],
            ),
            datasets={"train": data.train, "val": data.val},
            # every worker streams every window in window_id order and keeps its share (training.loop)
            dataset_config=DataConfig(
                datasets_to_split=[], execution_options=ExecutionOptions(preserve_order=True)
            ),
        )
        t0 = time.perf_counter()
        with _env(RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=str(c.report_poll_s)):
            result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"{stage}: training produced no checkpoint ({result.error})")
    state = read_checkpoint(result.checkpoint)
    state["wall_s"] = time.perf_counter() - t0
    state["checkpoint"] = result.checkpoint.path
    return state


@contextlib.contextmanager
def _env(**values: str):
    """Environment variables for the Ray Train run started inside (Ray passes them on), then restored;
    a value the user already exported wins."""
    saved = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        os.environ.setdefault(k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def fit_stage_local(stage: str, spec: StageSpec, cfg: TrainConfig, data: WindowData, packed: dict) -> dict:
    """A stage in this process without Ray Train (one rank, the windows in memory): the final state.
    The reference a one-worker Ray Train run equals bit for bit, and the benchmark's baseline."""
    session = run_local(
        _settings(stage, spec, cfg, data),
        packed,
        ArrayWindows.from_dataset(data.train),
        ArrayWindows.from_dataset(data.val),
    )
    return session.last_state


def run_training(
    config: TrainConfig | dict | str | Path,
    on_report: Callable[[dict], None] | None = None,
    progress: bool = False,
) -> TrainSummary:
    """Fine-tune; returns what it did. The output directory is complete once its manifest exists.

    ``on_report`` gets every report of rank 0 (``kind`` "step" or "epoch", ``stage``, ``epoch``,
    ``train_loss``, ``val_loss``, ``windows_per_s``, ``global_step``, ``checkpoint``) as it happens;
    ``progress`` shows Ray Data's progress bars for the data stage."""
    import ray

    from .config import StageResult

    cfg = _coerce(config)
    t0 = time.perf_counter()
    run_id = f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    summary = TrainSummary(
        name=cfg.name,
        run_id=f"{cfg.name}-{run_id}",
        cutoff=str(cfg.data.cutoff),
        val_start=str(cfg.data.val_start),
    )
    started = ensure_ray(cfg.compute.ray_address)
    try:
        # 1. data
        data = build_windows(cfg, progress)
        _check_windows(cfg, data)
        summary.assets_read, summary.assets_used = data.assets_read, data.assets_used
        summary.assets_rejected, summary.reject_reasons = len(data.rejected), data.reject_reasons
        summary.bars_used, summary.windows_straddling = data.bars_used, data.windows_straddling
        summary.bars_rejected = data.bars_rejected
        summary.windows_train, summary.windows_val = len(data.train_ids), len(data.val_ids)
        # 2. base weights
        model, tok = load_base(cfg)
        packed = {"model": pack_weights(model), "tokenizer": pack_weights(tok)}
        base = _describe_base(cfg, model, tok)
        # 3-4. the stages
        for stage, spec, kind in (
            ("tokenizer", cfg.tokenizer, "tokenizer"),
            ("predictor", cfg.predictor, "model"),
        ):
            if not spec.enabled:
                continue
            log.info(
                "stage %s: %d epochs x batch %d on %d worker(s)",
                stage,
                spec.epochs,
                spec.batch_size,
                cfg.compute.num_workers,
            )
            state = fit_stage(stage, spec, cfg, data, packed, run_id, on_report)
            trained = unpack_weights(kind, packed[kind])
            trained.load_state_dict(state["best_state"])
            packed[kind] = pack_weights(trained)
            hist = state["history"]
            summary.stages[stage] = StageResult(
                stage=stage,
                epochs_run=len(hist),
                steps=int(state["global_step"]),
                best_epoch=int(state["best_epoch"]),
                best_val_loss=float(state["best_val"]),
                stopped_early=bool(state["stopped_early"]),
                train_loss=[h["train_loss"] for h in hist],
                val_loss=[h["val_loss"] for h in hist],
                windows_per_s=[h["windows_per_s"] for h in hist],
                wall_s=float(state["wall_s"]),
                restarts=int(state["restarts"]),
                window_log=state.get("windows") or None,
            )
        # 5. export
        summary.output_url = export(cfg, packed, base, data, summary)
    finally:
        if started:
            ray.shutdown()
    summary.wall_s = time.perf_counter() - t0
    log.info("%s", summary.render())
    return summary


def _check_windows(cfg: TrainConfig, data: WindowData) -> None:
    w = cfg.windows
    need = max(s.batch_size for s in (cfg.tokenizer, cfg.predictor) if s.enabled) * cfg.compute.num_workers
    if len(data.train_ids) < need:
        raise ValueError(
            f"{len(data.train_ids)} training windows of {w.length} bars before val_start "
            f"{cfg.data.val_start}; need at least batch_size x num_workers = {need}. Move val_start "
            f"later, shorten lookback/pred_len, lower stride or add assets ({data.assets_used} used, "
            f"{len(data.rejected)} rejected: {data.reject_reasons})"
        )
    if len(data.val_ids) == 0:
        raise ValueError(
            f"no validation windows: no asset has {w.lookback} bars before and {w.pred_len} bars from "
            f"val_start {cfg.data.val_start} up to the cutoff {cfg.data.cutoff}; move val_start earlier "
            "or the cutoff later"
        )


def _describe_base(cfg: TrainConfig, model, tok) -> dict:
    from kronos_core.predictor import default_max_context

    b = cfg.base
    ms, ts = getattr(model, "source", None), getattr(tok, "source", None)
    return {
        "model": "architecture" if b.model_arch is not None else b.model,
        "model_revision": b.model_revision,
        "model_sha256": getattr(ms, "sha256", None),
        "model_random": bool(getattr(ms, "random", True)),
        "model_arch": b.model_arch,
        "tokenizer": "architecture" if b.tokenizer_arch is not None else b.tokenizer,
        "tokenizer_revision": b.tokenizer_revision,
        "tokenizer_sha256": getattr(ts, "sha256", None),
        "tokenizer_arch": b.tokenizer_arch,
        "max_context": default_max_context(model, b.model),
    }


def export(cfg: TrainConfig, packed: dict, base: dict, data: WindowData, summary: TrainSummary) -> str:
    """Stage 5: write the output directory; the manifest last. Returns its URL."""
    from kronos_core.loading import file_sha256

    from .report import loss_curve_png

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for kind, sub in LAYOUT.items():
            unpack_weights(kind, packed[kind]).save_pretrained(root / sub)
        (root / "loss_curve.png").write_bytes(loss_curve_png(summary))
        files = {str(p.relative_to(root)): file_sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}
        manifest = {
            "name": cfg.name,
            "run_id": summary.run_id,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "code_version": code_version(),
            "layout": LAYOUT,
            "base": base,
            "max_context": base["max_context"],
            "data": {
                "url": cfg.data.input.url,
                "layout": cfg.data.input.layout,
                "universe": cfg.data.universe.resolve(),
                "calendar": dataclasses.asdict(cfg.data.calendar),
                "start": str(cfg.data.start or ""),
                "cutoff": str(cfg.data.cutoff),
                "val_start": str(cfg.data.val_start),
                "first_bar": data.first_bar,
                "last_bar": data.last_bar,
                "files_read": data.files_read,
                "bytes_read": data.bytes_read,
                "assets_read": data.assets_read,
                "assets_used": data.assets_used,
                "assets_rejected": len(data.rejected),
                "reject_reasons": data.reject_reasons,
                "bars_used": data.bars_used,
                "bars_rejected": data.bars_rejected,
                "windows_train": int(len(data.train_ids)),
                "windows_val": int(len(data.val_ids)),
                "windows_straddling": data.windows_straddling,
            },
            "windows": cfg.windows.model_dump(),
            "stages": {
                name: {**dataclasses.asdict(r), "settings": getattr(cfg, name).model_dump()}
                for name, r in summary.stages.items()
            },
            "compute": cfg.compute.model_dump(),
            "seed": cfg.seed,
            "config": cfg.to_json_dict(),
            "files": files,
        }
        for r in manifest["stages"].values():
            r.pop("window_log", None)
        body = json.dumps(manifest, indent=1, sort_keys=True, default=_json_default).encode()
        return _publish(cfg, root, body)


def _json_default(v):
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    return str(v)


def _publish(cfg: TrainConfig, root: Path, manifest: bytes) -> str:
    """Copy the directory to ``cfg.output`` (replacing it), the manifest last: an output with a manifest is
    complete. Local: staged next to it, then moved in; S3: files uploaded, then the manifest PUT."""
    out = cfg.output.rstrip("/")
    if not out.startswith(("s3://", "s3a://")):
        dest = Path(out).absolute()
        stage = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
        shutil.copytree(root, stage)
        (stage / MANIFEST).write_bytes(manifest)
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(dest, old)
            os.replace(stage, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage, dest)
        return str(dest)
    storage = cfg.data.storage.resolved()
    fs = filesystem(out, storage)
    base = strip_protocol(out)
    if fs.exists(join(base, MANIFEST)):
        fs.rm(join(base, MANIFEST))  # the old output stops being complete before any of its files change
    for p in sorted(root.rglob("*")):
        if p.is_file():
            fs.put_file(str(p), join(base, str(p.relative_to(root))))
    fs.pipe_file(join(base, MANIFEST), manifest)
    return to_url(base, out)
