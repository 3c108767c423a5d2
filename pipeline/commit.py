"""Stage 6, write: stage files under ``_staging/<run_id>/``, then commit each touched partition.

Layout under the output root::

    forecasts/as_of_tag=<tag>/model_tag=<slug>/part-<run>-<id>.parquet, _manifest.json, _SUCCESS
    rejected/as_of_tag=<tag>/model_tag=<slug>/...                     (same)
    _staging/<run_id>/<table>/...                                (this run's files before commit)
    _locks/as_of_tag=<tag>/model_tag=<slug>/LOCK                   (held only while committing)

Commit protocol for one (as_of, model) partition, the same on a folder and on S3 (no renames needed):
  1. take the partition lock (exclusive create: O_EXCL locally, ``If-None-Match: *`` on S3); a live lock
     held by another run -> ``PartitionLockedError``;
  2. check the partition's generation (the run_id in its ``_manifest.json``) is still the one seen when
     this run started; otherwise another run committed meanwhile -> ``ConcurrentCommitError``;
  3. copy the staged files in under run-unique names (old files stay; the old manifest still lists them);
  4. write the new ``_manifest.json``: the commit point (a single PUT / file replace);
  5. delete files the new manifest does not list (the previous run's, or orphans of a crashed run);
  6. write ``_SUCCESS`` last, release the lock, remove the staging prefix.
A crash before 4 leaves the previous manifest and all of its files intact; readers that go through the
manifest (``read_partition``) never see a mix. Other partitions are never listed, let alone touched.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import re
import uuid
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .config import StorageConfig
from .storage import create_exclusive, filesystem, join, strip_protocol, to_url, with_retries

__all__ = [
    "PartitionLockedError",
    "ConcurrentCommitError",
    "Partition",
    "list_partitions",
    "read_partition_at",
    "as_of_tag",
    "model_slug",
    "partition_path",
    "write_staged",
    "current_generation",
    "commit_partition",
    "read_partition",
    "TABLES",
]

log = logging.getLogger(__name__)
TABLES = ("forecasts", "rejected")
MANIFEST, SUCCESS = "_manifest.json", "_SUCCESS"


class PartitionLockedError(RuntimeError):
    """Another run is committing the same partition right now."""


class ConcurrentCommitError(RuntimeError):
    """Another run committed the same partition after this run started."""


def as_of_tag(as_of) -> str:
    ts = pd.Timestamp(as_of)
    return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.strftime("%Y-%m-%dT%H-%M-%S")


def model_slug(model_ref: str) -> str:
    ref = str(model_ref).rstrip("/")
    if "/" in ref and not ref.startswith(("/", ".")) and ref.count("/") == 1:
        ref = ref.replace("/", "--")  # hub id org/name
    elif "/" in ref:
        ref = ref.rsplit("/", 1)[-1]  # local directory
    return re.sub(r"[^A-Za-z0-9._-]+", "-", ref).strip("-") or "model"


AS_OF_KEY, MODEL_KEY = "as_of_tag", "model_tag"


def partition_rel(as_of, model_ref: str) -> str:
    return f"{AS_OF_KEY}={as_of_tag(as_of)}/{MODEL_KEY}={model_slug(model_ref)}"


def partition_path(root: str, table: str, as_of, model_ref: str) -> str:
    return join(root, table, partition_rel(as_of, model_ref))


def write_staged(batch: pa.Table, url: str, storage: StorageConfig, run_id: str, table: str) -> pa.Table:
    """Ray Data write stage: one parquet file per batch under ``_staging/<run_id>/<table>/``.

    Returns one record per file (``name, rows, bytes, sha256``); only recorded files are ever committed,
    so a file left by a crashed-and-retried task is never published."""
    fs = filesystem(url, storage)
    name = f"part-{run_id}-{uuid.uuid4().hex[:12]}.parquet"
    path = join(strip_protocol(url), "_staging", run_id, table, name)
    buf = io.BytesIO()
    pq.write_table(batch, buf, compression="zstd")
    data = buf.getvalue()
    with_retries(
        lambda: fs.pipe_file(path, data),
        f"write {to_url(path, url)}",
        storage.retries,
        storage.retry_backoff_s,
    )
    return pa.table(
        {
            "name": [name],
            "rows": [batch.num_rows],
            "bytes": [len(data)],
            "sha256": [hashlib.sha256(data).hexdigest()],
        }
    )


def _read_json(fs, path: str, retries: int) -> dict | None:
    def go():
        try:
            return json.loads(fs.cat_file(path))
        except FileNotFoundError:
            return None

    return with_retries(go, f"read {path}", retries)


def current_generation(url: str, storage: StorageConfig, table: str, as_of, model_ref: str) -> str | None:
    """The run_id that committed the partition now visible (None if it does not exist)."""
    fs = filesystem(url, storage)
    m = _read_json(
        fs, join(partition_path(strip_protocol(url), table, as_of, model_ref), MANIFEST), storage.retries
    )
    return m["run_id"] if m else None


def _acquire(fs, lock: str, run_id: str, timeout_s: float, retries: int) -> None:
    body = json.dumps({"run_id": run_id, "since": dt.datetime.now(dt.timezone.utc).isoformat()}).encode()
    for _ in range(2):
        if with_retries(lambda: create_exclusive(fs, lock, body), f"lock {lock}", retries):
            return
        held = _read_json(fs, lock, retries) or {}
        since = pd.Timestamp(held.get("since", "1970-01-01T00:00:00+00:00"))
        age = (pd.Timestamp.now(tz="UTC") - since).total_seconds()
        if age <= timeout_s:
            raise PartitionLockedError(
                f"partition is being committed by run {held.get('run_id')!r} since {held.get('since')} "
                f"(lock {lock}); two runs raced on the same as_of/model. Wait for it, or if that run died, "
                f"delete the lock (it is treated as abandoned after output.lock_timeout_s={timeout_s:g}s)"
            )
        log.warning("breaking abandoned lock %s (run %s, %.0fs old)", lock, held.get("run_id"), age)
        fs.rm(lock)
    raise PartitionLockedError(f"could not take lock {lock}")


def commit_partition(
    url: str,
    storage: StorageConfig,
    run_id: str,
    as_of,
    model_ref: str,
    staged: dict[str, list[dict]],
    expected_generation: dict[str, str | None],
    manifest: dict,
    lock_timeout_s: float = 3600,
) -> dict[str, str]:
    """Publish this run's staged files for every table in ``staged``; returns table -> partition URL."""
    fs = filesystem(url, storage)
    root, r = strip_protocol(url), storage.retries
    rel = partition_rel(as_of, model_ref)
    lock = join(root, "_locks", rel, "LOCK")
    _acquire(fs, lock, run_id, lock_timeout_s, r)
    try:
        for table in staged:
            gen = current_generation(url, storage, table, as_of, model_ref)
            if gen != expected_generation.get(table):
                raise ConcurrentCommitError(
                    f"{table}/{rel} was committed by run {gen!r} after run {run_id!r} started (it saw "
                    f"{expected_generation.get(table)!r}); this run's output was not published. Re-run to "
                    f"replace it"
                )
        out = {}
        for table, files in staged.items():
            out[table] = publish_files(fs, root, run_id, table, rel, files, manifest, r)
        return {t: to_url(p, url) for t, p in out.items()}
    finally:
        with_retries(lambda: fs.rm(lock) if fs.exists(lock) else None, f"unlock {lock}", r)
        staging = join(root, "_staging", run_id)
        try:
            if fs.exists(staging):
                fs.rm(staging, recursive=True)
        except Exception as e:  # noqa: BLE001 - leftover staging is harmless garbage
            log.warning("could not remove staging %s: %s", staging, e)


def copy_in(fs, root: str, run_id: str, table: str, rel: str, files: list[dict], retries: int) -> str:
    """Protocol step 3: staged files -> the partition, next to the files of the previous commit."""
    part = join(root, table, rel)
    for f in files:
        src, dst = join(root, "_staging", run_id, table, f["name"]), join(part, f["name"])
        with_retries(lambda s=src, d=dst: fs.copy(s, d), f"copy {src} -> {dst}", retries)
    return part


def publish_files(
    fs, root: str, run_id: str, table: str, rel: str, files: list[dict], manifest: dict, retries: int
) -> str:
    part = copy_in(fs, root, run_id, table, rel, files, retries)
    body = dict(
        manifest,
        table=table,
        partition=rel,
        run_id=run_id,
        files=files,
        rows=int(sum(f["rows"] for f in files)),
    )
    data = json.dumps(body, indent=1, sort_keys=True, default=str).encode()
    with_retries(
        lambda: fs.pipe_file(join(part, MANIFEST), data), f"write manifest {part}", retries
    )  # step 4
    keep = {f["name"] for f in files} | {MANIFEST, SUCCESS}
    fs.invalidate_cache(part)
    for p in with_retries(lambda: fs.ls(part, detail=False), f"list {part}", retries):  # step 5
        if p.rstrip("/").rsplit("/", 1)[-1] not in keep:
            with_retries(lambda p=p: fs.rm(p, recursive=True), f"delete {p}", retries)
    with_retries(
        lambda: fs.pipe_file(join(part, SUCCESS), run_id.encode()), f"write _SUCCESS {part}", retries
    )
    log.info("committed %s/%s: %d files, %d rows", table, rel, len(files), body["rows"])
    return part


@dataclass(frozen=True)
class Partition:
    """A committed partition of one table: its as_of tag, model tag and URL."""

    table: str
    as_of_tag: str
    model_tag: str
    url: str

    @property
    def as_of(self) -> pd.Timestamp:
        """The partition's as_of (``2024-06-28`` or ``2024-06-28T16-00-00``)."""
        day, _, clock = self.as_of_tag.partition("T")
        return pd.Timestamp(f"{day} {clock.replace('-', ':')}" if clock else day)


def list_partitions(url: str, table: str, storage: StorageConfig | None = None) -> list[Partition]:
    """Every committed partition of ``table`` (those with a manifest), sorted by as_of then model."""
    storage = storage or StorageConfig()
    fs = filesystem(url, storage)
    pattern = join(strip_protocol(url), table, f"{AS_OF_KEY}=*", f"{MODEL_KEY}=*", MANIFEST)
    out = []
    for m in with_retries(
        lambda: fs.glob(pattern), f"list {to_url(join(strip_protocol(url), table), url)}", storage.retries
    ):
        part = m.rsplit("/", 1)[0]
        a, mdl = part.rsplit("/", 2)[-2:]
        out.append(Partition(table, a.split("=", 1)[1], mdl.split("=", 1)[1], to_url(part, url)))
    return sorted(out, key=lambda p: (p.as_of, p.model_tag))


def read_partition_at(
    partition_url: str, storage: StorageConfig | None = None, columns: list[str] | None = None
) -> pd.DataFrame:
    """A committed partition by URL, read through its manifest (consistent even mid-commit or after a crash).
    Raises ``FileNotFoundError`` if the partition has no manifest."""
    storage = storage or StorageConfig()
    fs = filesystem(partition_url, storage)
    part = strip_protocol(partition_url)
    m = _read_json(fs, join(part, MANIFEST), storage.retries)
    if m is None:
        raise FileNotFoundError(f"no committed partition {partition_url} (no {MANIFEST})")
    tables = []
    for f in m["files"]:
        with fs.open(join(part, f["name"]), "rb") as fh:
            tables.append(pq.read_table(fh, columns=columns))
    return pa.concat_tables(tables).to_pandas() if tables else pd.DataFrame(columns=columns or [])


def read_partition(
    url: str, table: str, as_of, model_ref: str, storage: StorageConfig | None = None
) -> pd.DataFrame:
    """The committed partition of ``table`` for (as_of, model), read through its manifest."""
    return read_partition_at(
        to_url(partition_path(strip_protocol(url), table, as_of, model_ref), url), storage
    )
