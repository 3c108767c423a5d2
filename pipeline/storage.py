"""Storage through fsspec: a local folder or ``s3://`` via s3fs, with retries for transient errors.

Writes go through s3fs (never pyarrow's S3 filesystem): pyarrow writes zero-byte directory markers that
s3fs/pandas readers then trip over (see docs/pipeline.md).
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable
from typing import TypeVar

import fsspec

from .config import StorageConfig

__all__ = [
    "filesystem",
    "strip_protocol",
    "join",
    "with_retries",
    "create_exclusive",
    "StorageError",
    "is_transient",
    "s3_error",
]

log = logging.getLogger(__name__)
T = TypeVar("T")


class StorageError(RuntimeError):
    """A permanent object-store failure (after retries), with the URL and the cause."""


def _is_s3(url: str) -> bool:
    return url.startswith(("s3://", "s3a://"))


def filesystem(url: str, storage: StorageConfig | None = None) -> fsspec.AbstractFileSystem:
    """The fsspec filesystem for ``url``. S3 settings: config first, then the AWS environment variables."""
    if not _is_s3(url):
        return fsspec.filesystem("file", auto_mkdir=True)
    import s3fs

    storage = (storage or StorageConfig()).resolved()
    endpoint, region = storage.endpoint_url, storage.region
    client_kwargs = {}
    if endpoint:
        client_kwargs["endpoint_url"] = endpoint
    if region:
        client_kwargs["region_name"] = region
    # skip_instance_cache: each call gets a fresh client, so a forked Ray worker never reuses a dead loop
    return s3fs.S3FileSystem(
        key=storage.key,
        secret=storage.secret,
        anon=storage.anon,
        client_kwargs=client_kwargs,
        skip_instance_cache=True,
        config_kwargs={"retries": {"max_attempts": 2, "mode": "standard"}},
    )


def strip_protocol(url: str) -> str:
    """The path fsspec wants (``bucket/prefix`` or an absolute local path)."""
    if _is_s3(url):
        return url.split("://", 1)[1].rstrip("/")
    return os.path.abspath(url.removeprefix("file://")).rstrip("/")


def to_url(path: str, like: str) -> str:
    """Inverse of ``strip_protocol``: put the protocol of ``like`` back on ``path``."""
    return f"s3://{path}" if _is_s3(like) else path


def join(*parts: str) -> str:
    return "/".join(p.strip("/") if i else p.rstrip("/") for i, p in enumerate(parts) if p)


_PERMANENT = (
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
    ValueError,
    TypeError,
    KeyError,
)
# S3 error codes (https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html) worth a retry
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "OperationAborted",
    }
)
_TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
_TRANSIENT_ERRNO = frozenset(
    {
        errno.EAGAIN,
        errno.ECONNRESET,
        errno.ETIMEDOUT,
        errno.ECONNREFUSED,
        errno.EBUSY,
        errno.EPIPE,
        getattr(errno, "EREMOTEIO", errno.EIO),
    }
)


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def s3_error(exc: BaseException) -> tuple[str | None, int | None] | None:
    """(error code, HTTP status) of the first botocore ``ClientError`` in ``exc``'s cause chain, else None
    (s3fs re-raises client errors as OSError subclasses with the ClientError as the cause)."""
    for e in _chain(exc):
        response = getattr(e, "response", None)
        if isinstance(response, dict) and "Error" in response:
            code = response["Error"].get("Code")
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return (str(code) if code is not None else None), (int(status) if status is not None else None)
    return None


def _network_types() -> tuple[type, ...]:
    types: list[type] = [ConnectionError, TimeoutError]
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError

        types += [BotoConnectionError, HTTPClientError]
    except ImportError:
        pass
    try:
        import aiohttp

        types += [aiohttp.ClientConnectionError, aiohttp.ClientPayloadError]
    except ImportError:
        pass
    return tuple(types)


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: throttling, timeouts, 5xx, dropped connections. Not: missing objects, auth, bad input.

    Decided by error type, S3 error code and HTTP status (never by words in the message: a symbol such as
    ``S0500`` or a count of 503 rows is not a server error)."""
    err = s3_error(exc)
    if err is not None:
        code, status = err
        return code in _TRANSIENT_CODES or status in _TRANSIENT_STATUS
    if isinstance(exc, _PERMANENT):
        return False
    if any(isinstance(e, _network_types()) for e in _chain(exc)):
        return True
    return isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNO


def with_retries(fn: Callable[[], T], what: str, retries: int = 4, backoff_s: float = 0.2) -> T:
    """Call ``fn``; retry transient errors with exponential backoff; ``StorageError`` when it gives up."""
    for attempt in range(retries + 1):
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - classified below
            if not is_transient(e):
                raise StorageError(f"{what}: {type(e).__name__}: {e}") from e
            if attempt == retries:
                raise StorageError(
                    f"{what}: still failing after {retries} retries: {type(e).__name__}: {e}"
                ) from e
            delay = backoff_s * 2**attempt
            log.warning(
                "%s: transient %s (%s); retry %d/%d in %.2fs",
                what,
                type(e).__name__,
                e,
                attempt + 1,
                retries,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")


def create_exclusive(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> bool:
    """Create ``path`` only if it does not exist. True if we created it, False if it already existed.

    Local: ``O_EXCL``. S3: a conditional PUT (``If-None-Match: *``); for stores that ignore the condition
    the object is read back and must hold our bytes (last-writer-wins stores are caught there).
    """
    if fs.exists(path):
        return False
    if "file" in fs.protocol or "local" in fs.protocol:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True
    try:
        fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        return False
    except OSError as e:
        err = s3_error(e)
        if err is not None and (err[0] == "PreconditionFailed" or err[1] == 412):
            return False
        raise
    fs.invalidate_cache(path)
    return fs.cat_file(path) == data
