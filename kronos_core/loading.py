"""Loading and saving checkpoints in the published layout (``config.json`` + ``model.safetensors``).

A reference is one of:
- a local directory holding ``config.json`` and ``model.safetensors``;
- ``demo`` or ``demo:<name>``: a small model trained by this project and shipped in the package
  (``kronos_core.demo``; its sha256 is pinned, its label says DEMO MODEL: it is not the published Kronos);
- ``random:<size>`` (``test``, ``mini``, ``small``, ``base``) or ``random:<size>:<seed>``: a seeded random
  init, for tests and offline demos; its ``source.random`` is True and it says so in every label;
- a hub id such as ``NeoQuasar/Kronos-small`` (needs ``huggingface_hub`` and network; pin ``revision``).
Weights are read from safetensors only (never pickle), with strict keys.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .config import SIZES, config_from_dict
from .demo import DEMO_NOTE, RANDOM_NOTE, demo_dir, demo_model, is_demo_ref
from .settings import _DEVICE_HELP, check_device_name

__all__ = [
    "ModelSource",
    "PretrainedMixin",
    "resolve_device",
    "resolve_dtype",
    "file_sha256",
    "canonical_ref",
]

log = logging.getLogger(__name__)

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


@dataclass(frozen=True)
class ModelSource:
    """Where weights came from: enough to reproduce a forecast (lineage)."""

    ref: str
    revision: str | None = None
    sha256: str | None = None
    random: bool = False
    demo: bool = False  # a demo model shipped in the package (kronos_core.demo), not the published Kronos
    base: str | None = (
        None  # fine-tuned weights: the checkpoint they were trained from (training_manifest.json)
    )
    training_run: str | None = None

    @property
    def label(self) -> str:
        text = self.ref + (f"@{self.revision}" if self.revision else "")
        note = DEMO_NOTE if self.demo else RANDOM_NOTE if self.random else ""
        return f"{text} ({note})" if note else text


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``torch.device`` for a name (None: CPU); ``auto`` picks CUDA when this process sees a GPU, else CPU.

    In a Ray actor with ``num_gpus=0`` no GPU is visible, so ``auto`` runs on the CPU there; with
    ``num_gpus>0`` it runs on the GPU Ray assigned."""
    if device is None:
        return torch.device("cpu")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, str):
        check_device_name(device)
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r}; {_DEVICE_HELP}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} asked for but CUDA is not available here; use device='auto' or 'cpu'"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(
            f"device {device!r} asked for but MPS is not available here; use device='auto' or 'cpu'"
        )
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {device!r}; {_DEVICE_HELP}")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype in (torch.float32, torch.bfloat16, torch.float16):
            return dtype
    elif isinstance(dtype, str) and dtype.lower() in _DTYPES:
        return _DTYPES[dtype.lower()]
    raise ValueError(f"unsupported dtype {dtype!r}; use 'float32' (default), 'bfloat16' or 'float16'")


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def canonical_ref(ref: str | os.PathLike, seed: int = 0) -> str:
    """The reference a loaded model reports as its ``ModelSource.ref`` (its lineage and the job's ``model``
    column), without loading it: ``demo`` -> ``demo:<name>``, ``random:<size>`` -> ``random:<size>:<seed>``,
    anything else as given."""
    ref_s = os.fspath(ref)
    if is_demo_ref(ref_s):
        return demo_model(ref_s).ref
    parts = ref_s.split(":")
    if ref_s.startswith("random:") and len(parts) == 2 and parts[1] != "config":
        return f"{ref_s}:{seed}"
    return ref_s


def _hub_files(ref: str, revision: str | None) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise ValueError(
            f"{ref!r} is not a local directory, and huggingface_hub is not installed to fetch it "
            "from the hub. Install the 'hub' extra, or pass a local directory holding "
            "config.json + model.safetensors"
        ) from exc
    try:
        path = snapshot_download(
            repo_id=ref, revision=revision, allow_patterns=["config.json", "model.safetensors"]
        )
    except Exception as exc:  # offline, unknown repo, bad revision
        raise ValueError(
            f"could not fetch {ref!r} (revision {revision or 'main'}) from the Hugging Face hub: "
            f"{type(exc).__name__}: {exc}. Offline? Download the repo elsewhere "
            "(config.json + model.safetensors) and pass its local directory instead"
        ) from exc
    return Path(path)


TRAINING_MANIFEST = "training_manifest.json"


def _lineage(directory: Path, digest: str) -> tuple[str | None, str | None]:
    """(base, run) from a ``training_manifest.json`` beside the checkpoint directory, when that manifest
    records this very file (sha256): fine-tuned weights say what they came from."""
    path = directory.parent / TRAINING_MANIFEST
    if not path.is_file():
        return None, None
    try:
        manifest = json.loads(path.read_text())
        recorded = manifest.get("files", {}).get(f"{directory.name}/model.safetensors")
        if recorded != digest:
            return None, None
        kind = "model" if directory.name == manifest.get("layout", {}).get("model", "model") else "tokenizer"
        base = manifest.get("base", {}).get(kind)
        rev = manifest.get("base", {}).get(f"{kind}_revision")
        return (f"{base}@{rev}" if base and rev else base), manifest.get("run_id") or manifest.get("name")
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("%s: unreadable training manifest (%s); no lineage recorded", path, exc)
        return None, None


class PretrainedMixin:
    """``from_pretrained`` / ``save_pretrained`` for modules built from a frozen config dataclass."""

    config_class: type
    kind: str
    source: ModelSource

    @classmethod
    def from_config(cls, config, seed: int = 0, device=None, dtype=None):
        """A seeded random init of ``config`` (upstream's init scheme), in eval mode."""
        from .init import init_weights

        model = cls(config)
        init_weights(model, seed)
        model.source = ModelSource(ref=f"random:config:{seed}", random=True)
        return model.to(device=resolve_device(device), dtype=resolve_dtype(dtype)).eval()

    @classmethod
    def from_pretrained(
        cls,
        ref: str | os.PathLike,
        revision: str | None = None,
        device=None,
        dtype=None,
        sha256: str | None = None,
        seed: int = 0,
    ):
        """Load weights; returns the module in ``eval()`` mode on ``device`` in ``dtype``."""
        dev, dt = resolve_device(device), resolve_dtype(dtype)
        ref_s = os.fspath(ref)
        if ref_s.startswith("random:"):
            parts = ref_s.split(":")
            size = parts[1] if len(parts) > 1 else ""
            if size not in SIZES or len(parts) > 3:
                raise ValueError(
                    f"bad random reference {ref_s!r}; use random:<size>[:<seed>] with size in {sorted(SIZES)}"
                )
            rseed = int(parts[2]) if len(parts) == 3 else seed
            config = getattr(SIZES[size], cls.kind)
            model = cls.from_config(config, seed=rseed, device=dev, dtype=dt)
            model.source = ModelSource(ref=canonical_ref(ref_s, rseed), random=True)
            log.warning(
                "%s: using RANDOM weights (%s); forecasts are meaningless", cls.__name__, model.source.ref
            )
            return model
        if is_demo_ref(ref_s):
            directory, pinned = demo_dir(ref_s, cls.kind)
            model = cls._load_dir(directory, demo_model(ref_s).ref, None, dev, dt, sha256 or pinned)
            model.source = dataclasses.replace(model.source, demo=True)
            return model
        path = Path(ref_s)
        if path.is_dir():
            directory = path
        elif path.exists():
            raise ValueError(
                f"{ref_s!r} is a file; pass the directory holding config.json and model.safetensors"
            )
        elif ref_s.count("/") == 1 and not ref_s.startswith((".", "/")):
            directory = _hub_files(ref_s, revision)
        else:
            raise ValueError(
                f"no checkpoint directory at {ref_s!r}; pass a directory with config.json + "
                "model.safetensors, a hub id like 'NeoQuasar/Kronos-small', demo or random:<size>"
            )
        return cls._load_dir(directory, ref_s, revision, dev, dt, sha256)

    @classmethod
    def _load_dir(cls, directory: Path, ref: str, revision, device, dtype, sha256):
        cfg_path, weights = directory / "config.json", directory / "model.safetensors"
        if not cfg_path.is_file():
            raise ValueError(f"{directory}: no config.json")
        if not weights.is_file():
            bins = [p.name for p in directory.glob("*.bin")] + [p.name for p in directory.glob("*.pt")]
            hint = (
                f" (found {bins}: pickle checkpoints are not loaded; convert to safetensors)" if bins else ""
            )
            raise ValueError(f"{directory}: no model.safetensors{hint}")
        try:
            config_data = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{cfg_path}: invalid JSON: {exc}") from exc
        config = config_from_dict(cls.config_class, config_data, str(cfg_path))
        digest = file_sha256(weights)
        if sha256 is not None and digest != sha256.lower():
            raise ValueError(
                f"{weights}: sha256 {digest} does not match the expected {sha256}; "
                "the file is corrupt or a different revision"
            )
        state = load_file(str(weights))
        model = cls(config)
        expected = model.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            raise ValueError(
                f"{weights}: checkpoint keys do not match {cls.__name__}({config}); "
                f"missing {missing[:10]}{'...' if len(missing) > 10 else ''}, "
                f"unexpected {unexpected[:10]}{'...' if len(unexpected) > 10 else ''}"
            )
        for k, v in state.items():
            if tuple(v.shape) != tuple(expected[k].shape):
                raise ValueError(
                    f"{weights}: {k} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}"
                )
        model.load_state_dict(state, strict=True)
        base, run = _lineage(directory, digest)
        model.source = ModelSource(
            ref=ref, revision=revision, sha256=digest, random=False, base=base, training_run=run
        )
        return model.to(device=device, dtype=dtype).eval()

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (readable by us and by upstream)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = dataclasses.asdict(self.config)
        (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(out / "model.safetensors"))
        return out
