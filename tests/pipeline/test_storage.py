"""Retry classification and backoff (plain functions; the S3 paths are exercised against real servers
in test_s3.py)."""

import pytest

from pipeline.storage import StorageError, is_transient, with_retries


def test_transient_errors_are_retried_then_succeed():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("Connection reset by peer")
        return "ok"

    assert with_retries(flaky, "op", retries=4, backoff_s=0.001) == "ok" and len(calls) == 3


def test_permanent_errors_fail_at_once_with_the_url():
    calls = []

    def missing():
        calls.append(1)
        raise FileNotFoundError("bkt/x")

    with pytest.raises(StorageError, match="read s3://bkt/x: FileNotFoundError"):
        with_retries(missing, "read s3://bkt/x", retries=4, backoff_s=0.001)
    assert len(calls) == 1


def test_retries_exhausted():
    with pytest.raises(StorageError, match="still failing after 2 retries"):
        with_retries(lambda: (_ for _ in ()).throw(TimeoutError("slow")), "op", retries=2, backoff_s=0.001)
    assert is_transient(OSError("An error occurred (SlowDown) when calling PutObject"))
    assert not is_transient(PermissionError("Access Denied"))
