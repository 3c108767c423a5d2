"""Training configuration (pydantic, the boundary: ``kronos-train --config train.yaml``) and the summary.

The data side embeds the batch job's own settings groups (``InputConfig``, ``StorageConfig``,
``UniverseConfig``, ``ValidationConfig``, ``kronos_core.MarketCalendar``), so training reads the same store,
layouts and rules as the job. Unknown keys are errors.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kronos_core import MarketCalendar
from pipeline.config import InputConfig, StorageConfig, UniverseConfig, ValidationConfig

__all__ = [
    "DataSpec",
    "WindowSpec",
    "BaseSpec",
    "StageSpec",
    "ComputeSpec",
    "CheckpointSpec",
    "TrainConfig",
    "TrainSummary",
    "StageResult",
    "load_train_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def _timestamp(v, name: str) -> pd.Timestamp | None:
    if v is None:
        return None
    try:
        ts = pd.Timestamp(v)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a date such as '2024-03-01', got {v!r} ({e})") from None
    if ts is pd.NaT:
        raise ValueError(f"{name} must be a date, got NaT")
    return ts.tz_localize(None) if ts.tz is not None else ts


class DataSpec(_Strict):
    """Where the bars are and which of them training may see (point in time)."""

    input: InputConfig
    storage: StorageConfig = StorageConfig()
    universe: UniverseConfig = UniverseConfig()
    calendar: MarketCalendar = Field(
        default_factory=MarketCalendar, description="the bars' calendar and frequency"
    )
    validation: ValidationConfig = Field(
        default_factory=ValidationConfig,
        description="the job's per-asset checks (stale does not apply: a delisted asset still trains)",
    )
    start: pd.Timestamp | None = Field(None, description="earliest bar read; empty = all history")
    cutoff: pd.Timestamp = Field(..., description="nothing stamped after it is read at all")
    val_start: pd.Timestamp = Field(
        ...,
        description="train on windows that end before it; validate on windows "
        "whose forecast part starts at or after it",
    )

    model_config = ConfigDict(extra="forbid", validate_assignment=True, arbitrary_types_allowed=True)

    @field_validator("start", "cutoff", "val_start", mode="before")
    @classmethod
    def _ts(cls, v, info):
        return _timestamp(v, info.field_name)

    @model_validator(mode="after")
    def _order(self):
        if not self.val_start < self.cutoff:
            raise ValueError(f"data.val_start ({self.val_start}) must be before data.cutoff ({self.cutoff})")
        if self.start is not None and not self.start < self.val_start:
            raise ValueError(f"data.start ({self.start}) must be before data.val_start ({self.val_start})")
        return self


class WindowSpec(_Strict):
    """Training windows of ``lookback + pred_len`` bars, normalised over the lookback part only."""

    lookback: int = Field(
        64,
        ge=2,
        le=4096,
        description="bars of context (normalisation statistics come from these only: no look-ahead)",
    )
    pred_len: int = Field(16, ge=1, le=1024, description="bars after the lookback in each window")
    stride: int = Field(1, ge=1, description="bars between the starts of consecutive windows of one asset")
    clip: float = Field(5.0, gt=0, description="normalised values are clipped to +-clip (as the predictor)")
    shuffle_buffer: int = Field(4096, ge=1, description="windows held per worker for the per-epoch shuffle")

    @property
    def length(self) -> int:
        return self.lookback + self.pred_len


class BaseSpec(_Strict):
    """The weights training starts from: published checkpoints (local dir or hub id), ``random:<size>``, or
    a custom architecture (``model_arch`` / ``tokenizer_arch``: config keys, seeded random init)."""

    model: str = Field(
        "random:mini", description="local dir, hub id (NeoQuasar/Kronos-mini) or random:<size>"
    )
    tokenizer: str = Field("random:mini", description="local dir, hub id or random:<size>")
    model_revision: str | None = None
    tokenizer_revision: str | None = None
    model_arch: dict[str, Any] | None = Field(
        None, description="KronosConfig keys: a new architecture trained from scratch (replaces model)"
    )
    tokenizer_arch: dict[str, Any] | None = Field(
        None, description="TokenizerConfig keys (replaces tokenizer)"
    )


class StageSpec(_Strict):
    """One training stage (upstream's defaults: AdamW, one-cycle warm-up then cosine, clip 2 / 3)."""

    enabled: bool = True
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1, description="windows per optimizer step per worker")
    accumulation_steps: int = Field(
        1, ge=1, description="micro-batches per optimizer step (batch_size is split)"
    )
    lr: float = Field(4e-5, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.1, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_pct: float = Field(0.03, ge=0, lt=1, description="share of steps warming up (then cosine decay)")
    grad_clip: float | None = Field(3.0, gt=0, description="max gradient norm; null = off")
    early_stopping_patience: int | None = Field(
        3, ge=1, description="epochs without a validation improvement before stopping; null = run every epoch"
    )
    min_delta: float = Field(0.0, ge=0, description="improvement below this does not count")

    @model_validator(mode="after")
    def _accum(self):
        if self.batch_size % self.accumulation_steps:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be divisible by accumulation_steps "
                f"({self.accumulation_steps})"
            )
        return self


def _tokenizer_stage() -> StageSpec:
    return StageSpec(enabled=False, lr=2e-4, grad_clip=2.0)


class ComputeSpec(_Strict):
    ray_address: str | None = Field(
        None, description="join this cluster ('auto', 'ray://host:10001'); None = local"
    )
    num_workers: int = Field(1, ge=1, description="Ray Train workers (DDP ranks)")
    use_gpu: bool = Field(False, description="one GPU per worker; bf16 autocast applies only here")
    resources_per_worker: dict[str, float] = Field(default_factory=lambda: {"CPU": 1.0})
    bf16: bool = Field(True, description="bfloat16 autocast on GPU (ignored on CPU)")
    gradient_checkpointing: bool = Field(
        False,
        description="recompute activations in the backward pass: less "
        "memory, about one more forward pass of compute",
    )
    torch_threads: int | None = Field(None, ge=1, description="torch threads per worker; default: its CPUs")
    report_poll_s: float = Field(
        0.5,
        gt=0,
        le=10,
        description="how often Ray Train's controller collects reports (RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, "
        "Ray's default 2 s): a report waits up to this long",
    )


class CheckpointSpec(_Strict):
    storage_path: str | None = Field(
        None,
        description="where Ray Train keeps checkpoints (local or s3://); "
        "default: <output>/../checkpoints for a local output",
    )
    every_n_steps: int = Field(
        50, ge=1, description="also checkpoint every N optimizer steps (and each epoch)"
    )
    keep: int = Field(2, ge=1, description="checkpoints kept")
    max_failures: int = Field(
        2, ge=0, description="worker failures survived (resume from the last checkpoint)"
    )
    record_windows: bool = Field(
        False, description="keep every step's window ids in the checkpoints (audits a resume; tests)"
    )


class TrainConfig(_Strict):
    """A fine-tuning run: data and split, windows, base weights, the two stages, compute, checkpoints."""

    name: str = Field("kronos-finetune", pattern=r"^[A-Za-z0-9._-]+$", description="run name")
    data: DataSpec
    windows: WindowSpec = WindowSpec()
    base: BaseSpec = BaseSpec()
    tokenizer: StageSpec = Field(
        default_factory=_tokenizer_stage,
        description="stage 1 (off by default: fine-tuning the predictor alone is the common case)",
    )
    predictor: StageSpec = Field(default_factory=StageSpec, description="stage 2, the tokenizer frozen")
    compute: ComputeSpec = ComputeSpec()
    checkpoint: CheckpointSpec = CheckpointSpec()
    output: str = Field(
        ...,
        description="model directory to write (local or s3://): model/, tokenizer/, "
        "training_manifest.json, loss_curve.png",
    )
    seed: int = Field(0, ge=0, description="data order, shuffles, dropout: one worker is bit-reproducible")

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    @model_validator(mode="after")
    def _coherent(self):
        if not (self.tokenizer.enabled or self.predictor.enabled):
            raise ValueError("both stages are disabled: enable tokenizer and/or predictor")
        return self

    def to_json_dict(self) -> dict[str, Any]:
        import json

        d = json.loads(self.model_dump_json())
        d["data"]["storage"] = StorageConfig.masked(d["data"]["storage"])
        return d


def load_train_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """Read a YAML training config and apply dotted overrides (``{"compute.num_workers": 2}``)."""
    from pipeline.config import read_yaml_config

    return TrainConfig.model_validate(read_yaml_config(path, overrides))


@dataclass
class StageResult:
    """One stage's run: per-epoch losses and speed, and which epoch's weights were kept."""

    stage: str
    epochs_run: int = 0
    steps: int = 0
    best_epoch: int = 0
    best_val_loss: float = float("nan")
    stopped_early: bool = False
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    windows_per_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    restarts: int = 0
    window_log: list | None = None  # [(epoch, step, rank, [window ids])] when checkpoint.record_windows


@dataclass
class TrainSummary:
    """What a run did; ``to_dict()`` is JSON-able."""

    name: str
    run_id: str = ""  # <name>-<UTC time>-<random>: the training_run lineage column of its forecasts
    output_url: str = ""
    cutoff: str = ""
    val_start: str = ""
    assets_read: int = 0
    assets_used: int = 0
    assets_rejected: int = 0
    reject_reasons: dict[str, int] = field(default_factory=dict)
    bars_used: int = 0
    bars_rejected: int = 0
    windows_train: int = 0
    windows_val: int = 0
    windows_straddling: int = 0
    stages: dict[str, StageResult] = field(default_factory=dict)
    wall_s: float = 0.0
    started_at: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        lines = [
            f"training run {self.name} -> {self.output_url}",
            f"  data             cutoff {self.cutoff}, validation from {self.val_start}",
            f"  assets           {self.assets_used} used, {self.assets_rejected} rejected "
            f"{self.reject_reasons or ''}",
            f"  bars / windows   {self.bars_used:,} bars used ({self.bars_rejected:,} in rejected assets); "
            f"{self.windows_train:,} train, {self.windows_val:,} "
            f"validation windows ({self.windows_straddling:,} straddling val_start left out)",
        ]
        for s in self.stages.values():
            lines.append(
                f"  {s.stage:<16} {s.epochs_run} epochs, {s.steps} steps, best val {s.best_val_loss:.4f} "
                f"(epoch {s.best_epoch}){' stopped early' if s.stopped_early else ''}, {s.wall_s:.0f} s"
            )
        lines.append(f"  wall time        {self.wall_s:.0f} s")
        return "\n".join(lines)
