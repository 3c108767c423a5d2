"""Model directories beyond the local disk, and the model registry the flows promote into.

Registry: ``<root>/<name>/current`` is a small JSON pointer (``ModelPointer``) naming the model and
tokenizer directories the nightly forecast uses; ``promote`` replaces it atomically (a local rename, or one
S3 PUT) and keeps the previous pointer inside the new one, so a rollback is one more ``promote``.

``localize``: a model or tokenizer directory on S3 is downloaded once into a local cache (keyed by its URL
and checked against the ``training_manifest.json`` beside it when there is one), so the forecast actors
load it as a local checkpoint, lineage included.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .config import StorageConfig
from .storage import _is_s3, filesystem, join, strip_protocol, to_url, with_retries

__all__ = ["ModelPointer", "read_pointer", "promote", "pointer_url", "localize", "CACHE_ENV", "MANIFEST"]

log = logging.getLogger(__name__)
CACHE_ENV = "KRONOS_MODEL_CACHE"
MANIFEST = "training_manifest.json"
_FILES = ("config.json", "model.safetensors")


@dataclass
class ModelPointer:
    """What ``<root>/<name>/current`` holds."""

    model: str
    tokenizer: str
    run_id: str | None = None
    promoted_at: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat())
    reason: str = ""
    metrics: dict = field(default_factory=dict)
    previous: dict | None = None


def pointer_url(root: str, name: str) -> str:
    return join(root.rstrip("/"), name, "current")


def read_pointer(root: str, name: str, storage: StorageConfig | None = None) -> ModelPointer | None:
    """The current pointer of ``name``, or None if nothing was promoted yet."""
    storage = (storage or StorageConfig()).resolved()
    url = pointer_url(root, name)
    fs = filesystem(url, storage)
    path = strip_protocol(url)
    if not with_retries(lambda: fs.exists(path), f"check {url}", storage.retries):
        return None
    raw = with_retries(lambda: fs.cat_file(path), f"read {url}", storage.retries)
    try:
        data = json.loads(raw)
        return ModelPointer(**data)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{url}: not a model pointer ({e}); fix or delete it, then promote again") from None


def promote(root: str, name: str, pointer: ModelPointer, storage: StorageConfig | None = None) -> str:
    """Make ``pointer`` current for ``name`` (the old one is kept in ``pointer.previous``). Atomic: readers
    see the old pointer or the new one, never a partial file. Returns the pointer's URL."""
    storage = (storage or StorageConfig()).resolved()
    old = read_pointer(root, name, storage)
    if old is not None and pointer.previous is None:
        prev = asdict(old)
        prev.pop("previous", None)  # one level: the chain lives in the run history, not in every pointer
        pointer.previous = prev
    body = json.dumps(asdict(pointer), indent=1, sort_keys=True).encode()
    url = pointer_url(root, name)
    if not _is_s3(url):
        dest = Path(url)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".current.")
        with os.fdopen(fd, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    else:
        fs = filesystem(url, storage)
        with_retries(lambda: fs.pipe_file(strip_protocol(url), body), f"write {url}", storage.retries)
    log.info("promoted %s -> %s (%s)", url, pointer.model, pointer.reason)
    return url


def _cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "kronos-batch" / "models")


def localize(url: str, storage: StorageConfig | None = None) -> str:
    """A local directory holding the checkpoint at ``url``: ``url`` itself unless it is on S3, else a
    cached copy (with the ``training_manifest.json`` beside it, whose sha256 of each file must match)."""
    if not _is_s3(url):
        return url
    storage = (storage or StorageConfig()).resolved()
    fs = filesystem(url, storage)
    src = strip_protocol(url).rstrip("/")
    parent, leaf = src.rsplit("/", 1)
    local_parent = _cache_root() / hashlib.sha256(to_url(parent, url).encode()).hexdigest()[:24]
    dest = local_parent / leaf
    manifest = None
    if with_retries(lambda: fs.exists(join(parent, MANIFEST)), f"check {url}", storage.retries):
        manifest = with_retries(lambda: fs.cat_file(join(parent, MANIFEST)), f"read {url}", storage.retries)
    recorded = json.loads(manifest).get("files", {}) if manifest else {}
    if all((dest / f).is_file() for f in _FILES) and _matches(dest, leaf, recorded):
        return str(dest)
    stage = local_parent / f".{leaf}.tmp-{uuid.uuid4().hex[:8]}"
    stage.mkdir(parents=True, exist_ok=True)
    for f in _FILES:
        with_retries(
            lambda f=f: fs.get_file(join(src, f), str(stage / f)), f"download {url}/{f}", storage.retries
        )
    if not _matches(stage, leaf, recorded):
        raise ValueError(
            f"{url}: downloaded files do not match the sha256 in {MANIFEST}; the upload is "
            "incomplete or was changed: re-export the model"
        )
    if manifest:
        (local_parent / MANIFEST).write_bytes(manifest)
    if dest.exists():
        import shutil

        shutil.rmtree(dest, ignore_errors=True)
    os.replace(stage, dest)
    log.info("model %s cached at %s", url, dest)
    return str(dest)


def _matches(directory: Path, leaf: str, recorded: dict) -> bool:
    from kronos_core.loading import file_sha256

    for f in _FILES:
        want = recorded.get(f"{leaf}/{f}")
        if want is not None and file_sha256(directory / f) != want:
            return False
    return True
